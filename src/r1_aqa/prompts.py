"""Prompt templates of R1-AQA and the chat messages built from them (audio first in the user turn)."""

from __future__ import annotations

from typing import Sequence

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
END_OF_TURN = "<|im_end|>"  # ChatML's end of a turn, both supported families


def format_prompt(question: str, choices: Sequence[str], template: str = "default") -> str:
    """Fill a template; ``{choices}`` is the Python list repr of the options, as R1-AQA writes it."""
    if template not in TEMPLATES:
        raise ValueError(f"unknown template {template!r}; choose one of {sorted(TEMPLATES)}")
    return TEMPLATES[template].format(question=question, choices=str(list(choices)))


def build_messages(prompt: str) -> list[dict]:
    """One user turn: the audio placeholder first, then the prompt text (no ``audio_url: None`` key)."""
    return [{"role": "user", "content": [{"type": "audio"}, {"type": "text", "text": prompt}]}]


def chat_prompt(processor, prompt: str) -> str:
    """The model's chat-template text for one user prompt with one clip (a single audio placeholder)."""
    return processor.apply_chat_template(build_messages(prompt), add_generation_prompt=True, tokenize=False)
