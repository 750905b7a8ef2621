"""``open``: any prepared parquet judged by an LLM (``prepare open`` writes ``reference`` and ``rubric``; elsewhere the
item's ``answer`` is the reference). An item's score is its reference grade (0-10 from the judge, as a share;
:mod:`r1_aqa.judge.grading`), or its weighted rubric share when it has rubric lines and no reference; an unparsable
reply counts ``grading.UNPARSABLE`` (0) and is counted. The total is the mean in percent, with tables by
``dataset_name`` and ``task``; the rubric share is reported beside it where items have rubric lines."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ..formatting import pct
from .base import Benchmark
from .common import DEFAULT_KEY, mean_tables


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

    def read(self, data: Path, audio_dir: str | Path | None) -> list[dict]:
        raise ValueError(f"{data}: --benchmark open takes a parquet from `r1-aqa prepare open`")

    def score_judged(self, records: Sequence[dict], judge, key: str) -> dict:
        return score_open(records, judge, key)


BENCHMARK = Open()
