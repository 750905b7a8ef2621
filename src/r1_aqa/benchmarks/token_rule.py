"""Benchmarks scored by MMAU's token rule (MMAU, MMAR): a prediction is correct iff every lower-cased ``\\b\\w+\\b``
token of the answer is in it and none of the tokens that belong only to wrong options is (an empty prediction is
wrong; no letter mapping). Records without the prediction key, or with a null one, are dropped from the denominator
as the official scripts drop them; both are counted and reported, and ``total_all`` counts them as wrong."""

from __future__ import annotations

from typing import ClassVar, Iterable, Sequence

from ..formatting import fmt, pct
from .base import Benchmark
from .common import (Score, dropped_warnings, is_permuted, item_id, mmau_match, order_zero, permutation_consistency,
                     prediction, tally, tokenize)


def check_record(record: dict, index: int) -> None:
    if not isinstance(record.get("answer"), str) or not isinstance(record.get("choices"), list) \
            or not all(isinstance(c, str) for c in record["choices"]):
        raise ValueError(f"record {item_id(record, index)}: an MMAU record needs a string 'answer' and a list of "
                         "string 'choices'")


def ambiguous_items(records: Iterable[dict]) -> list[dict]:
    """Items where a wrong option (text differing from the answer) has the answer's token set.

    The token rule cannot tell such an option from the answer: answering it scores correct. Returns one entry per
    item (first occurrence of each id): ``{"id", "answer", "same_tokens": [options]}``.
    """
    found, seen = [], set()
    for i, record in enumerate(records):
        check_record(record, i)
        item = item_id(record, i)
        if item in seen:
            continue
        seen.add(item)
        wanted = tokenize(record["answer"])
        same = [c for c in record["choices"] if c != record["answer"] and tokenize(c) == wanted]
        if same:
            found.append({"id": item, "answer": record["answer"], "same_tokens": same})
    return found


class TokenRuleBenchmark(Benchmark):
    """A benchmark scored by the token rule, with accuracy per breakdown (``groups``)."""

    rule: ClassVar[str]
    # breakdown name -> (record field, values always listed, default for a record without the field); a record with
    # neither is left out of that breakdown.
    groups: ClassVar[dict[str, tuple[str, Sequence[str], str | None]]]
    panel_groups: ClassVar[tuple[tuple[str, str], ...]]  # (title, breakdown) of the bar charts
    sweep_group: ClassVar[str]  # the breakdown a sweep tracks beside the total
    other_key: ClassVar[str]  # the prediction key of other tools: records with only it get a warning naming --key

    def score(self, records: Iterable[dict], key: str | None = None) -> Score:
        records, key = list(records), key or self.key
        base = order_zero(records)
        tallies = {name: {v: [0, 0] for v in fixed} for name, (_, fixed, _) in self.groups.items()}
        correct = total = missing = null = other = 0
        for i, record in enumerate(base):
            check_record(record, i)
            if key not in record:
                missing += 1
                other += self.other_key in record
                continue
            predicted = prediction(record, key, i)
            if predicted is None:
                null += 1
                continue
            ok = mmau_match(record["answer"], predicted, record["choices"])
            correct += ok
            total += 1
            for name, (column, _, default) in self.groups.items():
                value = record.get(column, default)
                if value is not None:
                    tally(tallies[name], [value], ok)
        result = {
            "benchmark": self.name, "rule": self.rule, "key": key, **self.extra(records),
            "total": pct(correct, total) if total else None,
            "n": total,
            "correct": correct,
            **{name: {k: pct(*v) for k, v in counts.items()} for name, counts in tallies.items()},
            "counts": tallies,
            "records": len(base),
            "missing": missing,
            "null": null,
            "total_all": pct(correct, len(base)),
            "ambiguous": ambiguous_items(base),
            "warnings": dropped_warnings(len(base), key, missing, null, other, self.other_key)
            + self.warnings(records),
        }
        if is_permuted(records):
            result["permutations"] = permutation_consistency(
                records, lambda r: isinstance(r.get(key), str) and mmau_match(r["answer"], r[key], r["choices"]))
        return result

    def extra(self, records: list[dict]) -> dict:
        """Score fields the benchmark adds before the totals."""
        return {}

    def warnings(self, records: list[dict]) -> list[str]:
        """Warnings the benchmark adds after the dropped-record ones."""
        return []

    def outcome(self, record: dict, key: str | None = None, index: int = 0,
                strict: bool = False) -> bool | None:
        key = key or self.key
        check_record(record, index)
        predicted = prediction(record, key, index) if key in record else None
        return None if predicted is None else mmau_match(record["answer"], predicted, record["choices"])

    def panels(self, score: Score) -> list[tuple[str, dict[str, tuple[float, int]]]]:
        return [(title, {k: (score[name][k], n) for k, (_, n) in score["counts"][name].items() if n})
                for title, name in self.panel_groups]

    def summary_lines(self, score: Score) -> list[str]:
        return [f"- missing key: {score['missing']}, null: {score['null']} (dropped, as the official script drops "
                f"records without the key); counting them as wrong: {fmt(score['total_all'])}%"]

    def tables(self, score: Score) -> list[tuple[str, str, dict, dict]]:
        return [(f"Official, by {name}", name, score[name], score["counts"][name]) for name in self.groups]

    def sweep_series(self, score: Score) -> dict[str, float | None]:
        group = self.sweep_group
        return {"total": score["total"], **{t: score[group][t] for t, (_, n) in score["counts"][group].items() if n}}
