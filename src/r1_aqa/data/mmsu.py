"""MMSU in its HF format (audio, key, question, options, answer_index, category): a parquet file, a directory of
parquet files, or a ``datasets`` save_to_disk directory."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

from .records import (Item, Skip, audio_source, check_choices, check_question, clip_name, load_hf_split,
                      missing_fields)

FIELDS = ("key", "question", "options", "answer_index")


def _open(path: str | os.PathLike, split: str | None) -> tuple[Iterator[dict], int, Path]:
    """Raw records of ``path``, their count, and the directory relative audio paths are tried against."""
    path = Path(path)
    if path.is_dir() and any((path / f).is_file() for f in ("dataset_dict.json", "state.json")):
        ds = load_hf_split(path, split)
        return iter(ds), len(ds), path
    if path.is_file() and path.suffix == ".parquet":
        files = [path]
    elif path.is_dir():
        files = sorted(path.rglob("*.parquet"))
        if not files:
            raise ValueError(f"{path}: no parquet files and not a datasets save_to_disk directory")
    else:
        raise ValueError(f"{path}: not a parquet file or a directory (MMSU in its HF format); an MMAU JSON file is "
                         "`prepare mmau`, MMAR-meta.jsonl `prepare mmar`")
    import pyarrow as pa
    import pyarrow.parquet as pq

    def records() -> Iterator[dict]:
        for f in files:
            for batch in pq.ParquetFile(f).iter_batches(batch_size=64):
                yield from batch.to_pylist()

    rows = 0
    for f in files:
        try:
            rows += pq.ParquetFile(f).metadata.num_rows
        except pa.ArrowException as e:
            raise ValueError(f"{f}: not a readable parquet file ({e})") from None
    return records(), rows, path if path.is_dir() else path.parent


def _record(rec: dict, base_dir: Path) -> dict:
    options, idx = rec.get("options"), rec.get("answer_index")
    audio = rec.get("audio") if rec.get("audio") is not None else rec.get("path")
    valid = check_choices(options, idx) is None
    return {"id": None if rec.get("key") is None else str(rec["key"]), "question": rec.get("question"),
            "choices": options, "answer": options[idx] if valid else None, "answer_idx": idx,
            "category": rec.get("category"), "audio": audio_source(audio, base_dir)}


def iter_mmsu(path: str | os.PathLike, split: str | None = None) -> tuple[Iterator[dict], int]:
    """Lazy ``load_mmsu``: the records one by one, and how many there are."""
    raw, n, base_dir = _open(path, split)
    return (_record(rec, base_dir) for rec in raw), n


def load_mmsu(path: str | os.PathLike, split: str | None = None) -> list[dict]:
    """MMSU records as dicts: id (= key), question, choices, answer (text, None if the index is invalid),
    answer_idx, category, and audio (bytes, an absolute path, or an (array, rate) pair; None if absent).

    ``split`` picks a split of a save_to_disk DatasetDict (the only one when None).
    """
    return list(iter_mmsu(path, split)[0])


def read_mmsu(path: str | os.PathLike, split: str | None = None) -> tuple[Iterator, int]:
    """``Item``/``Skip`` rows of MMSU (``line`` is the 1-based row number), read lazily."""
    raw, n, base_dir = _open(path, split)

    def rows() -> Iterator[Item | Skip]:
        for line, rec in enumerate(raw, start=1):
            reason = (missing_fields(rec, FIELDS) or check_choices(rec["options"], rec["answer_index"])
                      or check_question(rec["question"]))
            r = _record(rec, base_dir)
            if reason is None and r["audio"] is None:
                reason = "audio missing (no bytes, array or existing path)"
            if reason is not None:
                yield Skip(line, r["id"], reason)
                continue
            yield Item(line=line, id=r["id"], question=str(r["question"]), choices=r["choices"],
                       answer_idx=r["answer_idx"], dataset_name="mmsu", audio=r["audio"],
                       clip=r["audio"] if isinstance(r["audio"], str) else clip_name(r["id"]),
                       extra={"category": r["category"]})

    return rows(), n
