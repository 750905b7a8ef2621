"""The synthetic task: R1-AQA JSONL, determinism, uniform answer position, answers that only the audio tells."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
import soundfile as sf
from helpers import MMAR_META, MMAU_DIR, needs_mmar, needs_mmau

from r1_aqa.cli import main
from r1_aqa.data.synth import COUNTS, PITCHES_HZ, TASKS, synthesize

# chi-square critical value for 3 degrees of freedom at p = 0.001
CHI2_3DOF_P001 = 16.27


def _rows(jsonl):
    return [json.loads(line) for line in jsonl.read_text().splitlines()]


def test_cli_writes_r1_aqa_jsonl_and_clips(tmp_path, capsys):
    assert main(["synth", str(tmp_path), "--n", "5", "--seed", "3", "--task", "count", "--seconds", "0.5"]) == 0
    assert "wrote 5 count items" in capsys.readouterr().out

    rows = _rows(tmp_path / "count.jsonl")
    assert len(rows) == 5 and len({r["id"] for r in rows}) == 5
    for r in rows:
        assert {"id", "question_text", "multi_choice", "answer", "dataset_name", "audio_path"} <= r.keys()
        assert sorted(r["multi_choice"]) == sorted(COUNTS) and 0 <= r["answer"] < 4
        assert r["dataset_name"] == "synth-count"
        wav, sr = sf.read(tmp_path / r["audio_path"])
        assert (sr, len(wav)) == (16_000, 8_000)


def test_same_seed_same_files_other_seed_other_files(tmp_path):
    a = synthesize(tmp_path / "a", n=6, seed=7, task="pitch", seconds=0.25)
    b = synthesize(tmp_path / "b", n=6, seed=7, task="pitch", seconds=0.25)
    c = synthesize(tmp_path / "c", n=6, seed=8, task="pitch", seconds=0.25)

    assert a.read_text() == b.read_text()
    for r in _rows(a):
        assert (a.parent / r["audio_path"]).read_bytes() == (b.parent / r["audio_path"]).read_bytes()
    assert [r["multi_choice"] for r in _rows(a)] != [r["multi_choice"] for r in _rows(c)]


@pytest.mark.parametrize("task", sorted(TASKS))
def test_answer_position_and_label_are_uniform(tmp_path, task):
    n = 400
    rows = _rows(synthesize(tmp_path, n=n, seed=0, task=task, seconds=0.1))

    def chi2(counts):
        return sum((counts[k] - n / 4) ** 2 / (n / 4) for k in range(4))

    positions = Counter(r["answer"] for r in rows)
    words = TASKS[task][1]
    labels = Counter(words.index(r["multi_choice"][r["answer"]]) for r in rows)
    assert chi2(positions) < CHI2_3DOF_P001, positions
    assert chi2(labels) < CHI2_3DOF_P001, labels
    # the question text never changes, and the option order varies: the text alone cannot give the answer
    assert len({r["question_text"] for r in rows}) == 1
    assert len({tuple(r["multi_choice"]) for r in rows}) == 24


def test_pitch_answer_is_the_tone_in_the_clip(tmp_path):
    jsonl = synthesize(tmp_path, n=12, seed=1, task="pitch", seconds=1.0)
    for r in _rows(jsonl):
        wav, sr = sf.read(tmp_path / r["audio_path"])
        peak_hz = np.argmax(np.abs(np.fft.rfft(wav))) * sr / len(wav)
        assert peak_hz == pytest.approx(PITCHES_HZ[r["multi_choice"][r["answer"]]], abs=2)


def test_count_answer_is_the_number_of_beeps(tmp_path):
    jsonl = synthesize(tmp_path, n=12, seed=2, task="count", seconds=1.0)
    for r in _rows(jsonl):
        wav, _ = sf.read(tmp_path / r["audio_path"])
        frames = np.abs(wav[: len(wav) // 160 * 160]).reshape(-1, 160).max(axis=1)  # 10 ms frames
        loud = frames > 0.1
        onsets = int(loud[0]) + int(np.sum(loud[1:] & ~loud[:-1]))
        assert onsets == COUNTS[r["multi_choice"][r["answer"]]]


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown task 'timbre'"):
        synthesize(tmp_path, n=2, task="timbre")
    with pytest.raises(ValueError, match="seconds > 0"):
        synthesize(tmp_path, n=2, seconds=0)


@pytest.mark.parametrize("benchmark", [pytest.param("mmau", marks=needs_mmau), pytest.param("mmar", marks=needs_mmar)])
def test_stand_in_clips_for_a_real_benchmark_file(benchmark, tiny_model_dir, tmp_path, capsys):
    """`synth --like` gives every item of the real MMAU/MMAR question file a clip where `prepare` and `eval` look."""
    questions = MMAU_DIR / "mmau-test-mini.v05.15.25.json" if benchmark == "mmau" else MMAR_META
    clips = tmp_path / "clips"
    assert main(["synth", str(clips), "--like", str(questions), "--seconds", "0.5"]) == 0
    assert f"wrote 1000 stand-in clips under {clips}" in capsys.readouterr().out
    out = tmp_path / "all.parquet"
    assert main(["prepare", benchmark, "--input", str(questions), "--audio-dir", str(clips), "--output", str(out),
                 "--workers", "1"]) == 0
    report = json.loads(out.with_suffix(".report.json").read_text())
    assert (report["rows_in"], report["rows_out"], report["skipped"]) == (1000, 1000, [])
    pred = tmp_path / "pred.json"
    assert main(["eval", "--benchmark", benchmark, "--data", str(questions), "--audio-dir", str(clips), "--model",
                 str(tiny_model_dir), "--output", str(pred), "--limit", "2", "--max-new-tokens", "2"]) == 0
    assert len(json.loads(pred.read_text())) == 2


def test_stand_ins_are_as_long_as_asked(tmp_path, capsys):
    questions = tmp_path / "q.json"
    questions.write_text(json.dumps([{"id": f"q{i}", "audio_id": f"./test-mini-audios/q{i}.wav", "question": "Which?",
                                      "choices": ["x", "y"], "answer": "x"} for i in range(3)]))
    clips = tmp_path / "clips"
    assert main(["synth", str(clips), "--like", str(questions), "--seconds", "0.25"]) == 0
    assert f"wrote 3 stand-in clips under {clips}" in capsys.readouterr().out
    assert [sf.info(clips / "test-mini-audios" / f"q{i}.wav").frames for i in range(3)] == [4_000] * 3


def test_stand_ins_stay_inside_the_audio_dir(tmp_path, capsys):
    questions = tmp_path / "q.json"
    questions.write_text(json.dumps([{"id": "a", "audio_id": "../../etc/x.wav", "question": "Which?",
                                      "choices": ["x", "y"], "answer": "x"}]))
    assert main(["synth", str(tmp_path / "clips"), "--like", str(questions)]) == 2
    assert "item a: '../../etc/x.wav' points outside" in capsys.readouterr().err
    assert not (tmp_path / "clips").exists()
