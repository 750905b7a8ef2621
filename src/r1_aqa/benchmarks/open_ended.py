"""``open``: any prepared parquet judged by an LLM (``prepare open`` writes ``reference`` and ``rubric``; elsewhere the
item's ``answer`` is the reference). An item's score is its reference grade (0-10 from the judge, as a share;
:mod:`r1_aqa.judge.grading`), or its weighted rubric share when it has rubric lines and no reference; an unparsable
reply counts ``grading.UNPARSABLE`` (0) and is counted. The total is the mean in percent, with tables by
``dataset_name`` and ``task``; the rubric share is reported beside it where items have rubric lines.

``prepare open`` reads a JSON-lines file of ``id``, ``question``, ``audio_path``, a ``reference`` answer and/or
``rubric`` lines (optional ``rubric_weights``, one number >= 0 per line, 1 each by default), as ``r1-aqa synth --task
open`` writes them; clips at ``audio_path`` under an audio dir. Every other field is kept."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Sequence

from ..formatting import pct
from ..items import Item, Skip, check_question, resolve_audio
from .base import Benchmark
from .common import DEFAULT_KEY, mean_tables


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


def score_open(records: Sequence[dict], judge, key: str = DEFAULT_KEY) -> dict:
    """Score open-ended predictions under ``key`` (see the module docstring)."""
    from ..judge.grading import UNPARSABLE, rubric_share

    records = list(records)
    references = [r.get("reference") or r.get("answer") for r in records]  # answer: any prepared parquet's
    for i, r in enumerate(records):
        if not references[i] and not len(r.get("rubric") or []):
            raise ValueError(f"record {r.get('id', i)}: neither a reference answer nor rubric lines (prepare it with "
                             "`r1-aqa prepare open`)")
    answers = ["" if r.get(key) is None else str(r[key]) for r in records]
    missing = sum(key not in r for r in records)
    with_reference = [i for i in range(len(records)) if references[i]]
    grades = dict(zip(with_reference, judge.grade([str(records[i]["question"]) for i in with_reference],
                                                   [str(references[i]) for i in with_reference],
                                                   [answers[i] for i in with_reference])))
    asked = [(i, line) for i, r in enumerate(records) for line in (r.get("rubric") or [])]
    verdicts = judge.verdicts([str(records[i]["question"]) for i, _ in asked], [line for _, line in asked],
                              [answers[i] for i, _ in asked]) if asked else []
    per_item: dict[int, list] = {}
    for (i, _), verdict in zip(asked, verdicts):
        per_item.setdefault(i, []).append(verdict)
    items, groups = [], {"dataset_name": {}, "task": {}}
    rubric_sum = rubric_n = 0.0
    for i, record in enumerate(records):
        grade = grades.get(i)
        share = rubric_share(per_item[i], record.get("rubric_weights")) if i in per_item else None
        if share is not None:
            rubric_sum, rubric_n = rubric_sum + share, rubric_n + 1
        score = (UNPARSABLE if grade is None else grade) if i in grades else share
        items.append({"id": str(record.get("id", i)), "score": score, "grade": grade, "rubric": share,
                      "verdicts": per_item.get(i)})
        for group in groups:
            entry = groups[group].setdefault(str(record.get(group) or "unknown"), [0.0, 0])
            entry[0] += score
            entry[1] += 1
    unparsable = sum(g is None for g in grades.values()) + sum(v is None for v in verdicts)
    warnings = [f"{unparsable} judge replies had no readable grade or verdict: each counted {UNPARSABLE}"] \
        if unparsable else []
    if missing:
        warnings.append(f"{missing} of {len(records)} records have no {key!r}: graded as empty answers")
    total = sum(item["score"] for item in items)
    return {"benchmark": "open", "rule": "LLM judge: grade 0-10 against the reference answer (else the weighted "
            "share of rubric lines met); unparsable replies count 0", "key": key,
            "total": pct(total, len(items)) if items else None, "n": len(items), "records": len(records),
            "rubric_total": pct(rubric_sum, rubric_n) if rubric_n else None, "unparsable": unparsable,
            "missing": missing,
            **mean_tables(groups),
            "items": items, "warnings": warnings}


class Open(Benchmark):
    name = "open"
    title = "open-ended"
    judged = True
    any_prepared = True
    prepare_help = "open-ended items (JSONL: question, audio_path, reference and/or rubric)"
    prepare_description = ("Open-ended items, no options (as `r1-aqa synth --task open` writes them): id, question, "
                           "audio_path, a reference answer and/or rubric lines (rubric_weights: one number >= 0 per "
                           "line, 1 each by default); the judged rewards and `eval/score --benchmark open` read them. "
                           "A malformed line stops with its line number; items whose clip is missing are skipped and "
                           "reported.")
    prepare_input = ("JSONL", "open-ended JSONL file")
    prepare_audio_dir = "where clips live: tries DIR/audio_path, audio_path, DIR/basename; None: the JSONL's dir"

    def read(self, data: Path, audio_dir: str | Path | None) -> list[dict]:
        raise ValueError(f"{data}: --benchmark open takes a parquet from `r1-aqa prepare open`")

    def prepare_rows(self, args: argparse.Namespace) -> tuple[list, int]:
        return read_open(args.input, args.audio_dir)

    def score_judged(self, records: Sequence[dict], judge, key: str) -> dict:
        return score_open(records, judge, key)


BENCHMARK = Open()
