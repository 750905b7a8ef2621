"""Resumable generation runs (``eval``, ``filter``): finished records go to ``OUTPUT.partial.jsonl`` as they come.

The first line of a partial file holds the run's settings; each further line is one finished record, flushed and
synced per batch. A rerun with the same settings reads the finished records back (a line torn by a kill is cut off)
and does only the rest, so its final output is identical to an uninterrupted run's; other settings are refused.
Workers that share a run each write their own share, ``OUTPUT.partial.K-of-S.jsonl``, and read everyone's.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Hashable, Iterable, Iterator, Sequence, TypeVar

RUN_KEY = "_r1_aqa_eval_run"  # first line of a partial file: the settings it was produced with

T = TypeVar("T")
U = TypeVar("U")


def partial_path(output: str | os.PathLike, shard: int = 0, shards: int = 1) -> Path:
    """Where a run appends its finished records of share ``shard`` of ``shards`` until the final file is written:
    ``OUTPUT.partial.jsonl`` for a single process, ``OUTPUT.partial.K-of-S.jsonl`` for a worker's share."""
    output = Path(output)
    share = f".{shard}-of-{shards}" if shards > 1 else ""
    return output.with_name(f"{output.name}.partial{share}.jsonl")


def partial_paths(output: str | os.PathLike) -> list[Path]:
    """Every partial file of ``output``, whatever number of workers wrote them."""
    output = Path(output)
    if not output.parent.is_dir():
        return []
    name = re.compile(re.escape(output.name) + r"\.partial(\.\d+-of-\d+)?\.jsonl")
    return sorted(p for p in output.parent.iterdir() if name.fullmatch(p.name))


def drop_stale(output: str | os.PathLike, settings: dict, compared: Sequence[str]) -> None:
    """Delete the partial files of ``output`` made with other ``compared`` settings (or unreadable ones); those made
    with these settings stay, so a killed ``--overwrite`` run resumes when started again."""
    for path in partial_paths(output):
        with open(path, "rb") as f:
            first = f.readline()
        try:
            saved = json.loads(first).get(RUN_KEY)
        except (json.JSONDecodeError, AttributeError):
            saved = None
        if not isinstance(saved, dict) or settings_diff(saved, settings, compared):
            path.unlink(missing_ok=True)


def settings_diff(saved: dict, wanted: dict, compared: Sequence[str]) -> dict:
    """``{name: (saved, wanted)}`` for each of ``compared`` whose values differ."""
    return {k: (saved.get(k), wanted.get(k)) for k in compared if saved.get(k) != wanted.get(k)}


@contextlib.contextmanager
def locked(directory: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive lock on ``directory`` for the block (workers merging outputs there take turns)."""
    import fcntl

    Path(directory).mkdir(parents=True, exist_ok=True)
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


class PartialRecords:
    """The finished records of a run writing ``output``, keyed by ``key(record)``; ``compared`` names the settings
    that must match for a partial file to be resumed. Use as a context manager around :meth:`add`.

    A worker writing share ``shard`` of ``shards`` appends to its own file and starts from the records of every
    partial file of ``output`` (another worker's torn last line is skipped, never cut: it may be mid-write).
    """

    def __init__(self, output: str | os.PathLike, settings: dict, compared: Sequence[str],
                 key: Callable[[dict], Hashable], shard: int = 0, shards: int = 1):
        self.output = Path(output)
        self.path = partial_path(output, shard, shards)
        self.settings = settings
        self.compared = tuple(compared)
        self.key = key
        self.done: dict[Hashable, dict] = self.collect(repair=True)
        self._file = None

    def collect(self, repair: bool = False) -> dict[Hashable, dict]:
        """The records finished in every partial file of the output; ``repair`` cuts a torn line from this share's."""
        done: dict[Hashable, dict] = {}
        for path in partial_paths(self.output):
            for key, record in self._read(path, repair and path == self.path).items():
                done.setdefault(key, record)
        return done

    def _read(self, path: Path, repair: bool) -> dict[Hashable, dict]:
        """Records finished in ``path``; a torn last line (killed mid-write) is dropped, and cut if ``repair``."""
        done: dict[Hashable, dict] = {}
        with open(path, "rb+" if repair else "rb") as f:
            lines = f.read().split(b"\n")
            good = 0
            for lineno, line in enumerate(lines, start=1):
                if lineno == len(lines):  # after the last newline: empty, or a write cut short
                    if repair:
                        f.truncate(good)
                    break
                if not line.strip():
                    good += len(line) + 1
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    raise ValueError(f"{path}:{lineno}: not valid JSON; delete the file to start over") from None
                good += len(line) + 1
                if lineno == 1:
                    self._check_settings(path, row.get(RUN_KEY, {}))
                    continue
                done.setdefault(self.key(row), row)
        return done

    def _check_settings(self, path: Path, saved: dict) -> None:
        diff = settings_diff(saved, self.settings, self.compared)
        if diff:
            raise ValueError(f"{path}: made with other settings {diff} (saved, now); delete it to start over")

    def todo(self, jobs: Iterable[dict]) -> list[dict]:
        """The jobs whose records are not finished yet (a job's key is its record's key)."""
        return [job for job in jobs if self.key(job) not in self.done]

    def __enter__(self) -> PartialRecords:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new_file = not self.path.exists() or self.path.stat().st_size == 0
        self._file = open(self.path, "a", encoding="utf-8")
        if new_file:
            self._file.write(json.dumps({RUN_KEY: self.settings}, ensure_ascii=False) + "\n")
        return self

    def add(self, records: Iterable[dict]) -> None:
        """Record finished records and make them durable (one flush and fsync per call)."""
        for record in records:
            self.done[self.key(record)] = record
            self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def __exit__(self, *exc) -> None:
        self._file.close()
        self._file = None

    def remove(self) -> None:
        """Delete the partial files of every share (once the final output is written)."""
        for path in partial_paths(self.output):
            path.unlink(missing_ok=True)


def prefetched(batches: Sequence[T], load: Callable[[T], U]) -> Iterator[tuple[T, U]]:
    """``(batch, load(batch))`` in order, loading the next batch in a thread while the caller works on this one."""
    if not batches:
        return
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(load, batches[0])
        for i, batch in enumerate(batches):
            loaded = pending.result()
            if i + 1 < len(batches):
                pending = pool.submit(load, batches[i + 1])
            yield batch, loaded
