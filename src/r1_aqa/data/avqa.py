"""AVQA readers: the R1-AQA JSONL and the ``gijs/avqa-processed`` layout (HF datasets saved to disk)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterator

from ..items import (Item, Skip, audio_source, check_choices, clip_name, load_hf_split, missing_fields,
                      resolve_audio)

JSONL_FIELDS = ("id", "question_text", "multi_choice", "answer", "audio_path")
# What ``--from-hf`` reads; shown by ``r1-aqa prepare avqa --help``.
HF_LAYOUT = (
    "The gijs/avqa-processed layout: a datasets save_to_disk directory (DatasetDict; --split picks the split) with "
    "columns audio (an Audio feature: encoded bytes and/or a path), question (the question, then a line 'Choices:' "
    "and one line per option 'A. text'), answer ('B. text' or 'B'), file_name (the clip's name; questions sharing a "
    "clip share it) and optionally id (else <split>-<row>). To build one, give datasets encoded bytes or paths "
    "({'bytes': ..., 'path': ...}), cast the column to datasets.Audio() and save_to_disk: encoding arrays needs "
    "torchcodec, which scripts/setup.sh removes."
)
_VIDEO = re.compile("video", re.IGNORECASE)
_CHOICES = re.compile(r"\n\s*Choices:\s*\n")
_OPTION = re.compile(r"^\s*([A-Z])(?:[.)]\s*(.*?))?\s*$")  # "B. text", "B) text" or a bare "B"


def video_to_audio(text: str) -> str:
    """Replace "video" with "audio" as R1-AQA does, keeping the case (Video -> Audio, VIDEO -> AUDIO)."""

    def swap(m: re.Match) -> str:
        word = m.group()
        return "AUDIO" if word.isupper() else "Audio" if word[0].isupper() else "audio"

    return _VIDEO.sub(swap, text)


def read_avqa_jsonl(path: str | os.PathLike, audio_dir: str | os.PathLike | None = None) -> tuple[list, int]:
    """Read the R1-AQA JSONL into ``Item``/``Skip`` rows and the count of rows in.

    A line that is not a JSON object raises ``ValueError`` naming it (before anything is probed or written).
    ``audio_dir`` defaults to the JSONL's directory.
    """
    from ..files import iter_jsonl

    audio_dir = Path(path).parent if audio_dir is None else audio_dir
    records = list(iter_jsonl(path))
    rows: list[Item | Skip] = []
    for line, rec in records:
        rid = None if rec.get("id") is None else str(rec["id"])
        reason = missing_fields(rec, JSONL_FIELDS) or check_choices(rec["multi_choice"], rec["answer"])
        if reason is None and not isinstance(rec["question_text"], str):
            reason = "question_text must be a string"
        audio = None
        if reason is None:
            audio = resolve_audio(str(rec["audio_path"]), audio_dir)
            if audio is None:
                reason = f"audio not found: {rec['audio_path']!r} (audio dir {audio_dir})"
        if reason is not None:
            rows.append(Skip(line, rid, reason))
            continue
        rows.append(Item(line=line, id=rid, question=video_to_audio(rec["question_text"]),
                         choices=rec["multi_choice"], answer_idx=rec["answer"],
                         dataset_name=str(rec.get("dataset_name") or "avqa"), audio=audio, clip=audio))
    return rows, len(records)


def parse_question(question: str, answer: str) -> tuple[str, list[str], int]:
    """Split a gijs-layout question ``"...?\\nChoices:\\nA. x\\nB. y"`` and answer ``"B. y"`` into
    (question, choices, answer index); raise ``ValueError`` with the reason when they do not fit together."""
    parts = _CHOICES.split(question, maxsplit=1)
    if len(parts) != 2:
        raise ValueError("question has no 'Choices:' list")
    options = [_OPTION.match(line) for line in parts[1].splitlines() if line.strip()]
    if not options or not all(m and m.group(2) is not None for m in options):
        raise ValueError("choices are not lines like 'A. text'")
    letters = [m.group(1) for m in options]
    choices = [m.group(2) for m in options]
    m = _OPTION.match(answer)
    if m is None or m.group(1) not in letters:
        raise ValueError(f"answer {answer!r} is not one of the choice letters {''.join(letters)}")
    idx = letters.index(m.group(1))
    if m.group(2) and m.group(2) != choices[idx]:
        raise ValueError(f"answer {answer!r} does not match choice {letters[idx]}. {choices[idx]!r}")
    return parts[0].strip(), choices, idx


def read_avqa_hf(path: str | os.PathLike, split: str = "train") -> tuple[Iterator, int]:
    """Read one split of the ``gijs/avqa-processed`` layout lazily (clips stay on disk until probed).

    Rows have ``audio`` (bytes/array/path), ``question`` with an embedded choice list, ``answer`` like "B. text" and
    ``file_name``; ids are the ``id`` field when present, else ``<split>-<row index>``.
    """
    ds = load_hf_split(path, split)

    def rows() -> Iterator[Item | Skip]:
        for i, rec in enumerate(ds):
            rid = str(rec["id"]) if rec.get("id") is not None else f"{split}-{i}"
            reason = missing_fields(rec, ("question", "answer", "audio"))
            if reason is None:
                try:
                    question, choices, idx = parse_question(rec["question"], rec["answer"])
                except ValueError as e:
                    reason = str(e)
            audio = None
            if reason is None:
                audio = audio_source(rec["audio"], path)
                if audio is None:
                    reason = "audio missing (no bytes, array or existing path)"
            if reason is not None:
                yield Skip(i + 1, rid, reason)
                continue
            name = Path(rec["file_name"]).stem if rec.get("file_name") else rid  # questions share clips
            yield Item(line=i + 1, id=rid, question=video_to_audio(question), choices=choices, answer_idx=idx,
                       dataset_name="avqa", audio=audio, clip=audio if isinstance(audio, str) else clip_name(name))

    return rows(), len(ds)
