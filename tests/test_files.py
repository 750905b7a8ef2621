"""Atomic writes and line-numbered JSONL errors."""

import json
import os

import pytest

from r1_aqa.files import atomic_path, read_jsonl, write_json


def test_write_json_is_atomic_and_readable(tmp_path):
    out = tmp_path / "sub" / "x.json"
    write_json(out, {"a": "é"})
    assert json.loads(out.read_text()) == {"a": "é"}
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask
    assert [p.name for p in out.parent.iterdir()] == ["x.json"]


def test_failed_write_leaves_nothing(tmp_path):
    out = tmp_path / "y.json"
    out.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(out) as tmp:
            tmp.write_text("partial")
            raise RuntimeError("boom")
    assert out.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["y.json"]


def test_read_jsonl_names_file_and_line(tmp_path):
    f = tmp_path / "d.jsonl"
    f.write_text('{"a": 1}\n\n{"a": 2\n')
    with pytest.raises(ValueError, match=r"d\.jsonl:3: not valid JSON"):
        read_jsonl(f)
    f.write_text('{"a": 1}\n[1]\n')
    with pytest.raises(ValueError, match=r"d\.jsonl:2: expected a JSON object"):
        read_jsonl(f)
