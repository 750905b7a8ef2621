"""What every scorer shares, below them all: the score's shape, item ids, option orders (``--permutations``), the
prediction of a record, dropped-record warnings, and reading prediction and question files."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Callable, Iterable, TypedDict

from ..formatting import pct

DEFAULT_KEY = "model_output"
LEGACY_KEY = "model_prediction"  # what the MMAU scorer read before 2025-01; the eval runner writes both
UNKNOWN_VERSION = "unknown"

# What every scorer returns (the score JSON; the reports, the page and the sweep read it). Percentages have two
# decimals; ``total`` is None when nothing could be scored; ``counts`` holds ``[correct, n]`` per breakdown entry.
# Breakdowns are further keys, each benchmark's own.
Score = TypedDict("Score", {
    "benchmark": str, "rule": str, "key": str, "total": "float | None", "n": int, "correct": int,
    "counts": "dict[str, dict[str, list[int]]]", "records": int, "missing": int, "null": int, "warnings": "list[str]",
    "permutations": dict,
}, total=False)


_WORD = re.compile(r"\b\w+\b")


def tokenize(text: str) -> set[str]:
    """The official MMAU tokens: the set of ``\\b\\w+\\b`` matches in the lower-cased text."""
    return set(_WORD.findall(text.lower()))


def mmau_match(answer: str, prediction: str, choices: Iterable[str]) -> bool:
    """The official MMAU rule: all answer tokens in the prediction, no token that only wrong options have."""
    predicted = tokenize(prediction)
    if not predicted:
        return False
    wanted = tokenize(answer)
    wrong: set[str] = set()
    for choice in choices:
        tokens = tokenize(choice)
        if tokens != wanted:
            wrong |= tokens - wanted
    return wanted <= predicted and predicted.isdisjoint(wrong)


def item_id(record: dict, index: int) -> str:
    """A record's id (``id``, else ``key``), as a string; ``#index`` when it has neither."""
    item = record.get("id", record.get("key"))
    return str(item) if item is not None else f"#{index}"


def is_permuted(records: list[dict]) -> bool:
    return any("permutation" in r for r in records)


def order_zero(records: list[dict]) -> list[dict]:
    """The records of the original option order (all records when none carries ``permutation``)."""
    if not is_permuted(records):
        return records
    return [r for r in records if int(r.get("permutation", 0)) == 0]


def prediction(record: dict, key: str, index: int) -> str | None:
    """The record's prediction under ``key`` (present), ``None`` when null; any other type raises ``ValueError``."""
    value = record[key]
    if value is not None and not isinstance(value, str):
        raise ValueError(f"record {item_id(record, index)}: {key!r} is a {type(value).__name__}, not a string")
    return value


def tally(tallies: dict[str, list[int]], names: Iterable[str], ok: bool) -> None:
    """Count one outcome into each named ``[correct, n]`` entry."""
    for name in names:
        entry = tallies.setdefault(name, [0, 0])
        entry[0] += ok
        entry[1] += 1


def mean_tables(groups: dict[str, dict[str, list]]) -> dict:
    """A judged score's breakdowns from ``{group: {entry: [sum of item scores, n]}}``: each group's mean in percent,
    then ``counts`` (sums to 4 decimals)."""
    return {**{group: {k: pct(s, n) for k, (s, n) in entries.items()} for group, entries in groups.items()},
            "counts": {group: {k: [round(s, 4), n] for k, (s, n) in entries.items()}
                       for group, entries in groups.items()}}


def permutation_consistency(records: Iterable[dict], is_correct: Callable[[dict], bool]) -> dict:
    """Accuracy under K option orders: records share an ``id`` (or ``key``) and carry ``"permutation": k``.

    Returns ``{"k", "items", "consistent", "consistent_n", "incomplete", "per_order"}``: ``consistent`` is the
    percentage of items correct under every one of the K orders (an item missing an order counts as not consistent;
    ``incomplete`` says how many), ``per_order`` maps each order (as a string) to its plain accuracy, every record
    of that order counted (``is_correct`` decides; a missing prediction should be wrong).
    """
    by_item: dict[str, dict[int, bool]] = defaultdict(dict)
    for i, record in enumerate(records):
        item, order = item_id(record, i), int(record.get("permutation", 0))
        if order in by_item[item]:
            raise ValueError(f"item {item}: permutation {order} appears twice")
        by_item[item][order] = bool(is_correct(record))
    orders = sorted({o for results in by_item.values() for o in results})
    complete = [results for results in by_item.values() if len(results) == len(orders)]
    consistent = sum(all(results.values()) for results in complete)
    per_order = {}
    for order in orders:
        got = [results[order] for results in by_item.values() if order in results]
        per_order[str(order)] = pct(sum(got), len(got))
    return {
        "k": len(orders),
        "items": len(by_item),
        "consistent": pct(consistent, len(by_item)) if by_item else None,
        "consistent_n": consistent,
        "incomplete": len(by_item) - len(complete),
        "per_order": per_order,
    }


def legacy_warning(count: int, key: str, other_key: str = LEGACY_KEY) -> str:
    return (f"{count} records have {other_key!r} but not {key!r} (a file of another tool?): "
            f"score them with --key {other_key}")


def dropped_warnings(records: int, key: str, missing: int, null: int, other: int, other_key: str) -> list[str]:
    """The warnings of a scorer that drops records without the key, or with a null one, from its denominator."""
    warnings = []
    if other and key != other_key:
        warnings.append(legacy_warning(other, key, other_key))
    if missing:
        warnings.append(f"{missing} of {records} records have no {key!r}: dropped from the official numbers "
                        "(evaluation.py drops them silently); total_all counts them as wrong")
    if null:
        warnings.append(f"{null} of {records} records have a null {key!r} (evaluation.py would crash): dropped "
                        "likewise; total_all counts them as wrong")
    return warnings


def load_predictions(path: str | Path) -> list[dict]:
    """A prediction (or question) file: a JSON list of objects, or JSON lines (``.jsonl``); malformed input raises
    ``ValueError`` naming the file and line."""
    from ..files import read_jsonl

    path = Path(path)
    if path.suffix == ".jsonl":
        return read_jsonl(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON (line {e.lineno}: {e.msg})") from None
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); is it a prediction file?") from None
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise ValueError(f"{path}: expected a JSON list of objects (one per item)")
    return data


def attach_questions(predictions: list[dict], questions: list[dict], source: str = "predictions",
                     question_source: str = "the question file") -> list[dict]:
    """Each prediction completed with its question's fields (the prediction's own fields win), joined on ``id``.

    Raises ``ValueError`` listing the first mismatches when the ids of the two files differ either way.
    """
    by_id: dict[str, dict] = {}
    for i, question in enumerate(questions):
        by_id.setdefault(item_id(question, i), question)
    predicted = [item_id(p, i) for i, p in enumerate(predictions)]
    unknown = list(dict.fromkeys(i for i in predicted if i not in by_id))
    unanswered = sorted(set(by_id) - set(predicted))
    if unknown or unanswered:
        parts = []
        if unknown:
            parts.append(f"{len(unknown)} prediction ids are not in {question_source} "
                         f"(first: {', '.join(unknown[:5])})")
        if unanswered:
            parts.append(f"{len(unanswered)} questions have no prediction (first: {', '.join(unanswered[:5])})")
        raise ValueError(f"{source}: ids do not match {question_source}: " + "; ".join(parts))
    return [{**by_id[i], **p} for i, p in zip(predicted, predictions)]
