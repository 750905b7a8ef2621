"""R1-AQA rewards on a table of completions, adversarial ones included."""

import pytest

from r1_aqa.prompts import extract_answer
from r1_aqa.training.rewards import (
    accuracy_reward,
    completion_text,
    default_rewards,
    format_reward,
    think_format_reward,
)

SOL = "<answer>Dog barking</answer>"

# (completion, accuracy, format, think_format)
CASES = [
    ("<answer>Dog barking</answer>", 1, 1, 0),
    ("<answer> Dog barking \n</answer>", 1, 1, 0),  # content is stripped
    ("<answer>dog barking</answer>", 0, 1, 0),  # exact match: case matters
    ("<answer>Dog barking.</answer>", 0, 1, 0),
    ("Dog barking", 1, 0, 0),  # no tag pair: whole stripped completion compared
    ("  Dog barking\n", 1, 0, 0),
    ("The answer is <answer>Dog barking</answer>", 1, 0, 0),  # text outside the tags breaks format only
    ("<answer>Dog barking</answer> extra", 1, 0, 0),
    ("<answer>Cat</answer><answer>Dog barking</answer>", 0, 1, 0),  # first pair counts; lazy full match spans both
    ("<answer>Dog barking", 0, 0, 0),  # unclosed: whole text compared
    ("</answer>Dog barking<answer>", 0, 0, 0),
    ("<answer>\nDog\nbarking</answer>", 0, 1, 0),
    ("<answer></answer>", 0, 1, 0),
    ("", 0, 0, 0),
    ("<think>It barks.</think><answer>Dog barking</answer>", 1, 0, 1),
    ("<think>It barks.</think>\n\n<answer>Dog barking</answer>", 1, 0, 1),
    ("<think>a</think> x <answer>Dog barking</answer>", 1, 0, 0),  # only whitespace between blocks
    ("<answer>Dog barking</answer><think>late</think>", 1, 0, 0),
    ("<think>multi\nline</think><answer>Dog barking</answer>\n", 1, 0, 0),  # trailing newline breaks full match
]


@pytest.mark.parametrize("completion,acc,fmt,think", CASES)
def test_reward_table(completion, acc, fmt, think):
    assert accuracy_reward([completion], [SOL]) == [acc]
    assert format_reward([completion]) == [fmt]
    assert think_format_reward([completion]) == [think]


def test_conversational_completions_and_batching():
    convs = [[{"role": "assistant", "content": "<answer>Dog barking</answer>"}],
             [{"role": "assistant", "content": [{"type": "text", "text": "<answer>Cat</answer>"}]}]]
    assert accuracy_reward(convs, [SOL, SOL]) == [1.0, 0.0]
    assert format_reward(convs) == [1.0, 1.0]
    assert completion_text(convs[1]) == "<answer>Cat</answer>"


def test_solution_may_be_plain_text_and_lengths_must_match():
    assert accuracy_reward(["<answer>x</answer>"], ["x"]) == [1.0]
    with pytest.raises(ValueError):
        accuracy_reward(["a", "b"], [SOL])


def test_extract_and_defaults():
    assert extract_answer("pre <answer> B </answer> <answer>C</answer>") == "B"
    assert default_rewards("default") == ["accuracy", "format"]
    assert default_rewards("think") == ["accuracy", "think_format"]


def test_rewards_resolve_by_name_or_import_path():
    from r1_aqa.training.rewards import resolve_reward

    assert resolve_reward("accuracy") is accuracy_reward
    assert resolve_reward("r1_aqa.training.rewards.format_reward") is format_reward
    for name, message in [("acuracy", "unknown reward"), ("r1_aqa.training.rewards.nope", "cannot be imported"),
                          ("no_such_module.f", "cannot be imported"), ("r1_aqa.training.rewards.REWARD_FUNCS", "not callable")]:
        with pytest.raises(ValueError, match=message):
            resolve_reward(name)
