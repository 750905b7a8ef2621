"""Scoring of MMAU test-mini, MMSU and MMAR prediction files (``r1-aqa score``), compatible with the official scorers.

MMAU follows ``evaluation.py`` of Sakshi113/MMAU: a prediction is correct iff every lower-cased ``\\b\\w+\\b`` token of
the answer is in it and none of the tokens that belong only to wrong options is (an empty prediction is wrong; no
letter mapping). Accuracy is reported per task (sound, music, speech), difficulty (easy, hard, medium), sub-category
and in total, as percentages rounded like its ``:.2f``. Records without the prediction key are dropped from the
denominator, as there; ``null`` predictions (which crash it) are dropped the same way; both are counted and reported,
and ``total_all`` counts them as wrong.

MMAR follows ``code/evaluation.py`` of ddlBoJack/MMAR: MMAU's token rule on the key ``answer_prediction``, accuracy per
modality, category and sub-category; records without the key are dropped likewise (and counted).

MMSU follows ``mmsu_evaluation.py`` of dingdongwang/MMSU_Bench: the predicted letter is the first character of the
stripped response if it is A-D, else its second-to-last character; responses with neither are dropped from the
denominator. It is reported together with a strict score (the stripped response must equal the answer's option text,
over all records), each broken down along the hyphen-joined category path.

Records that carry ``"permutation": k`` (the same item under option order k, 0 = original) are scored officially on
order 0 only; :func:`permutation_consistency` adds the share of items answered correctly under every order.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence, TypedDict

from .formatting import pct, points


BENCHMARKS = ("mmau", "mmsu", "mmar", "open", "mmau-pro")  # the last two are scored by a judge (``judged.py``)
DEFAULT_KEY = "model_output"
MMAR_KEY = "answer_prediction"  # what MMAR's scorer reads
LEGACY_KEY = "model_prediction"  # what the MMAU scorer read before 2025-01; the eval runner writes both

# question_set_hash (sha256 over sorted [id, question, sorted(choices), answer] rows) of each MMAU test-mini file.
MMAU_VERSIONS = {
    "5715d8768daabad59a0c8a0a614dbd60313a74400545f9f2fc7784d23cca84a6": "2025-01-28",
    "f22b34ee416ec7a1afbb65c02a5c09456b7b9ae5163ee27c01540bbb018b19e8": "v05.15.25",
}
UNKNOWN_VERSION = "unknown"

# What every scorer returns (the score JSON; the reports, the page and the sweep read it). Percentages have two
# decimals; ``total`` is None when nothing could be scored; ``counts`` holds ``[correct, n]`` per breakdown entry.
# Breakdowns are further keys per benchmark: MMAU task/difficulty/sub-category, MMAR modality/category/sub-category,
# MMSU category (and ``strict``, its second rule).
Score = TypedDict("Score", {
    "benchmark": str, "rule": str, "key": str, "total": "float | None", "n": int, "correct": int,
    "counts": "dict[str, dict[str, list[int]]]", "records": int, "missing": int, "null": int, "warnings": "list[str]",
    "permutations": dict,
}, total=False)
MMAU_TASKS = ("sound", "music", "speech")  # the official script's order; it always prints all three
MMAU_DIFFICULTIES = ("easy", "hard", "medium")
MMSU_LETTERS = "ABCD"
MMAR_MODALITIES = ("sound", "music", "speech", "mix-sound-music", "mix-sound-speech", "mix-music-speech",
                   "mix-sound-music-speech")
MMAR_CATEGORIES = ("Signal Layer", "Perception Layer", "Semantic Layer", "Cultural Layer")

_WORD = re.compile(r"\b\w+\b")


# ---------------------------------------------------------------------------------------------------------- MMAU rule
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


def ambiguous_items(records: Iterable[dict]) -> list[dict]:
    """MMAU items where a wrong option (text differing from the answer) has the answer's token set.

    The official rule cannot tell such an option from the answer: answering it scores correct. Returns one entry per
    item (first occurrence of each id): ``{"id", "answer", "same_tokens": [options]}``.
    """
    found, seen = [], set()
    for i, record in enumerate(records):
        _check_mmau_record(record, i)
        item = _item_id(record, i)
        if item in seen:
            continue
        seen.add(item)
        wanted = tokenize(record["answer"])
        same = [c for c in record["choices"] if c != record["answer"] and tokenize(c) == wanted]
        if same:
            found.append({"id": item, "answer": record["answer"], "same_tokens": same})
    return found


def question_set_hash(records: Iterable[dict]) -> str:
    """sha256 over the sorted ``[id, question, sorted(choices), answer]`` rows (option order does not matter)."""
    rows = sorted([r.get("id"), r.get("question"), sorted(r.get("choices") or []), r.get("answer")]
                  for r in _order_zero(list(records)))
    return hashlib.sha256(json.dumps(rows, ensure_ascii=False).encode("utf-8")).hexdigest()


def mmau_version(records: Iterable[dict]) -> str:
    """Which MMAU test-mini question file the records come from: "2025-01-28", "v05.15.25" or "unknown".

    "unknown" for any other question set, including a subset (``--limit``) or edited questions of a known file.
    """
    return MMAU_VERSIONS.get(question_set_hash(records), UNKNOWN_VERSION)


def score_mmau(records: Iterable[dict], key: str = DEFAULT_KEY) -> Score:
    """Score MMAU predictions under ``key``; the numbers are those of the official ``evaluation.py``.

    Returns ``{"benchmark", "rule", "key", "version", "total", "n", "correct", "task", "difficulty", "sub-category",
    "counts", "records", "missing", "null", "total_all", "ambiguous", "warnings"}`` plus ``"permutations"`` (see
    :func:`permutation_consistency`) when records carry a ``permutation`` field. Percentages have two decimals;
    ``total`` is ``None`` when no record has a prediction. ``counts`` holds ``[correct, n]`` per breakdown entry.
    """
    records = list(records)
    groups = {"task": ("task", MMAU_TASKS, "unknown"), "difficulty": ("difficulty", MMAU_DIFFICULTIES, "unknown"),
              "sub-category": ("sub-category", (), None)}
    result = _score_token_rule(records, key, groups, LEGACY_KEY)
    version = mmau_version(records)
    if version == UNKNOWN_VERSION:
        result["warnings"].append("the questions match neither MMAU test-mini file (2025-01-28, v05.15.25): a subset "
                                  "or edited questions; scores are not comparable with published ones")
    return {"benchmark": "mmau", "rule": "official MMAU token match (Sakshi113/MMAU evaluation.py)", "key": key,
            "version": version, **result}


def score_mmar(records: Iterable[dict], key: str = MMAR_KEY) -> Score:
    """Score MMAR predictions under ``key`` (``answer_prediction``): MMAU's token rule, as MMAR's ``evaluation.py``.

    Returns ``{"benchmark", "rule", "key", "total", "n", "correct", "modality", "category", "sub-category", "counts",
    "records", "missing", "null", "total_all", "ambiguous", "warnings"}`` (plus ``"permutations"``), in percent with
    two decimals; records without the key are dropped from the official numbers as there, and counted.
    """
    groups = {"modality": ("modality", MMAR_MODALITIES, None), "category": ("category", MMAR_CATEGORIES, None),
              "sub-category": ("sub-category", (), None)}
    result = _score_token_rule(list(records), key, groups, DEFAULT_KEY)
    return {"benchmark": "mmar", "rule": "MMAU token match on answer_prediction (ddlBoJack/MMAR evaluation.py)",
            "key": key, **result}


def _score_token_rule(records: list[dict], key: str, groups: dict[str, tuple[str, Sequence[str], str | None]],
                      other_key: str) -> dict:
    """The official token rule over ``records`` with accuracy per breakdown.

    ``groups`` maps a breakdown name to ``(record field, values always listed, default for a record without the
    field)``; a record with neither is left out of that breakdown. ``other_key`` is the prediction key of other
    tools: records with it but without ``key`` get a warning naming ``--key``.
    """
    base = _order_zero(records)
    tallies = {name: {v: [0, 0] for v in fixed} for name, (_, fixed, _) in groups.items()}
    correct = total = missing = null = other = 0
    for i, record in enumerate(base):
        _check_mmau_record(record, i)
        if key not in record:
            missing += 1
            other += other_key in record
            continue
        prediction = _prediction(record, key, i)
        if prediction is None:
            null += 1
            continue
        ok = mmau_match(record["answer"], prediction, record["choices"])
        correct += ok
        total += 1
        for name, (column, _, default) in groups.items():
            value = record.get(column, default)
            if value is not None:
                tally = tallies[name].setdefault(value, [0, 0])
                tally[0] += ok
                tally[1] += 1
    result = {
        "total": pct(correct, total) if total else None,
        "n": total,
        "correct": correct,
        **{name: {k: pct(*v) for k, v in tally.items()} for name, tally in tallies.items()},
        "counts": tallies,
        "records": len(base),
        "missing": missing,
        "null": null,
        "total_all": pct(correct, len(base)),
        "ambiguous": ambiguous_items(base),
        "warnings": _dropped_warnings(len(base), key, missing, null, other, other_key),
    }
    if _permuted(records):
        result["permutations"] = permutation_consistency(
            records, lambda r: isinstance(r.get(key), str) and mmau_match(r["answer"], r[key], r["choices"]))
    return result


# ---------------------------------------------------------------------------------------------------------- MMSU rule
def mmsu_letter(response: str) -> str | None:
    """The official MMSU letter: the first character of the stripped, newline-free response if it is A-D, else its
    second-to-last character if that is A-D (as in "The answer is B."); ``None`` when neither (or empty/"None")."""
    text = response.strip().replace("\n", "")
    if not text or text == "None":
        return None
    if text[0] in MMSU_LETTERS:
        return text[0]
    if len(text) > 1 and text[-2] in MMSU_LETTERS:
        return text[-2]
    return None


def mmsu_item(record: dict, index: int = 0) -> tuple[list[str], str]:
    """``(options, answer_text)`` of an MMSU record: HF format (``options``, ``answer_index``), the official scorer's
    (``choice_a``..``choice_d``, ``answer_gt``) or a prepared one (``choices``, ``answer``)."""
    if "options" in record and "answer_index" in record:
        options = list(record["options"])
        answer_index = int(record["answer_index"])
        if not 0 <= answer_index < len(options):
            raise ValueError(f"record {_item_id(record, index)}: answer_index {answer_index} out of range")
        return options, options[answer_index]
    if "answer_gt" in record:
        return [record.get(f"choice_{c}", "") for c in MMSU_LETTERS.lower()], record["answer_gt"]
    if "choices" in record and "answer" in record:
        return list(record["choices"]), record["answer"]
    raise ValueError(f"record {_item_id(record, index)}: no MMSU options/answer fields "
                     "(options+answer_index, choice_a..d+answer_gt, or choices+answer)")


def category_path(record: dict) -> list[str]:
    """The prefixes of an MMSU record's hyphen-joined category path, shortest first; ``sub-category`` (official
    format) is appended as a last level. ``["perception", "perception-linguistics", ...]``."""
    parts = [p for p in str(record.get("category") or "unknown").split("-") if p]
    sub = record.get("sub-category")
    if sub and sub != parts[-1]:
        parts.append(str(sub))
    return ["-".join(parts[: i + 1]) for i in range(len(parts))]


def score_mmsu(records: Iterable[dict], key: str = DEFAULT_KEY) -> Score:
    """Score MMSU predictions under ``key``: the official letter rule and a strict option-text rule.

    Official (``total``, ``n``, ``category``): responses without a parseable letter are dropped from the denominator
    (``unparsed``), as are ``null`` ones (``null``; the official scorer skips them after an error); empty responses
    and records without the key stay in it as wrong (``empty``, ``missing``; the official scorer keeps them too but
    reuses the previous record's letter, a bug not reproduced). A letter is correct iff its option's
    text equals the answer's. Strict (``strict``): the stripped response equals the answer's option text; every
    record counts. ``category`` maps every category-path prefix to a percentage; ``counts`` holds ``[correct, n]``.
    """
    records = list(records)
    base = _order_zero(records)
    t = _MmsuTally()
    for i, record in enumerate(base):
        t.add(record, key, i)
    warnings = [_legacy_warning(t.legacy, key)] if t.legacy and key != LEGACY_KEY else []
    if t.unparsed:
        warnings.append(f"{t.unparsed} of {len(base)} responses have no A-D letter: dropped from the official "
                        "denominator (as mmsu_evaluation.py does)")
    if t.null:
        warnings.append(f"{t.null} records have a null {key!r}: dropped from the official denominator")
    if t.missing:
        warnings.append(f"{t.missing} of {len(base)} records have no {key!r}: counted as wrong (as "
                        "mmsu_evaluation.py counts them in its denominator)")
    if t.empty:
        warnings.append(f"{t.empty} of {len(base)} responses are empty: counted as wrong")
    result = {
        "benchmark": "mmsu",
        "rule": "official MMSU letter rule (dingdongwang/MMSU_Bench mmsu_evaluation.py)",
        "key": key,
        "total": pct(t.correct, t.total) if t.total else None,
        "n": t.total,
        "correct": t.correct,
        "category": {k: pct(*v) for k, v in sorted(t.official.items())},
        "counts": {"category": dict(sorted(t.official.items()))},
        "records": len(base),
        "missing": t.missing,
        "null": t.null,
        "empty": t.empty,
        "unparsed": t.unparsed,
        "strict": {
            "rule": "stripped response equals the answer's option text; all records count",
            "total": pct(t.strict_correct, len(base)) if base else None,
            "n": len(base),
            "correct": t.strict_correct,
            "category": {k: pct(*v) for k, v in sorted(t.strict.items())},
            "counts": {"category": dict(sorted(t.strict.items()))},
        },
        "warnings": warnings,
    }
    if _permuted(records):
        result["permutations"] = permutation_consistency(
            records, lambda r: isinstance(r.get(key), str) and _letter_correct(*mmsu_item(r), mmsu_letter(r[key])))
    return result


@dataclass
class _MmsuTally:
    """One pass over MMSU records: the official letter rule's and the strict rule's per-category ``[correct, n]``
    and the counts ``score_mmsu`` reports (see its docstring for what each rule keeps and drops)."""

    official: dict[str, list[int]] = field(default_factory=dict)
    strict: dict[str, list[int]] = field(default_factory=dict)
    correct: int = 0
    total: int = 0
    strict_correct: int = 0
    missing: int = 0
    null: int = 0
    empty: int = 0
    unparsed: int = 0
    legacy: int = 0

    def add(self, record: dict, key: str, index: int) -> None:
        options, answer = mmsu_item(record, index)
        path = category_path(record)
        present = key in record
        if not present:
            self.missing += 1
            self.legacy += LEGACY_KEY in record
        response = _prediction(record, key, index) if present else ""
        ok_strict = response is not None and response.strip() == answer.strip()
        self.strict_correct += ok_strict
        _add(self.strict, path, ok_strict)
        if response is None:
            self.null += 1
            return
        letter = mmsu_letter(response)
        if letter is None and response.strip().replace("\n", "") not in ("", "None"):
            self.unparsed += 1
            return
        self.empty += letter is None and present
        ok = _letter_correct(options, answer, letter)
        self.correct += ok
        self.total += 1
        _add(self.official, path, ok)


# ------------------------------------------------------------------------------------------------------ permutations
def permutation_consistency(records: Iterable[dict], is_correct: Callable[[dict], bool]) -> dict:
    """Accuracy under K option orders: records share an ``id`` (or ``key``) and carry ``"permutation": k``.

    Returns ``{"k", "items", "consistent", "consistent_n", "incomplete", "per_order"}``: ``consistent`` is the
    percentage of items correct under every one of the K orders (an item missing an order counts as not consistent;
    ``incomplete`` says how many), ``per_order`` maps each order (as a string) to its plain accuracy, every record
    of that order counted (``is_correct`` decides; a missing prediction should be wrong).
    """
    by_item: dict[str, dict[int, bool]] = defaultdict(dict)
    for i, record in enumerate(records):
        item, order = _item_id(record, i), int(record.get("permutation", 0))
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


# ---------------------------------------------------------------------------------------------------- listening gap
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
    a = {(_item_id(r, i), r.get("permutation", 0)) for i, r in enumerate(audio)}
    b = {(_item_id(r, i), r.get("permutation", 0)) for i, r in enumerate(silence)}
    if a != b:
        only_a = sorted(str(k[0]) for k in a - b)[:10]
        only_b = sorted(str(k[0]) for k in b - a)[:10]
        raise ValueError(f"{audio_name} and {silence_name} hold different items: only in the first {only_a}, "
                         f"only in the second {only_b}")


# ----------------------------------------------------------------------------------------------------------- helpers
def _letter_correct(options: list[str], answer: str, letter: str | None) -> bool:
    """The official MMSU check: the option under ``letter`` has the answer's text (a missing option is wrong)."""
    index = MMSU_LETTERS.index(letter) if letter else len(options)
    return index < len(options) and options[index] == answer


def _add(tallies: dict[str, list[int]], names: Iterable[str], ok: bool) -> None:
    for name in names:
        tally = tallies.setdefault(name, [0, 0])
        tally[0] += ok
        tally[1] += 1


def _item_id(record: dict, index: int) -> str:
    item = record.get("id", record.get("key"))
    return str(item) if item is not None else f"#{index}"


def _permuted(records: list[dict]) -> bool:
    return any("permutation" in r for r in records)


def _order_zero(records: list[dict]) -> list[dict]:
    """The records of the original option order (all records when none carries ``permutation``)."""
    if not _permuted(records):
        return records
    return [r for r in records if int(r.get("permutation", 0)) == 0]


def _check_mmau_record(record: dict, index: int) -> None:
    if not isinstance(record.get("answer"), str) or not isinstance(record.get("choices"), list) \
            or not all(isinstance(c, str) for c in record["choices"]):
        raise ValueError(f"record {_item_id(record, index)}: an MMAU record needs a string 'answer' and a list of "
                         "string 'choices'")


def _prediction(record: dict, key: str, index: int) -> str | None:
    value = record[key]
    if value is not None and not isinstance(value, str):
        raise ValueError(f"record {_item_id(record, index)}: {key!r} is a {type(value).__name__}, not a string")
    return value


def _legacy_warning(count: int, key: str, other_key: str = LEGACY_KEY) -> str:
    return (f"{count} records have {other_key!r} but not {key!r} (a file of another tool?): "
            f"score them with --key {other_key}")


def _dropped_warnings(records: int, key: str, missing: int, null: int, other: int, other_key: str) -> list[str]:
    warnings = []
    if other and key != other_key:
        warnings.append(_legacy_warning(other, key, other_key))
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
        by_id.setdefault(_item_id(question, i), question)
    predicted = [_item_id(p, i) for i, p in enumerate(predictions)]
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


def default_key(benchmark: str) -> str:
    """The prediction key the benchmark's official scorer reads (and ``eval`` writes)."""
    return MMAR_KEY if benchmark == "mmar" else DEFAULT_KEY


def detect_benchmark(records: list[dict]) -> str | None:
    """The benchmark whose own fields the first record carries ("mmau", "mmsu", "mmar"), else ``None``."""
    first = set(records[0]) if records else set()
    if {"audio_path", "modality"} <= first:
        return "mmar"
    if "audio_id" in first or {"task", "difficulty"} <= first:
        return "mmau"
    if {"options", "answer_index"} <= first or "answer_gt" in first or "-" in str(records[0].get("category") or ""):
        return "mmsu"
    return None


def score_records(benchmark: str, records: Iterable[dict], key: str | None = None) -> Score:
    """Dispatch to :func:`score_mmau`, :func:`score_mmsu` or :func:`score_mmar` (``key``: the benchmark's own);
    records of another benchmark raise ``ValueError`` naming the right one."""
    scorers = {"mmau": score_mmau, "mmsu": score_mmsu, "mmar": score_mmar}
    if benchmark in BENCHMARKS and benchmark not in scorers:
        raise ValueError(f"{benchmark} is scored by a judge: `r1-aqa score --benchmark {benchmark} --predictions PRED "
                         "--judge-model DIR_OR_URL`")
    if benchmark not in scorers:
        raise ValueError(f"unknown benchmark {benchmark!r}; choose from {', '.join(BENCHMARKS)}")
    records = list(records)
    found = detect_benchmark(records)
    if found is not None and found != benchmark:
        raise ValueError(f"these look like {found.upper()} records, not {benchmark.upper()}: use --benchmark {found}")
    return scorers[benchmark](records, key=key or default_key(benchmark))


def record_outcome(benchmark: str, record: dict, key: str | None = None, index: int = 0,
                   strict: bool = False) -> bool | None:
    """Whether one record is correct under the benchmark's official rule, as :func:`score_records` counts it;
    ``None`` for a record that rule leaves out of its denominator (MMAU, MMAR: no key or null; MMSU: null or no A-D
    letter in a non-empty response). ``strict``: MMSU's strict rule instead (the response is the answer's option
    text; every record counts). ``key``: the benchmark's own by default."""
    key = key or default_key(benchmark)
    if benchmark in ("mmau", "mmar"):
        _check_mmau_record(record, index)
        prediction = _prediction(record, key, index) if key in record else None
        return None if prediction is None else mmau_match(record["answer"], prediction, record["choices"])
    if benchmark == "mmsu":
        options, answer = mmsu_item(record, index)
        response = _prediction(record, key, index) if key in record else ""
        if strict:
            return response is not None and response.strip() == answer.strip()
        if response is None:
            return None
        letter = mmsu_letter(response)
        if letter is None and response.strip().replace("\n", "") not in ("", "None"):
            return None
        return _letter_correct(options, answer, letter)
    raise ValueError(f"unknown benchmark {benchmark!r}; choose from {', '.join(BENCHMARKS)}")
