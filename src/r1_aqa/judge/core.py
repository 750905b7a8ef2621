"""The judge as training and evaluation use it: batched, cached chat replies and embeddings, loaded on first need.

:class:`Judge` asks its chat backend only for the inputs its cache lacks (all of them in one batched call per
request), and its embedder likewise; neither backend is loaded while every answer is cached. ``stats`` counts the
calls it made, the cache hits and the seconds spent, which the training reward logs and scorers report.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from .backends import GREEDY, load_chat, load_embedder, model_identity
from .cache import JudgeCache, input_key
from .grading import parse_grade, parse_verdict, reference_messages, rubric_messages

CACHE_NAME = "judge_cache.sqlite"


@dataclass
class JudgeStats:
    """What a judge did: replies and embeddings asked of its backends (``calls``, ``embedded``), answered from the
    cache (``hits``, ``embed_hits``), and the seconds spent in ``complete``/``embed`` (cache look-ups included)."""

    calls: int = 0
    hits: int = 0
    embedded: int = 0
    embed_hits: int = 0
    seconds: float = 0.0
    unparsable: int = 0
    loaded: list[str] = field(default_factory=list)


BACKEND = {"batch_size": 8, "timeout": 120.0, "retries": 3, "dtype": "auto"}  # the backends' defaults


class Judge:
    """An LLM judge (``model``: a directory, hub id, ``vllm:DIR`` or ``http(s)://`` endpoint) and an embedder
    (``embed_model``, the same spec kinds but ``vllm:``), behind one cache file (``cache``). ``sampling``:
    ``temperature`` (0: greedy), ``max_new_tokens`` and ``seed`` of every reply; they are part of each cache key.
    ``backend``: how the backends run (``BACKEND``'s keys: batch size, HTTP timeout and retries, dtype).
    ``trust_remote_code``: a local embedder may run its own model code (NV-Embed-v2, MMAU-Pro's official embedder,
    ships it)."""

    def __init__(self, model: str | None, cache: str | os.PathLike, embed_model: str | None = None,
                 sampling: dict | None = None, backend: dict | None = None, trust_remote_code: bool = False):
        self.specs = {"chat": model, "embed": embed_model}
        self.sampling = {**GREEDY, **(sampling or {})}
        unknown = set(backend or {}) - set(BACKEND)
        if unknown:
            raise ValueError(f"Judge backend options: unknown {sorted(unknown)} (known: {sorted(BACKEND)})")
        self.options = {**BACKEND, **(backend or {})}
        self.trust_remote_code = trust_remote_code
        self.cache = JudgeCache(cache)
        self.stats = JudgeStats()
        self._backends: dict[str, object] = {}
        self._identities: dict[str, dict] = {}

    # ------------------------------------------------------------------------------------------------- chat replies
    def complete(self, chats: Sequence[list[dict]]) -> list[str]:
        """The judge's reply to each chat: from the cache, else from the backend (one batched call for the misses)."""
        start = time.monotonic()
        keys = [input_key(model=self.identity("chat"), messages=c, sampling=self.sampling) for c in chats]
        found = self.cache.replies(list(dict.fromkeys(keys)))
        todo = {k: c for k, c in zip(keys, chats) if k not in found}
        if todo:
            replies = self._backend("chat").complete(list(todo.values()), self.sampling)
            new = dict(zip(todo, replies, strict=True))
            self.cache.add_replies(new)
            found.update(new)
        self.stats.calls += len(todo)
        self.stats.hits += len(keys) - len(todo)
        self.stats.seconds += time.monotonic() - start
        return [found[k] for k in keys]

    def grade(self, questions: Sequence[str], references: Sequence[str], responses: Sequence[str]
              ) -> list[float | None]:
        """Each response's grade against its reference answer in [0, 1] (``None``: the reply was unparsable)."""
        replies = self.complete([reference_messages(q, r, a) for q, r, a in
                                 zip(questions, references, responses, strict=True)])
        return self._count([parse_grade(r) for r in replies])

    def verdicts(self, questions: Sequence[str], lines: Sequence[str], responses: Sequence[str]
                 ) -> list[float | None]:
        """1.0/0.0 for each (question, rubric line, response): met or not (``None``: unparsable)."""
        replies = self.complete([rubric_messages(q, line, a) for q, line, a in
                                 zip(questions, lines, responses, strict=True)])
        return self._count([parse_verdict(r) for r in replies])

    # --------------------------------------------------------------------------------------------------- embeddings
    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised embeddings of ``texts`` (one row each), cached per text."""
        start = time.monotonic()
        keys = [input_key(embedder=self.identity("embed"), text=t) for t in texts]
        found = self.cache.embeddings(list(dict.fromkeys(keys)))
        todo = {k: t for k, t in zip(keys, texts) if k not in found}
        if todo:
            new = dict(zip(todo, self._backend("embed").embed(list(todo.values())), strict=True))
            self.cache.add_embeddings(new)
            found.update(new)
        self.stats.embedded += len(todo)
        self.stats.embed_hits += len(keys) - len(todo)
        self.stats.seconds += time.monotonic() - start
        return np.stack([found[k] for k in keys]) if keys else np.zeros((0, 0), dtype=np.float32)

    def nearest(self, texts: Sequence[str], candidates: Sequence[Sequence[str]]) -> list[tuple[int, float]]:
        """For each text, ``(index, cosine similarity)`` of its most similar candidate (the first on a tie)."""
        flat = [c for group in candidates for c in group]
        vectors = self.embed(list(texts) + flat)
        found, at = [], len(texts)
        for i, group in enumerate(candidates):
            if not group:
                raise ValueError(f"text {i}: no candidates to match")
            sims = vectors[at : at + len(group)] @ vectors[i]
            at += len(group)
            best = int(np.argmax(sims))
            found.append((best, float(sims[best])))
        return found

    # ------------------------------------------------------------------------------------------------------ helpers
    def identity(self, kind: str) -> dict:
        """What names a backend in cache keys: its spec (a local directory resolved) and, for a local directory,
        its weights' fingerprint (read from the cache when the directory is gone)."""
        if kind not in self._identities:
            from ..files import weights_fingerprint

            spec = self.specs[kind]
            if spec is None:
                raise ValueError(f"no {'--judge-model' if kind == 'chat' else '--embed-model'} given")
            name, local = model_identity(spec)
            fingerprint = None
            if local is not None:
                if Path(local).is_dir():
                    fingerprint = weights_fingerprint(local)
                    self.cache.record_fingerprint(local, fingerprint)
                else:
                    fingerprint = self.cache.fingerprint(local)
            self._identities[kind] = {"model": name, "weights": fingerprint}
        return self._identities[kind]

    def _backend(self, kind: str):
        if kind not in self._backends:
            if kind == "chat":
                self._backends[kind] = load_chat(self.specs[kind], **self.options)
            else:
                self._backends[kind] = load_embedder(self.specs[kind], **self.options,
                                                     trust_remote_code=self.trust_remote_code)
            self.stats.loaded.append(kind)
        return self._backends[kind]

    def _count(self, values: list[float | None]) -> list[float | None]:
        self.stats.unparsable += sum(v is None for v in values)
        return values

    def close(self) -> None:
        """Free the backends (an in-process vLLM engine is shut down) and close the cache."""
        for backend in self._backends.values():
            getattr(backend, "close", lambda: None)()
        self._backends.clear()
        self.cache.close()
