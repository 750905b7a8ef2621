"""Dynamic sampling (DAPO) on the tiny Qwen2-Audio with real TRL: a group whose rewards are all equal is dropped from
the update and replaced by a fresh prompt's group; the refill decision is the same on every process."""

from __future__ import annotations

import pytest
import torch
from helpers import (
    HERE,
    PLANTED,
    RECIPE,
    child_env,
    dynamic_sampling_trainer,
    free_port,
    make_parquet,
    record_dynamic_sampling,
    run,
)

from r1_aqa.dynamic_sampling import DynamicSampling, has_signal


def _kept_groups_alone(rounds: list[dict], size: int, needed: int, pad_id: int) -> dict:
    """A batch of the first ``needed`` groups with non-zero advantages, in the order generated, built row by row."""
    from trl.trainer.utils import pad

    rows = []
    for r, out in enumerate(rounds):
        for g in range(len(out["advantages"]) // size):
            if out["advantages"][g * size:(g + 1) * size].abs().sum() > 0:
                rows += [(r, g * size + i) for i in range(size)]
    rows = rows[:needed * size]
    batch = {}
    for key, value in rounds[0].items():
        if key in ("ids", "num_items_in_batch"):
            continue
        picked = [rounds[r][key][i] for r, i in rows]
        if picked[0].dim() == 0:
            batch[key] = torch.stack(picked)
        else:
            side = "left" if key.startswith("prompt_") else "right"
            batch[key] = pad(picked, padding_value=pad_id if key.endswith("_ids") else 0, padding_side=side)
    batch["num_items_in_batch"] = batch["completion_mask"].sum()
    return batch


def _loss_and_grads(trainer, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    trainer.model.zero_grad()
    loss = trainer._compute_loss(trainer.model, batch)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None}


def test_planted_all_equal_group_is_excluded_from_the_loss_and_replaced(tiny_model_dir, tmp_path):
    trainer = dynamic_sampling_trainer(tiny_model_dir, tmp_path)
    rounds, batches = record_dynamic_sampling(trainer)
    trainer.train()
    (generation,), (batch,) = rounds, batches
    first = generation[0]
    # The first round holds all four prompts (the dataset has four), so the planted group is in it, without signal.
    assert sorted(set(first["ids"])) == ["q0", "q1", "q2", "q3"]
    signal = has_signal(first["advantages"], 2)
    assert [bool(s) for s in signal] == [first["ids"][2 * g] != PLANTED for g in range(4)]
    # It was replaced: a refill round ran, and the batch is full, every group with signal.
    assert len(generation) >= 2 and len(batch["advantages"]) == 8
    assert bool(has_signal(batch["advantages"], 2).all())
    logged = [e for e in trainer.state.log_history if "dynamic_sampling/extra_rollouts" in e]
    assert logged and logged[0]["dynamic_sampling/extra_rollouts"] >= 2
    assert logged[0]["dynamic_sampling/no_signal_share"] == 0.0

    # The loss and gradients of the batch trained on equal those of a batch built from the kept groups alone ...
    kept = _kept_groups_alone(generation, 2, 4, trainer._tokenizer.pad_token_id)
    loss, grads = _loss_and_grads(trainer, batch)
    kept_loss, kept_grads = _loss_and_grads(trainer, kept)
    assert torch.allclose(loss, kept_loss, atol=1e-6)
    assert grads.keys() == kept_grads.keys()
    assert all(torch.allclose(grads[n], kept_grads[n], atol=1e-6) for n in grads)
    # ... and differ from those of the first round as generated (the planted group's KL term is in it).
    first_loss, _ = _loss_and_grads(trainer, {k: v for k, v in first.items() if k != "ids"})
    assert not torch.allclose(loss, first_loss, atol=1e-6)


def test_when_the_cap_is_spent_the_batch_keeps_its_size(tiny_model_dir, tmp_path):
    trainer = dynamic_sampling_trainer(tiny_model_dir, tmp_path, max_extra=0.0)
    rounds, batches = record_dynamic_sampling(trainer)
    trainer.train()
    (generation,), (batch,) = rounds, batches
    assert len(generation) == 1  # no refill allowed
    assert torch.equal(batch["advantages"], generation[0]["advantages"])
    logged = next(e for e in trainer.state.log_history if "dynamic_sampling/extra_rollouts" in e)
    assert logged["dynamic_sampling/extra_rollouts"] == 0 and logged["dynamic_sampling/no_signal_share"] == 0.25


def test_a_negative_cap_is_refused(tiny_model_dir, tmp_path):
    with pytest.raises(ValueError, match="dynamic_sampling_max_extra must be >= 0"):
        DynamicSampling(dynamic_sampling_trainer(tiny_model_dir, tmp_path), -1.0)


def test_composes_with_steps_per_generation_accumulation_and_a_frozen_tower(tiny_model_dir, tmp_path):
    trainer = dynamic_sampling_trainer(tiny_model_dir, tmp_path, {"freeze_audio_tower": True},
                                       per_device_train_batch_size=4, steps_per_generation=2,
                                       gradient_accumulation_steps=2, max_steps=2)
    rounds, batches = record_dynamic_sampling(trainer)
    trainer.train()
    assert len(batches) == 2 and all(len(b["advantages"]) == 8 for b in batches)
    assert all(bool(has_signal(b["advantages"], 2).all()) for b in batches)
    assert any(len(generation) > 1 for generation in rounds)
    # Each round numbers its clips on from the previous rounds' and the frozen tower's cache holds them all, so a
    # refilled row is never given another round's clip encoding.
    last = rounds[-1]
    indices = [set(r["audio_clip"].tolist()) for r in last]
    assert all(a.isdisjoint(b) for i, a in enumerate(indices) for b in indices[i + 1:])
    assert set().union(*indices) == set(trainer._clip_caches["train"])


@pytest.mark.distributed
@pytest.mark.slow
def test_two_processes_make_the_same_refill_decisions(tiny_model_dir, tmp_path):
    import json

    data = make_parquet(tmp_path, n=8)
    record, steps = tmp_path / "record.json", 3
    cmd = ["torchrun", "--nproc_per_node", "2", "--master_port", str(free_port()),
           str(HERE / "dynamic_sampling_worker.py"), str(record), "--config", RECIPE, "--model_name_or_path",
           str(tiny_model_dir), "--dataset_path", str(data), "--output_dir", str(tmp_path / "out"),
           "--per_device_train_batch_size", "4", "--max_steps", str(steps), "--save_strategy", "no"]
    run(cmd, child_env(), tmp_path / "launch.log")  # a rank that refilled alone would hang in a collective
    first, second = (json.loads(record.with_name(f"{record.name}.{rank}").read_text()) for rank in (0, 1))
    assert [v for _, v in first["decisions"]] == [v for _, v in second["decisions"]]
    assert any(a != b for (a, _), (b, _) in zip(first["decisions"], second["decisions"])), \
        "the ranks never wished for different refills: nothing was agreed"
    assert all(agreed == max(a, b) for (a, agreed), (b, _) in zip(first["decisions"], second["decisions"]))
    assert len(first["rounds"]) == len(second["rounds"]) > steps  # the same number of rounds, refills among them
    extra = [e["dynamic_sampling/extra_rollouts"] for e in first["log_history"] if "dynamic_sampling/extra_rollouts" in e]
    assert len(extra) == steps and sum(extra) > 0
