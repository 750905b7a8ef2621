"""Qwen2-Audio (``Qwen/Qwen2-Audio-7B-Instruct``): Whisper encoder, a linear projector, Qwen2 LM; ``<|AUDIO|>``."""

from __future__ import annotations

from pathlib import Path

from ..audio import QWEN2_AUDIO_MAX_SECONDS
from . import Family
from ._tiny import build_encoder_lm, build_tokenizer

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>"]

# Qwen2-Audio-Instruct's chat format: audio items render as "Audio N: <|audio_bos|><|AUDIO|><|audio_eos|>\n".
CHAT_TEMPLATE = (
    "{% set audio_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'audio' or 'audio' in content or 'audio_url' in content %}"
    "{% set audio_count.value = audio_count.value + 1 %}Audio {{ audio_count.value }}: <|audio_bos|><|AUDIO|><|audio_eos|>\n"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def whisper_tokens(num_samples: int, window_seconds: float = 30) -> int:
    """Audio tokens of a clip through a Whisper encoder (mel frames of 160 samples, conv stride 2, pool 2), up to
    one window."""
    frames = min(-(-num_samples // 160), int(window_seconds * 100))
    return ((frames - 1) // 2 + 1 - 2) // 2 + 1


class Qwen2Audio(Family):
    name = "qwen2-audio"
    title = "Qwen2-Audio"
    model_types = ("qwen2_audio",)
    audio_token = "<|AUDIO|>"
    feature_keys = ("input_features", "feature_attention_mask")
    # transformers renames Qwen2-Audio's keys on load; these are the hub's.
    checkpoint_prefixes = (
        ("model.audio_tower.", "audio_tower."),
        ("model.multi_modal_projector.", "multi_modal_projector."),
        ("model.language_model.", "language_model.model."),
        ("lm_head.", "language_model.lm_head."),
    )
    max_audio_seconds = QWEN2_AUDIO_MAX_SECONDS  # the encoder's window

    def model_class(self):
        from transformers import Qwen2AudioForConditionalGeneration

        return Qwen2AudioForConditionalGeneration

    def audio_tokens(self, num_samples: int, window_seconds: float = 30) -> int:
        return whisper_tokens(num_samples, window_seconds)

    def encode_audio(self, model, tower, features: dict) -> None:
        feats, mask = features["input_features"], features["feature_attention_mask"]
        tower(feats, attention_mask=_encoder_mask(tower, feats, mask))

    def vllm_engine_kwargs(self, path) -> dict:
        return {}

    def tiny_tokenizer(self):
        return build_tokenizer(SPECIALS, CHAT_TEMPLATE)

    def build_tiny(self, out: Path, seed: int, window_seconds: int, layout: str) -> None:
        from transformers import Qwen2AudioConfig, Qwen2AudioForConditionalGeneration, Qwen2AudioProcessor

        build_encoder_lm(self, out, seed, window_seconds,
                         (Qwen2AudioConfig, Qwen2AudioForConditionalGeneration, Qwen2AudioProcessor),
                         "qwen2_audio_encoder", "audio_token_index", chat_template=CHAT_TEMPLATE)


def _encoder_mask(tower, feats, feature_mask):
    """The encoder attention mask ``Qwen2AudioModel.forward`` builds from the feature mask (transformers 5)."""
    import torch
    from transformers.masking_utils import create_bidirectional_mask

    lengths = tower._get_feat_extract_output_lengths(feature_mask.sum(-1))[0]
    max_len = (feats.size(-1) - 2) // 2 + 1
    valid = (torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]).long()
    dummy = torch.zeros((feats.size(0), max_len, 1), dtype=feats.dtype, device=feats.device)
    return create_bidirectional_mask(config=tower.config, inputs_embeds=dummy, attention_mask=valid)


FAMILY = Qwen2Audio()
