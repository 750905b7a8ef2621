"""The judge's on-disk cache: one SQLite file, keyed by the exact judge input.

A chat reply is stored under the sha256 of ``{model identity, messages, sampling settings}`` (the messages hold the
question, the reference answer or rubric line and the response), an embedding under the sha256 of ``{embedder
identity, text}``. A rerun, a resumed training run or a second scorer on the same predictions finds every reply
here and asks the judge nothing (the judge model is then not even loaded). Several processes may share the file
(SQLite locks it); each batch of new replies is committed at once, so an interrupted run keeps what it paid for.

A local model's identity is its resolved path and a fingerprint of its weight files: a model trained again into the
same directory is another judge. The cache remembers the fingerprint of each path it saw, so that a rerun whose
judge directory is gone still finds its replies.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from pathlib import Path

import numpy as np

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS replies (key TEXT PRIMARY KEY, reply TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS embeddings (key TEXT PRIMARY KEY, vector BLOB NOT NULL)",
    "CREATE TABLE IF NOT EXISTS models (path TEXT PRIMARY KEY, fingerprint TEXT NOT NULL)",
)


def input_key(**parts) -> str:
    """The cache key of a judge input: sha256 of its parts as canonical JSON."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


class JudgeCache:
    """Replies and embeddings by input key, in the SQLite file ``path`` (created with its directory)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=120)
        for statement in _SCHEMA:
            self._db.execute(statement)
        self._db.commit()

    def replies(self, keys: list[str]) -> dict[str, str]:
        """The stored replies among ``keys``."""
        return self._get("SELECT key, reply FROM replies", keys)

    def add_replies(self, found: dict[str, str]) -> None:
        self._put("INSERT OR REPLACE INTO replies VALUES (?, ?)", found.items())

    def embeddings(self, keys: list[str]) -> dict[str, np.ndarray]:
        """The stored embeddings among ``keys`` (float32 vectors)."""
        return {k: np.frombuffer(v, dtype=np.float32) for k, v in
                self._get("SELECT key, vector FROM embeddings", keys).items()}

    def add_embeddings(self, found: dict[str, np.ndarray]) -> None:
        self._put("INSERT OR REPLACE INTO embeddings VALUES (?, ?)",
                  ((k, np.asarray(v, dtype=np.float32).tobytes()) for k, v in found.items()))

    def fingerprint(self, path: str) -> str | None:
        """The fingerprint last recorded for a local model path, if any."""
        row = self._db.execute("SELECT fingerprint FROM models WHERE path = ?", (path,)).fetchone()
        return None if row is None else row[0]

    def record_fingerprint(self, path: str, fingerprint: str) -> None:
        self._put("INSERT OR REPLACE INTO models VALUES (?, ?)", [(path, fingerprint)])

    def close(self) -> None:
        self._db.close()

    def _get(self, query: str, keys: list[str]) -> dict:
        found = {}
        for start in range(0, len(keys), 500):  # SQLite's bound-parameter limit
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            found.update(self._db.execute(f"{query} WHERE key IN ({marks})", chunk).fetchall())
        return found

    def _put(self, statement: str, rows) -> None:
        with self._db:
            self._db.executemany(statement, list(rows))
