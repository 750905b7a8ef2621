"""Dynamic sampling (DAPO): every optimizer step trains on groups whose rewards differ.

A group whose completions all score alike has zero advantage everywhere: it adds nothing to the policy gradient,
only its KL term, and it dilutes the groups that do carry signal. :class:`DynamicSampling` wraps one generation
(TRL's ``_generate_and_score_completions``, which returns a dict of per-row tensors): it drops those groups and
generates fresh prompts' groups in their place until the generation batch is full again, or the cap on extra
rollouts is spent, in which case the free slots keep dropped groups (they still carry the KL term), so the batch
keeps its shape and TRL's shuffle, ``steps_per_generation`` split, gradient accumulation and ``num_iterations``
work on it unchanged.

Each process refills its own groups (a group must lie on one process: its rows are a multiple of
``num_generations``); how many groups a round generates is the maximum over processes (``all_reduce``), so every
process takes part in every generation's collectives. Refill prompts are drawn from the training set with a
generator seeded by (seed, step, round, process), so a resumed run draws the ones the uninterrupted run drew.

Logged per generation: ``dynamic_sampling/extra_rollouts`` (completions generated beyond the batch, all processes)
and ``dynamic_sampling/no_signal_share`` (share of the batch's groups left without signal when the cap ran out).
TRL's own metrics (``reward``, ``frac_reward_zero_std``, ...) cover every round's rollouts, refills included.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

# Per-row keys padded on the left (TRL left-pads prompts); every other one with a second dimension on the right.
_LEFT_PADDED = ("prompt_ids", "prompt_mask")


class DynamicSampling:
    """Drop the zero-signal groups of each training generation and refill with fresh prompts' groups.

    ``max_extra``: extra rollouts per generation at most this multiple of the generation batch (1.0: as many again).
    Indices a generation numbers its rows with (the audio trainer's clip index) must stay distinct across the rounds
    of one generation: the trainer numbers them on from the previous round's.
    """

    def __init__(self, trainer, max_extra: float):
        if max_extra < 0:
            raise ValueError(f"dynamic_sampling_max_extra must be >= 0, got {max_extra}")
        args = trainer.args
        if trainer.num_generations < 2:
            raise ValueError("dynamic sampling needs num_generations >= 2 (a group of one never carries signal)")
        if getattr(trainer, "multi_objective_aggregation", "sum_then_normalize") != "sum_then_normalize":
            raise ValueError("dynamic sampling needs multi_objective_aggregation: sum_then_normalize (group-centred "
                             "advantages, zero exactly when a group's rewards are all equal)")
        check_whole_groups(args.per_device_train_batch_size, args.steps_per_generation, trainer.num_generations)
        self.trainer = trainer
        self.max_extra = max_extra

    def generate(self, inputs: list[dict], score: Callable[[list[dict]], dict]) -> dict:
        """``score(inputs)``, with the groups that carry no signal replaced by fresh ones (see the module doc)."""
        trainer, size = self.trainer, self.trainer.num_generations
        needed = len(inputs) // size
        budget = math.floor(self.max_extra * needed)
        chunks = [score(inputs)]
        signal = [has_signal(chunks[0]["advantages"], size)]
        spent, round_ = 0, 0
        while True:
            kept = sum(int(s.sum()) for s in signal)
            generated = needed + spent
            missing = max(0, needed - kept)
            # Ask for as many as the keep rate so far says will fill the batch, within what the cap leaves.
            ask = min(budget - spent, math.ceil(missing * generated / kept) if kept else budget - spent)
            ask = _agreed_max(ask, trainer.accelerator.device)
            if ask <= 0:
                break
            round_ += 1
            chunks.append(score(self._fresh_prompts(ask, round_)))
            signal.append(has_signal(chunks[-1]["advantages"], size))
            spent += ask
        picks = _pick_groups(signal, needed)
        batch = _merge(chunks, picks, size, trainer._tokenizer.pad_token_id)
        mask = batch["completion_mask"] * batch.get("tool_mask", 1)
        batch["num_items_in_batch"] = trainer.accelerator.gather(mask.sum()).sum()
        unfilled = sum(not bool(signal[c][g]) for c, g in picks)
        stats = torch.tensor([spent * size, unfilled, needed], dtype=torch.float32, device=trainer.accelerator.device)
        extra, no_signal, groups = trainer.accelerator.reduce(stats, reduction="sum").tolist()
        metrics = trainer._metrics["train"]
        metrics["dynamic_sampling/extra_rollouts"].append(extra)
        metrics["dynamic_sampling/no_signal_share"].append(no_signal / groups)
        return batch

    def _fresh_prompts(self, groups: int, round_: int) -> list[dict]:
        """``groups`` training rows, each repeated ``num_generations`` times, drawn for this step, round and process."""
        trainer = self.trainer
        dataset = trainer.train_dataset
        generator = torch.Generator().manual_seed(
            hash((trainer.args.seed, trainer.state.global_step, round_, trainer.accelerator.process_index)) % 2**63)
        order = torch.randperm(len(dataset), generator=generator)
        picks = [int(order[i % len(dataset)]) for i in range(groups)]
        return [dataset[i] for i in picks for _ in range(trainer.num_generations)]


def check_whole_groups(per_device_train_batch_size: int, steps_per_generation: int, num_generations: int) -> None:
    """Refuse a generation batch whose groups would straddle processes: each process refills its own whole groups.
    (With one process TRL refuses such a batch first; with several, its global check alone lets it through.)"""
    local_rows = per_device_train_batch_size * steps_per_generation
    if local_rows % num_generations:
        raise ValueError(
            f"dynamic sampling refills whole groups on each process: per_device_train_batch_size x "
            f"steps_per_generation ({local_rows}) must be a multiple of num_generations ({num_generations})")


def has_signal(advantages: torch.Tensor, size: int) -> torch.Tensor:
    """Per group of ``size`` consecutive rows: whether any advantage is non-zero (group-centred advantages are all
    zero exactly when the group's rewards are all equal, or all unscorable)."""
    return advantages.reshape(-1, size, *advantages.shape[1:]).flatten(1).ne(0).any(dim=1).cpu()


def _agreed_max(value: int, device) -> int:
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return value
    t = torch.tensor([value], device=device)
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
    return int(t.item())


def _pick_groups(signal: list[torch.Tensor], needed: int) -> list[tuple[int, int]]:
    """(chunk, group) of the batch: groups with signal in the order generated, then the first batch's others."""
    picks = [(c, g) for c, s in enumerate(signal) for g in range(len(s)) if s[g]][:needed]
    picks += [(0, g) for g in range(len(signal[0])) if not signal[0][g]][: needed - len(picks)]
    return sorted(picks)


def _merge(chunks: list[dict], picks: list[tuple[int, int]], size: int, pad_id: int) -> dict:
    """One batch of the picked groups' rows from ``chunks`` (dicts of per-row tensors of possibly different widths)."""
    keys = [k for k in chunks[0] if k != "num_items_in_batch"]
    rows = [torch.tensor([g * size + i for c2, g in picks if c2 == c for i in range(size)], dtype=torch.long)
            for c in range(len(chunks))]
    batch = {}
    for key in keys:
        values = [chunk[key] for chunk in chunks]
        if not all(isinstance(v, torch.Tensor) and v.dim() > 0 and v.size(0) == len(chunk["advantages"])
                   for v, chunk in zip(values, chunks)):
            raise RuntimeError(f"dynamic sampling: generation output {key!r} is not a tensor with one row per "
                               "completion; it cannot be refilled")
        picked = [v[r.to(v.device)] for v, r in zip(values, rows) if len(r)]
        batch[key] = _cat_padded(picked, left=key in _LEFT_PADDED, value=pad_id if key.endswith("_ids") else 0)
    return batch


def _cat_padded(tensors: list[torch.Tensor], left: bool, value: float) -> torch.Tensor:
    """Concatenate along rows, padding every other dimension to the widest (on the left or right)."""
    shape = [max(t.size(d) for t in tensors) for d in range(tensors[0].dim())]
    out = []
    for t in tensors:
        pad = []
        for d in reversed(range(1, t.dim())):
            gap = shape[d] - t.size(d)
            pad += [gap, 0] if left else [0, gap]
        out.append(torch.nn.functional.pad(t, pad, value=value) if any(pad) else t)
    return torch.cat(out)
