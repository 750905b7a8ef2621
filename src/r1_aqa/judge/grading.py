"""What a judge is asked and how its reply is read.

Two questions: a response graded against a reference answer (``GRADE: n`` with n in 0-10, the grade n/10), and one
rubric line judged met or not (``VERDICT: YES``/``NO``). A reply that does not hold its line (or a grade outside
0-10) is *unparsable* and counts :data:`UNPARSABLE`, 0.0: an answer the judge could not grade earns nothing, and
every scorer counts and reports such replies.
"""

from __future__ import annotations

import re
from typing import Sequence

UNPARSABLE = 0.0  # what a reply without a readable grade or verdict counts as (a reward, a score)
MAX_GRADE = 10
SYSTEM = "You are a strict, objective grader of answers to questions about audio recordings."
_GRADE = re.compile(r"GRADE:\s*(\d+(?:\.\d+)?)", re.IGNORECASE)
_VERDICT = re.compile(r"VERDICT:\s*(YES|NO)\b", re.IGNORECASE)


def reference_messages(question: str, reference: str, response: str) -> list[dict]:
    """The chat asking for a 0-10 grade of ``response`` against the ``reference`` answer of ``question``."""
    user = (f"Question: {question}\n\nReference answer: {reference}\n\nResponse to grade: {response}\n\n"
            f"How well does the response answer the question, judged against the reference answer? Grade it from 0 "
            f"(wrong or missing) to {MAX_GRADE} (correct and complete; wording may differ). Reply with one line: "
            f"GRADE: <integer 0-{MAX_GRADE}>")
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def rubric_messages(question: str, line: str, response: str) -> list[dict]:
    """The chat asking whether ``response`` meets one rubric ``line``."""
    user = (f"Question: {question}\n\nResponse to grade: {response}\n\nCriterion: {line}\n\nDoes the response meet "
            "the criterion? Reply with one line: VERDICT: YES or VERDICT: NO")
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def parse_grade(reply: str) -> float | None:
    """The first ``GRADE: n`` of a reply as n/10, or ``None`` when there is none or n is outside 0-10."""
    match = _GRADE.search(reply)
    if match is None:
        return None
    grade = float(match.group(1))
    return grade / MAX_GRADE if 0 <= grade <= MAX_GRADE else None


def parse_verdict(reply: str) -> float | None:
    """1.0 for ``VERDICT: YES``, 0.0 for ``VERDICT: NO`` (the first one), ``None`` without either."""
    match = _VERDICT.search(reply)
    return None if match is None else float(match.group(1).upper() == "YES")


def or_unparsable(value: float | None) -> float:
    """A parsed grade, or :data:`UNPARSABLE` for ``None``."""
    return UNPARSABLE if value is None else value


def rubric_share(verdicts: Sequence[float | None], weights: Sequence[float] | None = None) -> float:
    """The weighted share of rubric lines met: sum(weight x verdict) / sum(weight); an unparsable verdict counts
    :data:`UNPARSABLE`. ``weights`` default to 1 each; they must be >= 0 with a positive sum."""
    weights = [1.0] * len(verdicts) if weights is None or len(weights) == 0 else [float(w) for w in weights]
    if len(weights) != len(verdicts):
        raise ValueError(f"{len(verdicts)} rubric lines but {len(weights)} weights")
    if any(w < 0 for w in weights) or sum(weights) <= 0:
        raise ValueError(f"rubric weights must be >= 0 with a positive sum, got {weights}")
    return sum(w * or_unparsable(v) for w, v in zip(weights, verdicts)) / sum(weights)
