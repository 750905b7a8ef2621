"""Resumable generation runs (``eval``, ``filter``): finished records go to ``OUTPUT.partial.jsonl`` as they come.

The first line of a partial file holds the run's settings; each further line is one finished record, flushed and
synced per batch. A rerun with the same settings reads the finished records back (a line torn by a kill is cut off)
and does only the rest, so its final output is identical to an uninterrupted run's; other settings are refused.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Hashable, Iterable, Iterator, Sequence, TypeVar

RUN_KEY = "_r1_aqa_eval_run"  # first line of a partial file: the settings it was produced with

T = TypeVar("T")
U = TypeVar("U")


def partial_path(output: str | os.PathLike) -> Path:
    """Where a run appends its finished records until the final file is written."""
    output = Path(output)
    return output.with_name(output.name + ".partial.jsonl")


class PartialRecords:
    """The finished records of a run writing ``output``, keyed by ``key(record)``; ``compared`` names the settings
    that must match for a partial file to be resumed. Use as a context manager around :meth:`add`."""

    def __init__(self, output: str | os.PathLike, settings: dict, compared: Sequence[str],
                 key: Callable[[dict], Hashable]):
        self.path = partial_path(output)
        self.settings = settings
        self.compared = tuple(compared)
        self.key = key
        self.done: dict[Hashable, dict] = self._read() if self.path.exists() else {}
        self._file = None

    def _read(self) -> dict[Hashable, dict]:
        """Records already finished; a torn last line (killed mid-write) is dropped and cut from the file."""
        done: dict[Hashable, dict] = {}
        with open(self.path, "rb+") as f:
            lines = f.read().split(b"\n")
            good = 0
            for lineno, line in enumerate(lines, start=1):
                if lineno == len(lines):  # after the last newline: empty, or a write cut short
                    f.truncate(good)
                    break
                if not line.strip():
                    good += len(line) + 1
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    raise ValueError(f"{self.path}:{lineno}: not valid JSON; delete the file to start over") from None
                good += len(line) + 1
                if lineno == 1:
                    self._check_settings(row.get(RUN_KEY, {}))
                    continue
                done.setdefault(self.key(row), row)
        return done

    def _check_settings(self, saved: dict) -> None:
        saved = {k: saved.get(k) for k in self.compared}
        wanted = {k: self.settings.get(k) for k in self.compared}
        if saved != wanted:
            diff = {k: (saved[k], wanted[k]) for k in self.compared if saved[k] != wanted[k]}
            raise ValueError(f"{self.path}: made with other settings {diff} (saved, now); delete it to start over")

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
        """Delete the partial file (once the final output is written)."""
        self.path.unlink(missing_ok=True)


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
