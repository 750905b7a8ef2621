"""``r1-aqa train`` refuses what would end in a silent success or a mixed run: no data, no output_dir, a folder
holding another run's checkpoints, a model path that does not exist."""

from __future__ import annotations

import json

import pandas as pd
from helpers import RECIPE, make_parquet

from r1_aqa.cli import main


def _argv(model, parquet, *extra: str) -> list[str]:
    return ["train", "--config", RECIPE, "--model_name_or_path", str(model), "--dataset_path", str(parquet), *extra]


def test_empty_parquet_is_refused_before_the_model_loads(tmp_path, capsys):
    parquet = make_parquet(tmp_path, n=1)
    pd.read_parquet(parquet).head(0).to_parquet(parquet)
    out = tmp_path / "out"
    # A model directory that cannot load: reaching it would fail differently.
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{}")
    assert main(_argv(tmp_path / "broken", parquet, "--output_dir", str(out))) == 2
    err = capsys.readouterr().err
    assert f"{parquet}: no rows to train on" in err
    assert not out.exists()


def test_output_dir_is_required(tiny_model_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(_argv(tiny_model_dir, make_parquet(tmp_path))) == 2
    assert "--output_dir is required" in capsys.readouterr().err
    assert not (tmp_path / "trainer_output").exists()


def test_missing_model_path_is_a_clear_error(tmp_path, capsys):
    missing = tmp_path / "no-such-model"
    assert main(_argv(missing, make_parquet(tmp_path), "--output_dir", str(tmp_path / "out"))) == 2
    assert f"{missing}: no such model directory" in capsys.readouterr().err


def test_a_folder_with_another_runs_checkpoints_is_refused_unless_overwritten(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "out"
    (out / "checkpoint-300").mkdir(parents=True)  # another run's checkpoint, later than this run's would be
    (out / "checkpoint-300" / "config.json").write_text(json.dumps({"model_type": "qwen2_audio"}))
    argv = _argv(tiny_model_dir, make_parquet(tmp_path), "--output_dir", str(out), "--max_steps", "1",
                 "--save_steps", "1")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "checkpoint-300" in err and "--overwrite_output_dir" in err and "--resume_from_checkpoint" in err
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint-300"]

    assert main([*argv, "--overwrite_output_dir", "true"]) == 0
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-1"]
    err = capsys.readouterr().err
    assert f"the model is in {out}" in err
