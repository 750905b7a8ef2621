"""R1-AQA prompt templates, exact text, and the chat message (audio first, no ``audio_url`` key)."""

from __future__ import annotations

import pytest

from r1_aqa.prompts import build_messages, format_prompt

QUESTION = "What is the man doing?"
CHOICES = ("running", "it's raining", "singing")  # a tuple and an apostrophe: the repr is still a Python list
CHOICES_REPR = "['running', \"it's raining\", 'singing']"


@pytest.mark.parametrize("template, expected", [
    ("default", f"What is the man doing? Please choose the answer from the following options: {CHOICES_REPR}. "
                "Output the final answer in <answer> </answer>."),
    ("think", f"What is the man doing? Please choose the answer from the following options: {CHOICES_REPR}. "
              "Output the thinking process in <think> </think> and final answer in <answer> </answer>."),
    ("new", f"What is the man doing?Select one option from the provided choices.{CHOICES_REPR}"),
])
def test_templates_exact_text(template, expected):
    assert format_prompt(QUESTION, CHOICES, template) == expected


def test_default_template_is_default():
    assert format_prompt(QUESTION, CHOICES) == format_prompt(QUESTION, CHOICES, "default")


def test_unknown_template_names_choices():
    with pytest.raises(ValueError, match="unknown template 'cot'.*default"):
        format_prompt(QUESTION, CHOICES, "cot")


def test_messages_put_audio_first_and_keep_the_text():
    prompt = format_prompt(QUESTION, CHOICES)
    assert build_messages(prompt) == [
        {"role": "user", "content": [{"type": "audio"}, {"type": "text", "text": prompt}]}
    ]
    assert all("audio_url" not in item for item in build_messages(prompt)[0]["content"])
