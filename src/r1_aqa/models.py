"""Model families: which class loads a checkpoint, its processor, parameter names, and the dtype/device defaults."""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

QWEN2_AUDIO = "qwen2-audio"
QWEN2_5_OMNI = "qwen2.5-omni"
AUDIO_TOKEN = "<|AUDIO|>"

# A full Qwen2.5-Omni checkpoint (thinker + talker + token2wav, model_type "qwen2_5_omni") loads as its thinker:
# transformers takes the thinker's config from ``thinker_config`` and drops the ``thinker.`` prefix of its weights.
_MODEL_TYPES = {"qwen2_audio": QWEN2_AUDIO, "qwen2_5_omni_thinker": QWEN2_5_OMNI, "qwen2_5_omni": QWEN2_5_OMNI}


def read_config(path: str | os.PathLike) -> tuple[dict, str]:
    """``config.json`` of a local directory or a hub repo already in the local cache, and where it was read."""
    config_file = Path(path) / "config.json"
    if not config_file.exists():
        if Path(path).is_dir():
            raise FileNotFoundError(f"{config_file}: no config.json (is {path} a model or checkpoint directory?)")
        from transformers.utils import cached_file

        if Path(path).is_absolute() or str(path).startswith(".") or str(path).count("/") > 1:
            raise FileNotFoundError(f"{path}: no such model directory")
        try:
            config_file = Path(cached_file(str(path), "config.json"))
        except OSError as e:
            raise FileNotFoundError(f"{path}: no such model directory, and not a hub model id that can be loaded "
                                    f"({str(e).splitlines()[0]})") from None
    return json.loads(config_file.read_text()), str(config_file)


def model_family(path: str | os.PathLike) -> str:
    """The family of a model directory or hub id, read from its ``config.json``."""
    config, config_file = read_config(path)
    model_type = config.get("model_type")
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


# transformers' parameter names -> the hub checkpoints' names, which vLLM's weight loaders expect. transformers renames
# Qwen2-Audio's keys on load; the Omni thinker's hub keys are its transformers names under ``thinker.`` (vLLM's
# Qwen2.5-Omni thinker maps ``thinker.model.``/``thinker.lm_head.`` to its language model and drops ``thinker.``).
_CHECKPOINT_PREFIXES = {
    QWEN2_AUDIO: [
        ("model.audio_tower.", "audio_tower."),
        ("model.multi_modal_projector.", "multi_modal_projector."),
        ("model.language_model.", "language_model.model."),
        ("lm_head.", "language_model.lm_head."),
    ],
    QWEN2_5_OMNI: [("", "thinker.")],
}


def checkpoint_name(name: str, family: str) -> str:
    """The checkpoint (hub, vLLM) name of a transformers parameter name of ``family``."""
    if family not in _CHECKPOINT_PREFIXES:
        raise ValueError(f"unknown model family {family!r}")
    for src, dst in _CHECKPOINT_PREFIXES[family]:
        if name.startswith(src):
            return dst + name[len(src) :]
    return name


def load_checkpoint_weights(model, checkpoint: str | os.PathLike, family: str) -> bool:
    """Load the weights of a checkpoint directory (``model.safetensors`` or its shards, keys under the hub's names
    as ``save_pretrained`` writes them) into ``model`` by its transformers names.

    Returns False when the directory holds no safetensors weights. Raises ``ValueError`` naming the checkpoint when
    a tensor of the model is not in it.
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
        raise ValueError(f"{checkpoint}: no weights for {len(missing)} tensors of the model ({', '.join(missing[:5])})")
    return True


class HubNamedResume:
    """Trainer mixin: resume from checkpoints whose weights are under the hub's names.

    ``save_pretrained`` writes Qwen2-Audio's and the Omni thinker's weights under the hub's names, and transformers'
    ``Trainer`` loads a checkpoint with ``load_state_dict(strict=False)`` under the transformers names: nothing
    matches, and the run would go on from the untrained weights (with the trained optimizer state). DeepSpeed, FSDP
    and PEFT checkpoints keep their own loaders.
    """

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        model = self.model if model is None else model
        own_loader = self.is_deepspeed_enabled or self.is_fsdp_enabled or hasattr(model, "peft_config")
        family = None if own_loader else model_family(resume_from_checkpoint)
        if own_loader or not load_checkpoint_weights(model, resume_from_checkpoint, family):
            super()._load_from_checkpoint(resume_from_checkpoint, model)


def default_dtype(device: str | None = None):
    """bf16 on GPU, float32 on CPU."""
    import torch

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return torch.bfloat16 if str(device).startswith("cuda") else torch.float32


def load_processor(path: str | os.PathLike, padding_side: str = "left"):
    """The checkpoint's processor, with left padding for batched generation.

    Where torchvision is missing (CPU-only installs), transformers cannot build ``Qwen2_5OmniProcessor`` (its video
    processor needs torchvision); the Omni thinker then gets :class:`Qwen2_5OmniAudioProcessor`.
    """
    from transformers import AutoProcessor
    from transformers.utils import is_torchvision_available

    if is_torchvision_available() or model_family(path) != QWEN2_5_OMNI:
        processor = AutoProcessor.from_pretrained(path)
    else:
        from transformers.image_processing_base import ImageProcessingMixin
        from transformers.video_processing_utils import BaseVideoProcessor

        processor = _omni_audio_processor_class().from_pretrained(path)
        processor.vision_settings = {  # kept as saved, to be saved again
            "image_processor": ImageProcessingMixin.get_image_processor_dict(path)[0],
            "video_processor": BaseVideoProcessor.get_video_processor_dict(path)[0],
        }
    processor.tokenizer.padding_side = padding_side
    return processor


def __getattr__(name: str):
    # The processor class subclasses transformers' and is built on first use, so importing this module stays light.
    if name == "Qwen2_5OmniAudioProcessor":
        return _omni_audio_processor_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@functools.cache
def _omni_audio_processor_class():
    from transformers import Qwen2_5OmniProcessor
    from transformers.processing_utils import ProcessorMixin

    class Qwen2_5OmniAudioProcessor(Qwen2_5OmniProcessor):
        """transformers' ``Qwen2_5OmniProcessor`` for text and audio, without image and video processors.

        For machines without torchvision. Feature extraction (Whisper, padded to 30 s, ``feature_attention_mask``),
        the kwargs defaults and the output keys (``input_ids``, ``attention_mask``, ``input_features``,
        ``feature_attention_mask``) are the parent's code; the ``<|AUDIO|>`` expansion is the parent's audio branch
        (``use_audio_in_video`` false). Saves as ``Qwen2_5OmniProcessor`` with the image and video processor settings
        in ``vision_settings``, so a machine with torchvision loads the saved directory with ``AutoProcessor``.
        """

        def __init__(self, feature_extractor=None, tokenizer=None, chat_template=None):
            ProcessorMixin.__init__(self, feature_extractor, tokenizer, chat_template=chat_template)
            for name in ("image_token", "audio_token", "video_token", "vision_bos_token", "vision_eos_token",
                         "audio_bos_token", "audio_eos_token"):
                setattr(self, name, getattr(tokenizer, name))
            self.vision_settings: dict = {}

        def __call__(self, text=None, images=None, videos=None, audio=None, **kwargs):
            if images is not None or videos is not None:
                raise ValueError("images and videos need transformers' Qwen2_5OmniProcessor: install torchvision")
            return super().__call__(text=text, audio=audio, **kwargs)

        def replace_multimodal_special_tokens(self, text, audio_lengths, *args, **kwargs):
            # The parent's audio branch: the i-th <|AUDIO|> becomes as many <|AUDIO|> as the i-th clip has frames.
            expanded = []
            for sample in text:
                head, *rest = sample.split(self.audio_token)
                expanded.append(head + "".join(self.audio_token * int(next(audio_lengths)) + part for part in rest))
            return expanded

        @property
        def model_input_names(self):
            names = self.tokenizer.model_input_names + self.feature_extractor.model_input_names
            return list(dict.fromkeys(names + ["feature_attention_mask"]))

        def to_dict(self):
            return {**self.vision_settings, **super().to_dict(), "processor_class": "Qwen2_5OmniProcessor"}

    # Picklable (and named in errors) as r1_aqa.models.Qwen2_5OmniAudioProcessor.
    Qwen2_5OmniAudioProcessor.__module__ = __name__
    Qwen2_5OmniAudioProcessor.__qualname__ = "Qwen2_5OmniAudioProcessor"
    return Qwen2_5OmniAudioProcessor


def load_model(path: str | os.PathLike, dtype=None, device: str | None = None):
    """Load a checkpoint with its family's class (eval mode, on ``device``)."""
    import torch

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    cls = model_class(model_family(path))
    model = cls.from_pretrained(path, dtype=dtype or default_dtype(device))
    return model.to(device).eval()


def audio_token_id(config) -> int:
    """The id of the ``<|AUDIO|>`` placeholder from a model config (Qwen2-Audio and the Omni thinker)."""
    token_id = getattr(config, "audio_token_id", None)
    if token_id is None:
        token_id = getattr(config, "audio_token_index", None)
    if token_id is None:
        raise ValueError(f"{type(config).__name__} has no audio_token_id / audio_token_index: not an audio model")
    return int(token_id)
