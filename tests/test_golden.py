"""Every output of ``prepare``, ``eval``, ``score`` and ``filter`` is byte-identical to the committed fixtures.

The commands run on the tiny Qwen2-Audio and synthesized tones under one fixed directory (so absolute paths in the
outputs are the same on every run), with the model's weight files given fixed modification times (so the model
fingerprint in the ``.meta.json`` sidecars is too). Nothing is normalised: every file is compared byte for byte
with ``tests/fixtures/golden/``, except a parquet, whose footer names the pyarrow that wrote it: its rows, schema and
schema metadata are compared instead. The outputs carry no other library version (pandas' and matplotlib's stamps are
left out), so a new release fails this test only when it changes what is written (a PNG's rendering, say); then make
the fixtures again, ``R1_AQA_WRITE_GOLDEN=1 pytest tests/test_golden.py``, and review the diff.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from helpers import write_tone

from r1_aqa.cli import main

FIXTURES = Path(__file__).parent / "fixtures" / "golden"
ROOT = Path(tempfile.gettempdir()) / "r1-aqa-golden"  # fixed: absolute paths are part of the outputs
MTIME_NS = 1_700_000_000_000_000_000
CHOICES = [["low", "high", "middle"], ["dog", "cat", "car", "bird"], ["yes", "no"], ["one", "two", "three"]]


def _corpus(root: Path) -> Path:
    """An AVQA JSONL of four tone questions and one row whose clip is missing (a skip in the report)."""
    clips = root / "clips"
    clips.mkdir(parents=True)
    rows = []
    for i, choices in enumerate(CHOICES):
        write_tone(clips / f"tone{i}.wav", freq=300.0 + 150.0 * i, seconds=1.0 + 0.5 * (i % 2))
        rows.append({"id": i, "video_name": f"v{i}", "question_text": f"Which tone is number {i}?",
                     "multi_choice": choices, "answer": i % len(choices), "question_type": "Which",
                     "dataset_name": "AVQA", "audio_path": f"tone{i}.wav"})
    rows.append({**rows[0], "id": 9, "audio_path": "missing.wav"})
    jsonl = root / "avqa.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return jsonl


def _model(tiny_model_dir: Path, root: Path) -> Path:
    model = root / "model"
    shutil.copytree(tiny_model_dir, model)
    for path in model.iterdir():
        os.utime(path, ns=(MTIME_NS, MTIME_NS))
    return model


def _run_commands(root: Path, tiny_model_dir: Path) -> Path:
    """Run every command once; returns the directory holding all their outputs."""
    out = root / "out"
    jsonl, model = _corpus(root), _model(tiny_model_dir, root)
    parquet = out / "prepare" / "avqa.parquet"
    assert main(["prepare", "avqa", "--input", str(jsonl), "--audio-dir", str(root / "clips"), "--output",
                 str(parquet), "--workers", "1"]) == 0
    pred = out / "eval" / "pred.json"
    assert main(["eval", "--data", str(parquet), "--model", str(model), "--output", str(pred), "--engine", "hf",
                 "--max-new-tokens", "4", "--permutations", "2", "--silence", "--batch-size", "3"]) == 0
    scored = out / "score"
    scored.mkdir()
    for name in ("pred.json", "pred.silence.json"):
        shutil.copyfile(pred.parent / name, scored / name)
    assert main(["score", "--benchmark", "mmau", "--predictions", str(scored / "pred.json"),
                 "--silence-predictions", str(scored / "pred.silence.json")]) == 0
    assert main(["filter", "--data", str(parquet), "--model", str(model), "--output",
                 str(out / "filter" / "labelled.parquet"), "--samples", "2", "--max-new-tokens", "4",
                 "--batch-size", "3", "--seed", "7"]) == 0
    return out


def _same(name: str, made: bytes, expected: bytes) -> bool:
    if not name.endswith(".parquet"):
        return made == expected
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = [pq.read_table(pa.BufferReader(data)) for data in (made, expected)]
    return tables[0].equals(tables[1], check_metadata=True)


def _files(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.fixture
def golden_root():
    """The fixed directory, emptied, held under a lock so two sessions on one machine take turns."""
    with open(Path(tempfile.gettempdir()) / "r1-aqa-golden.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        shutil.rmtree(ROOT, ignore_errors=True)
        ROOT.mkdir()
        yield ROOT
        shutil.rmtree(ROOT, ignore_errors=True)


def test_every_output_is_byte_identical_to_the_fixtures(tiny_model_dir, golden_root):
    made = _files(_run_commands(golden_root, Path(tiny_model_dir)))
    if os.environ.get("R1_AQA_WRITE_GOLDEN"):
        shutil.rmtree(FIXTURES, ignore_errors=True)
        for name, data in made.items():
            (FIXTURES / name).parent.mkdir(parents=True, exist_ok=True)
            (FIXTURES / name).write_bytes(data)
    expected = _files(FIXTURES)
    assert sorted(made) == sorted(expected)
    assert [name for name in made if not _same(name, made[name], expected[name])] == []


def test_no_output_names_a_library_version(tiny_model_dir, golden_root):
    """A version stamp would make a patch release of pandas or matplotlib fail the test above on a fresh install."""
    import matplotlib
    import pandas

    made = _files(_run_commands(golden_root, Path(tiny_model_dir)))
    for version in (pandas.__version__, matplotlib.__version__):
        assert [name for name, data in made.items() if version.encode() in data] == []
