"""``eval --silence`` and ``score --silence-predictions``: silence of each clip's length, and the listening gap."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import soundfile as sf
from helpers import make_parquet, write_tone

from r1_aqa.cli import main
from r1_aqa.evaluate.scoring import listening_gap, score_records


def test_silence_has_the_clips_length_after_the_cap(tmp_path):
    from r1_aqa.audio import load_audio
    from r1_aqa.evaluate.benchmarks import clip

    short, long = write_tone(tmp_path / "short.wav", seconds=1.3), write_tone(tmp_path / "long.wav", seconds=31.0)
    assert len(clip(str(short), None, silence=True)) == len(load_audio(str(short))) == 20_800
    quiet = clip(str(long), 30.0, silence=True)
    assert len(quiet) == 30 * 16_000 and not quiet.any() and quiet.dtype == np.float32
    assert clip(str(short), None).any()


def test_eval_silence_writes_both_runs_and_the_listening_report(tiny_model_dir, tmp_path):
    parquet = make_parquet(tmp_path, n=4)
    frame = pd.read_parquet(parquet)
    frame["task"] = ["sound", "music", "sound", "music"]
    frame.to_parquet(parquet)
    out = tmp_path / "pred.json"
    assert main(["eval", "--data", str(parquet), "--model", str(tiny_model_dir), "--output", str(out),
                 "--max-new-tokens", "6", "--silence"]) == 0
    audio, silence = json.loads(out.read_text()), json.loads((tmp_path / "pred.silence.json").read_text())
    assert [r["id"] for r in audio] == [r["id"] for r in silence] == list(frame["id"])
    assert json.loads((tmp_path / "pred.silence.meta.json").read_text())["silence"] is True

    # the silent run is what the model answers to real silent files of each clip's length
    quiet = []
    for row in frame.to_dict("records"):
        path = tmp_path / f"silent-{row['id']}.wav"
        sf.write(path, np.zeros(int(row["duration_s"] * 16_000), dtype=np.float32), 16_000)
        quiet.append({**row, "choices": list(row["choices"]), "audio": str(path)})
    from r1_aqa.evaluate.predict import evaluate

    explicit = evaluate(quiet, tiny_model_dir, tmp_path / "explicit.json", benchmark="mmau", data=parquet,
                        max_new_tokens=6)
    assert [r["model_response"] for r in explicit] == [r["model_response"] for r in silence]
    assert [r["model_response"] for r in audio] != [r["model_response"] for r in silence]  # the audio is heard

    gap = json.loads((tmp_path / "pred.listening.json").read_text())
    assert gap["total"]["accuracy"] == score_records("mmau", audio)["total"]
    assert gap["total"]["silence"] == score_records("mmau", silence)["total"]
    assert set(gap["groups"]["task"]) == {"sound", "music"}
    assert "| sound |" in (tmp_path / "pred.listening.md").read_text()
    assert (tmp_path / "pred.listening.png").read_bytes()[:4] == b"\x89PNG"


def _records(correct: list[bool], tasks: list[str]) -> list[dict]:
    return [{"id": f"q{i}", "question": "?", "choices": ["yes", "no"], "answer": "yes", "task": task,
             "model_output": "yes" if ok else "no"} for i, (ok, task) in enumerate(zip(correct, tasks))]


def test_listening_gap_overall_and_per_task(tmp_path, capsys):
    tasks = ["sound", "sound", "music", "music"]
    audio = _records([True, True, True, False], tasks)
    silence = _records([True, False, False, False], tasks)
    gap = listening_gap(score_records("mmau", audio), score_records("mmau", silence))
    assert gap["total"] == {"accuracy": 75.0, "silence": 25.0, "gap": 50.0, "n": 4, "n_silence": 4}
    assert gap["groups"]["task"]["sound"]["gap"] == 50.0 and gap["groups"]["task"]["music"]["gap"] == 50.0
    assert gap["groups"]["task"]["music"]["silence"] == 0.0 and "speech" not in gap["groups"]["task"]

    a, s = tmp_path / "a.json", tmp_path / "a.silence.json"
    a.write_text(json.dumps(audio))
    s.write_text(json.dumps(silence))
    assert main(["score", "--benchmark", "mmau", "--predictions", str(a), "--silence-predictions", str(s)]) == 0
    assert "listening gap **+50.00** points" in capsys.readouterr().out
    assert json.loads((tmp_path / "a.listening.json").read_text())["total"]["gap"] == 50.0

    s.write_text(json.dumps(silence[:3]))
    assert main(["score", "--benchmark", "mmau", "--predictions", str(a), "--silence-predictions", str(s)]) == 2
    err = capsys.readouterr().err
    assert "hold different items" in err and "'q3'" in err
