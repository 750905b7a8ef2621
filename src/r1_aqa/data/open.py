"""Open-ended items (no options): a JSON-lines file of ``id``, ``question``, ``audio_path``, a ``reference`` answer
and/or ``rubric`` lines (optional ``rubric_weights``, one number >= 0 per line, 1 each by default), as
``r1-aqa synth --task open`` writes them; clips at ``audio_path`` under an audio dir. Every other field is kept."""

from __future__ import annotations

import os
from pathlib import Path

from .records import Item, Skip, check_question, resolve_audio

FIELDS = ("id", "question", "audio_path", "reference", "rubric", "rubric_weights")


def _problem(rec: dict) -> str | None:
    """Why an open-ended record is malformed, or None."""
    missing = [k for k in ("id", "question", "audio_path") if rec.get(k) is None]
    if missing:
        return f"missing field(s): {', '.join(missing)}"
    reason = check_question(rec["question"])
    if reason is not None:
        return reason
    if not isinstance(rec["audio_path"], str):
        return f"audio_path must be a string, got {rec['audio_path']!r}"
    reference, rubric = rec.get("reference"), rec.get("rubric")
    if reference is not None and (not isinstance(reference, str) or not reference.strip()):
        return "reference must be a non-empty string"
    if rubric is not None and (not isinstance(rubric, list) or not all(isinstance(x, str) and x.strip()
                                                                       for x in rubric)):
        return "rubric must be a list of non-empty strings"
    if reference is None and not rubric:
        return "neither a reference answer nor rubric lines: nothing to judge an answer against"
    weights = rec.get("rubric_weights")
    if weights is not None:
        if not isinstance(weights, list) or len(weights) != len(rubric or []):
            return f"rubric_weights must be a list of {len(rubric or [])} numbers (one per rubric line)"
        if not all(isinstance(w, (int, float)) and not isinstance(w, bool) and w >= 0 for w in weights) \
                or sum(weights) <= 0:
            return f"rubric_weights must be numbers >= 0 with a positive sum, got {weights!r}"
    return None


def read_open(path: str | os.PathLike, audio_dir: str | os.PathLike | None = None) -> tuple[list, int]:
    """``Item``/``Skip`` rows of an open-ended JSONL file (``choices`` empty, ``answer_idx`` None; ``reference``,
    ``rubric`` and ``rubric_weights`` as extra columns). A malformed line raises ``ValueError`` naming the file and
    line; an item whose clip is missing is skipped."""
    from ..files import iter_jsonl

    audio_dir = Path(path).parent if audio_dir is None else audio_dir
    rows: list[Item | Skip] = []
    seen: dict[str, int] = {}
    for line, rec in iter_jsonl(path):
        reason = _problem(rec)
        if reason is None and str(rec["id"]) in seen:
            reason = f"id {rec['id']!r} already on line {seen[str(rec['id'])]}"
        if reason is not None:
            raise ValueError(f"{path}:{line}: {reason}")
        rid = str(rec["id"])
        seen[rid] = line
        audio = resolve_audio(rec["audio_path"], audio_dir)
        if audio is None:
            rows.append(Skip(line, rid, f"audio not found: {rec['audio_path']!r}"))
            continue
        rubric = list(rec.get("rubric") or [])
        extra = {**{k: v for k, v in rec.items() if k not in ("id", "question")},
                 "reference": rec.get("reference"), "rubric": rubric,
                 "rubric_weights": [float(w) for w in rec.get("rubric_weights") or [1.0] * len(rubric)]}
        rows.append(Item(line=line, id=rid, question=rec["question"], choices=[], answer_idx=None,
                         dataset_name=str(rec.get("dataset_name", "open")), audio=audio, clip=audio, extra=extra))
    return rows, len(seen)
