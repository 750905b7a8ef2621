"""The arguments of ``eval`` and ``filter`` as dataclasses (the generation settings they share in one), the flags made
from their fields, and which settings a resume must match (a field's ``resume`` metadata).

Field metadata: ``help``; ``type`` (an argparse type; a ``bool`` field is a switch); ``choices`` (read from the
registries: ``engines.ENGINES``, ``prompts.TEMPLATES``, ``benchmarks.NAMES``); ``action``/``metavar`` where
argparse needs them; ``resume``: ``True`` (the setting of that name must match), or the name(s) of the setting(s)
the field is recorded under.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from typing import TypeVar

from ..benchmarks import NAMES
from ..prompts import TEMPLATES
from .engines import ENGINES

T = TypeVar("T")
DEFAULT_BATCH_SIZE = {"hf": 8, "vllm": 64}  # vLLM schedules a call's requests itself: give it many


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


_MAX_NEW_TOKENS = {"type": positive_int, "help": "generated tokens per answer, at most (R1-AQA's 256; a random-weight "
                   "tiny model never stops before it: use e.g. 16 there)"}


@dataclass(kw_only=True)
class GenerationArguments:
    """How answers are generated: engine, prompt template, batches, length, clip cap, dtype."""

    engine: str = field(default="hf", metadata={"help": "generation engine", "choices": ENGINES, "resume": True})
    template: str = field(default="default", metadata={"help": "R1-AQA prompt template", "choices": tuple(TEMPLATES),
                                                       "resume": True})
    batch_size: int | None = field(default=None, metadata={
        "type": positive_int, "help": "items per generate call and per flush of results; unset: "
        + ", ".join(f"{k} {v}" for k, v in DEFAULT_BATCH_SIZE.items())})
    max_new_tokens: int = field(default=256, metadata={**_MAX_NEW_TOKENS, "resume": True})
    max_audio_seconds: float | None = field(default=None, metadata={
        "type": float, "resume": True,
        "help": "cut clips to this length (default: 30 for Qwen2-Audio, no cap for Omni; 0: no cap)"})
    dtype: str = field(default="auto", metadata={"choices": ("auto", "bfloat16", "float16", "float32"),
                                                 "resume": True, "help": "auto: bf16 on GPU, float32 on CPU"})


@dataclass(kw_only=True)
class EvalArguments(GenerationArguments):
    """``r1-aqa eval``: a model (or every checkpoint of a run) on a benchmark."""

    max_new_tokens: int = field(default=256, metadata={**_MAX_NEW_TOKENS, "resume": "sampling"})  # greedy settings
    benchmark: str = field(default="mmau", metadata={
        "choices": NAMES, "resume": True,
        "help": "which benchmark's format and scorer (the data's format is checked against it)"})
    data: str = field(metadata={"resume": True, "help": "the benchmark's own file (MMAU JSON; MMSU in its HF format; "
                                "MMAR-meta.jsonl) or a parquet from `prepare`"})
    audio_dir: str | None = field(default=None, metadata={
        "help": "directory MMAU `audio_id` and MMAR `audio_path` paths are relative to; unset: the data file's "
        "directory"})
    model: str = field(metadata={
        "resume": ("model", "model_files"),
        "help": "a model/checkpoint directory; a run directory (then every checkpoint-* is evaluated); or a hub model "
        "id such as Qwen/Qwen2-Audio-7B-Instruct (a baseline of the base model)"})
    output: str = field(metadata={"help": "predictions JSON (MMAU format); a sweep writes one per checkpoint, "
                                  "PRED.checkpoint-N.json"})
    overwrite: bool = field(default=False, metadata={
        "help": "evaluate again and replace the output, also one made with other settings (without it such an output "
        "is refused, and one made with the same settings is kept); a killed --overwrite run resumes when the same "
        "command is run again"})
    limit: int | None = field(default=None, metadata={"type": positive_int,
                                                      "help": "evaluate only the first N items; unset: all"})
    permutations: int = field(default=1, metadata={
        "type": positive_int, "resume": True,
        "help": "evaluate each item under K >= 1 option orders: order 0 is the original, the others shuffled by id; "
        "at most the number of distinct orders of the item with fewest options"})
    silence: bool = field(default=False, metadata={
        "resume": True,
        "help": "also evaluate with each clip replaced by silence of its length (PRED.silence.json) and report "
        "accuracy, silence accuracy and the listening gap (PRED.listening.{json,md,png})"})
    judge_model: str | None = field(default=None, metadata={
        "metavar": "DIR_OR_URL", "help": "open / mmau-pro: score the predictions at the end with this LLM judge (a "
        "text LM directory, hub id, vllm:DIR or OpenAI-compatible endpoint http(s)://HOST:PORT/v1[#MODEL]); unset: "
        "`r1-aqa score --judge-model` scores them later"})
    embed_model: str | None = field(default=None, metadata={
        "metavar": "DIR_OR_URL",
        "help": "mmau-pro: the embedder of closed-ended answers (default: nvidia/NV-Embed-v2)"})
    num_workers: int = field(default=1, metadata={
        "type": positive_int, "help": "worker processes (one GPU each where there are GPUs), started through "
        "torchrun; under torchrun/accelerate launch every rank is a worker already"})


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """One flag per field of ``cls``: ``--max-audio-seconds`` (shown in the help) and ``--max_audio_seconds`` (the
    spelling of ``train``'s flags, hidden) both set ``max_audio_seconds``. A field without a default is required."""
    for f in dataclasses.fields(cls):
        meta = f.metadata
        options = {"dest": f.name, "help": meta.get("help")}
        if f.type == "bool":
            options["action"] = "store_true"
        else:
            options.update({k: meta[k] for k in ("type", "choices", "action", "metavar") if k in meta})
        if f.default is dataclasses.MISSING:
            options["required"] = True
        else:
            options["default"] = f.default
        flag = "--" + f.name.replace("_", "-")
        parser.add_argument(flag, **options)
        if "_" in f.name:  # the other spelling: same destination, not in the help, no default of its own
            parser.add_argument("--" + f.name, **{**options, "help": argparse.SUPPRESS,
                                                  "default": argparse.SUPPRESS})


def from_namespace(cls: type[T], args: argparse.Namespace) -> T:
    """The ``cls`` instance of a parsed command line."""
    return cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls)})


def resume_settings(cls: type) -> tuple[str, ...]:
    """The settings a resume must match: those named by the fields' ``resume`` metadata, in field order."""
    names: list[str] = []
    for f in dataclasses.fields(cls):
        resume = f.metadata.get("resume")
        if resume:
            names += [f.name] if resume is True else [resume] if isinstance(resume, str) else list(resume)
    return tuple(names)
