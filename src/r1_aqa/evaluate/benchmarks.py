"""Benchmark input: reading a benchmark's own file (its module in :mod:`r1_aqa.benchmarks` reads it) or a prepared
parquet into items, checking their clips, loading a clip as the engines take it, and the option orders of
``--permutations``."""

from __future__ import annotations

import math
import os
import random
from collections import Counter
from pathlib import Path
from typing import Sequence

from ..benchmarks import detect, get_benchmark, sniff


def load_items(benchmark: str, data: str | os.PathLike, audio_dir: str | os.PathLike | None = None,
               limit: int | None = None) -> list[dict]:
    """Benchmark records with an ``audio`` source (absolute path or bytes), in file order; ids must be unique.

    ``data`` is the benchmark's own file (the MMAU JSON, MMSU in its HF format, MMAR-meta.jsonl, ...) or a parquet
    written by ``r1-aqa prepare``.
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
    spec = get_benchmark(benchmark)
    if spec.reads_parquet:
        return spec.read(data, audio_dir)
    if _is_prepared(data):
        from ..files import parquet_records

        records = parquet_records(data)
        found = None if spec.any_prepared else detect(records)  # e.g. any prepared parquet can be judged
        if found is not None and found != benchmark:
            raise ValueError(f"{data}: prepared from {found.upper()} data, not {benchmark.upper()}: use --benchmark "
                             f"{found}")
        return records
    found = sniff(data) if spec.file_format else None  # a benchmark without a file of its own reads none
    if found is not None and found is not spec:
        raise ValueError(f"{data}: looks like {found.file_format}, not {benchmark.upper()} data: use --benchmark "
                         f"{found.name}")
    return spec.read(data, audio_dir)


def _is_prepared(data: Path) -> bool:
    """Whether ``data`` is a parquet written by ``r1-aqa prepare`` (all its columns; ``audio`` an absolute path)."""
    if data.suffix != ".parquet" or not data.is_file():
        return False
    from ..files import parquet_columns
    from ..items import COLUMNS

    return set(COLUMNS) <= set(parquet_columns(data))


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
