"""A step moves the policy only as much as its signal is worth (``min_signal_share``), per-answer training accuracy,
and the stop once the task is solved; on the tiny model with real TRL steps."""

from __future__ import annotations

import json
import math

import pytest
import torch
from helpers import RECIPE, make_parquet, make_trainer
from transformers import TrainerCallback, TrainerControl, TrainerState

from r1_aqa.training.callbacks import SolvedStop
from r1_aqa.cli import main
from r1_aqa.training.learning_signal import accuracy_by_answer, step_scale
from r1_aqa.plot import read_run

LR = 1e-3


class Snapshots(TrainerCallback):
    """The trainable weights after every optimizer step."""

    def __init__(self, model):
        self.model = model
        self.after = [self._copy()]

    def _copy(self) -> dict[str, torch.Tensor]:
        return {n: p.detach().clone() for n, p in self.model.named_parameters() if p.requires_grad}

    def on_step_end(self, args, state, control, **kwargs):
        self.after.append(self._copy())


def _max_move(a: dict, b: dict) -> float:
    return max(float((a[n] - b[n]).abs().max()) for n in a)


class SignalThenNone:
    """Rewards that differ within every group on the first generation, then are all equal (no signal)."""

    __name__ = "signal_then_none"

    def __init__(self):
        self.calls = 0

    def __call__(self, completions, **kwargs) -> list[float]:
        self.calls += 1
        return [float(k % 2) if self.calls == 1 else 1.0 for k in range(len(completions))]


def one_signal_group(completions, id: list[str], **kwargs) -> list[float]:  # noqa: A002 (the dataset's column)
    """Signal in the group of prompt q0 only (one right completion of 8); every other group all alike."""
    first = id.index("q0")
    return [1.0 if k == first else 0.0 for k in range(len(completions))]


def _trainer(tiny_model_dir, tmp_path, reward, min_signal_share: float, **overrides):
    trainer = make_trainer(tiny_model_dir, make_parquet(tmp_path, n=4), tmp_path / "out",
                           min_signal_share=min_signal_share, learning_rate=LR, **overrides)
    trainer.reward_funcs, trainer.reward_func_names = [reward], [reward.__name__]
    trainer.reward_weights = torch.ones(1)
    trainer.reward_processing_classes = [None]
    snapshots = Snapshots(trainer.model)
    trainer.add_callback(snapshots)
    return trainer, snapshots


@pytest.mark.parametrize("min_signal_share", [0.5, 0.0], ids=["scaled", "TRL"])
def test_a_step_without_signal_leaves_the_weights_as_they_were(min_signal_share, tiny_model_dir, tmp_path):
    # Step 1 has signal and moves the policy off the reference; step 2 has none, but its KL gradient and Adam's
    # momentum would still move every weight.
    trainer, snapshots = _trainer(tiny_model_dir, tmp_path, SignalThenNone(), min_signal_share, beta=0.04)
    trainer.train()
    first, second = _max_move(snapshots.after[0], snapshots.after[1]), _max_move(snapshots.after[1], snapshots.after[2])
    assert first > 0.5 * LR
    if min_signal_share:
        assert second == 0.0
        assert [h["signal/lr_scale"] for h in trainer.state.log_history if "signal/lr_scale" in h] == [1.0, 0.0]
    else:  # what TRL's step does: the test would notice a step without signal that moves
        assert second > 0.1 * LR


def test_a_step_with_one_signal_group_moves_no_more_than_its_share(tiny_model_dir, tmp_path):
    # 4 groups of 8 (the recipes' group size), one with a single right completion: share 1/4 of min_signal_share
    # 0.5 -> the learning rate is halved. Adam's first step moves each weight by lr x scale x sign(gradient).
    trainer, snapshots = _trainer(tiny_model_dir, tmp_path, one_signal_group, 0.5, beta=0.0, num_generations=8,
                                  per_device_train_batch_size=32, max_steps=1)
    trainer.train()
    moved = _max_move(snapshots.after[0], snapshots.after[1])
    bound = LR * step_scale(1 / 4, 0.5)
    assert bound == LR / 2
    assert 0.9 * bound < moved <= bound + 1e-7  # float32 rounding of the weights
    logged = next(h for h in trainer.state.log_history if "signal/share" in h)
    assert logged["signal/share"] == 0.25 and logged["signal/lr_scale"] == 0.5


def test_step_scale():
    assert step_scale(0.0, 0.5) == 0.0
    assert step_scale(0.25, 0.5) == 0.5
    assert step_scale(0.5, 0.5) == 1.0
    assert step_scale(0.9, 0.5) == 1.0
    assert step_scale(0.0, 0.0) == 1.0  # off: TRL's step


def test_accuracy_by_answer_counts_each_answers_completions():
    answers = ["high", "low", "high", "low", "low", "mid"]
    assert accuracy_by_answer(answers, [1.0, 0.0, 0.0, 1.0, 1.0, math.nan]) == {"high": 0.5, "low": 2 / 3}


def accuracy_reward(completions, **kwargs) -> list[float]:
    """Every completion right: a solved task (logged as rewards/accuracy_reward/mean)."""
    return [1.0] * len(completions)


def test_a_solved_run_stops_early_and_logs_accuracy_per_answer(tiny_model_dir, tmp_path, capsys):
    parquet = make_parquet(tmp_path)
    out = tmp_path / "run"
    assert main(["train", "--config", RECIPE, "--model_name_or_path", str(tiny_model_dir), "--dataset_path",
                 str(parquet), "--output_dir", str(out), "--reward_funcs", "test_learning_signal.accuracy_reward",
                 "--max_steps", "8", "--save_strategy", "no", "--stop_at_accuracy", "0.95",
                 "--stop_after_logs", "3"]) == 0
    err = capsys.readouterr().err
    assert "the task is solved: accuracy reward >= 0.95 in 3 logs in a row (steps 1-3); stopping at step 3" in err
    assert "3 steps; the model is in" in err and "no checkpoints were saved" in err
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    logged = {k: v for r in rows for k, v in r.items() if k.startswith("accuracy_by_answer/")}
    assert logged and set(logged) <= {f"accuracy_by_answer/{a}" for a in ("low", "high", "middle")}
    assert set(logged.values()) == {1.0}
    _, info = read_run(out)  # the plots' chance line: a random one of the 3 options
    assert [r["chance_accuracy"] for r in info if "chance_accuracy" in r] == [0.3333]


def test_the_solved_streak_restarts_after_a_log_below_the_threshold():
    stop, state = SolvedStop(0.9, 2), TrainerState()
    seen = []
    for step, accuracy in enumerate([0.95, 0.5, 0.95, 0.92], start=1):
        state.global_step = step
        control = TrainerControl()
        stop.on_log(None, state, control, logs={"rewards/accuracy_reward/mean": accuracy})
        seen.append(control.should_training_stop)
    assert seen == [False, False, False, True]
    with pytest.raises(ValueError, match="stop_at_accuracy"):
        SolvedStop(0.0, 3)


def constant_reward(completions, **kwargs) -> list[float]:
    """The same reward for every completion: no group carries signal."""
    return [0.0] * len(completions)


@pytest.mark.parametrize("reward", ["constant_reward", "accuracy_reward"])
def test_a_short_run_without_signal_says_at_its_end_that_it_did_not_learn(reward, tiny_model_dir, tmp_path, capsys):
    # 2 logs: too few for the lost-signal stretch; a solved run (all right) stays quiet.
    assert main(["train", "--config", RECIPE, "--model_name_or_path", str(tiny_model_dir), "--dataset_path",
                 str(make_parquet(tmp_path)), "--output_dir", str(tmp_path / "run"), "--reward_funcs",
                 f"test_learning_signal.{reward}", "--max_steps", "2", "--save_strategy", "no"]) == 0
    err = capsys.readouterr().err
    said = "this GRPO run had almost no learning signal: 100% of its groups scored all their completions alike"
    assert (said in err) == (reward == "constant_reward"), err[-2000:]
