"""Option shuffling during training (``shuffle_choices: true`` in a ``train`` or ``sft`` recipe).

Every time an item is sampled, its options are shown in another order: a ``datasets`` transform rebuilds the prompt
(and the ``choices`` column) from ``question`` and ``choices`` each time a row is fetched. The order is drawn from
``(seed, id, epoch)``, so all completions of one GRPO group (fetched in the same epoch, on any process) see the same
prompt, the next epoch shows a new order, and a resumed run shows the orders it would have shown. The solution is the
answer text, so rewards and SFT targets do not change.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from transformers import TrainerCallback

from ..prompts import build_messages, format_prompt

COLUMNS = ("question", "choices")  # what the transform needs beyond the prompt (with ``id``, when present)


@dataclass
class ChoiceShuffle:
    """The ``Dataset.set_transform`` function: rows with their options in the order of ``(seed, id, epoch)``."""

    template: str = "default"
    seed: int = 0
    epoch: int = 0

    def order(self, item_id: str, n: int) -> list[int]:
        """The option order of item ``item_id`` (``n`` options) in the current epoch."""
        order = list(range(n))
        random.Random(f"{self.seed}/{item_id}/{self.epoch}").shuffle(order)
        return order

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        ids = batch.get("id") or batch["question"]
        choices, prompts = [], []
        for item_id, question, options in zip(ids, batch["question"], batch["choices"]):
            shuffled = [options[i] for i in self.order(str(item_id), len(options))]
            choices.append(shuffled)
            prompts.append(build_messages(format_prompt(question, shuffled, self.template)))
        return {**batch, "choices": choices, "prompt": prompts}


class ChoiceShuffleCallback(TrainerCallback):
    """Moves the transform to each new epoch (from the trainer's state, so it also holds after a resume)."""

    def __init__(self, shuffle: ChoiceShuffle):
        self.shuffle = shuffle

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.shuffle.epoch = int(state.epoch or 0)


def shuffle_choices(dataset, template: str, seed: int) -> ChoiceShuffleCallback:
    """Make ``dataset`` (with ``question`` and ``choices``) re-order its options on every fetch; return the trainer
    callback that advances the order each epoch."""
    missing = [c for c in COLUMNS if c not in dataset.column_names]
    if missing:
        raise ValueError(f"shuffle_choices needs the dataset columns {missing}")
    shuffle = ChoiceShuffle(template=template, seed=seed)
    dataset.set_transform(shuffle)
    return ChoiceShuffleCallback(shuffle)
