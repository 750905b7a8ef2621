"""Supervised warm start on prepared audio QA data, with transformers' ``Trainer`` and an audio collator.

``target="format"`` teaches only the answer format: each target is ``<answer>OPTION</answer>`` with an option
drawn at random, so the model learns to answer with one of the listed options without learning which one is
right. ``target="label"`` trains on the true answers. One warm start can mix datasets with different targets: the
demo's is format-only on its GRPO task and true labels on a different listening task, so the model can hear but has
not been taught the task (like an instruct model).
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from typing import Any, Sequence

from .audio import load_audio
from .prompts import chat_prompt


@dataclass
class AudioSFTCollator:
    """Rows with ``prompt``, ``audio`` and ``target`` -> a right-padded batch with loss on the target tokens only."""

    processor: Any
    max_audio_seconds: float | None = 30.0

    def __call__(self, rows: list[dict]) -> dict:
        import torch

        tok = self.processor.tokenizer
        end = "<|im_end|>\n"
        texts, n_target = [], []
        for row in rows:
            prompt = chat_prompt(self.processor, row["prompt"])
            texts.append(prompt + row["target"] + end)
            n_target.append(len(tok(row["target"] + end, add_special_tokens=False)["input_ids"]))
        audio = [load_audio(row["audio"], max_seconds=self.max_audio_seconds) for row in rows]
        side, tok.padding_side = tok.padding_side, "right"
        try:
            batch = self.processor(text=texts, audio=audio, sampling_rate=16_000, padding=True, return_tensors="pt")
        finally:
            tok.padding_side = side
        labels = torch.full_like(batch["input_ids"], -100)
        lengths = batch["attention_mask"].sum(-1).tolist()
        for i, (length, n) in enumerate(zip(lengths, n_target)):
            labels[i, length - n : length] = batch["input_ids"][i, length - n : length]
        batch["labels"] = labels
        return dict(batch)


def sft_rows(frame, target: str = "format", seed: int = 0) -> list[dict]:
    """Training rows (prompt, audio, target) from a prepared frame; see the module docstring for ``target``."""
    if target not in ("format", "label"):
        raise ValueError(f"target must be 'format' or 'label', not {target!r}")
    rng = random.Random(seed)
    rows = []
    for rec in frame.to_dict("records"):
        answer = rec["answer"] if target == "label" else rng.choice(list(rec["choices"]))
        rows.append({"prompt": rec["prompt"], "audio": rec["audio"], "target": f"<answer>{answer}</answer>"})
    return rows


def run_sft(
    model_dir: str | os.PathLike,
    datasets: Sequence[tuple[str | os.PathLike, str]],
    output_dir: str | os.PathLike,
    max_steps: int = 60,
    learning_rate: float = 3e-3,
    batch_size: int = 16,
    max_audio_seconds: float | None = 30.0,
    seed: int = 0,
) -> str:
    """Warm-start ``model_dir`` and save the result (model + processor) to ``output_dir``.

    ``datasets`` are ``(prepared parquet, target)`` pairs whose rows are shuffled together; see the module docstring
    for the targets.
    """
    import pandas as pd
    from transformers import Trainer, TrainingArguments

    from .models import load_model, load_processor

    processor = load_processor(model_dir)
    model = load_model(model_dir)
    model.train()
    rows = [row for path, target in datasets for row in sft_rows(pd.read_parquet(path), target=target, seed=seed)]
    args = TrainingArguments(
        output_dir=str(output_dir),
        max_steps=max_steps,
        per_device_train_batch_size=batch_size,
        learning_rate=learning_rate,
        lr_scheduler_type="constant",
        warmup_steps=0,
        logging_steps=10,
        save_strategy="no",
        report_to=[],
        remove_unused_columns=False,
        seed=seed,
        use_cpu=not _cuda(),
        disable_tqdm=False,
    )
    trainer = Trainer(model=model, args=args, train_dataset=rows,
                      data_collator=AudioSFTCollator(processor, max_audio_seconds))
    trainer.train()
    trainer.save_model(str(output_dir))
    processor.save_pretrained(str(output_dir))
    return str(output_dir)


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()
