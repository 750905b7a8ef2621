"""The rows a source's reader yields for ``prepare``, the columns of a prepared parquet, and the checks readers share.

Readers (AVQA's in ``data/avqa.py``; each benchmark's own in its module of ``benchmarks/``) turn a file into ``Item``
rows (a usable question whose clip is still to be probed) and ``Skip`` rows (a row that is unusable as it stands, with
the reason); ``prepare`` probes the clips of the items and writes the parquet.
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Any, Sequence, Union

# Parquet columns every prepared dataset has, in order; readers may add columns (``Item.extra``) after them.
COLUMNS = ("id", "question", "choices", "answer", "answer_idx", "solution", "prompt", "audio", "duration_s",
           "sample_rate", "dataset_name")

# A clip as a reader finds it: a resolved path, encoded bytes, or a decoded (array, sample rate) pair.
AudioSource = Union[str, bytes, tuple]


@dataclasses.dataclass
class Item:
    """A question whose fields are valid; ``clip`` names its audio (the wav file name when written out)."""

    line: int
    id: str
    question: str
    choices: list[str]  # empty for an open-ended item
    answer_idx: int | None  # None for an open-ended item (its answer is ``extra["reference"]``)
    dataset_name: str
    audio: AudioSource | None  # None once handed to the prober
    clip: str
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)


def benchmark_item(line: int, rid: str, record: dict, dataset_name: str) -> Item:
    """The ``Item`` of a loaded benchmark record (MMAU, MMAR: ``audio`` is its resolved clip path, ``answer_idx``
    set); every other field of the record is kept as an extra column."""
    extra = {k: v for k, v in record.items() if k not in ("audio", "answer_idx")}
    return Item(line=line, id=rid, question=str(record["question"]), choices=record["choices"],
                answer_idx=record["answer_idx"], dataset_name=dataset_name, audio=record["audio"],
                clip=record["audio"], extra=extra)


@dataclasses.dataclass
class Skip:
    """A row left out, with its line (JSONL line, or 1-based record/row number) and the reason."""

    line: int
    id: str | None
    reason: str


def check_choices(choices: Any, answer_idx: Any = None) -> str | None:
    """Why ``choices`` (and ``answer_idx``, unless None) are unusable, or None when they are a non-empty list of
    strings and an index into it."""
    if not isinstance(choices, list) or not all(isinstance(c, str) for c in choices):
        return "choices must be a list of strings"
    if not choices:
        return "empty choices"
    if answer_idx is None:
        return None
    if not isinstance(answer_idx, int) or isinstance(answer_idx, bool):
        return f"answer index must be an integer, got {answer_idx!r}"
    if not 0 <= answer_idx < len(choices):
        return f"answer index {answer_idx} out of range for {len(choices)} choices"
    return None


def check_question(question: Any) -> str | None:
    """Why ``question`` is unusable (not a non-empty string), or None."""
    if not isinstance(question, str):
        return f"question must be a string, got {type(question).__name__}"
    return None if question.strip() else "empty question"


def missing_fields(record: dict, required: Sequence[str]) -> str | None:
    """A skip reason naming the required fields ``record`` lacks (or has as null), or None."""
    missing = [k for k in required if record.get(k) is None]
    return f"missing field(s): {', '.join(missing)}" if missing else None


def resolve_audio(audio_path: str, audio_dir: str | os.PathLike | None) -> str | None:
    """The absolute path of the first existing file among DIR/audio_path, audio_path as given, DIR/basename."""
    candidates = [audio_path] if audio_dir is None else [
        os.path.join(audio_dir, audio_path), audio_path, os.path.join(audio_dir, os.path.basename(audio_path))]
    return next((os.path.abspath(c) for c in candidates if os.path.isfile(c)), None)


def audio_source(value: Any, base_dir: str | os.PathLike | None = None) -> AudioSource | None:
    """Normalize an HF-style audio value (bytes, path, ``{"bytes", "path"}`` or ``{"array", "sampling_rate"}``).

    Returns bytes, an (array, rate) pair or an existing absolute path (relative paths tried against
    ``base_dir`` too); None when the value holds no usable reference.
    """
    import numpy as np

    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, dict):
        if value.get("bytes"):
            return bytes(value["bytes"])
        if value.get("array") is not None:
            return np.asarray(value["array"], dtype=np.float32), int(value["sampling_rate"])
        value = value.get("path")
    if isinstance(value, str) and value:
        return resolve_audio(value, base_dir)
    return None


def is_saved_dataset(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a ``datasets`` save_to_disk directory (of a Dataset or a DatasetDict)."""
    return any(os.path.isfile(os.path.join(path, f)) for f in ("dataset_dict.json", "state.json"))


def load_hf_split(path: str | os.PathLike, split: str | None):
    """``datasets.load_from_disk`` of a Dataset or DatasetDict (taking ``split``; the only one when None), with
    audio columns left undecoded (``{"bytes", "path"}``)."""
    import datasets

    ds = datasets.load_from_disk(str(path))
    if isinstance(ds, datasets.DatasetDict):
        if split is None and len(ds) == 1:
            split = next(iter(ds))
        if split not in ds:
            raise ValueError(f"{path}: no split {split!r}; splits are {sorted(ds)} (pick one with --split)")
        ds = ds[split]
    for name, feature in ds.features.items():
        if isinstance(feature, datasets.Audio):
            ds = ds.cast_column(name, datasets.Audio(decode=False))
    return ds


def clip_name(name: str) -> str:
    """A file-name-safe stem for a clip written out as wav (from its original file name's stem or the row id)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip(".") or "clip"
