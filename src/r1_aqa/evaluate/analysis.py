"""What the error-analysis pages show, apart from how (``html_report``): each item's verdict, the option its
prediction names and the answer's, option-position bias, and the silent-audio verdicts of the same items."""

from __future__ import annotations

from typing import Sequence

from ..benchmarks import get_benchmark
from ..benchmarks.common import Score, item_id, order_zero

GROUP_FIELDS = ("task", "modality", "category", "sub-category", "difficulty")  # record fields offered as filters


def strict_view(score: Score) -> bool:
    """Whether a page shows the benchmark's strict rule rather than the official one (MMSU's, when no response
    carries an A-D letter: the official letter rule then scores nothing)."""
    return get_benchmark(score["benchmark"]).strict_view(score)


def shown(score: Score, strict: bool) -> dict:
    """The score with the numbers a page shows on top: the strict ones under :func:`strict_view`."""
    return {**score, **score["strict"]} if strict else score


def analyse(benchmark: str, records: Sequence[dict], key: str | None = None,
            silence: Sequence[dict] | None = None, strict: bool = False) -> dict:
    """Per-item verdicts (the official rule, or MMSU's ``strict`` one), option positions and (with ``silence``)
    silent-audio verdicts of the original option order.

    Returns ``{"items": [...], "positions": {...}, "fields": {field: [values]}}``; items carry ``v`` (right, wrong,
    unscored), ``pos``/``ans`` (predicted and answer option index), ``perm`` ("correct/orders" when permuted) and
    ``sv``/``sp`` (silence verdict and answer).
    """
    spec = get_benchmark(benchmark)
    key = key or spec.key
    records = list(records)
    base = order_zero(records)
    orders: dict[str, list[bool]] = {}
    if len(base) != len(records):
        for i, record in enumerate(records):
            orders.setdefault(item_id(record, i), []).append(bool(spec.outcome(record, key, i, strict)))
    silent = _by_id(silence, benchmark, base) if silence is not None else None
    items = []
    for i, record in enumerate(base):
        options, answer = spec.options(record, i)
        prediction = record.get(key)
        item = {
            "id": item_id(record, i),
            "q": str(record.get("question", "")),
            "opts": options,
            "ans": options.index(answer) if answer in options else None,
            "answer": answer,
            "pred": prediction if isinstance(prediction, str) else None,
            "pos": spec.predicted_option(record, key),
            "think": record.get("model_think"),
            "resp": record.get("model_response"),
            "v": _verdict(spec.outcome(record, key, i, strict)),
            "g": {f: str(record[f]) for f in GROUP_FIELDS if record.get(f) is not None},
        }
        if orders:
            got = orders[item["id"]]
            item["perm"] = f"{sum(got)}/{len(got)}"
        if silent is not None:
            other = silent[item["id"]]
            item["sv"] = _verdict(spec.outcome(other, key, i, strict))
            item["sp"] = other.get(key) if isinstance(other.get(key), str) else None
        items.append(item)
    fields = {f: sorted({it["g"][f] for it in items if f in it["g"]}) for f in GROUP_FIELDS}
    return {"items": items, "positions": position_bias(items),
            "fields": {f: values for f, values in fields.items() if values}}


def position_bias(items: Sequence[dict]) -> dict:
    """Per option position (A, B, ...): answers there, predictions there, and accuracy when the answer is there.

    Over scored items; ``unmatched`` counts scored items whose prediction names no single option.
    """
    scored = [it for it in items if it["v"] != "unscored" and it["ans"] is not None]
    width = max((len(it["opts"]) for it in scored), default=0)
    rows = []
    for k in range(width):
        at = [it for it in scored if it["ans"] == k]
        rows.append({"position": _letter(k), "answers": len(at), "predictions": sum(it["pos"] == k for it in scored),
                     "right": sum(it["v"] == "right" for it in at)})
    return {"n": len(scored), "unmatched": sum(it["pos"] is None for it in scored), "rows": rows}


def _verdict(outcome: bool | None) -> str:
    return "unscored" if outcome is None else "right" if outcome else "wrong"


def _letter(k: int) -> str:
    return chr(ord("A") + k) if k < 26 else str(k + 1)


def _by_id(silence: Sequence[dict], benchmark: str, base: Sequence[dict]) -> dict[str, dict]:
    """The silence run's records by id; its items must be those of the predictions."""
    silent = {item_id(r, i): r for i, r in enumerate(order_zero(silence))}
    wanted = [item_id(r, i) for i, r in enumerate(base)]
    missing = [i for i in wanted if i not in silent]
    extra = sorted(set(silent) - set(wanted))
    if missing or extra:
        raise ValueError(f"the silence run does not hold the same {benchmark} items: {len(missing)} missing "
                         f"(first: {', '.join(missing[:5]) or '-'}), {len(extra)} extra "
                         f"(first: {', '.join(extra[:5]) or '-'})")
    return silent
