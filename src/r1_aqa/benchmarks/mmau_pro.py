"""MMAU-Pro (gamma-lab-umd/MMAU-Pro, 5,305 items): its question file, and its scoring as the official "Comprehensive
MMAU-Pro Evaluation Script" states the rules (implemented here from those rules).

Three kinds of item, by ``category``:

* ``"open"``: an LLM judge (officially Qwen/Qwen2.5-7B-Instruct, chat template, system line "You are a helpful and
  objective evaluator.") grades the response against the reference ``answer`` with :func:`open_prompt`: correctness,
  relevance, completeness and clarity 1-5 and OVERALL, one ``NAME: score`` line each. :func:`parse_open` reads them:
  a criterion without its line counts 3.0 (neutral); an OVERALL that is missing or equals 3.0 is replaced by the mean
  of the four criteria. The item scores OVERALL/5. (The official script samples at temperature 0.1 with 512 new
  tokens; judges here are greedy unless ``--judge-temperature`` says otherwise.)
* ``"instruction following"``: rule checks chosen by ``task_identifier`` with ``kwargs`` (:func:`follows`); the
  "Repeat Prompt" check compares with the ``question``; the response is ``str()`` of the prediction as there.
* every other category (closed-ended): the response and each choice are embedded (officially nvidia/NV-Embed-v2,
  L2-normalised, empty instruction); the most similar choice is the prediction, correct iff it equals ``answer``.
  Items with fewer than two choices are left out, as there (counted).

A missing or null prediction is the empty response (the official ``fillna("")``). A category's score is its
accuracy (closed), mean OVERALL/5 (open) or pass rate (instruction following); the total is the item-weighted mean
of the category scores, in percent. Sentences are counted with a rule of our own (a run of text ending in ``.``,
``!`` or ``?`` followed by a space or the end), where the official script uses NLTK's Punkt (not installed here):
they differ on abbreviations such as "e.g.".
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Sequence

from ..formatting import pct
from .base import Benchmark
from .common import DEFAULT_KEY, load_predictions, mean_tables

OFFICIAL_JUDGE = "Qwen/Qwen2.5-7B-Instruct"
OFFICIAL_EMBEDDER = "nvidia/NV-Embed-v2"
OFFICIAL_SYSTEM = "You are a helpful and objective evaluator."
OPEN, FOLLOWING, CLOSED = "open", "instruction following", "closed"
CRITERIA = ("correctness", "relevance", "completeness", "clarity")
NEUTRAL = 3.0  # what a criterion the judge's reply does not state counts (the official fallback)
FIELDS = ("id", "audio_path", "question", "answer", "category")


# ----------------------------------------------------------------------------------------------------- question file
def load_mmau_pro(path: str | os.PathLike, audio_dir: str | os.PathLike | None = None) -> list[dict]:
    """The MMAU-Pro records of a question file (a JSON list, JSON lines, or the hub's parquet), each with ``audio``:
    the absolute paths of its clips (``audio_path`` is one path or a list; a clip not found under ``audio_dir``, the
    file's directory by default, is None) and ``choices`` as a list. A record without one of :data:`FIELDS` raises
    ``ValueError`` naming the file and record."""
    from ..items import resolve_audio
    from ..files import parquet_records

    path = Path(path)
    if path.suffix == ".parquet":
        data = parquet_records(path)
    else:
        data = load_predictions(path)
    audio_dir = path.parent if audio_dir is None else audio_dir
    records = []
    for i, rec in enumerate(data, start=1):
        missing = [k for k in FIELDS if rec.get(k) is None]
        if missing:
            raise ValueError(f"{path}: record {i} (id {rec.get('id')}): missing field(s) {', '.join(missing)}")
        clips = rec["audio_path"] if isinstance(rec["audio_path"], list) else [rec["audio_path"]]
        if not clips or not all(isinstance(c, str) for c in clips):
            raise ValueError(f"{path}: record {i} (id {rec['id']}): audio_path must be a path or a list of paths")
        records.append({**rec, "id": str(rec["id"]), "choices": list(rec.get("choices") or []),
                        "audio": [resolve_audio(c, audio_dir) for c in clips]})
    return records


def is_mmau_pro(path: str | os.PathLike) -> bool:
    """Whether a JSON/JSONL question file holds MMAU-Pro records (a ``category`` and a list ``audio_path``, or a
    ``task_identifier``) rather than MMAU's or MMAR's."""
    try:
        first = load_predictions(path)[:1]
    except ValueError:
        return False
    return bool(first) and ("task_identifier" in first[0] or isinstance(first[0].get("audio_path"), list))


def item_type(record: dict) -> str:
    """``"open"``, ``"instruction following"`` or ``"closed"``, by the record's ``category``."""
    category = record.get("category")
    return category if category in (OPEN, FOLLOWING) else CLOSED


# ---------------------------------------------------------------------------------------------- open-ended: the judge
def open_prompt(question: str, reference: str, response: str) -> str:
    """The official judge prompt of an open-ended item (its task context: general open-ended question answering)."""
    return (
        "You are an expert evaluator for general open-ended question answering tasks. Please evaluate the quality "
        f"of a model's response to a question.\n\nQuestion: {question}\n\nReference Answer: {reference}\n\n"
        f"Model Response: {response}\n\n"
        "Please evaluate the model response on the following criteria and provide scores from 1-5 (where 5 is best):"
        "\n\n1. **Correctness**: How factually accurate is the response compared to the reference?\n"
        "2. **Relevance**: How well does the response address the specific question asked?\n"
        "3. **Completeness**: Does the response cover all important aspects mentioned in the reference?\n"
        "4. **Clarity**: How clear and well-structured is the response?\n\n"
        "For each criterion, provide:\n- A score from 1-5\n- A brief justification (1-2 sentences)\n\n"
        "Format your response as:\n\n"
        "CORRECTNESS: [score] - [justification]\nRELEVANCE: [score] - [justification] \n"
        "COMPLETENESS: [score] - [justification]\nCLARITY: [score] - [justification]\n"
        "OVERALL: [average score] - [overall assessment]"
    )


def open_messages(question: str, reference: str, response: str) -> list[dict]:
    return [{"role": "system", "content": OFFICIAL_SYSTEM},
            {"role": "user", "content": open_prompt(question, reference, response)}]


def parse_open(reply: str) -> dict[str, float]:
    """The criteria scores and ``overall`` of a judge reply (see the module docstring for the fallbacks)."""
    scores = {}
    for name in CRITERIA:
        match = re.search(rf"{name.upper()}:\s*(\d+)", reply, re.IGNORECASE)
        scores[name] = float(match.group(1)) if match else NEUTRAL
    match = re.search(r"OVERALL:\s*(\d+(?:\.\d+)?)", reply, re.IGNORECASE)
    overall = float(match.group(1)) if match else NEUTRAL
    scores["overall"] = sum(scores[c] for c in CRITERIA) / len(CRITERIA) if overall == NEUTRAL else overall
    scores["unparsed"] = float(sum(re.search(rf"{n.upper()}:\s*\d", reply, re.IGNORECASE) is None
                                   for n in (*CRITERIA, "overall")))
    return scores


# ------------------------------------------------------------------------------------ instruction following: the rules
def _sentences(text: str) -> int:
    return len([s for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s.strip()])


def _alpha(text: str, keep_spaces: bool) -> str:
    return re.sub(r"[^a-zA-Z ]" if keep_spaces else r"[^a-zA-Z]", "", text).lower()


def _capital_words(text: str) -> int:
    return sum(word.isupper() for word in text.split())


def _within(value: float, kwargs: dict, how: str) -> bool:
    if how == "at least":
        return value >= kwargs.get("N", 0)
    if how == "at most":
        return value <= kwargs.get("N", 0)
    return kwargs.get("N1", 0) <= value <= kwargs.get("N2", 999)


def follows(response: str, task: str, kwargs: dict | str | None, question: str = "") -> bool:
    """Whether ``response`` passes the rule check ``task`` (an MMAU-Pro ``task_identifier``) with ``kwargs``; an
    unknown task fails, as the official script's fall-through does."""
    kw = json.loads(kwargs) if isinstance(kwargs, str) else dict(kwargs or {})
    low = response.lower()
    counted = re.fullmatch(r"(Number Words|Number Sentences|All-capital Words) \((at least|at most|range)\)", task)
    if counted:
        count = {"Number Words": lambda t: len(t.split()), "Number Sentences": _sentences,
                 "All-capital Words": _capital_words}[counted.group(1)](response)
        return _within(count, kw, counted.group(2))
    if task == "Include Keywords":
        return all(k.lower() in low for k in kw.get("keywords", "").split(", "))
    if task == "Forbidden Words":
        return not any(w.lower() in low for w in kw.get("forbidden_words", "").split(", "))
    if task == "Keyword Frequency":
        return len(re.findall(r"\b" + re.escape(kw.get("keyword", "").lower()) + r"\b", low)) == kw.get("N", 0)
    if task == "Number Paragraphs":
        return len([p for p in response.split("***") if p.strip()]) == kw.get("N", 0)
    if task == "Number Bullets":
        return len(re.findall(r"(?:^|\n)\s*\*\s+", response)) == kw.get("N", 0)
    if task == "Number Placeholder":
        return len(re.findall(r"\[[^\]]+\]", response)) >= kw.get("N", 0)
    if task == "Minimum Number Highlighted Section":
        return len(re.findall(r"\*([^*]+)\*", response)) >= kw.get("N", 0)
    if task == "Title":
        return re.search(r"<<[^>]+>>", response) is not None
    if task == "Postscript":
        return _alpha(kw.get("postscript_marker", ""), False) in _alpha(response, False)
    if task == "Start Checker":
        return _alpha(response, True).startswith(_alpha(kw.get("start_phrase", ""), True))
    if task == "End Checker":
        return _alpha(response, True).endswith(_alpha(kw.get("end_phrase", ""), True))
    if task == "Multiple Sections":
        parts = re.split(rf"\s*{re.escape(kw.get('section_splitter', ''))}\s*", response.strip())
        return len([p for p in parts if p.strip()]) == kw.get("N", 0)
    if task == "Repeat Prompt":
        return low.strip().startswith(question.strip().lower())
    if task == "Two Responses":
        parts = response.split("******")
        return len(parts) == 2 and parts[0].lower().strip() != parts[1].lower().strip()
    if task == "All Uppercase":
        return response.isupper()
    if task == "All Lowercase":
        return response.islower()
    if task == "Quotation":
        return response.strip().startswith('"') and response.strip().endswith('"')
    if task == "No Commas":
        return "," not in response
    return False


# ------------------------------------------------------------------------------------------------------------ scoring
def score_mmau_pro(records: Sequence[dict], judge, key: str = DEFAULT_KEY) -> dict:
    """Score MMAU-Pro predictions under ``key`` with ``judge`` (:class:`r1_aqa.judge.core.Judge`: its chat model
    grades open items, its embedder matches closed ones). Returns the judged score dict (``total`` in percent,
    ``category`` and ``type`` tables, per-item ``items``; see :mod:`r1_aqa.evaluate.judged`)."""
    records = list(records)
    responses = [_response(r, key) for r in records]
    kinds = [item_type(r) for r in records]
    outcome: list[float | None] = [None] * len(records)
    details: list[dict] = [{} for _ in records]
    closed = [i for i, k in enumerate(kinds) if k == CLOSED and len(records[i]["choices"]) > 1]
    if closed:
        matched = judge.nearest([responses[i] for i in closed], [records[i]["choices"] for i in closed])
        for i, (best, similarity) in zip(closed, matched):
            choice = records[i]["choices"][best]
            outcome[i] = float(choice == records[i]["answer"])
            details[i] = {"matched": choice, "similarity": round(similarity, 4)}
    opened = [i for i, k in enumerate(kinds) if k == OPEN]
    if opened:
        replies = judge.complete([open_messages(str(records[i]["question"]), str(records[i]["answer"]), responses[i])
                                  for i in opened])
        for i, reply in zip(opened, replies):
            scores = parse_open(reply)
            outcome[i] = scores["overall"] / 5
            details[i] = {**scores, "judge_reply": reply}
    for i, kind in enumerate(kinds):
        if kind == FOLLOWING:
            outcome[i] = float(follows(responses[i], str(records[i].get("task_identifier") or ""),
                                       records[i].get("kwargs"), str(records[i].get("question") or "")))
    return tally(records, kinds, outcome, details, key)


def _response(record: dict, key: str) -> str:
    """The response as the official script reads it: ``str()`` of the value for instruction following (missing:
    ""), the value with null as "" otherwise."""
    value = record.get(key)
    if item_type(record) == FOLLOWING:
        return "" if key not in record else str(value)
    return "" if value is None else str(value)


def tally(records: Sequence[dict], kinds: Sequence[str], outcome: Sequence[float | None], details: Sequence[dict],
          key: str) -> dict:
    """Category and type scores and the item-weighted total of the per-item outcomes (``None``: left out)."""
    groups: dict[str, dict[str, list[float]]] = {"category": {}, "type": {}}
    items = []
    for record, kind, value, detail in zip(records, kinds, outcome, details, strict=True):
        items.append({"id": record["id"], "category": record["category"], "type": kind, "score": value, **detail})
        if value is None:
            continue
        for group, name in (("category", record["category"]), ("type", kind)):
            entry = groups[group].setdefault(name, [0.0, 0])
            entry[0] += value
            entry[1] += 1
    scored = sum(n for _, n in groups["category"].values())
    total = sum(s for s, _ in groups["category"].values())
    left_out = sum(v is None for v in outcome)
    warnings = [f"{left_out} closed-ended items have fewer than two choices: left out, as the official script "
                "does"] if left_out else []
    unparsed = sum(1 for d in details if d.get("unparsed"))
    if unparsed:
        warnings.append(f"{unparsed} open-ended judge replies lacked a criterion line: each missing one counted "
                        f"{NEUTRAL} (the official rule)")
    return {"benchmark": "mmau-pro", "rule": "official MMAU-Pro rules (gamma-lab-umd/MMAU-Pro evaluation script)",
            "key": key, "total": pct(total, scored) if scored else None, "n": scored, "records": len(records),
            "left_out": left_out,
            **mean_tables(groups),
            "items": items, "warnings": warnings}


class MMAUPro(Benchmark):
    name = "mmau-pro"
    title = "MMAU-Pro"
    file_format = "MMAU-Pro records (a JSON list, JSON lines or the hub's parquet)"
    judged = True
    reads_parquet = True  # the hub's question file is a parquet
    sniff_first = True  # its JSON files are lists or lines, as MMAU's and MMAR's
    judge_model = OFFICIAL_JUDGE
    embed_model = OFFICIAL_EMBEDDER
    judge_tokens = 512  # the official script's
    clip_field = "audio_path"

    def read(self, data: Path, audio_dir: str | Path | None) -> list[dict]:
        return load_mmau_pro(data, audio_dir)

    def looks_like(self, data: Path) -> bool:
        return data.suffix != ".parquet" and data.is_file() and is_mmau_pro(data)

    def score_judged(self, records: Sequence[dict], judge, key: str) -> dict:
        return score_mmau_pro(records, judge, key)


BENCHMARK = MMAUPro()
