"""What a GRPO step learns from: steps scaled by their share of signal, and training accuracy per answer.

A group whose completions all score alike has zero advantage: it carries no policy-gradient signal, only the KL
term. Adam divides each coordinate's update by that coordinate's running gradient scale, so the size of a step barely
depends on how much signal its gradient holds: at the start of a run, or after a stretch of steps without signal,
the first gradient from a single group with signal (or the KL term's last-bit gradient) becomes a step of about the
learning rate on every weight it touches. Measured on the README's first-day path: 20 GRPO steps whose rollouts held
one right completion in 600 took a warm start from 100% to 75% held-out accuracy.

:class:`SignalScaledSteps` makes a step move only as much as its signal is worth: the learning rate of each
optimizer step is multiplied by ``min(1, share / min_signal_share)``, where ``share`` is the fraction of the groups
the step trains on (all processes) that carry signal. A step without signal leaves the weights exactly as they were
(learning rate 0; Adam's moments still see its gradient); a step with enough signal is TRL's own. Logged:
``signal/share`` and ``signal/lr_scale`` per generation.

:func:`accuracy_by_answer` is the training accuracy of each answer class (what the policy has learned: a run that
gives one answer to every item, or has merged half the classes, shows it while it happens).
"""

from __future__ import annotations

from collections import defaultdict

import torch
from transformers import TrainerCallback

from .dynamic_sampling import has_signal

# Per-answer accuracy is logged as ``accuracy_by_answer/<answer>`` when the training set has at most this many
# distinct answers (a classification-like task); with more, a per-answer curve says little and floods the log.
MAX_ANSWER_CLASSES = 8


def step_scale(share: float, min_signal_share: float) -> float:
    """The learning-rate factor of a step whose groups carry signal in ``share`` of cases (0 <= share <= 1)."""
    if min_signal_share <= 0:
        return 1.0
    return min(1.0, share / min_signal_share)


class SignalScaledSteps(TrainerCallback):
    """Scale each optimizer step's learning rate by its share of groups with signal (see the module doc).

    The trainer calls :meth:`observe` on every training generation and :meth:`scale_lr` before every micro-batch's
    forward (the optimizer steps after the last one's backward, inside it under DeepSpeed); the learning rates are
    restored right after the optimizer step, before the scheduler's, so any schedule is left as it was.
    """

    def __init__(self, min_signal_share: float) -> None:
        if not 0 <= min_signal_share <= 1:
            raise ValueError(f"min_signal_share must lie in [0, 1], got {min_signal_share}")
        self.min_signal_share = min_signal_share
        self.scale = 1.0
        self._unscaled: list[float] | None = None  # the param groups' learning rates while scaled

    def observe(self, advantages: torch.Tensor, group_size: int, accelerator) -> tuple[float, float]:
        """The share of this generation's groups with signal over all processes, and the steps' lr factor.

        ``advantages``: this process's rows; they are gathered first, since a group may span processes (TRL's
        generation batch is split across them in order)."""
        signal = has_signal(accelerator.gather(advantages), group_size)
        share = float(signal.float().mean())
        self.scale = step_scale(share, self.min_signal_share)
        return share, self.scale

    def scale_lr(self, optimizer) -> None:
        """Set the optimizer's learning rates to the schedule's times :attr:`scale` (idempotent within a step)."""
        if self._unscaled is None:
            self._unscaled = [group["lr"] for group in optimizer.param_groups]
        for group, lr in zip(optimizer.param_groups, self._unscaled, strict=True):
            group["lr"] = lr * self.scale

    def on_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
        if self._unscaled is not None and optimizer is not None:
            for group, lr in zip(optimizer.param_groups, self._unscaled, strict=True):
                group["lr"] = lr
        self._unscaled = None


def accuracy_by_answer(answers: list[str], correct: list[float]) -> dict[str, float]:
    """Mean of ``correct`` (the accuracy reward of each completion) per answer (the item's right option)."""
    totals: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for answer, value in zip(answers, correct, strict=True):
        if value == value:  # NaN: the reward did not apply to this row
            totals[answer][0] += value
            totals[answer][1] += 1
    return {answer: right / n for answer, (right, n) in totals.items() if n}
