"""Rule-based rewards of R1-AQA, with TRL's reward-function signature.

A completion is either a string or a conversational list ``[{"role": "assistant", "content": ...}]``.
The training reward is the sum of accuracy and format (max 2.0), or accuracy and think-format with the
``think`` template.

Judged rewards (:data:`JUDGED_REWARDS`: ``judge``, ``rubric``, ``embed_match``) need a judge (``train
--judge_model``, :class:`r1_aqa.judge.core.Judge`): they are objects built by :func:`resolve_reward` around it. Each
grades a whole generation batch in one batched, cached judge call and logs ``judge/<reward>/seconds``,
``judge/<reward>/calls`` (replies asked of the judge) and ``judge/<reward>/cache_hits`` through TRL's ``log_metric``.
The answer judged is the extracted answer (:func:`extract_answer`). An unparsable judge reply earns
``judge.grading.UNPARSABLE`` (0.0), counted as ``judge/<reward>/unparsable``.
"""

from __future__ import annotations

import re
from typing import Any

from ..prompts import extract_answer

_FORMAT = re.compile(r"<answer>.*?</answer>", re.DOTALL)
_THINK_FORMAT = re.compile(r"<think>.*?</think>\s*<answer>.*?</answer>", re.DOTALL)


def completion_text(completion: Any) -> str:
    """The text of a completion: the string itself, or the content of the last message of a conversation."""
    if isinstance(completion, str):
        return completion
    content = completion[-1]["content"]
    if isinstance(content, list):  # multimodal content items
        content = "".join(item.get("text", "") for item in content if isinstance(item, dict))
    return content


def accuracy_reward(completions: list, solution: list[str], **kwargs) -> list[float]:
    """1.0 iff the extracted answer equals the solution's answer text exactly, else 0.0.

    The extracted answer is the stripped text inside the first ``<answer>...</answer>`` (DOTALL); with no tag
    pair, the whole stripped completion. ``solution`` is ``<answer>TEXT</answer>`` (or plain ``TEXT``).
    """
    return [float(extract_answer(completion_text(c)) == extract_answer(s))
            for c, s in zip(completions, solution, strict=True)]


def format_reward(completions: list, **kwargs) -> list[float]:
    """1.0 iff the whole completion matches ``<answer>.*?</answer>`` (DOTALL, full match), else 0.0."""
    return [float(_FORMAT.fullmatch(completion_text(c)) is not None) for c in completions]


def think_format_reward(completions: list, **kwargs) -> list[float]:
    """1.0 iff the whole completion matches ``<think>.*?</think>\\s*<answer>.*?</answer>`` (DOTALL), else 0.0."""
    return [float(_THINK_FORMAT.fullmatch(completion_text(c)) is not None) for c in completions]


class JudgedReward:
    """A reward graded by a judge, with TRL's reward signature; ``__name__`` is its registry name (TRL logs
    ``rewards/<name>/mean``)."""

    def __init__(self, name: str, judge):
        self.__name__ = name
        self.judge = judge

    def __call__(self, completions: list, log_metric=None, **columns) -> list[float]:
        import time

        before = self._counts()
        start = time.monotonic()
        answers = [extract_answer(completion_text(c)) for c in completions]
        rewards = self.score(answers, columns)
        if log_metric is not None:
            after = self._counts()
            log_metric(f"judge/{self.__name__}/seconds", time.monotonic() - start)
            for name, old, new in zip(("calls", "cache_hits", "unparsable"), before, after):
                log_metric(f"judge/{self.__name__}/{name}", float(new - old))
        return rewards

    def _counts(self) -> tuple[int, int, int]:
        """Replies and embeddings asked of the judge, answered from its cache, and unparsable replies, so far."""
        stats = self.judge.stats
        return stats.calls + stats.embedded, stats.hits + stats.embed_hits, stats.unparsable

    def score(self, answers: list[str], columns: dict) -> list[float]:
        from ..judge.grading import or_unparsable, rubric_share

        questions = columns.get("question")
        if self.__name__ == "judge":  # against the reference answer (else the solution's answer text)
            references = _references(columns, len(answers))
            return [or_unparsable(g) for g in self.judge.grade(questions, references, answers)]
        if self.__name__ == "rubric":  # every rubric line of every completion in one judge call; none: 0
            rubrics, weights = columns["rubric"], columns.get("rubric_weights") or [None] * len(answers)
            asked = [(q, line, a) for q, lines, a in zip(questions, rubrics, answers, strict=True) for line in lines]
            verdicts = iter(self.judge.verdicts(*zip(*asked)) if asked else [])
            return [rubric_share([next(verdicts) for _ in lines], w) if len(lines) else 0.0
                    for lines, w in zip(rubrics, weights, strict=True)]
        # embed_match: with options, 1.0 iff the nearest option is the answer; without, the cosine similarity to the
        # reference answer (0 when negative)
        choices = columns.get("choices") or [[]] * len(answers)
        targets = _references(columns, len(answers))
        groups = [list(c) if len(c) else [t] for c, t in zip(choices, targets, strict=True)]
        matched = self.judge.nearest(answers, groups)
        return [float(g[i] == t) if len(c) else max(0.0, sim)
                for (i, sim), g, c, t in zip(matched, groups, choices, targets, strict=True)]


def _references(columns: dict, n: int) -> list[str]:
    """Each row's reference answer: its ``reference``, else the answer text of its ``solution``."""
    references = columns.get("reference") or [None] * n
    solutions = columns.get("solution") or [""] * n
    return [r or extract_answer(s) for r, s in zip(references, solutions, strict=True)]


REWARD_FUNCS = {"accuracy": accuracy_reward, "format": format_reward, "think_format": think_format_reward}
# Rewards graded by a judge: what each needs from the dataset besides the completions.
JUDGED_REWARDS = {"judge": ("question", "reference"), "rubric": ("question", "rubric", "rubric_weights"),
                  "embed_match": ("choices", "reference")}


def resolve_reward(name: str, judge=None):
    """A reward function by name: a key of ``REWARD_FUNCS`` or ``JUDGED_REWARDS`` (these need ``judge``), or the
    import path of any callable with TRL's reward signature (``package.module.function``, importable in every
    training process)."""
    if name in REWARD_FUNCS:
        return REWARD_FUNCS[name]
    if name in JUDGED_REWARDS:
        if judge is None:
            raise ValueError(f"reward {name!r} is graded by a judge: give --judge_model DIR_OR_URL")
        return JudgedReward(name, judge)
    module_name, _, attr = name.rpartition(".")
    if not module_name:
        raise ValueError(f"unknown reward {name!r}: choose from {sorted([*REWARD_FUNCS, *JUDGED_REWARDS])} or give "
                         "module.function")
    import importlib

    try:
        func = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"reward {name!r} cannot be imported: {e}") from e
    if not callable(func):
        raise ValueError(f"reward {name!r} is not callable")
    return func


def default_rewards(template: str) -> list[str]:
    """The R1-AQA reward set for a prompt template: accuracy + format, or + think_format for ``think``."""
    return ["accuracy", "think_format" if template == "think" else "format"]
