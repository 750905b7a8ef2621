"""``prepare``: the dirty AVQA corpus, atomic outputs, the gijs/avqa-processed layout, MMAU and MMSU."""

from __future__ import annotations

import io
import json
import re

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf
from helpers import MMAU_DIR, needs_mmau, write_tone

from r1_aqa.benchmarks.mmau import load_mmau
from r1_aqa.benchmarks.mmsu import load_mmsu
from r1_aqa.cli import main
from r1_aqa.data.avqa import parse_question, video_to_audio
from r1_aqa.data.synth import synthesize
from r1_aqa.items import COLUMNS
from r1_aqa.prompts import format_prompt

MMAU_FILES = ["mmau-test-mini.2025-01-28.json", "mmau-test-mini.v05.15.25.json"]
CHOICES = ["dog", "cat", "car", "bird"]


def _row(rid, audio_path, answer=1, choices=CHOICES, question="What is making the sound in the video?"):
    return {"id": rid, "video_name": f"v{rid}", "question_text": question, "multi_choice": choices,
            "answer": answer, "question_type": "Which", "dataset_name": "AVQA", "audio_path": audio_path}


def _wav_bytes(seconds=0.5, sr=16_000, fmt="WAV", freq=440.0):
    buf = io.BytesIO()
    t = np.arange(int(seconds * sr)) / sr
    sf.write(buf, (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), sr, format=fmt)
    return buf.getvalue()


@pytest.fixture
def dirty_corpus(tmp_path):
    """An AVQA JSONL with every kind of bad row next to good ones; returns (jsonl, audio_dir, outside_clip)."""
    clips = tmp_path / "clips"
    clips.mkdir()
    write_tone(clips / "good.wav")
    (clips / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt garbage" * 20)
    sf.write(clips / "empty.wav", np.zeros(0, dtype=np.float32), 16_000)
    write_tone(clips / "stereo.wav", sr=44_100, channels=2)
    write_tone(clips / "long.wav", seconds=31, sr=8_000)
    write_tone(clips / "tone.flac", fmt="FLAC")
    (clips / "zero.wav").write_bytes(b"")
    (tmp_path / "elsewhere").mkdir()
    outside = write_tone(tmp_path / "elsewhere" / "abs.wav")
    lines = [
        _row(1, "good.wav", question="What happens in the Video? Is the video loud?"),  # 1 kept
        _row(2, "nope.wav"),                                        # 2 missing clip
        _row(3, "corrupt.wav"),                                     # 3 undecodable
        _row(4, "empty.wav"),                                       # 4 no samples
        _row(5, "stereo.wav", answer=0),                            # 5 kept: stereo 44.1 kHz
        None,                                                       # 6 blank line
        _row(7, "long.wav", answer=3),                              # 7 kept: 31 s (the loader caps later)
        _row(8, "tone.flac", answer=2),                             # 8 kept: FLAC
        _row(9, "good.wav", answer=4),                              # 9 answer index out of range
        _row(10, "good.wav", choices=[]),                           # 10 empty choices
        {k: v for k, v in _row(11, "good.wav").items() if k != "question_text"},  # 11 missing field
        _row(12, "some/other/dir/good.wav"),                        # 12 kept: found by basename
        _row(13, str(outside)),                                     # 13 kept: absolute path as given
        _row(14, "zero.wav"),                                       # 14 zero-byte file
        _row(15, "good.wav", answer="1"),                           # 15 answer is not an index
    ]
    jsonl = tmp_path / "train.jsonl"
    jsonl.write_text("".join("\n" if r is None else json.dumps(r) + "\n" for r in lines))
    return jsonl, clips, outside


def _read(path):
    return pq.read_table(path).to_pylist()


def test_dirty_corpus_keeps_good_rows_and_reports_bad_ones(dirty_corpus, tmp_path, capsys):
    jsonl, clips, outside = dirty_corpus
    out = tmp_path / "out" / "avqa.parquet"

    code = main(["prepare", "avqa", "--input", str(jsonl), "--audio-dir", str(clips), "--output", str(out),
                 "--workers", "2"])

    assert code == 0
    assert capsys.readouterr().out.strip() == (
        f"{out}: kept 6 of 14 rows, skipped 8 (see {out.parent / 'avqa.report.json'})")
    report = json.loads((out.parent / "avqa.report.json").read_text())
    assert (report["rows_in"], report["rows_out"]) == (14, 6)
    assert [(s["line"], s["id"]) for s in report["skipped"]] == [
        (2, "2"), (3, "3"), (4, "4"), (9, "9"), (10, "10"), (11, "11"), (14, "14"), (15, "15")]
    reasons = [s["reason"] for s in report["skipped"]]
    assert reasons[0].startswith("audio not found: 'nope.wav'")
    assert reasons[1].startswith(f"{clips / 'corrupt.wav'}: cannot decode audio")
    assert reasons[2] == f"{clips / 'empty.wav'}: audio has no samples"
    assert reasons[3] == "answer index 4 out of range for 4 choices"
    assert reasons[4] == "empty choices"
    assert reasons[5] == "missing field(s): question_text"
    assert reasons[6].startswith(f"{clips / 'zero.wav'}: cannot decode audio")
    assert reasons[7] == "answer index must be an integer, got '1'"

    rows = {r["id"]: r for r in _read(out)}
    assert list(pq.read_schema(out).names[: len(COLUMNS)]) == list(COLUMNS)
    assert sorted(rows) == ["1", "12", "13", "5", "7", "8"]
    assert {k: rows["1"][k] for k in ("question", "choices", "answer", "answer_idx", "solution", "dataset_name")} == {
        "question": "What happens in the Audio? Is the audio loud?", "choices": CHOICES, "answer": "cat",
        "answer_idx": 1, "solution": "<answer>cat</answer>", "dataset_name": "AVQA"}
    assert rows["1"]["prompt"] == format_prompt("What happens in the Audio? Is the audio loud?", CHOICES)
    assert rows["1"]["audio"] == rows["12"]["audio"] == str(clips / "good.wav")
    assert rows["13"]["audio"] == str(outside)
    assert (rows["5"]["sample_rate"], rows["5"]["duration_s"], rows["5"]["answer"]) == (44_100, 1.0, "dog")
    assert (rows["7"]["sample_rate"], rows["7"]["duration_s"], rows["7"]["answer"]) == (8_000, 31.0, "bird")
    assert rows["8"]["audio"].endswith("tone.flac") and rows["8"]["answer"] == "car"
    assert sorted(p.name for p in out.parent.iterdir()) == ["avqa.parquet", "avqa.report.json"]  # no temp files


def test_in_process_probing_gives_the_same_result(dirty_corpus, tmp_path):
    jsonl, clips, _ = dirty_corpus
    outs = [tmp_path / f"w{w}" / "avqa.parquet" for w in (1, 2)]
    for w, out in zip((1, 2), outs):
        main(["prepare", "avqa", "--input", str(jsonl), "--audio-dir", str(clips), "--output", str(out),
              "--workers", str(w), "--template", "think"])
    assert _read(outs[0]) == _read(outs[1])
    assert _read(outs[0])[0]["prompt"].endswith("Output the thinking process in <think> </think> and final "
                                                 "answer in <answer> </answer>.")


def test_malformed_json_is_a_hard_error_and_writes_nothing(dirty_corpus, tmp_path, capsys):
    jsonl, clips, _ = dirty_corpus
    lines = jsonl.read_text().splitlines()
    lines.insert(6, '{"id": 99, "question_text": "broken",')  # becomes line 7
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(lines) + "\n")
    out_dir = tmp_path / "out"
    out_dir.mkdir()

    assert main(["prepare", "avqa", "--input", str(bad), "--audio-dir", str(clips),
                 "--output", str(out_dir / "avqa.parquet"), "--workers", "1"]) == 2
    assert re.search(r"bad\.jsonl:7: not valid JSON", capsys.readouterr().err)
    assert list(out_dir.iterdir()) == []


def test_failed_run_leaves_the_previous_output_intact(dirty_corpus, tmp_path, capsys):
    jsonl, clips, _ = dirty_corpus
    out = tmp_path / "avqa.parquet"
    args = ["prepare", "avqa", "--audio-dir", str(clips), "--output", str(out), "--workers", "1"]
    main([*args, "--input", str(jsonl)])
    before = out.read_bytes(), out.with_suffix(".report.json").read_bytes()
    bad = tmp_path / "bad.jsonl"
    bad.write_text(jsonl.read_text() + "[not json\n")

    assert main([*args, "--input", str(bad)]) == 2
    assert re.search(r"bad\.jsonl:16: not valid JSON", capsys.readouterr().err)
    assert (out.read_bytes(), out.with_suffix(".report.json").read_bytes()) == before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_synth_output_prepares_cleanly(tmp_path):
    jsonl = synthesize(tmp_path / "synth", n=8, seed=0, task="count", seconds=0.5)
    out = tmp_path / "synth.parquet"
    assert main(["prepare", "avqa", "--input", str(jsonl), "--output", str(out), "--workers", "1"]) == 0
    rows = _read(out)
    source = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [r["answer"] for r in rows] == [s["multi_choice"][s["answer"]] for s in source]
    assert all(r["duration_s"] == 0.5 and r["dataset_name"] == "synth-count" for r in rows)


def test_answer_indices_that_are_bools_are_refused(tmp_path, capsys):
    """true/false are not option indices (Python counts them as 1 and 0): every row is skipped, nothing written."""
    jsonl = synthesize(tmp_path / "synth", n=4, seed=0, task="pitch", seconds=0.5)
    rows = [json.loads(line) for line in jsonl.read_text().splitlines()]
    jsonl.write_text("".join(json.dumps({**r, "answer": i % 2 == 0}) + "\n" for i, r in enumerate(rows)))
    out = tmp_path / "out.parquet"
    assert main(["prepare", "avqa", "--input", str(jsonl), "--output", str(out), "--workers", "1"]) == 2
    err = capsys.readouterr().err
    assert "no usable rows among the 4 read (4 skipped)" in err
    assert "line 1 (id synth-pitch-0-00000): answer index must be an integer, got True" in err
    assert "line 2 (id synth-pitch-0-00001): answer index must be an integer, got False" in err
    assert not out.exists() and not out.with_suffix(".report.json").exists()


def test_video_becomes_audio_keeping_case():
    assert video_to_audio("video Video VIDEO videos") == "audio Audio AUDIO audios"


# --- gijs/avqa-processed layout -------------------------------------------------------------------------------


def _gijs_question(q, options):
    return q + "\nChoices:\n" + "\n".join(f"{'ABCD'[i]}. {o}" for i, o in enumerate(options))


@pytest.fixture
def gijs_layout(tmp_path):
    import datasets

    wav, flac = _wav_bytes(), _wav_bytes(seconds=0.25, sr=22_050, fmt="FLAC")
    train = [
        ("clip_a.mp4", wav, _gijs_question("What is in the video?", CHOICES), "B. cat"),
        ("clip_a.mp4", wav, _gijs_question("Which Video event happens?", CHOICES), "D. bird"),
        ("clip_b.mp4", flac, _gijs_question("What do you hear?", CHOICES), "A. dog"),
        ("clip_c.mp4", b"not audio at all", _gijs_question("What is it?", CHOICES), "C. car"),
        ("clip_a.mp4", wav, _gijs_question("What is it?", CHOICES), "E. zebra"),
        ("clip_a.mp4", wav, "What is it? dog or cat?", "A. dog"),
    ]
    val = [("clip_v.mp4", wav, _gijs_question("What is the video about?", CHOICES), "C. car")]

    def split(rows):
        ds = datasets.Dataset.from_dict({
            "audio": [{"bytes": b, "path": f} for f, b, _, _ in rows], "question": [q for _, _, q, _ in rows],
            "answer": [a for _, _, _, a in rows], "file_name": [f for f, _, _, _ in rows]})
        return ds.cast_column("audio", datasets.Audio(sampling_rate=16_000))  # as on the hub

    datasets.DatasetDict(train=split(train), val=split(val)).save_to_disk(str(tmp_path / "avqa-processed"))
    return tmp_path / "avqa-processed"


@pytest.mark.parametrize("workers", ["1", "2"])
def test_from_hf_layout_writes_clips_as_wav(gijs_layout, tmp_path, workers):
    out = tmp_path / "prepared" / "train.parquet"

    assert main(["prepare", "avqa", "--from-hf", str(gijs_layout), "--output", str(out), "--workers", workers]) == 0

    report = json.loads(out.with_suffix(".report.json").read_text())
    assert (report["rows_in"], report["rows_out"]) == (6, 3)
    assert [(s["line"], s["id"]) for s in report["skipped"]] == [(4, "train-3"), (5, "train-4"), (6, "train-5")]
    assert "cannot decode audio" in report["skipped"][0]["reason"]
    assert report["skipped"][1]["reason"] == "answer 'E. zebra' is not one of the choice letters ABCD"
    assert report["skipped"][2]["reason"] == "question has no 'Choices:' list"

    rows = _read(out)
    assert [(r["id"], r["question"], r["answer"], r["answer_idx"]) for r in rows] == [
        ("train-0", "What is in the audio?", "cat", 1), ("train-1", "Which Audio event happens?", "bird", 3),
        ("train-2", "What do you hear?", "dog", 0)]
    assert rows[0]["choices"] == CHOICES and rows[0]["solution"] == "<answer>cat</answer>"
    audio_dir = out.with_suffix(".audio")
    assert rows[0]["audio"] == rows[1]["audio"] == str(audio_dir / "clip_a.wav")
    assert rows[2]["audio"] == str(audio_dir / "clip_b.wav")
    assert sorted(p.name for p in audio_dir.iterdir()) == ["clip_a.wav", "clip_b.wav"]
    info = sf.info(rows[2]["audio"])  # FLAC bytes were re-encoded as wav
    assert (info.format, info.samplerate, rows[2]["sample_rate"]) == ("WAV", 22_050, 22_050)
    assert rows[2]["duration_s"] == pytest.approx(5512 / 22_050)


def test_from_hf_other_split_and_unknown_split(gijs_layout, tmp_path, capsys):
    out = tmp_path / "val.parquet"
    main(["prepare", "avqa", "--from-hf", str(gijs_layout), "--split", "val", "--output", str(out), "--workers", "1"])
    assert [(r["id"], r["question"], r["answer"]) for r in _read(out)] == [("val-0", "What is the audio about?", "car")]
    assert main(["prepare", "avqa", "--from-hf", str(gijs_layout), "--split", "test", "--output", str(out)]) == 2
    assert re.search(r"no split .test.; splits are \[.train., .val.\]", capsys.readouterr().err)


def test_parse_question_rejects_mismatched_answer_text():
    q = _gijs_question("What?", CHOICES)
    assert parse_question(q, "B. cat") == ("What?", CHOICES, 1)
    assert parse_question(q, "B") == ("What?", CHOICES, 1)
    with pytest.raises(ValueError, match="does not match choice B. 'cat'"):
        parse_question(q, "B. dog")


# --- MMAU -----------------------------------------------------------------------------------------------------


@needs_mmau
@pytest.mark.parametrize("name", MMAU_FILES)
def test_load_mmau_on_the_real_question_files(name, tmp_path):
    records = load_mmau(MMAU_DIR / name, tmp_path)
    assert len(records) == 1000
    assert all(r["audio"] is None for r in records)  # no clips here
    assert all(r["answer_idx"] == r["choices"].index(r["answer"]) for r in records)
    repeated = [r for r in records if r["choices"].count(r["answer"]) > 1]
    assert repeated and all(r["choices"][r["answer_idx"]] == r["answer"] for r in repeated)


@needs_mmau
def test_prepare_mmau_without_clips_writes_nothing_and_says_why(tmp_path, capsys):
    out = tmp_path / "mmau.parquet"
    assert main(["prepare", "mmau", "--input", str(MMAU_DIR / MMAU_FILES[0]), "--audio-dir", str(tmp_path),
                 "--output", str(out), "--workers", "1"]) == 2
    err = capsys.readouterr().err
    assert f"no usable rows among the 1000 read (1000 skipped): nothing written to {out}" in err
    assert "line 1 (id " in err and "audio not found: './test-mini-audios/" in err and "... and 990 more" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@needs_mmau
@pytest.mark.parametrize("name", MMAU_FILES)
def test_prepare_mmau_with_some_clips(name, tmp_path):
    records = json.loads((MMAU_DIR / name).read_text())
    clips = tmp_path / "test-mini-audios"
    clips.mkdir()
    for r in records[:3]:
        write_tone(clips / f"{r['id']}.wav", seconds=0.2)
    out = tmp_path / "mmau.parquet"

    assert main(["prepare", "mmau", "--input", str(MMAU_DIR / name), "--audio-dir", str(tmp_path),
                 "--output", str(out), "--workers", "1"]) == 0

    report = json.loads(out.with_suffix(".report.json").read_text())
    assert (report["rows_in"], report["rows_out"], len(report["skipped"])) == (1000, 3, 997)
    assert report["skipped"][0] == {"line": 4, "id": records[3]["id"],
                                    "reason": f"audio not found: {records[3]['audio_id']!r}"}
    rows = _read(out)
    assert [r["id"] for r in rows] == [r["id"] for r in records[:3]]
    for row, rec in zip(rows, records):
        assert {k: row[k] for k in rec} == rec  # every original field kept as a column
        assert row["audio"] == str(clips / f"{rec['id']}.wav") and row["dataset_name"] == "mmau"
        assert row["solution"] == f"<answer>{rec['answer']}</answer>"


@needs_mmau
def test_mmau_bad_items_are_skipped_and_bad_json_fails_fast(tmp_path):
    records = json.loads((MMAU_DIR / MMAU_FILES[1]).read_text())[:3]
    records[0]["answer"] = "not an option"
    records[1]["choices"] = []
    for r in records:
        write_tone(tmp_path / f"{r['id']}.wav", seconds=0.2)  # found by basename
    src = tmp_path / "mmau.json"
    src.write_text(json.dumps(records))
    out = tmp_path / "out.parquet"

    main(["prepare", "mmau", "--input", str(src), "--output", str(out), "--workers", "1"])

    report = json.loads(out.with_suffix(".report.json").read_text())
    assert report["skipped"] == [
        {"line": 1, "id": records[0]["id"], "reason": "answer 'not an option' not in choices"},
        {"line": 2, "id": records[1]["id"], "reason": "empty choices"}]
    assert report["rows_out"] == 1
    src.write_text(json.dumps(records)[:-20])
    with pytest.raises(ValueError, match=r"mmau\.json: not valid JSON \(line 1"):
        load_mmau(src)


# --- MMSU -----------------------------------------------------------------------------------------------------


def _mmsu_records(tmp_path):
    write_tone(tmp_path / "on_disk.wav", seconds=0.3)
    options = ["happy", "sad", "angry", "neutral"]
    rows = [
        {"key": f"emo_{i}", "question": f"What emotion is in clip {i}?", "options": options, "answer_index": i % 4,
         "category": "perception-paralinguistics-emotion", "audio": {"bytes": _wav_bytes(0.3, freq=300 + i),
                                                                    "path": f"emo_{i}.wav"}}
        for i in range(3)
    ]
    rows.append({**rows[0], "key": "bad_index", "answer_index": 4})
    rows.append({**rows[0], "key": "from_path", "audio": {"bytes": None, "path": "on_disk.wav"}})
    return rows


def _write_parquet(rows, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)


@pytest.mark.parametrize("layout", ["file", "dir", "save_to_disk"])
def test_mmsu_layouts(layout, tmp_path):
    import datasets

    rows = _mmsu_records(tmp_path)
    if layout == "file":
        src = tmp_path / "mmsu.parquet"
        _write_parquet(rows, src)
    elif layout == "dir":
        src = tmp_path
        _write_parquet(rows[:2], tmp_path / "data" / "train-00000.parquet")
        _write_parquet(rows[2:], tmp_path / "data" / "train-00001.parquet")
    else:
        src = tmp_path
        rows[4]["audio"]["path"] = str(tmp_path / "on_disk.wav")  # datasets embeds the file's bytes
        ds = datasets.Dataset.from_list(rows).cast_column("audio", datasets.Audio(sampling_rate=16_000))
        datasets.DatasetDict(test=ds).save_to_disk(str(src))

    loaded = load_mmsu(src)
    assert [r["id"] for r in loaded] == ["emo_0", "emo_1", "emo_2", "bad_index", "from_path"]
    assert loaded[1] | {"audio": None} == {
        "id": "emo_1", "question": "What emotion is in clip 1?", "choices": ["happy", "sad", "angry", "neutral"],
        "answer": "sad", "answer_idx": 1, "category": "perception-paralinguistics-emotion", "audio": None}
    assert isinstance(loaded[1]["audio"], bytes) and loaded[3]["answer"] is None
    on_disk = tmp_path / "on_disk.wav"
    embedded = layout == "save_to_disk"
    assert loaded[4]["audio"] == (on_disk.read_bytes() if embedded else str(on_disk))

    out = tmp_path / "out" / "mmsu.parquet"
    assert main(["prepare", "mmsu", "--input", str(src), "--output", str(out), "--workers", "1"]) == 0
    report = json.loads(out.with_suffix(".report.json").read_text())
    assert report == {"rows_in": 5, "rows_out": 4, "skipped": [
        {"line": 4, "id": "bad_index", "reason": "answer index 4 out of range for 4 choices"}]}
    prepared = _read(out)
    category = "perception-paralinguistics-emotion"
    assert [(r["id"], r["answer"], r["category"]) for r in prepared][:2] == [
        ("emo_0", "happy", category), ("emo_1", "sad", category)]
    assert prepared[0]["audio"] == str(out.with_suffix(".audio") / "emo_0.wav")
    assert prepared[3]["audio"] == str(out.with_suffix(".audio") / "from_path.wav" if embedded else on_disk)
    assert all(r["duration_s"] == pytest.approx(0.3) for r in prepared)


def test_prepare_mmsu_takes_the_split_asked_for(tmp_path, capsys):
    import datasets

    rows = _mmsu_records(tmp_path)[:3]
    ds = datasets.Dataset.from_list(rows).cast_column("audio", datasets.Audio(sampling_rate=16_000))
    datasets.DatasetDict(test=ds.select([0, 1]), dev=ds.select([2])).save_to_disk(str(tmp_path / "mmsu"))
    out = tmp_path / "dev.parquet"
    assert main(["prepare", "mmsu", "--input", str(tmp_path / "mmsu"), "--split", "dev", "--output", str(out),
                 "--workers", "1"]) == 0
    assert [r["id"] for r in _read(out)] == ["emo_2"]
    assert main(["prepare", "mmsu", "--input", str(tmp_path / "mmsu"), "--output", str(tmp_path / "x.parquet")]) == 2
    assert "no split None; splits are ['dev', 'test'] (pick one with --split)" in capsys.readouterr().err


def test_mmsu_rejects_unknown_input(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="no parquet files and not a datasets save_to_disk directory"):
        load_mmsu(tmp_path)
    with pytest.raises(ValueError, match="not a parquet file or a directory"):
        load_mmsu(tmp_path / "notes.txt")
