"""Benchmark input: reading MMAU, MMSU, MMAR and prepared parquets into items, checking their clips, loading a clip
as the engines take it, and the option orders of ``--permutations``."""

from __future__ import annotations

import math
import os
import random
from collections import Counter
from pathlib import Path
from typing import Sequence

def load_items(benchmark: str, data: str | os.PathLike, audio_dir: str | os.PathLike | None = None,
               limit: int | None = None) -> list[dict]:
    """Benchmark records with an ``audio`` source (absolute path or bytes), in file order; ids must be unique.

    ``data`` is the MMAU JSON, an MMSU file in its HF format, MMAR-meta.jsonl, or a parquet written by
    ``r1-aqa prepare``.
    """
    data = Path(data)
    if not data.exists():
        raise FileNotFoundError(f"{data}: no such data file")
    try:
        records = _read_items(benchmark, data, audio_dir)
    except OSError as e:  # e.g. a directory where a file was expected
        raise ValueError(f"{data}: cannot be read ({e})") from None
    records = records[:limit] if limit is not None else records
    counts = Counter(str(r["id"]) for r in records)
    duplicates = sorted(i for i, n in counts.items() if n > 1)
    if duplicates:
        raise ValueError(f"{data}: {len(duplicates)} duplicate ids: {', '.join(duplicates[:20])}")
    return records


def _read_items(benchmark: str, data: Path, audio_dir: str | os.PathLike | None) -> list[dict]:
    if benchmark == "mmau-pro":
        from .mmau_pro import load_mmau_pro

        return load_mmau_pro(data, audio_dir)
    if _is_prepared(data):
        import pandas as pd

        from .scoring import detect_benchmark

        records = [_plain(r) for r in pd.read_parquet(data).to_dict("records")]
        found = None if benchmark == "open" else detect_benchmark(records)  # any prepared parquet can be judged
        if found is not None and found != benchmark:
            raise ValueError(f"{data}: prepared from {found.upper()} data, not {benchmark.upper()}: use --benchmark "
                             f"{found}")
        return records
    if benchmark == "open":
        raise ValueError(f"{data}: --benchmark open takes a parquet from `r1-aqa prepare open`")
    _check_format(data, benchmark)
    if benchmark == "mmau":
        from ..data.mmau import load_mmau

        return load_mmau(data, audio_dir if audio_dir is not None else data.parent)
    if benchmark == "mmar":
        from ..data.mmar import load_mmar

        return load_mmar(data, audio_dir)
    from ..data.mmsu import load_mmsu

    return load_mmsu(data)


def _is_prepared(data: Path) -> bool:
    """Whether ``data`` is a parquet written by ``r1-aqa prepare`` (all its columns; ``audio`` an absolute path)."""
    if data.suffix != ".parquet" or not data.is_file():
        return False
    from ..data.prepare import COLUMNS

    return set(COLUMNS) <= set(_schema(data))


_FORMATS = {"mmau": "an MMAU JSON file (a list)", "mmar": "an MMAR JSON-lines file",
            "mmsu": "MMSU data in its HF format (parquet files or a directory)"}


def _check_format(data: Path, benchmark: str) -> None:
    """Refuse one benchmark's own data under another's ``--benchmark``, naming the right flag."""
    if data.is_dir() or data.suffix == ".parquet":
        found = _parquet_kind(data)
    else:
        with open(data, "rb") as f:
            found = {b"[": "mmau", b"{": "mmar"}.get(f.read(64).lstrip()[:1])
    if found is not None and found != benchmark:
        raise ValueError(f"{data}: looks like {_FORMATS[found]}, not {benchmark.upper()} data: use --benchmark "
                         f"{found}")


def _parquet_kind(data: Path) -> str:
    """"mmsu" for MMSU in its HF format (a save_to_disk directory, or parquet files with its columns); anything else
    that is parquet raises ``ValueError`` saying what it is and what to pass instead."""
    from ..data.mmsu import FIELDS
    from ..data.prepare import COLUMNS

    if data.is_dir() and any((data / f).is_file() for f in ("dataset_dict.json", "state.json")):
        return "mmsu"
    files = [data] if data.is_file() else sorted(data.rglob("*.parquet"))
    if not files:
        raise ValueError(f"{data}: a directory with no parquet files, nor a datasets save_to_disk directory: pass "
                         "the benchmark's question file or a parquet from `r1-aqa prepare` as --data")
    names = set(_schema(files[0]))
    if data.is_dir() and set(COLUMNS) <= names:
        raise ValueError(f"{data}: a directory of parquet files from `r1-aqa prepare` ({files[0].name}"
                         f"{', ...' if len(files) > 1 else ''}): pass one of them as --data")
    if not set(FIELDS) <= names:
        raise ValueError(f"{files[0]}: neither MMSU's HF format (columns {', '.join(FIELDS)}, audio) nor a parquet "
                         f"from `r1-aqa prepare`; its columns: {', '.join(sorted(names))}")
    return "mmsu"


def _schema(path: Path) -> list[str]:
    """The column names of a parquet file; an unreadable one raises ``ValueError`` naming it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_schema(path).names
    except pa.ArrowException as e:
        raise ValueError(f"{path}: not a readable parquet file ({e})") from None


def _plain(value):
    """Parquet cells as JSON values (numpy arrays -> lists, numpy scalars -> Python), nested ones included."""
    import numpy as np

    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_plain(v) for v in value]
    return value.item() if isinstance(value, np.generic) else value


def check_permutations(items: Sequence[dict], permutations: int) -> None:
    """Refuse more option orders than the item with the fewest options has (``n!``)."""
    if permutations <= 1 or not items:
        return
    fewest = min(items, key=lambda r: len(r["choices"]))
    orders = math.factorial(len(fewest["choices"]))
    if permutations > orders:
        raise ValueError(f"--permutations {permutations}: item {fewest['id']} has {len(fewest['choices'])} options, "
                         f"so only {orders} distinct orders; use --permutations {orders} or less")


def check_audio(items: Sequence[dict], audio_dir: str | os.PathLike | None = None, shown: int = 20) -> None:
    """Decode every item's clip (with a progress bar) and raise one error listing each unusable one: missing, not
    audio, or empty (the first ``shown`` by id and reason, then a count)."""
    from concurrent.futures import ThreadPoolExecutor

    from tqdm import tqdm

    from ..audio import probe_audio

    def problem(record: dict) -> str | None:
        clips = record["audio"] if isinstance(record["audio"], list) else [record["audio"]]  # MMAU-Pro: several
        for k, audio in enumerate(clips):
            if audio is None or (isinstance(audio, str) and not os.path.isfile(audio)):
                named = record.get("audio_id") or record.get("audio_path")
                return f"{named[k] if isinstance(named, list) else named or audio}: file not found"
            try:
                probe_audio(encoded(audio))
            except ValueError as e:  # AudioError names the clip and the reason
                return str(e)
        return None

    with ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:
        found = list(tqdm(pool.map(problem, items), total=len(items), desc="check clips", unit="clip",
                          disable=len(items) < 100))
    bad = [(r["id"], reason) for r, reason in zip(items, found) if reason is not None]
    if bad:
        where = f" (looked under {audio_dir})" if audio_dir is not None else ""
        lines = "\n".join(f"  {i}: {reason}" for i, reason in bad[:shown])
        more = f"\n  ... and {len(bad) - shown} more" if len(bad) > shown else ""
        raise FileNotFoundError(f"{len(bad)} of {len(items)} audio clips are missing or unusable{where}:\n"
                                f"{lines}{more}")


def permuted(record: dict, k: int) -> dict:
    """``record`` with its options in order ``k``: 0 is the original, others a shuffle seeded by id and ``k``.

    ``answer_idx`` follows the answer; a ``prompt`` built for the original order is dropped.
    """
    if k == 0:
        return dict(record)
    choices = list(record["choices"])
    order = list(range(len(choices)))
    random.Random(f"{record['id']}/{k}").shuffle(order)
    out = {key: value for key, value in record.items() if key != "prompt"}
    out["choices"] = [choices[i] for i in order]
    if isinstance(record.get("answer_idx"), int):
        out["answer_idx"] = order.index(record["answer_idx"])
    return out


def expand(items: Sequence[dict], permutations: int) -> list[dict]:
    """Each item under ``permutations`` option orders (item-major); orders > 1 carry ``"permutation": k``."""
    if permutations < 1:
        raise ValueError(f"--permutations must be >= 1, got {permutations}")
    if permutations == 1:
        return [dict(r) for r in items]
    return [{**permuted(r, k), "permutation": k} for r in items for k in range(permutations)]


def clip(audio, max_seconds: float | None, silence: bool = False):
    """An item's clip as the engines take it (float32, 16 kHz, cut at ``max_seconds``); with ``silence``, zeros of
    the same length. An item with several clips (a list) gives a list of them, in order."""
    import numpy as np

    if isinstance(audio, list):
        return [clip(a, max_seconds, silence) for a in audio]
    from ..audio import load_audio

    wav = load_audio(encoded(audio), max_seconds=max_seconds)
    return np.zeros_like(wav) if silence else wav


def encoded(audio):
    """A path or encoded bytes for ``audio.load_audio``: a decoded ``(array, rate)`` pair becomes WAV bytes."""
    if not isinstance(audio, tuple):
        return audio
    import io

    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, audio[0], int(audio[1]), format="WAV", subtype="FLOAT")
    return buf.getvalue()
