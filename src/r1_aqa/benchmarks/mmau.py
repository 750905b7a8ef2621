"""MMAU test-mini, scored as ``evaluation.py`` of Sakshi113/MMAU: the token rule (:mod:`.token_rule`), accuracy per
task (sound, music, speech), difficulty (easy, hard, medium), sub-category and in total, as percentages rounded like
its ``:.2f``; records without ``model_output`` (or with a null one, which crashes it) are dropped likewise. Its
question file is a JSON list (e.g. ``mmau-test-mini.json``) with clips under ``test-mini-audios/``."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from pathlib import Path
from typing import Iterable, Sequence

from ..items import (Item, Skip, benchmark_item, check_choices, check_question, is_saved_dataset, missing_fields,
                     resolve_audio)
from .common import DEFAULT_KEY, LEGACY_KEY, UNKNOWN_VERSION, order_zero
from .token_rule import TokenRuleBenchmark

# question_set_hash (sha256 over sorted [id, question, sorted(choices), answer] rows) of each MMAU test-mini file.
VERSIONS = {
    "5715d8768daabad59a0c8a0a614dbd60313a74400545f9f2fc7784d23cca84a6": "2025-01-28",
    "f22b34ee416ec7a1afbb65c02a5c09456b7b9ae5163ee27c01540bbb018b19e8": "v05.15.25",
}
TASKS = ("sound", "music", "speech")  # the official script's order; it always prints all three
DIFFICULTIES = ("easy", "hard", "medium")
FIELDS = ("id", "audio_id", "question", "choices", "answer")


def answer_index(choices: list, answer: str) -> int | None:
    """Position of ``answer`` in ``choices`` (the first, as some items repeat a choice), or None."""
    return choices.index(answer) if isinstance(choices, list) and answer in choices else None


def load_mmau(path: str | os.PathLike, audio_dir: str | os.PathLike | None = None) -> list[dict]:
    """The MMAU records of ``path``, each with ``audio`` (absolute path of its clip, or None when it is not found
    under ``audio_dir``, which defaults to the file's directory) and ``answer_idx`` (None if not in the choices).

    Raises ``ValueError`` naming the file when it is not valid JSON or not a list of objects.
    """
    mmsu = " (MMSU data? that is `prepare mmsu` / `eval --benchmark mmsu`)"
    if Path(path).is_dir():  # MMSU's HF format is parquet files or a save_to_disk directory
        held = any(Path(path).glob("*.parquet")) or is_saved_dataset(path)
        raise IsADirectoryError(f"{path}: is a directory, not an MMAU JSON file{mmsu if held else ''}")
    if Path(path).suffix == ".parquet":
        raise ValueError(f"{path}: not an MMAU JSON file{mmsu}")
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of MMAU records, got {type(data).__name__}")
    audio_dir = Path(path).parent if audio_dir is None else audio_dir
    records = []
    for i, rec in enumerate(data):
        if not isinstance(rec, dict):
            raise ValueError(f"{path}: record {i + 1} is not a JSON object")
        audio_id = rec.get("audio_id")
        records.append({**rec, "audio": resolve_audio(audio_id, audio_dir) if isinstance(audio_id, str) else None,
                        "answer_idx": answer_index(rec.get("choices"), rec.get("answer"))})
    return records


def read_mmau(path: str | os.PathLike, audio_dir: str | os.PathLike | None = None) -> tuple[list, int]:
    """``Item``/``Skip`` rows of an MMAU file (``line`` is the 1-based record number); all original fields are
    kept as extra columns. Items whose answer is not among the choices or whose clip is missing are skipped."""
    records = load_mmau(path, audio_dir)
    rows: list[Item | Skip] = []
    for line, rec in enumerate(records, start=1):
        rid = None if rec.get("id") is None else str(rec["id"])
        reason = missing_fields(rec, FIELDS) or check_choices(rec["choices"]) or check_question(rec["question"])
        if reason is None and rec["answer_idx"] is None:
            reason = f"answer {rec['answer']!r} not in choices"
        if reason is None and rec["audio"] is None:
            reason = f"audio not found: {rec['audio_id']!r}"
        if reason is not None:
            rows.append(Skip(line, rid, reason))
            continue
        rows.append(benchmark_item(line, rid, rec, "mmau"))
    return rows, len(records)


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
    prepare_help = "MMAU question file (JSON list)"
    prepare_description = "MMAU (e.g. mmau-test-mini.json); keeps all original fields as columns."
    prepare_input = ("JSON", "MMAU JSON question file")
    prepare_audio_dir = "directory holding test-mini-audios/ (or the clips themselves); None: the JSON's dir"

    def read(self, data: Path, audio_dir: str | Path | None) -> list[dict]:
        return load_mmau(data, audio_dir)

    def prepare_rows(self, args: argparse.Namespace) -> tuple[list, int]:
        return read_mmau(args.input, args.audio_dir)

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
