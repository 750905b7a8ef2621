"""Prompt templates of R1-AQA and the chat messages built from them (audio first in the user turn)."""

from __future__ import annotations

import re
from typing import Sequence

_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)

TEMPLATES = {
    "default": (
        "{question} Please choose the answer from the following options: {choices}. "
        "Output the final answer in <answer> </answer>."
    ),
    "think": (
        "{question} Please choose the answer from the following options: {choices}. "
        "Output the thinking process in <think> </think> and final answer in <answer> </answer>."
    ),
    "new": "{question}Select one option from the provided choices.{choices}",
}
# Open-ended items (no options): the same instructions without the options.
OPEN_TEMPLATES = {
    "default": "{question} Output the final answer in <answer> </answer>.",
    "think": "{question} Output the thinking process in <think> </think> and final answer in <answer> </answer>.",
    "new": "{question}",
}
END_OF_TURN = "<|im_end|>"  # ChatML's end of a turn, both supported families


def format_prompt(question: str, choices: Sequence[str], template: str = "default") -> str:
    """Fill a template; ``{choices}`` is the Python list repr of the options, as R1-AQA writes it. Without options
    (an open-ended item) the template's open form (:data:`OPEN_TEMPLATES`)."""
    if template not in TEMPLATES:
        raise ValueError(f"unknown template {template!r}; choose one of {sorted(TEMPLATES)}")
    if len(choices) == 0:
        return OPEN_TEMPLATES[template].format(question=question)
    return TEMPLATES[template].format(question=question, choices=str(list(choices)))


def build_messages(prompt: str, clips: int = 1) -> list[dict]:
    """One user turn: the audio placeholders first (one per clip), then the prompt text (no ``audio_url: None``
    key)."""
    return [{"role": "user", "content": [{"type": "audio"} for _ in range(clips)] + [{"type": "text", "text": prompt}]}]


def chat_prompt(processor, prompt: str, clips: int = 1) -> str:
    """The model's chat-template text for one user prompt with ``clips`` clips (one audio placeholder each)."""
    return processor.apply_chat_template(build_messages(prompt, clips), add_generation_prompt=True, tokenize=False)


def extract_answer(text: str) -> str:
    """The stripped content of the first ``<answer>...</answer>`` pair (what the templates ask for), else the whole
    stripped text."""
    match = _ANSWER.search(text)
    return (match.group(1) if match else text).strip()
