"""Rule-based rewards of R1-AQA, with TRL's reward-function signature.

A completion is either a string or a conversational list ``[{"role": "assistant", "content": ...}]``.
The training reward is the sum of accuracy and format (max 2.0), or accuracy and think-format with the
``think`` template.
"""

from __future__ import annotations

import re
from typing import Any

_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
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


def extract_answer(text: str) -> str:
    """The stripped content of the first ``<answer>...</answer>`` pair, else the whole stripped text."""
    match = _ANSWER.search(text)
    return (match.group(1) if match else text).strip()


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


REWARD_FUNCS = {"accuracy": accuracy_reward, "format": format_reward, "think_format": think_format_reward}


def resolve_reward(name: str):
    """A reward function by name: a key of ``REWARD_FUNCS``, or the import path of any callable with TRL's reward
    signature (``package.module.function``, importable in every training process)."""
    if name in REWARD_FUNCS:
        return REWARD_FUNCS[name]
    module_name, _, attr = name.rpartition(".")
    if not module_name:
        raise ValueError(f"unknown reward {name!r}: choose from {sorted(REWARD_FUNCS)} or give module.function")
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
