"""Atomic file output: results are written to a temporary file beside the target, then renamed; no output carries
the version of the library that wrote it (parquet frames, PNG figures)."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``, on error delete it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o666 & ~umask)  # mkstemp makes 0600 files; outputs get the usual permissions
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> None:
    """Write ``obj`` as JSON to ``path`` atomically (UTF-8, non-ASCII kept)."""
    write_text(path, json.dumps(obj, indent=indent, ensure_ascii=False) + "\n")


def write_frame(frame: Any, path: str | os.PathLike) -> None:
    """Write a pandas frame to parquet atomically, without its index and without the writers' version stamps.

    pandas records its own and pyarrow's version in the file's metadata, so the same rows would make other bytes
    after an upgrade; the rest of that metadata (the columns' pandas dtypes) stays.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame, preserve_index=False)
    meta = json.loads(table.schema.metadata[b"pandas"])
    meta.pop("pandas_version", None)
    meta.pop("creator", None)
    table = table.replace_schema_metadata({**table.schema.metadata, b"pandas": json.dumps(meta).encode()})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def parquet_columns(path: str | os.PathLike) -> list[str]:
    """The column names of a parquet file; an unreadable one raises ``ValueError`` naming it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_schema(path).names
    except pa.ArrowException as e:
        raise ValueError(f"{path}: not a readable parquet file ({e})") from None


def parquet_records(path: str | os.PathLike) -> list[dict]:
    """The rows of a parquet file as JSON values (numpy arrays -> lists, numpy scalars -> Python), nested ones too."""
    import pandas as pd

    return [_plain(r) for r in pd.read_parquet(path).to_dict("records")]


def _plain(value: Any) -> Any:
    import numpy as np

    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_plain(v) for v in value]
    return value.item() if isinstance(value, np.generic) else value


def iter_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, dict]]:
    """Yield ``(line_number, object)`` for each non-blank line of a JSON-lines file (numbers start at 1).

    A line that is not UTF-8 or not a JSON object raises ``ValueError`` naming file and line.
    """
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise ValueError(f"{path}:{lineno}: not UTF-8 text ({e.reason} at byte {e.start} of the line)") \
                    from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise ValueError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
            yield lineno, row


def weights_fingerprint(directory: str | os.PathLike) -> str:
    """A fingerprint of a model directory's weight files (names, sizes, modification times): a model trained again
    into the same directory is another model."""
    import hashlib

    files = sorted(p for p in Path(directory).iterdir() if p.suffix in (".safetensors", ".bin"))
    stats = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    return hashlib.sha256(json.dumps(stats).encode()).hexdigest()[:16]


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """Read a JSON-lines file; a line that is not a JSON object raises ``ValueError`` naming file and line."""
    return [row for _, row in iter_jsonl(path)]


def figure_png(fig) -> bytes:
    """A matplotlib figure as PNG bytes, without matplotlib's version stamp; the figure is closed."""
    import io

    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def save_figure(fig, path: str | os.PathLike) -> Path:
    """Save a matplotlib figure as PNG atomically and close it."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(figure_png(fig))
    return path
