"""Offline tiny models: random weights from a small config, a locally trained tokenizer, the family's processor.

Same classes and code paths as each family's real checkpoint (each family module's ``build_tiny``), small enough for
CPU tests, the demo and CI, and loadable by vLLM (head_dim 32, the standard 30 s Whisper window, the hub's names).
"""

from __future__ import annotations

import os
from pathlib import Path

from . import NAMES as FAMILIES
from . import get_family

LAYOUTS = ("thinker", "full")


def __getattr__(name: str):
    # The Qwen2-Audio tokenizer pieces the benchmarks build their own processor from.
    if name == "QWEN2_AUDIO_CHAT_TEMPLATE":
        from .qwen2_audio import CHAT_TEMPLATE

        return CHAT_TEMPLATE
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def build_tokenizer(family: str = "qwen2-audio"):
    """The tiny byte-level BPE tokenizer of a family, trained here, with its special tokens and chat template."""
    return get_family(family).tiny_tokenizer()


def build_tiny_model(
    out_dir: str | os.PathLike, family: str = "qwen2-audio", seed: int = 0, window_seconds: int = 30,
    layout: str = "thinker",
) -> Path:
    """Write a complete tiny model directory (config, safetensors, processor, generation config) to ``out_dir``.

    Deterministic for a seed. Loads with ``AutoProcessor.from_pretrained`` and the model class's
    ``from_pretrained`` with ``HF_HUB_OFFLINE=1``, and with vLLM. ``window_seconds`` < 30 shrinks the audio
    encoder's window (much faster on CPU, what the demo uses; vLLM needs the standard 30 s). For a family shipped
    inside a full checkpoint (the Omni thinkers), ``layout="full"`` writes the hub's layout (what users download and
    vLLM loads): the same thinker as ``"thinker"`` for a seed, plus the tiny speech parts.
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; choose one of {FAMILIES}")
    fam = get_family(family)
    if layout not in LAYOUTS or (layout == "full" and not fam.has_full_layout):
        raise ValueError(f"layout {layout!r}: choose one of {LAYOUTS} ('full' is the hub layout of "
                         f"{[n for n in FAMILIES if get_family(n).has_full_layout]})")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fam.build_tiny(out, seed, window_seconds, layout)
    return out


HELP = "Build an offline tiny random-weight model of a model family for tests and the demo."


def add_arguments(parser) -> None:
    parser.add_argument("out_dir", help="directory to write the model to")
    parser.add_argument("--family", choices=FAMILIES, default="qwen2-audio")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--layout", choices=LAYOUTS, default="thinker",
                        help="Omni families only: 'full' writes the hub's layout (thinker + speech parts), which vLLM "
                        "needs; 'thinker' the thinker alone")
    parser.add_argument("--window-seconds", type=int, default=2,
                        help="audio encoder window; < 30 is faster on CPU but not loadable by vLLM")


def run(args) -> None:
    out = build_tiny_model(args.out_dir, family=args.family, seed=args.seed, window_seconds=args.window_seconds,
                           layout=args.layout)
    print(f"wrote tiny {args.family} model ({args.layout} layout) to {out}")
