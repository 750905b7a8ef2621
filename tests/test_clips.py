"""Every training clip is checked before the first step: one error listing them all, or ``skip_bad_audio`` drops
them; in a two-process run both processes reach the same decision."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from helpers import RECIPE, make_parquet, write_tone

from r1_aqa.cli import main
from r1_aqa.training.clips import BadAudioError, check_training_audio


def _bad_clips(root: Path) -> dict[str, Path]:
    """Clips that do not load: a missing file, text named .wav, a wav without samples."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "text.wav").write_text("not audio at all")
    write_tone(root / "empty.wav", seconds=0.0)
    return {"missing": root / "missing.wav", "text": root / "text.wav", "empty": root / "empty.wav"}


def _dataset(tmp_path: Path):
    """Rows g0..g3 with good clips; b-missing, b-text, b-empty with bad ones; b-text2 shares the text clip."""
    from datasets import Dataset

    good = [write_tone(tmp_path / f"g{i}.wav", freq=300.0 + 100 * i, seconds=0.5) for i in range(4)]
    bad = _bad_clips(tmp_path / "bad")
    rows = [("g0", good[0]), ("b-missing", bad["missing"]), ("g1", good[1]), ("b-text", bad["text"]),
            ("g2", good[2]), ("b-empty", bad["empty"]), ("g3", good[3]), ("b-text2", bad["text"])]
    return Dataset.from_dict({"id": [r for r, _ in rows], "audio": [str(p) for _, p in rows]}), bad


def test_one_error_lists_every_bad_clip(tmp_path):
    dataset, bad = _dataset(tmp_path)
    with pytest.raises(BadAudioError) as info:
        check_training_audio(dataset, max_seconds=30.0, skip_bad=False, output_dir=tmp_path / "out")
    message = str(info.value)
    assert message.startswith("3 of 7 train clips cannot be used (4 of 8 rows)")
    assert f"{bad['missing']} (row id b-missing): file not found" in message
    assert f"{bad['text']} (row id b-text, b-text2): cannot decode audio" in message
    assert f"{bad['empty']} (row id b-empty): audio has no samples" in message
    assert "skip_bad_audio: true" in message and "g0" not in message
    listing = json.loads((tmp_path / "out" / "train.bad_audio.json").read_text())
    assert [(e["file"], e["ids"]) for e in listing] == [
        (str(bad["missing"]), ["b-missing"]), (str(bad["text"]), ["b-text", "b-text2"]),
        (str(bad["empty"]), ["b-empty"])]


def test_skip_bad_audio_drops_their_rows(tmp_path, capsys):
    dataset, _ = _dataset(tmp_path)
    kept = check_training_audio(dataset, max_seconds=30.0, skip_bad=True, output_dir=tmp_path / "out")
    assert kept["id"] == ["g0", "g1", "g2", "g3"]
    assert "dropped 3 of 7 train clips cannot be used (4 of 8 rows)" in capsys.readouterr().err
    assert check_training_audio(kept, max_seconds=30.0, skip_bad=False, output_dir=tmp_path / "x") is kept
    assert not (tmp_path / "x").exists()


def test_long_lists_are_cut_in_the_message_but_not_in_the_file(tmp_path):
    from datasets import Dataset

    paths = [str(tmp_path / f"gone{i}.wav") for i in range(25)]
    with pytest.raises(BadAudioError, match=r"\.\.\. and 5 more") as info:
        check_training_audio(Dataset.from_dict({"audio": paths}), max_seconds=None, skip_bad=True,
                             output_dir=tmp_path, name="eval")
    assert "none left to train on" in str(info.value)
    listing = json.loads((tmp_path / "eval.bad_audio.json").read_text())
    assert [e["file"] for e in listing] == paths and listing[7]["ids"] == ["8"]  # no id column: row numbers


SFT_RECIPE = str(Path(RECIPE).with_name("tiny_sft.yaml"))


def _argv(model, parquet, out, *extra: str, stage: str = "train") -> list[str]:
    return [stage, "--config", SFT_RECIPE if stage == "sft" else RECIPE, "--model_name_or_path", str(model),
            "--dataset_path", str(parquet), "--output_dir", str(out), *extra]


def _with_bad_rows(tmp_path: Path) -> Path:
    parquet = make_parquet(tmp_path, n=4)
    frame = pd.read_parquet(parquet)
    bad = _bad_clips(tmp_path / "bad")
    # Clips that exist but do not decode: a missing file is refused earlier, by the input checks (tests/test_first_day.py)
    frame.loc[1, "audio"], frame.loc[3, "audio"] = str(bad["empty"]), str(bad["text"])
    frame.to_parquet(parquet)
    return parquet


def test_train_stops_before_the_model_loads(tmp_path, capsys):
    parquet = _with_bad_rows(tmp_path)
    (tmp_path / "broken").mkdir()  # a model that cannot load: reaching it would fail differently
    (tmp_path / "broken" / "config.json").write_text("{}")
    assert main(_argv(tmp_path / "broken", parquet, tmp_path / "out")) == 2
    err = capsys.readouterr().err
    assert "2 of 4 train clips cannot be used (2 of 4 rows)" in err and "(row id q1)" in err and "(row id q3)" in err


def test_sft_checks_its_clips_too(tiny_model_dir, tmp_path, capsys):
    assert main(_argv(tiny_model_dir, _with_bad_rows(tmp_path), tmp_path / "out", stage="sft")) == 2
    assert "2 of 4 train clips cannot be used (2 of 4 rows)" in capsys.readouterr().err
    assert not list((tmp_path / "out").glob("checkpoint-*"))


def test_train_with_skip_bad_audio_trains_on_the_rest(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "out"
    argv = _argv(tiny_model_dir, _with_bad_rows(tmp_path), out, "--max_steps", "1", "--save_strategy", "no",
                 "--skip_bad_audio", "true")
    assert main(argv) == 0
    assert "dropped 2 of 4 train clips cannot be used (2 of 4 rows)" in capsys.readouterr().err
    assert [e["ids"] for e in json.loads((out / "train.bad_audio.json").read_text())] == [["q1"], ["q3"]]
    assert (out / "model.safetensors").exists()


_RANK_SCRIPT = """
import json, os, sys
from accelerate import PartialState
from datasets import Dataset
import r1_aqa.audio
from r1_aqa.training.clips import BadAudioError, check_training_audio

PartialState(cpu=True)  # what TrainingArguments(use_cpu=True) sets up: gloo across the processes

decoded = []
load = r1_aqa.audio.load_audio_capped
def counting(src, max_seconds, *a, **k):
    decoded.append(src)
    return load(src, max_seconds, *a, **k)
r1_aqa.audio.load_audio_capped = counting

out = sys.argv[1]
dataset = Dataset.from_dict(json.load(open(os.path.join(out, "rows.json"))))
result = {}
for skip in (False, True):
    try:
        kept = check_training_audio(dataset, max_seconds=30.0, skip_bad=skip, output_dir=out)
        result[f"skip={skip}"] = {"kept": list(kept["id"])}
    except BadAudioError as e:
        result[f"skip={skip}"] = {"error": str(e)}
    result[f"decoded, skip={skip}"], decoded[:] = list(decoded), []
json.dump(result, open(os.path.join(out, f"rank{os.environ['RANK']}.json"), "w"))
"""


def test_two_processes_reach_the_same_decision(tmp_path):
    """torchrun, 2 CPU processes: each decodes half of the clips; the one bad clip is in the second's half only.
    Both stop with the same error (none goes on to wait in a collective), and with skip_bad both drop its row."""
    good = [str(write_tone(tmp_path / f"g{i}.wav", seconds=0.3)) for i in range(5)]
    bad = str(tmp_path / "missing.wav")
    clips = good[:3] + [bad] + good[3:]  # distinct clips split 0,2,4 / 1,3,5: the bad one goes to rank 1
    (tmp_path / "rows.json").write_text(json.dumps({"id": [f"r{i}" for i in range(6)], "audio": clips}))
    (tmp_path / "rank.py").write_text(_RANK_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    # --standalone: torchrun binds a free port itself (a port probed here could be taken before it binds)
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          str(tmp_path / "rank.py"), str(tmp_path)], env=env, timeout=120, capture_output=True,
                         text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    for skip in (False, True):
        decoded = [r[f"decoded, skip={skip}"] for r in ranks]
        assert sorted(decoded[0] + decoded[1]) == sorted(clips)  # each clip decoded once in all
        assert bad in decoded[1] and bad not in decoded[0]
        assert ranks[0][f"skip={skip}"] == ranks[1][f"skip={skip}"]
    assert f"{bad} (row id r3): file not found" in ranks[0]["skip=False"]["error"]
    assert ranks[0]["skip=True"] == {"kept": ["r0", "r1", "r2", "r4", "r5"]}
