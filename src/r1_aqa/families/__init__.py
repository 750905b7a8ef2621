"""Model families: everything the trainer, sft, eval engines, ``filter``, ``tiny-model`` and ``omni-layout`` need to
know about an audio LM lives in one module per family here, behind :class:`Family`.

A family says which transformers class trains, how its processor is built, its audio placeholder and how many tokens
a clip becomes, which processor outputs are the audio features, where its audio tower and projector are, what ends
an assistant turn, what a loaded model must have set before training, its checkpoint names (the hub's, which vLLM
loads) and layouts, what vLLM needs to serve it, and what its tiny offline model looks like. Adding a family is one
module with a ``FAMILY`` instance, listed in ``_MODULES``, plus its tests.

Beside the families, what works through them: ``loading.py`` (a checkpoint's model and processor, its weights under
the hub's names), ``vllm_audio.py`` (vLLM's audio requests and the in-place weight sync), and the commands
``tiny_model.py`` (``r1-aqa tiny-model``) and ``omni_layout.py`` (``r1-aqa omni-layout``).
"""

from __future__ import annotations

import functools
import importlib
import json
import os
from pathlib import Path
from typing import ClassVar

# Family name -> its module (imported on first use, so ``r1-aqa --help`` stays fast).
_MODULES = {
    "qwen2-audio": "qwen2_audio",
    "qwen2.5-omni": "qwen2_5_omni",
    "audioflamingo3": "audioflamingo3",
    "qwen3-omni": "qwen3_omni",
    "voxtral": "voxtral",
}
NAMES = tuple(_MODULES)


class Family:
    """One model family. Subclasses set the class attributes and override what differs from these defaults."""

    name: ClassVar[str]
    title: ClassVar[str]  # how people write it, for messages
    hub_id: ClassVar[str]  # the checkpoint people start from, for messages
    model_types: ClassVar[tuple[str, ...]]  # the config.json model_types it reads
    audio_token: ClassVar[str]  # the placeholder that one clip's audio tokens replace
    feature_keys: ClassVar[tuple[str, ...]]  # the processor's audio outputs the model takes, one row per clip
    # transformers parameter name prefix -> the hub checkpoint's (what vLLM's loaders read); first match wins.
    checkpoint_prefixes: ClassVar[tuple[tuple[str, str], ...]] = ()
    # Clip cap where a run gives none: the encoder's window where longer clips break the one-row-per-clip batches.
    max_audio_seconds: ClassVar[float] = 0.0
    has_full_layout: ClassVar[bool] = False  # a thinker that the hub ships inside a larger "full" checkpoint
    end_of_turn: ClassVar[str] = "<|im_end|>"  # the text that ends an assistant turn (sft appends it to targets)
    vllm_expands_audio: ClassVar[bool] = True  # vLLM expands one placeholder per clip (else: send them expanded)
    # Checkpoint name -> vLLM parameter, for tensors vLLM's loader writes past reload_weights (a sync copies them).
    vllm_copied: ClassVar[dict[str, str]] = {}
    vllm_computed: ClassVar[tuple[str, ...]] = ()  # vLLM parameters it computes instead of loading

    def model_class(self):
        """The transformers class that trains and generates text."""
        raise NotImplementedError

    def prepare_model(self, model) -> None:
        """Before training: restore what ``from_pretrained`` does not keep (e.g. a tensor the model freezes).

        A Whisper-style encoder's position table (``audio_tower.embed_positions``, Qwen2-Audio's, Audio Flamingo 3's,
        Voxtral's) is the fixed sinusoid in the released models: their classes freeze it when they build it, and
        ``from_pretrained`` makes it trainable again, so GRPO would train it. Where it holds the sinusoid (to bf16
        precision) it is frozen again; a table that is not the sinusoid (a tiny random model's) is left trainable.
        """
        import torch

        for name, param in model.named_parameters():
            if name.endswith("audio_tower.embed_positions.weight") and param.requires_grad and param.dim() == 2:
                table = param.detach().float().cpu()  # (a ZeRO-3 partition is empty; zero.Init keeps it frozen)
                if torch.allclose(table, sinusoids(*table.shape), atol=1e-2, rtol=0):
                    param.requires_grad_(False)

    def load_processor(self, path: str | os.PathLike):
        """The checkpoint's processor (the caller sets the padding side)."""
        from transformers import AutoProcessor

        return AutoProcessor.from_pretrained(path)

    def audio_tokens(self, num_samples: int, window_seconds: float = 30) -> int:
        """How many placeholder tokens a clip of ``num_samples`` 16 kHz samples becomes, up to one encoder window
        of ``window_seconds`` (the feature extractor's ``chunk_length``)."""
        raise NotImplementedError

    def checkpoint_name(self, name: str) -> str:
        """The hub (and vLLM) name of a transformers parameter name."""
        for src, dst in self.checkpoint_prefixes:
            if name.startswith(src):
                return dst + name[len(src) :]
        return name

    def decoder(self, model):
        """The module whose ``last_hidden_state`` the LM head reads."""
        return model.model

    def audio_projectors(self, model) -> list:
        """The layers that map the encoder's output to the LM width."""
        return [model.model.multi_modal_projector]

    def packed_lengths(self, tower, feature_lens) -> list[int]:
        """Per clip, the rows of a packed tower output (towers called with ``feature_lens``)."""
        return tower._get_feat_extract_output_lengths(feature_lens)[1].tolist()

    def position_ids(self, model, input_ids, attention_mask, features: dict):
        """The position ids ``model``'s forward gives a batch when given none (what a shared-prompt pass gathers
        into its packed rows): each column's index, ``[B, L]``, for a plain RoPE language model."""
        import torch

        return torch.arange(input_ids.size(1), device=input_ids.device).expand_as(input_ids)

    def router_modules(self, model) -> list:
        """The MoE routers whose first output is a layer's router logits (none: not an MoE model)."""
        return []

    def router_aux_loss(self, model, router_logits: list, token_weights):
        """The model's router load-balancing loss over the routers' logits of ``[B, L]`` tokens weighted by
        ``token_weights`` (the unshared forward weighs each token by its attention mask)."""
        raise NotImplementedError(f"{self.title} has no MoE router")

    def encode_audio(self, model, tower, features: dict) -> None:
        """Run ``tower`` on one row per clip of ``features`` as the model's forward would (fills a clip cache)."""
        raise NotImplementedError

    def save_layout(self, directory: str | os.PathLike, source_config: dict, names: list[str]) -> None:
        """Rewrite a directory ``save_pretrained`` wrote into the layout vLLM and the hub use (``source_config``:
        the config of the checkpoint training started from; ``names``: the saved model's transformers parameter
        names). Called on the saving process only: no collectives, no model construction. Default: as written."""

    def check_vllm(self, path: str | os.PathLike) -> None:
        """Raise ``ValueError`` (with the way out) where vLLM cannot serve this checkpoint; before any engine starts."""

    def vllm_engine_kwargs(self, path: str | os.PathLike) -> dict:
        """Arguments for ``vllm.LLM`` beyond the model, dtype and cache settings (applies the family's shims)."""
        return {"limit_mm_per_prompt": {"audio": 1}}

    def vllm_weights(self, config, weights):
        """The policy's ``(name, tensor)`` pairs (transformers names; ``config``: the model's config) as an engine
        loads them from the checkpoint vLLM reads: its names and layout. Default: the hub's names."""
        return ((self.checkpoint_name(name), tensor) for name, tensor in weights)

    def tiny_tokenizer(self):
        """The tiny model's tokenizer (trained here), with the family's special tokens and chat template."""
        raise NotImplementedError

    def build_tiny(self, out: Path, seed: int, window_seconds: int, layout: str) -> None:
        """Write the tiny offline model (weights, config, processor, generation config) into ``out``; ``layout``
        "full" (only where ``has_full_layout``) writes the hub's full layout, "thinker" the trained model alone."""
        raise NotImplementedError


def sinusoids(length: int, channels: int, max_timescale: float = 10_000):
    """Whisper's sinusoidal position table: the fixed positions of the released Whisper-style encoders (vLLM
    computes it for Voxtral's instead of loading it)."""
    import math

    import torch

    increment = math.log(max_timescale) / (channels // 2 - 1)
    inv_timescales = torch.exp(-increment * torch.arange(channels // 2))
    scaled = torch.arange(length)[:, None] * inv_timescales[None, :]
    return torch.cat([scaled.sin(), scaled.cos()], dim=1)


def read_config(path: str | os.PathLike) -> tuple[dict, str]:
    """``config.json`` of a local directory or a hub repo already in the local cache, and where it was read."""
    config_file = config_path(path)
    return json.loads(config_file.read_text()), str(config_file)


def config_path(path: str | os.PathLike) -> Path:
    """Where the ``config.json`` of a local directory or of a hub repo in the local cache is."""
    config_file = Path(path) / "config.json"
    if config_file.exists():
        return config_file
    if Path(path).is_dir():
        raise FileNotFoundError(f"{config_file}: no config.json (is {path} a model or checkpoint directory?)")
    from transformers.utils import cached_file

    if Path(path).is_absolute() or str(path).startswith(".") or str(path).count("/") > 1:
        raise FileNotFoundError(f"{path}: no such model directory")
    try:
        return Path(cached_file(str(path), "config.json"))
    except OSError as e:
        raise FileNotFoundError(f"{path}: no such model directory, and not a hub model id that can be loaded "
                                f"({str(e).splitlines()[0]})") from None


@functools.cache
def get_family(name: str) -> Family:
    """The family called ``name``."""
    if name not in _MODULES:
        raise ValueError(f"unknown model family {name!r}; choose one of {list(NAMES)}")
    return importlib.import_module(f"{__name__}.{_MODULES[name]}").FAMILY


def family_of(path: str | os.PathLike) -> Family:
    """The family of a model directory or hub id, from its ``config.json``'s ``model_type``; each config file is read
    once per process (again only once it changes)."""
    config_file = config_path(path)
    return _family_of_config(str(config_file), config_file.stat().st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _family_of_config(config_file: str, mtime_ns: int) -> Family:
    model_type = json.loads(Path(config_file).read_text()).get("model_type")
    for name in NAMES:
        if model_type in get_family(name).model_types:
            return get_family(name)
    known = sorted(t for name in NAMES for t in get_family(name).model_types)
    raise ValueError(f"{config_file}: model_type {model_type!r} is not supported; expected one of {known}")


def rename_weights(directory: str | os.PathLike, rename) -> None:
    """Rename every tensor of a checkpoint directory (each HF-format ``model*.safetensors`` file and the shard index) by
    ``rename(name) -> name``, each file replaced atomically."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    from ..files import atomic_path, write_json

    directory = Path(directory)
    for file in sorted(directory.glob("model*.safetensors")):
        with safe_open(str(file), "pt") as f:
            state = {rename(k): f.get_tensor(k) for k in f.keys()}
            metadata = f.metadata()
        with atomic_path(file) as tmp:
            save_file(state, str(tmp), metadata=metadata or {"format": "pt"})
    index_file = directory / "model.safetensors.index.json"
    if index_file.exists():
        index = json.loads(index_file.read_text())
        index["weight_map"] = {rename(k): v for k, v in index["weight_map"].items()}
        write_json(index_file, index)
