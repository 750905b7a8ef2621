"""Scoring a prediction file with its benchmark's rule (:mod:`r1_aqa.benchmarks`: MMAU's, MMSU's and MMAR's official
scorers, each in its module), and the listening gap: the same items scored with their audio and with silence.

Records that carry ``"permutation": k`` (the same item under option order k, 0 = original) are scored officially on
order 0 only; the score's ``permutations`` adds the share of items answered correctly under every order.
"""

from __future__ import annotations

from typing import Iterable

from ..benchmarks import detect, get_benchmark
from ..benchmarks.common import Score, item_id
from ..formatting import pct, points


def score_records(benchmark: str, records: Iterable[dict], key: str | None = None) -> Score:
    """The benchmark's official score of ``records`` under ``key`` (the benchmark's own by default); records of
    another benchmark raise ``ValueError`` naming the right one."""
    spec = get_benchmark(benchmark)
    records = list(records)
    found = detect(records)
    if not spec.judged and found is not None and found != benchmark:
        raise ValueError(f"these look like {found.upper()} records, not {benchmark.upper()}: use --benchmark {found}")
    return spec.score(records, key=key or spec.key)


def listening_gap(audio: dict, silence: dict) -> dict:
    """Accuracy with the audio, with silence in its place, and their difference (the listening gap, in points),
    overall and per breakdown entry (task/difficulty/sub-category, category, modality: every ``counts`` group).

    ``audio`` and ``silence`` are scores of the same items (see :func:`same_items`). Returns ``{"benchmark", "rule",
    "total": row, "groups": {group: {entry: row}}}`` with rows ``{"accuracy", "silence", "gap", "n", "n_silence"}``.
    """
    if audio["benchmark"] != silence["benchmark"]:
        raise ValueError(f"cannot compare a {audio['benchmark']} score with a {silence['benchmark']} score")

    def row(with_audio: list[int], silent: list[int]) -> dict:
        accuracy = pct(*with_audio) if with_audio[1] else None
        quiet = pct(*silent) if silent[1] else None
        gap = points(accuracy, quiet)
        return {"accuracy": accuracy, "silence": quiet, "gap": gap, "n": with_audio[1], "n_silence": silent[1]}

    groups = {}
    for group, tallies in audio["counts"].items():
        other = silence["counts"].get(group, {})
        groups[group] = {entry: row(tally, other.get(entry, [0, 0])) for entry, tally in tallies.items() if tally[1]}
    return {"benchmark": audio["benchmark"], "rule": audio["rule"],
            "total": row([audio["correct"], audio["n"]], [silence["correct"], silence["n"]]), "groups": groups}


def same_items(audio: list[dict], silence: list[dict], audio_name: str, silence_name: str) -> None:
    """Raise ``ValueError`` naming the ids that only one of two prediction files has."""
    a = {(item_id(r, i), r.get("permutation", 0)) for i, r in enumerate(audio)}
    b = {(item_id(r, i), r.get("permutation", 0)) for i, r in enumerate(silence)}
    if a != b:
        only_a = sorted(str(k[0]) for k in a - b)[:10]
        only_b = sorted(str(k[0]) for k in b - a)[:10]
        raise ValueError(f"{audio_name} and {silence_name} hold different items: only in the first {only_a}, "
                         f"only in the second {only_b}")
