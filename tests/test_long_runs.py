"""Runs that last hours, on the tiny model: SIGTERM saves and resumes to the same weights, non-finite updates are
skipped, the console shows one bar, metrics.jsonl and ``r1-aqa plot``."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import RECIPE, make_parquet, make_trainer

from r1_aqa.training.callbacks import NonFiniteGuard, TrainingInterrupted, install
from r1_aqa.cli import main

STEPS = 6


def _args(model, parquet, out, *extra: str) -> list[str]:
    return ["train", "--config", RECIPE, "--model_name_or_path", str(model), "--dataset_path", str(parquet),
            "--output_dir", str(out), "--reward_funcs", "helpers.length_reward", "accuracy",
            "--max_steps", str(STEPS), "--save_steps", "100", *extra]


def _logged(out: Path) -> list[tuple]:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["reward"], r["rewards/length_reward/mean"], r["kl"]) for r in rows
            if "reward" in r]


def _weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


def test_sigterm_saves_a_checkpoint_and_resume_matches_an_uninterrupted_run(tiny_model_dir, tmp_path, capsys):
    (tmp_path / "data").mkdir()
    parquet = make_parquet(tmp_path / "data", n=4)
    stopped = tmp_path / "stopped"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-m", "r1_aqa.cli", *_args(tiny_model_dir, parquet, stopped)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    metrics, deadline = stopped / "metrics.jsonl", time.monotonic() + 300
    while not (metrics.exists() and '"step": 2,' in metrics.read_text()):
        assert proc.poll() is None and time.monotonic() < deadline, "the run ended before its second step was logged"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    err = proc.communicate(timeout=300)[1]
    assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]
    (checkpoint,) = stopped.glob("checkpoint-*")
    step = int(checkpoint.name.split("-")[1])
    assert 2 <= step < STEPS
    assert f"SIGTERM at step {step}: saved {checkpoint}" in err and "--resume_from_checkpoint last" in err
    assert {"model.safetensors", "optimizer.pt", "scheduler.pt", "rng_state.pth", "trainer_state.json"} <= {
        p.name for p in checkpoint.iterdir()}
    assert not (stopped / "model.safetensors").exists()  # an interrupted run is not a finished model

    assert main([*_args(tiny_model_dir, parquet, stopped), "--resume_from_checkpoint", "last"]) == 0
    capsys.readouterr()
    straight = tmp_path / "straight"
    assert main(_args(tiny_model_dir, parquet, straight)) == 0
    console = capsys.readouterr().err
    assert "s/step=" in console and "reward=" in console and "kl=" in console and "len=" in console
    assert "{'loss'" not in console  # not TRL's metric dictionary

    resumed, uninterrupted = _weights(stopped), _weights(straight)
    assert resumed.keys() == uninterrupted.keys()
    assert all(torch.equal(resumed[k], uninterrupted[k]) for k in resumed)
    assert _logged(stopped) == _logged(straight) and [s for s, *_ in _logged(straight)] == list(range(1, STEPS + 1))
    assert not torch.equal(uninterrupted["language_model.lm_head.weight"], _weights(tiny_model_dir)[
        "language_model.lm_head.weight"])  # it trained
    assert (straight / "plots" / "rewards.png").exists() and (straight / "plots" / "summary.md").exists()


class _Poison:
    """Makes the policy's hidden states NaN in the loss forward (grad enabled) of the chosen steps."""

    def __init__(self, trainer, steps: set[int]):
        from transformers import TrainerCallback

        self.steps, self.on = steps, False
        norm = next(m for n, m in trainer.model.named_modules() if n.endswith("language_model.norm"))
        norm.register_forward_hook(lambda mod, args, out: out * math.nan if self.on and torch.is_grad_enabled()
                                   else None)
        poison = self

        class Flag(TrainerCallback):
            def on_step_begin(self, args, state, control, **kwargs):
                poison.on = state.global_step + 1 in poison.steps

        self.weights: dict[int, dict[str, torch.Tensor]] = {}

        class Snapshot(TrainerCallback):
            def on_step_end(self, args, state, control, model=None, **kwargs):
                poison.weights[state.global_step] = {n: p.detach().clone() for n, p in model.named_parameters()}

        trainer.add_callback(Flag())
        trainer.add_callback(Snapshot())


def test_a_non_finite_update_is_skipped_and_counted(tiny_model_dir, tmp_path):
    trainer = make_trainer(tiny_model_dir, make_parquet(tmp_path), tmp_path / "out", max_steps=4)
    install(trainer, max_nonfinite_steps=2)
    poison = _Poison(trainer, {2})
    trainer.train()
    guard = next(c for c in trainer.callback_handler.callbacks if isinstance(c, NonFiniteGuard))
    assert guard.skipped == 1
    w = poison.weights
    assert all(torch.equal(w[1][n], w[2][n]) for n in w[1])  # step 2 changed nothing
    assert any(not torch.equal(w[2][n], w[3][n]) for n in w[2])  # step 3 trained again
    assert all(torch.isfinite(p).all() for p in w[4].values())
    rows = [json.loads(line) for line in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    assert [r["train/nonfinite_skipped"] for r in rows if "loss" in r] == [0, 1, 1, 1]  # what report_to gets


def test_non_finite_updates_in_a_row_stop_the_run_naming_the_step(tiny_model_dir, tmp_path):
    trainer = make_trainer(tiny_model_dir, make_parquet(tmp_path), tmp_path / "out", max_steps=6)
    install(trainer, max_nonfinite_steps=2)
    _Poison(trainer, {2, 3, 4, 5, 6})
    with pytest.raises(TrainingInterrupted, match=r"step 3: 2 updates in a row had non-finite gradients"):
        trainer.train()
    assert trainer.state.global_step == 2


def test_the_in_a_row_count_restarts_after_a_good_step(tiny_model_dir, tmp_path):
    """Poisoned steps 2 and 4 with a limit of 2: never two in a row, so the run ends, having skipped both."""
    trainer = make_trainer(tiny_model_dir, make_parquet(tmp_path), tmp_path / "out", max_steps=5)
    install(trainer, max_nonfinite_steps=2)
    _Poison(trainer, {2, 4})
    trainer.train()
    guard = next(c for c in trainer.callback_handler.callbacks if isinstance(c, NonFiniteGuard))
    assert trainer.state.global_step == 5 and guard.skipped == 2 and guard.in_a_row == 0


def test_resuming_from_an_earlier_checkpoint_cuts_metrics_back(tiny_model_dir, tmp_path):
    """metrics.jsonl holds each step once after a resume from a checkpoint older than the run's last step."""
    parquet, out = make_parquet(tmp_path), tmp_path / "out"
    trainer = make_trainer(tiny_model_dir, parquet, out, max_steps=4, save_steps=2, save_strategy="steps")
    install(trainer, max_nonfinite_steps=0)
    trainer.train()
    trainer = make_trainer(tiny_model_dir, parquet, out, max_steps=4, save_steps=2, save_strategy="steps")
    install(trainer, max_nonfinite_steps=0)
    trainer.train(resume_from_checkpoint=str(out / "checkpoint-2"))
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == [1, 2, 3, 4]


def test_plot_writes_curves_and_summary(tmp_path, capsys):
    rows = [{"step": s, "loss": 0.1 / s, "reward": 0.2 * s, "rewards/accuracy_reward/mean": 0.1 * s,
             "rewards/format_reward/mean": 0.1 * s, "kl": 0.01 * s, "completions/mean_length": 30 - s,
             "train/nonfinite_skipped": 1 if s > 3 else 0} for s in range(1, 6)]
    lines = [json.dumps(r) for r in rows] + [json.dumps({"step": 5, "train_runtime": 3.0})]
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines) + '\n{"step": 6, "loss"')  # torn last line
    assert main(["plot", str(tmp_path)]) == 0
    plots = tmp_path / "plots"
    assert {p.name for p in plots.iterdir()} == {"rewards.png", "accuracy.png", "kl.png", "completion_length.png",
                                                 "loss.png", "summary.md"}
    summary = (plots / "summary.md").read_text()
    assert "- steps logged: 5 (last step 5)" in summary and "- updates skipped for non-finite gradients: 1" in summary
    assert "| reward | 0.2 | 1 | 1 | 5 |" in summary and "| kl | 0.01 | 0.05 | 0.01 | 1 |" in summary
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "loss": 1}\nnot json\n{"step": 2, "loss": 1}\n')
    assert main(["plot", str(tmp_path)]) == 2
    assert "metrics.jsonl:2: not valid JSON" in capsys.readouterr().err
