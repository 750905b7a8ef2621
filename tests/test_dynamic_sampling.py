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

from r1_aqa.training.dynamic_sampling import DynamicSampling, _pick_groups, check_whole_groups, has_signal


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
    # extra_rollouts counts completions: every row the refill rounds scored
    assert logged and logged[0]["dynamic_sampling/extra_rollouts"] == sum(len(r["ids"]) for r in generation[1:]) >= 2
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


def test_a_group_carries_signal_when_any_advantage_is_non_zero():
    """Groups of 8 (the demo's): rewards [2, 0, 1, 1, 1, 1, 1, 1] have mean 1, so six advantages are zero and the
    group still carries signal; only an all-equal group does not."""
    rewards = torch.tensor([[2.0, 0, 1, 1, 1, 1, 1, 1], [1.0] * 8, [0.0] * 7 + [1.0]])
    advantages = (rewards - rewards.mean(dim=1, keepdim=True)).flatten()
    assert has_signal(advantages, 8).tolist() == [True, False, True]


def test_the_batch_keeps_the_first_rounds_groups_then_refills_in_the_order_generated():
    signal = [torch.tensor([True, False, True, True]), torch.tensor([True, True])]
    assert _pick_groups(signal, 4) == [(0, 0), (0, 2), (0, 3), (1, 0)]
    # The cap ran out: every group with signal, then the first round's others fill the free slots.
    signal = [torch.tensor([False, True, False, False]), torch.tensor([False, True])]
    assert _pick_groups(signal, 4) == [(0, 0), (0, 1), (0, 2), (1, 1)]


def test_groups_that_would_straddle_processes_are_refused():
    check_whole_groups(per_device_train_batch_size=4, steps_per_generation=2, num_generations=8)
    with pytest.raises(ValueError, match=r"steps_per_generation \(6\) must be a multiple of num_generations \(4\)"):
        check_whole_groups(per_device_train_batch_size=3, steps_per_generation=2, num_generations=4)


def test_the_loss_normaliser_counts_the_rows_kept(tiny_model_dir, tmp_path):
    """Completions of several lengths (the end-of-text row of the LM head 30x its size, so some end early):
    ``num_items_in_batch`` is the completion tokens of the batch trained on, not of the first round."""
    trainer = dynamic_sampling_trainer(tiny_model_dir, tmp_path)
    with torch.no_grad():
        trainer.model.get_output_embeddings().weight[trainer.processing_class.tokenizer.eos_token_id] *= 30
    rounds, batches = record_dynamic_sampling(trainer)
    trainer.train()
    (generation,), (batch,) = rounds, batches
    assert len(generation) >= 2
    kept = batch["completion_mask"].sum()
    assert kept != generation[0]["completion_mask"].sum(), "the first round's count should differ from the kept rows'"
    assert batch["num_items_in_batch"] == kept


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
    trainer = dynamic_sampling_trainer(tiny_model_dir, tmp_path, freeze_audio_tower=True,
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
    # Each rank draws its own refill prompts (seeded by process): the refill rounds' prompts differ between ranks.
    refills, decisions, r = [], iter(agreed for _, agreed in first["decisions"]), 0
    for _ in range(steps):  # a step: its first round, then a refill round per decision > 0 until one is <= 0
        r += 1
        while next(decisions) > 0:
            refills.append(r)
            r += 1
    assert refills and r == len(first["rounds"])
    assert any(first["rounds"][i] != second["rounds"][i] for i in refills), "every rank drew the same refills"
    extra = [e["dynamic_sampling/extra_rollouts"] for e in first["log_history"] if "dynamic_sampling/extra_rollouts" in e]
    assert len(extra) == steps and sum(extra) > 0
