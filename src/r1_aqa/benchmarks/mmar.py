"""MMAR, scored as ``code/evaluation.py`` of ddlBoJack/MMAR: MMAU's token rule (:mod:`.token_rule`) on the key
``answer_prediction``, accuracy per modality, category and sub-category; records without the key are dropped. Its
question file is ``MMAR-meta.jsonl`` (one JSON object a line), clips at ``audio_path`` under an audio dir."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..items import Item, Skip, benchmark_item, check_choices, missing_fields, resolve_audio
from .common import DEFAULT_KEY
from .mmau import first_byte
from .token_rule import TokenRuleBenchmark

KEY = "answer_prediction"  # what MMAR's scorer reads
MODALITIES = ("sound", "music", "speech", "mix-sound-music", "mix-sound-speech", "mix-music-speech",
              "mix-sound-music-speech")
CATEGORIES = ("Signal Layer", "Perception Layer", "Semantic Layer", "Cultural Layer")
FIELDS = ("id", "audio_path", "question", "choices", "answer", "modality", "category", "sub-category")


def load_mmar(path: str | os.PathLike, audio_dir: str | os.PathLike | None = None) -> list[dict]:
    """The MMAR records of ``path``: the original fields plus ``audio`` (absolute path of the clip, None when it is
    not found under ``audio_dir``, which defaults to the file's directory) and ``answer_idx``.

    The question file is not expected to be dirty: a line that is not a JSON object, lacks one of ``FIELDS``, has
    choices that are not a list of strings, a non-string question or audio path, an answer outside its choices or a
    repeated id raises ``ValueError`` naming the file and line.
    """
    from ..files import iter_jsonl

    audio_dir = Path(path).parent if audio_dir is None else audio_dir
    records, seen = [], {}
    for line, rec in iter_jsonl(path):
        reason = missing_fields(rec, FIELDS) or check_choices(rec["choices"])
        if reason is None and rec["answer"] not in rec["choices"]:
            reason = f"answer {rec['answer']!r} is not one of its choices {rec['choices']!r}"
        for field in ("question", "audio_path"):
            if reason is None and not isinstance(rec[field], str):
                reason = f"{field} must be a string, got {rec[field]!r}"
        if reason is None and str(rec["id"]) in seen:
            reason = f"id {rec['id']!r} already on line {seen[str(rec['id'])]}"
        if reason is not None:
            raise ValueError(f"{path}:{line}: {reason}")
        seen[str(rec["id"])] = line
        records.append({**rec, "audio": resolve_audio(rec["audio_path"], audio_dir),
                        "answer_idx": rec["choices"].index(rec["answer"])})
    return records


def read_mmar(path: str | os.PathLike, audio_dir: str | os.PathLike | None = None) -> tuple[list, int]:
    """``Item``/``Skip`` rows of MMAR (``line`` is the 1-based record number); all original fields are kept as extra
    columns (``thinking`` is the reference rationale). Items whose clip is missing are skipped; a malformed question
    file raises (see :func:`load_mmar`)."""
    records = load_mmar(path, audio_dir)
    rows: list[Item | Skip] = []
    for line, rec in enumerate(records, start=1):
        rid = str(rec["id"])
        if rec["audio"] is None:
            rows.append(Skip(line, rid, f"audio not found: {rec['audio_path']!r}"))
            continue
        rows.append(benchmark_item(line, rid, rec, "mmar"))
    return rows, len(records)


class MMAR(TokenRuleBenchmark):
    name = "mmar"
    title = "MMAR"
    file_format = "an MMAR JSON-lines file"
    key = KEY
    other_key = DEFAULT_KEY
    rule = "MMAU token match on answer_prediction (ddlBoJack/MMAR evaluation.py)"
    groups = {"modality": ("modality", MODALITIES, None), "category": ("category", CATEGORIES, None),
              "sub-category": ("sub-category", (), None)}
    panel_groups = (("Modality", "modality"), ("Category", "category"))
    sweep_group = "modality"
    clip_field = "audio_path"
    prepare_help = "MMAR question file (MMAR-meta.jsonl)"
    prepare_description = ("MMAR (MMAR-meta.jsonl: id, audio_path, question, choices, answer, modality, category, "
                           "sub-category, thinking, ...); keeps all original fields as columns. A malformed line "
                           "(missing key, answer outside its choices) stops with its line number; items whose clip is "
                           "missing are skipped and reported.")
    prepare_input = ("JSONL", "MMAR-meta.jsonl")
    prepare_audio_dir = "directory holding audio/ (clips are audio_path under it); None: the JSONL's dir"

    def read(self, data: Path, audio_dir: str | Path | None) -> list[dict]:
        return load_mmar(data, audio_dir)

    def prepare_rows(self, args: argparse.Namespace) -> tuple[list, int]:
        return read_mmar(args.input, args.audio_dir)

    def looks_like(self, data: Path) -> bool:
        return first_byte(data) == b"{"

    def owns(self, record: dict) -> bool:
        return {"audio_path", "modality"} <= set(record)

    def prediction_fields(self, answer: str | None, think: str | None, template: str) -> dict:
        return {"answer_prediction": answer, **({"thinking_prediction": think} if template == "think" else {})}


BENCHMARK = MMAR()
