"""MMAU question files (a JSON list; e.g. ``mmau-test-mini.json``) with clips under ``test-mini-audios/``."""

from __future__ import annotations

import json
import os
from pathlib import Path

from .records import Item, Skip, benchmark_item, check_choices, check_question, missing_fields, resolve_audio

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
        held = any(Path(path).glob("*.parquet")) or any((Path(path) / f).is_file()
                                                         for f in ("dataset_dict.json", "state.json"))
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
