"""Seeing GRPO lose its signal, on the tiny model: the share of all-equal groups and the entropy on the console and in
``metrics.jsonl``, one plain-words message when most groups carry no signal for a while, ``r1-aqa plot`` curves;
and TRL's adaptive entropy control working through ``AudioGRPOTrainer``'s own log-prob pass."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import RECIPE, ROOT, make_parquet, make_trainer

from r1_aqa.training.callbacks import NO_SIGNAL_LOGS, SignalWatch
from r1_aqa.cli import main

MESSAGE = "GRPO has lost its learning signal"


def constant_reward(completions, **kwargs) -> list[float]:
    """The same reward for every completion: every group's rewards are all equal."""
    return [1.0] * len(completions)


def _train(model, parquet, out, reward: str, steps: int, *extra: str) -> None:
    argv = ["train", "--config", RECIPE, "--model_name_or_path", str(model), "--dataset_path", str(parquet),
            "--output_dir", str(out), "--reward_funcs", reward, "--max_steps", str(steps), "--save_strategy", "no",
            *extra]
    assert main(argv) == 0


@pytest.mark.parametrize("dynamic_sampling", [False, True], ids=["plain", "dynamic_sampling"])
def test_a_run_without_signal_says_so_once_and_plots_it(dynamic_sampling, tiny_model_dir, tmp_path, capsys):
    parquet = make_parquet(tmp_path)
    _train(tiny_model_dir, parquet, tmp_path / "flat", "test_signal.constant_reward", 2 * NO_SIGNAL_LOGS + 2,
           "--dynamic_sampling", str(dynamic_sampling).lower(), "--dynamic_sampling_max_extra", "0.5")
    err = capsys.readouterr().err
    assert err.count(MESSAGE) == 1, err[-3000:]
    assert f"from step 1 to {NO_SIGNAL_LOGS}, 100% of the groups" in err
    # What to try: dynamic sampling, unless it is on already (then: it found no group with signal).
    assert ("Try dynamic_sampling: true" in err) != dynamic_sampling
    assert ("Dynamic sampling is on but found too few groups with signal" in err) == dynamic_sampling
    assert "nosig=1" in err and "ent=" in err  # on the progress line
    rows = [json.loads(line) for line in (tmp_path / "flat" / "metrics.jsonl").read_text().splitlines()]
    logged = [r for r in rows if "reward" in r]
    assert logged and all(r["frac_reward_zero_std"] == 1.0 and r["entropy"] > 0 for r in logged)
    plots = tmp_path / "flat" / "plots"
    assert (plots / "signal.png").exists() and (plots / "entropy.png").exists()
    assert "| frac_reward_zero_std | 1 | 1 |" in (plots / "summary.md").read_text()


def test_a_learning_run_stays_quiet(tiny_model_dir, tmp_path, capsys):
    _train(tiny_model_dir, make_parquet(tmp_path), tmp_path / "learns", "helpers.length_reward",
           2 * NO_SIGNAL_LOGS + 2)
    err = capsys.readouterr().err
    assert MESSAGE not in err
    rows = [json.loads(line) for line in (tmp_path / "learns" / "metrics.jsonl").read_text().splitlines()]
    assert any(r.get("frac_reward_zero_std", 1.0) < 1.0 for r in rows)


def _watched(shares: list[float], accuracy: float, capsys) -> str:
    """What SignalWatch prints over logs of these no-signal shares, each with this accuracy reward."""
    from transformers import TrainerControl, TrainerState

    watch, state = SignalWatch(), TrainerState()
    for step, share in enumerate(shares, start=1):
        state.global_step = step
        watch.on_log(None, state, TrainerControl(),
                     logs={"frac_reward_zero_std": share, "rewards/accuracy_reward/mean": accuracy})
    return capsys.readouterr().err


def test_the_message_needs_most_groups_without_signal_on_an_unsolved_task(capsys):
    assert _watched([0.9] * NO_SIGNAL_LOGS, 0.5, capsys).count(MESSAGE) == 1
    assert MESSAGE not in _watched([0.9] * (NO_SIGNAL_LOGS - 1) + [0.89], 0.5, capsys)  # 0.9 of the groups at least
    assert MESSAGE not in _watched([0.6] * 3 * NO_SIGNAL_LOGS, 0.5, capsys)  # a run with some signal
    # A solved task: every completion right, every group alike — success, not lost signal.
    assert MESSAGE not in _watched([1.0] * 3 * NO_SIGNAL_LOGS, 0.95, capsys)


def _adaptive_run(tiny_model_dir, tmp_path, name: str, **entropy):
    trainer = make_trainer(tiny_model_dir, make_parquet(tmp_path), tmp_path / name, max_steps=3, **entropy)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    moved = {n: p.detach() - before[n] for n, p in trainer.model.named_parameters()}
    return [e["entropy_coef"] for e in trainer.state.log_history if "entropy_coef" in e], moved


def test_adaptive_entropy_control_reads_the_audio_trainers_entropies(tiny_model_dir, tmp_path):
    delta = 0.05
    # Target above any entropy the tiny model has: the coefficient rises by delta every optimizer step ...
    raised, moved = _adaptive_run(tiny_model_dir, tmp_path, "raise", use_adaptive_entropy=True, entropy_target=1e3,
                                  entropy_coef_delta=delta)
    assert raised == [delta, 2 * delta, 3 * delta]
    # ... and under any entropy it stays at its floor, so the update is the one without the bonus.
    floor, unbonused = _adaptive_run(tiny_model_dir, tmp_path, "floor", use_adaptive_entropy=True,
                                     entropy_target=0.0, entropy_coef_delta=delta)
    assert floor == [0.0, 0.0, 0.0]
    _, plain = _adaptive_run(tiny_model_dir, tmp_path, "plain")
    assert all(torch.equal(unbonused[n], plain[n]) for n in plain)
    # The applied bonus changed the update (the entropies reach the loss with their gradient).
    assert any(not torch.allclose(moved[n], plain[n]) for n in plain)


def test_recipes_state_their_exploration_levers():
    from r1_aqa import demo
    from r1_aqa.training.train import parse_trl_args

    root = ROOT / "examples/r1_aqa/recipes"

    def parse(path):
        _, args, _ = parse_trl_args(["--config", str(path), "--use_cpu", "true"])
        return args.dynamic_sampling, args.use_adaptive_entropy, args.temperature, args.top_k

    for model in ("qwen2_audio_7b", "qwen2_5_omni_7b"):
        assert parse(root / model / "grpo_r1_aqa.yaml") == (False, False, 1.0, 0)  # R1-AQA's, unchanged
        assert parse(root / model / "weak_to_strong" / "grpo_strong.yaml") == (False, False, 1.5, 4)  # AudioMCQ's
        for name in ("grpo_r1_aqa.yaml", "weak_to_strong/grpo_strong.yaml"):
            assert "dynamic_sampling: false" in (root / model / name).read_text()  # said, not left to a default
    assert parse(demo.RECIPE)[0] is True
