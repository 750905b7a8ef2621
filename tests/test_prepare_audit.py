"""``r1-aqa prepare`` on dirty data: each unusable row is rejected with its reason, an input with no usable row writes
nothing, outputs sharing a folder keep their own clips, and a failed write leaves the previous output whole."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import soundfile as sf
from helpers import write_tone

from r1_aqa.cli import main


def _avqa_row(rid: str, audio: str, **overrides) -> dict:
    row = {"id": rid, "question_text": "What is in the video?", "multi_choice": ["dog", "cat"], "answer": 1,
           "dataset_name": "synth", "audio_path": audio}
    return {**row, **overrides}


def _reasons(out) -> dict[str, str]:
    return {s["id"]: s["reason"] for s in json.loads(out.with_suffix(".report.json").read_text())["skipped"]}


def test_avqa_rows_rejected_with_their_reasons(tmp_path):
    write_tone(tmp_path / "good.wav")
    t = np.arange(16_000) / 16_000
    wav = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    wav[100] = np.nan
    sf.write(str(tmp_path / "nan.wav"), wav, 16_000, subtype="FLOAT")
    write_tone(tmp_path / "full.flac", seconds=3.0)
    data = (tmp_path / "full.flac").read_bytes()
    (tmp_path / "cut.flac").write_bytes(data[: len(data) // 2])  # a valid header, half a body
    with sf.SoundFile(str(tmp_path / "cut.flac")) as f:
        assert f.frames == 48_000  # the header still promises the whole clip
    rows = [_avqa_row("good", "good.wav"), _avqa_row("bool", "good.wav", answer=True),
            _avqa_row("number", "good.wav", question_text=5), _avqa_row("nan", "nan.wav"),
            _avqa_row("cut", "cut.flac")]
    source = tmp_path / "avqa.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out.parquet"
    assert main(["prepare", "avqa", "--input", str(source), "--output", str(out), "--workers", "1"]) == 0
    reasons = _reasons(out)
    assert reasons["bool"] == "answer index must be an integer, got True"
    assert reasons["number"] == "question_text must be a string"
    assert reasons["nan"] == f"{tmp_path / 'nan.wav'}: audio has non-finite samples (NaN or inf)"
    assert reasons["cut"].startswith(f"{tmp_path / 'cut.flac'}: cannot decode audio")
    assert [r["id"] for r in pq.read_table(out).to_pylist()] == ["good"]


def test_mmau_and_mmsu_rows_rejected_with_their_reasons(tmp_path):
    write_tone(tmp_path / "a.wav")
    mmau = [{"id": i, "audio_id": "a.wav", "question": q, "choices": ["x", "y"], "answer": "x"}
            for i, q in (("ok", "Which?"), ("number", 5), ("blank", "  "))]
    (tmp_path / "mmau.json").write_text(json.dumps(mmau))
    out = tmp_path / "mmau.parquet"
    assert main(["prepare", "mmau", "--input", str(tmp_path / "mmau.json"), "--output", str(out),
                 "--workers", "1"]) == 0
    assert _reasons(out) == {"number": "question must be a string, got int", "blank": "empty question"}

    tone = (0.3 * np.sin(np.arange(8000) / 5)).astype(np.float32).tolist()
    audio = pa.array([{"array": tone, "sampling_rate": 16_000}, {"array": [], "sampling_rate": 16_000},
                      {"array": tone[:100] + [float("nan")], "sampling_rate": 16_000}])
    table = pa.table({"key": ["ok", "empty", "nan"], "question": ["Which?"] * 3, "options": [["x", "y"]] * 3,
                      "answer_index": [0, 0, 0], "category": ["perception-x"] * 3, "audio": audio})
    pq.write_table(table, tmp_path / "mmsu.parquet")
    out = tmp_path / "mmsu-out.parquet"
    assert main(["prepare", "mmsu", "--input", str(tmp_path / "mmsu.parquet"), "--output", str(out),
                 "--workers", "1"]) == 0
    reasons = _reasons(out)
    assert reasons == {"empty": f"{out.with_suffix('.audio') / 'empty.wav'}: audio has no samples",
                       "nan": f"{out.with_suffix('.audio') / 'nan.wav'}: audio has non-finite samples (NaN or inf)"}


def test_no_usable_row_writes_nothing_and_says_why(tmp_path, capsys):
    source = tmp_path / "avqa.jsonl"
    source.write_text(json.dumps(_avqa_row("gone", "missing.wav")) + "\n")
    out = tmp_path / "out" / "train.parquet"
    assert main(["prepare", "avqa", "--input", str(source), "--output", str(out), "--workers", "1"]) == 2
    err = capsys.readouterr().err
    assert f"no usable rows among the 1 read (1 skipped): nothing written to {out}" in err
    assert "line 1 (id gone): audio not found: 'missing.wav'" in err
    assert not out.parent.exists()
    source.write_text("")
    assert main(["prepare", "avqa", "--input", str(source), "--output", str(out), "--workers", "1", "--verbose"]) == 2
    assert "no usable rows among the 0 read" in capsys.readouterr().err and not out.parent.exists()


def _mmsu_with_clips(path, freq: float) -> None:
    """An MMSU parquet of two items whose clips come as bytes (written out by prepare), named by key."""
    rows = []
    for key in ("emo_0", "emo_1"):
        clip = write_tone(path.with_name(f"{key}-{freq}.wav"), freq=freq)
        rows.append({"key": key, "question": "Which emotion?", "options": ["happy", "sad"], "answer_index": 0,
                     "category": "perception-emotion", "audio": {"bytes": clip.read_bytes(), "path": None}})
    pq.write_table(pa.Table.from_pylist(rows), path)


def test_outputs_in_one_folder_keep_their_own_clips(tmp_path):
    for name, freq in (("low", 220.0), ("high", 880.0)):
        _mmsu_with_clips(tmp_path / f"{name}.parquet", freq)
        assert main(["prepare", "mmsu", "--input", str(tmp_path / f"{name}.parquet"),
                     "--output", str(tmp_path / "prepared" / f"{name}.parquet"), "--workers", "1"]) == 0
    for name, freq in (("low", 220.0), ("high", 880.0)):
        for row in pq.read_table(tmp_path / "prepared" / f"{name}.parquet").to_pylist():
            assert row["audio"].startswith(str(tmp_path / "prepared" / f"{name}.audio"))
            assert sf.read(row["audio"])[0].tolist() == sf.read(str(tmp_path / f"{row['id']}-{freq}.wav"))[0].tolist()


def test_a_failed_write_leaves_the_previous_output_whole(tmp_path, monkeypatch, capsys):
    write_tone(tmp_path / "good.wav")
    source = tmp_path / "avqa.jsonl"
    source.write_text(json.dumps(_avqa_row("a", "good.wav")) + "\n")
    out = tmp_path / "out.parquet"
    argv = ["prepare", "avqa", "--input", str(source), "--output", str(out), "--workers", "1"]
    assert main(argv) == 0
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}

    def disk_full(table, where, **kwargs):  # half a file, then the failure a full disk gives
        with open(where, "wb") as f:
            f.write(b"PAR1 half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pq, "write_table", disk_full)
    source.write_text(json.dumps(_avqa_row("b", "good.wav")) + "\n")
    assert main(argv) == 1  # the machine, not the input: one line, exit 1
    assert capsys.readouterr().err.splitlines()[-1] == "r1-aqa prepare: error: no space left on device"
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    assert after == {**before, "avqa.jsonl": source.read_bytes()}  # parquet and report as before, no temp files


def test_undecodable_input_files_are_named(tmp_path, capsys):
    (tmp_path / "latin1.jsonl").write_bytes(b'\n{"id": "caf\xe9"}\n')
    (tmp_path / "latin1.json").write_bytes(b'[{"id": "caf\xe9"}]')
    (tmp_path / "corrupt.parquet").write_bytes(b"PAR1 not really a parquet file")
    for dataset, name, message in (("avqa", "latin1.jsonl", "latin1.jsonl:2: not UTF-8 text"),
                                   ("mmar", "latin1.jsonl", "latin1.jsonl:2: not UTF-8 text"),
                                   ("mmau", "latin1.json", "latin1.json: not UTF-8 text"),
                                   ("mmsu", "corrupt.parquet", "corrupt.parquet: not a readable parquet file")):
        assert main(["prepare", dataset, "--input", str(tmp_path / name), "--output", str(tmp_path / "o.parquet"),
                     "--workers", "1"]) == 2
        assert f"{tmp_path / message}" in capsys.readouterr().err, dataset
    assert not (tmp_path / "o.parquet").exists()


def test_another_benchmarks_file_names_the_right_command(tmp_path, capsys):
    (tmp_path / "mmau.json").write_text("[]")
    (tmp_path / "mmsu.parquet").write_bytes(b"PAR1")
    for dataset, data, hint in (("mmsu", "mmau.json", "an MMAU JSON file is `prepare mmau`"),
                                ("mmau", "mmsu.parquet", "MMSU data? that is `prepare mmsu`"),
                                ("mmau", ".", "MMSU data? that is `prepare mmsu`")):
        assert main(["prepare", dataset, "--input", str(tmp_path / data), "--output", str(tmp_path / "o.parquet"),
                     "--workers", "1"]) == 2
        assert hint in capsys.readouterr().err, dataset
