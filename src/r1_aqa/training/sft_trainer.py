"""``AudioSFTTrainer``: TRL's ``SFTTrainer`` with the audio carried by a collator of ours (see ``.sft``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from trl import SFTTrainer

from ..audio import SAMPLE_RATE, load_audio
from .configs import AudioTrainingOptions
from ..families.loading import HubNamedCheckpoints
from ..prompts import END_OF_TURN


@dataclass
class AudioSFTCollator:
    """Rows with ``prompt`` (chat messages), ``audio`` and ``target`` -> a right-padded batch: the processor's audio
    features, ``input_ids`` = prompt (audio placeholder expanded) + target + the end of turn (``<|im_end|>``), and
    ``labels`` that are -100 everywhere but the target and the end of turn."""

    processor: Any
    max_audio_seconds: float | None = 30.0
    max_length: int | None = None
    end_of_turn: str = END_OF_TURN  # the model family's (``Family.end_of_turn``)

    def __call__(self, rows: list[dict]) -> dict:
        import torch

        tok = self.processor.tokenizer
        texts = self.processor.apply_chat_template([r["prompt"] for r in rows], add_generation_prompt=True,
                                                   tokenize=False)
        audio = [load_audio(r["audio"], max_seconds=self.max_audio_seconds) for r in rows]
        # Text padding only (see evaluate.engines.hf_batch).
        encoded = self.processor(text=texts, audio=audio, sampling_rate=SAMPLE_RATE, text_kwargs={"padding": True},
                                 return_tensors="pt")
        targets = tok([r["target"] + self.end_of_turn for r in rows], add_special_tokens=False)["input_ids"]
        prompts = [ids[mask.bool()].tolist() for ids, mask in zip(encoded["input_ids"], encoded["attention_mask"])]
        lengths = [len(p) + len(t) for p, t in zip(prompts, targets)]
        if self.max_length is not None:
            for row, n in zip(rows, lengths):
                if n > self.max_length:
                    raise ValueError(f"row {row.get('id', '?')}: prompt with audio + target is {n} tokens, over "
                                     f"max_length {self.max_length} (raise max_length; prompts are never truncated)")
        width = max(lengths)
        input_ids = torch.full((len(rows), width), tok.pad_token_id, dtype=torch.long)
        labels = torch.full((len(rows), width), -100, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, (prompt, target) in enumerate(zip(prompts, targets)):
            n = len(prompt) + len(target)
            input_ids[i, :n] = torch.tensor(prompt + target)
            labels[i, len(prompt) : n] = torch.tensor(target)
            attention_mask[i, :n] = 1
        batch = {k: v for k, v in encoded.items() if k not in ("input_ids", "attention_mask")}
        batch.update(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
        return batch


class AudioSFTTrainer(HubNamedCheckpoints, SFTTrainer):
    """TRL's ``SFTTrainer`` on audio rows (``prompt``, ``audio``, ``target``) through :class:`AudioSFTCollator`; the
    clip cap is ``args.max_audio_seconds`` for an ``AudioSFTConfig``, else ``AudioTrainingOptions``' default."""

    def __init__(self, model, args=None, train_dataset=None, *, processing_class=None, **kwargs):
        from ..families.loading import family_of, load_processor

        family = family_of(model.name_or_path)
        family.prepare_model(model)
        if processing_class is None:
            processing_class = load_processor(model.name_or_path)
        if args is not None:
            args.dataset_kwargs = {**(args.dataset_kwargs or {}), "skip_prepare_dataset": True}
            args.remove_unused_columns = False  # the collator needs prompt, audio and target
        options = args if isinstance(args, AudioTrainingOptions) else AudioTrainingOptions()
        collator = AudioSFTCollator(processing_class, options.max_audio_seconds, args.max_length if args else None,
                                    family.end_of_turn)
        super().__init__(model, args=args, train_dataset=train_dataset, processing_class=processing_class,
                         data_collator=collator, **kwargs)
        core = self.accelerator.unwrap_model(self.model)
        core = core.get_base_model() if hasattr(core, "get_base_model") else core
        self._fused_lm_head = core.base_model is not core

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self._fused_lm_head:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        from transformers import Trainer

        return Trainer.compute_loss(self, model, inputs, return_outputs, num_items_in_batch)
