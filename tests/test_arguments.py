"""``eval`` and ``filter`` flags made from their argument dataclasses: both spellings, registry choices, resume keys."""

from __future__ import annotations

import pytest

from r1_aqa.cli import build_parser
from r1_aqa.evaluate.arguments import EvalArguments, GenerationArguments, from_namespace, resume_settings
from r1_aqa.evaluate.engines import ENGINES
from r1_aqa.evaluate.filter import FilterArguments
from r1_aqa.prompts import TEMPLATES

COMMANDS = {"eval": ["--data", "d.json", "--model", "m", "--output", "p.json"],
            "filter": ["--data", "d.parquet", "--model", "m", "--output", "o.parquet"]}


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("spelling", ["--max-audio-seconds", "--max_audio_seconds"])
def test_both_spellings_set_the_field(command, spelling):
    args = build_parser().parse_args([command, *COMMANDS[command], spelling, "12.5", "--max_new_tokens", "7",
                                      "--batch-size", "3"])
    opts = from_namespace(EvalArguments if command == "eval" else FilterArguments, args)
    assert (opts.max_audio_seconds, opts.max_new_tokens, opts.batch_size) == (12.5, 7, 3)


@pytest.mark.parametrize("command", COMMANDS)
def test_defaults_are_the_dataclass_defaults_and_help_shows_one_spelling(command, capsys):
    parser = build_parser()
    opts = from_namespace(EvalArguments if command == "eval" else FilterArguments,
                          parser.parse_args([command, *COMMANDS[command]]))
    assert (opts.engine, opts.template, opts.max_new_tokens, opts.max_audio_seconds, opts.dtype) == (
        "hf", "default", 256, None, "auto")
    with pytest.raises(SystemExit):
        parser.parse_args([command, "--help"])
    text = capsys.readouterr().out
    assert "--max-audio-seconds" in text and "--max_audio_seconds" not in text
    assert "{" + ",".join(TEMPLATES) + "}" in text and "{" + ",".join(ENGINES) + "}" in text


@pytest.mark.parametrize("command", COMMANDS)
def test_a_bad_choice_is_refused(command, capsys):
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args([command, *COMMANDS[command], "--template", "nope"])
    assert e.value.code == 2 and "invalid choice: 'nope'" in capsys.readouterr().err


def test_resume_settings_come_from_the_fields():
    assert set(resume_settings(EvalArguments)) == {"benchmark", "data", "model", "model_files", "engine", "dtype",
                                                   "template", "sampling", "max_audio_seconds", "permutations",
                                                   "silence"}
    assert set(resume_settings(FilterArguments)) == {"data", "models", "engine", "dtype", "template",
                                                     "max_new_tokens", "max_audio_seconds", "samples",
                                                     "temperature", "seed", "limit"}
    assert "batch_size" not in resume_settings(GenerationArguments)  # batches do not change greedy answers
