"""Model and processor loading by family (``r1_aqa.families``), checkpoint weights under the hub's names, and the
dtype/device defaults."""

from __future__ import annotations

import json
import os
from pathlib import Path

from . import family_of, get_family, read_config  # noqa: F401 (read_config: callers import it from here)

QWEN2_AUDIO = "qwen2-audio"
QWEN2_5_OMNI = "qwen2.5-omni"
AUDIO_TOKEN = "<|AUDIO|>"  # the Qwen families' placeholder; each family names its own (``Family.audio_token``)


def checkpoint_name(name: str, family: str) -> str:
    """The checkpoint (hub, vLLM) name of a transformers parameter name of ``family``."""
    return get_family(family).checkpoint_name(name)


def load_checkpoint_weights(model, checkpoint: str | os.PathLike, family: str) -> bool:
    """Load the weights of a checkpoint directory (``model.safetensors`` or its shards, keys under the hub's names
    as ``save_pretrained`` writes them) into ``model`` by its transformers names.

    Tensors the hub stores in another layout than the model holds them (Qwen3-Omni's experts: one tensor per expert
    on the hub, fused per layer in transformers) are loaded through transformers' own conversion (``from_pretrained``
    of the checkpoint, on CPU). Returns False when the directory holds no safetensors weights. Raises ``ValueError``
    naming the checkpoint when a tensor of the model is not in it.
    """
    from safetensors.torch import load_file

    checkpoint = Path(checkpoint)
    index = checkpoint / "model.safetensors.index.json"
    if index.is_file():
        files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    elif (checkpoint / "model.safetensors").is_file():
        files = ["model.safetensors"]
    else:
        return False
    names = {checkpoint_name(k, family): k for k in model.state_dict()}
    state = {names.get(k, k): v for f in files for k, v in load_file(str(checkpoint / f)).items()}
    missing, _ = model.load_state_dict(state, strict=False)
    tied = set(getattr(model, "all_tied_weights_keys", None) or {})
    missing = [k for k in missing if k not in tied]
    if missing:
        converted, info = type(model).from_pretrained(checkpoint, dtype=model.dtype, output_loading_info=True)
        missing = [k for k in info["missing_keys"] if k not in tied]
        if not missing:
            model.load_state_dict(converted.state_dict())
    if missing:
        raise ValueError(f"{checkpoint}: no weights for {len(missing)} tensors of the model ({', '.join(missing[:5])})")
    return True


class HubNamedCheckpoints:
    """Trainer mixin: checkpoints saved in the layout of the one training started from, and resumed from it.

    Saving: after ``save_pretrained``, the family rewrites the directory into the hub's layout (``Family.save_layout``:
    an Omni thinker from a full checkpoint saves the full layout; Audio Flamingo 3 its hub names). Resuming:
    ``save_pretrained`` writes Qwen2-Audio's and the Omni thinker's weights under the hub's names, and transformers'
    ``Trainer`` loads a checkpoint with ``load_state_dict(strict=False)`` under the transformers names: nothing
    matches, and the run would go on from the untrained weights (with the trained optimizer state). DeepSpeed, FSDP
    and PEFT checkpoints keep their own loaders (and PEFT its own adapter layout).
    """

    def _save(self, output_dir: str | None = None, state_dict=None) -> None:
        from accelerate.utils import is_peft_model

        super()._save(output_dir, state_dict=state_dict)
        if not is_peft_model(self.model):
            model = self.accelerator.unwrap_model(self.model)
            config, _ = read_config(model.name_or_path)
            directory = output_dir or self.args.output_dir
            family_of(model.name_or_path).save_layout(directory, config, list(model.state_dict()))

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        model = self.model if model is None else model
        own_loader = self.is_deepspeed_enabled or self.is_fsdp_enabled or hasattr(model, "peft_config")
        family = None if own_loader else family_of(resume_from_checkpoint).name
        if own_loader or not load_checkpoint_weights(model, resume_from_checkpoint, family):
            super()._load_from_checkpoint(resume_from_checkpoint, model)


def default_dtype(device: str | None = None):
    """bf16 on GPU, float32 on CPU."""
    import torch

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return torch.bfloat16 if str(device).startswith("cuda") else torch.float32


def load_processor(path: str | os.PathLike, padding_side: str = "left"):
    """The checkpoint's processor (as its family builds it), with left padding for batched generation."""
    processor = family_of(path).load_processor(path)
    processor.tokenizer.padding_side = padding_side
    return processor


def load_model(path: str | os.PathLike, dtype=None, device: str | None = None):
    """Load a checkpoint with its family's class (eval mode, on ``device``)."""
    import torch

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    cls = family_of(path).model_class()
    model = cls.from_pretrained(path, dtype=dtype or default_dtype(device))
    without_router_logits(model)
    return model.to(device).eval()


def without_router_logits(model) -> None:
    """An MoE model returns router logits only where a forward asks for them (TRL's log-prob passes do).

    TRL's SFT saves ``output_router_logits: true`` in the config; generation with it on computes the router aux loss
    of each new token against the whole attention mask and fails.
    """
    text_config = model.config.get_text_config()
    if getattr(text_config, "output_router_logits", False):
        text_config.output_router_logits = False


def audio_token_id(config) -> int:
    """The id of the ``<|AUDIO|>`` placeholder from a model config (Qwen2-Audio and the Omni thinker)."""
    token_id = getattr(config, "audio_token_id", None)
    if token_id is None:
        token_id = getattr(config, "audio_token_index", None)
    if token_id is None:
        raise ValueError(f"{type(config).__name__} has no audio_token_id / audio_token_index: not an audio model")
    return int(token_id)
