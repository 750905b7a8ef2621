"""Model families: which class loads a checkpoint, its processor, and the dtype/device defaults."""

from __future__ import annotations

import json
import os
from pathlib import Path

QWEN2_AUDIO = "qwen2-audio"
QWEN2_5_OMNI = "qwen2.5-omni"
AUDIO_TOKEN = "<|AUDIO|>"

_MODEL_TYPES = {"qwen2_audio": QWEN2_AUDIO, "qwen2_5_omni_thinker": QWEN2_5_OMNI, "qwen2_5_omni": QWEN2_5_OMNI}


def model_family(path: str | os.PathLike) -> str:
    """The family of a local model directory, read from its ``config.json``."""
    config_file = Path(path) / "config.json"
    if not config_file.exists():
        raise FileNotFoundError(f"{config_file}: no config.json (is {path} a model or checkpoint directory?)")
    model_type = json.loads(config_file.read_text())["model_type"]
    if model_type not in _MODEL_TYPES:
        raise ValueError(f"{config_file}: model_type {model_type!r} is not supported; expected one of {sorted(_MODEL_TYPES)}")
    return _MODEL_TYPES[model_type]


def model_class(family: str):
    """The transformers class that generates text for a family (the Omni thinker: text output only)."""
    if family == QWEN2_AUDIO:
        from transformers import Qwen2AudioForConditionalGeneration

        return Qwen2AudioForConditionalGeneration
    if family == QWEN2_5_OMNI:
        from transformers import Qwen2_5OmniThinkerForConditionalGeneration

        return Qwen2_5OmniThinkerForConditionalGeneration
    raise ValueError(f"unknown model family {family!r}")


def default_dtype(device: str | None = None):
    """bf16 on GPU, float32 on CPU."""
    import torch

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return torch.bfloat16 if str(device).startswith("cuda") else torch.float32


def load_processor(path: str | os.PathLike, padding_side: str = "left"):
    """The checkpoint's processor, with left padding for batched generation."""
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(path)
    processor.tokenizer.padding_side = padding_side
    return processor


def load_model(path: str | os.PathLike, dtype=None, device: str | None = None):
    """Load a checkpoint with its family's class (eval mode, on ``device``)."""
    import torch

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    cls = model_class(model_family(path))
    model = cls.from_pretrained(path, dtype=dtype or default_dtype(device))
    return model.to(device).eval()
