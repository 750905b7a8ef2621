"""MMAU test-mini, scored as ``evaluation.py`` of Sakshi113/MMAU: the token rule (:mod:`.token_rule`), accuracy per
task (sound, music, speech), difficulty (easy, hard, medium), sub-category and in total, as percentages rounded like
its ``:.2f``; records without ``model_output`` (or with a null one, which crashes it) are dropped likewise."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Iterable, Sequence

from .common import DEFAULT_KEY, LEGACY_KEY, UNKNOWN_VERSION, order_zero
from .token_rule import TokenRuleBenchmark

# question_set_hash (sha256 over sorted [id, question, sorted(choices), answer] rows) of each MMAU test-mini file.
VERSIONS = {
    "5715d8768daabad59a0c8a0a614dbd60313a74400545f9f2fc7784d23cca84a6": "2025-01-28",
    "f22b34ee416ec7a1afbb65c02a5c09456b7b9ae5163ee27c01540bbb018b19e8": "v05.15.25",
}
TASKS = ("sound", "music", "speech")  # the official script's order; it always prints all three
DIFFICULTIES = ("easy", "hard", "medium")


def question_set_hash(records: Iterable[dict]) -> str:
    """sha256 over the sorted ``[id, question, sorted(choices), answer]`` rows (option order does not matter)."""
    rows = sorted([r.get("id"), r.get("question"), sorted(r.get("choices") or []), r.get("answer")]
                  for r in order_zero(list(records)))
    return hashlib.sha256(json.dumps(rows, ensure_ascii=False).encode("utf-8")).hexdigest()


def mmau_version(records: Iterable[dict]) -> str:
    """Which MMAU test-mini question file the records come from: "2025-01-28", "v05.15.25" or "unknown".

    "unknown" for any other question set, including a subset (``--limit``) or edited questions of a known file.
    """
    return VERSIONS.get(question_set_hash(records), UNKNOWN_VERSION)


class MMAU(TokenRuleBenchmark):
    name = "mmau"
    title = "MMAU"
    file_format = "an MMAU JSON file (a list)"
    key = DEFAULT_KEY
    other_key = LEGACY_KEY
    rule = "official MMAU token match (Sakshi113/MMAU evaluation.py)"
    groups = {"task": ("task", TASKS, "unknown"), "difficulty": ("difficulty", DIFFICULTIES, "unknown"),
              "sub-category": ("sub-category", (), None)}
    panel_groups = (("Task", "task"), ("Difficulty", "difficulty"))
    sweep_group = "task"
    clip_field = "audio_id"

    def read(self, data: Path, audio_dir: str | Path | None) -> list[dict]:
        from ..data.mmau import load_mmau

        return load_mmau(data, audio_dir if audio_dir is not None else data.parent)

    def looks_like(self, data: Path) -> bool:
        return first_byte(data) == b"["

    def owns(self, record: dict) -> bool:
        return "audio_id" in record or {"task", "difficulty"} <= set(record)

    def version(self, items: Sequence[dict]) -> str | None:
        return mmau_version(items)

    def extra(self, records: list[dict]) -> dict:
        return {"version": mmau_version(records)}

    def warnings(self, records: list[dict]) -> list[str]:
        if mmau_version(records) != UNKNOWN_VERSION:
            return []
        return ["the questions match neither MMAU test-mini file (2025-01-28, v05.15.25): a subset or edited "
                "questions; scores are not comparable with published ones"]


def first_byte(data: Path) -> bytes | None:
    """The first non-blank byte of a file (``None`` for a directory, a parquet or an empty file)."""
    if data.is_dir() or data.suffix == ".parquet":
        return None
    with open(data, "rb") as f:
        return f.read(64).lstrip()[:1] or None


BENCHMARK = MMAU()
