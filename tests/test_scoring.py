"""The scorers: the official MMAU token rule, the MMSU letter and strict rules, permutations, versions, the CLI."""

from __future__ import annotations

import copy
import json

import pytest
from helpers import MMAU_DIR, needs_mmau

from r1_aqa import cli
from r1_aqa.benchmarks.common import mmau_match, permutation_consistency, tokenize
from r1_aqa.benchmarks.mmau import BENCHMARK as MMAU
from r1_aqa.benchmarks.mmau import mmau_version
from r1_aqa.benchmarks.mmsu import BENCHMARK as MMSU
from r1_aqa.benchmarks.mmsu import category_path, mmsu_item, mmsu_letter
from r1_aqa.benchmarks.token_rule import ambiguous_items

MMAU_FILES = {"2025-01-28": MMAU_DIR / "mmau-test-mini.2025-01-28.json",
              "v05.15.25": MMAU_DIR / "mmau-test-mini.v05.15.25.json"}
# Items where a wrong option has the answer's token set (checked by hand: reordered emotion pairs, "ninety-one",
# a list option in a different order, "not a bad thing" vs "a bad thing, not good").
AMBIGUOUS_COUNT = {"2025-01-28": 4, "v05.15.25": 9}


DOG = ["Dog barking", "A car horn", "Rain"]
PIANO = ["Piano", "Electric piano", "Guitar"]
MAN = ["Man", "Woman", "Child", "Robot"]


@pytest.mark.parametrize("answer,choices,prediction,expected", [
    ("Man", MAN, "Man", True),
    ("Man", MAN, "man.", True),                       # case and punctuation are ignored
    ("Man", MAN, "The answer is: MAN!", True),        # extra words that no option has are allowed
    ("Man", MAN, "Woman", False),                     # "man" is not a token of "woman"
    ("Man", MAN, "Man or woman", False),              # a token only a wrong option has
    ("Man", MAN, "A", False),                         # a bare letter: no letter mapping
    ("Man", MAN, "(A) Man", True),                    # "a" belongs to no option here
    ("Dog barking", DOG, "(A) Dog barking", False),   # ...but here "a" is a wrong option's token
    ("Dog barking", DOG, "barking", False),           # every answer token is needed
    ("Dog barking", DOG, "dog-barking", True),        # the hyphen splits tokens
    ("Piano", PIANO, "Piano", True),                  # answer tokens are a subset of a wrong option's
    ("Piano", PIANO, "Electric piano", False),
    ("Piano", PIANO, "piano, not electric", False),
    ("Man", MAN, "", False),                          # empty and token-less predictions are wrong
    ("Man", MAN, " ?! ", False),
    ("light_switch", ["light_switch", "light"], "light", False),  # "_" is a word character
])
def test_mmau_rule_hand_checked(answer, choices, prediction, expected):
    assert mmau_match(answer, prediction, choices) is expected


def test_tokenize_is_lowercased_word_set():
    assert tokenize("The DOG's bark, the dog!") == {"the", "dog", "s", "bark"}


def _mmau(version: str) -> list[dict]:
    return json.loads(MMAU_FILES[version].read_text(encoding="utf-8"))


@needs_mmau
@pytest.mark.parametrize("version", list(MMAU_FILES))
def test_real_files_answer_scores_and_wrong_options_do_not(version):
    records = _mmau(version)
    assert all(mmau_match(r["answer"], r["answer"], r["choices"]) for r in records)
    wrong_scores = {r["id"] for r in records
                    for c in r["choices"] if c != r["answer"] and mmau_match(r["answer"], c, r["choices"])}
    ambiguous = ambiguous_items(records)
    assert {a["id"] for a in ambiguous} == wrong_scores
    assert len(ambiguous) == AMBIGUOUS_COUNT[version]
    for item in ambiguous:
        assert all(tokenize(o) == tokenize(item["answer"]) and o != item["answer"] for o in item["same_tokens"])


@needs_mmau
@pytest.mark.parametrize("version", list(MMAU_FILES))
def test_version_fingerprint(version):
    records = _mmau(version)
    assert mmau_version(records) == version
    shuffled = copy.deepcopy(records)[::-1]
    for r in shuffled:
        r["choices"] = r["choices"][::-1]
        r["model_output"] = "x"
    assert mmau_version(shuffled) == version           # record and option order and extra fields do not matter
    assert mmau_version(records[:999]) == "unknown"    # a subset
    edited = copy.deepcopy(records)
    edited[0]["answer"] += " "
    assert mmau_version(edited) == "unknown"


def _item(id_, task, difficulty, sub, answer, choices, **extra):
    return {"id": id_, "task": task, "difficulty": difficulty, "sub-category": sub, "question": "q",
            "answer": answer, "choices": choices, **extra}


def test_score_mmau_breakdowns_missing_and_null():
    records = [
        _item("a", "sound", "easy", "S1", "Man", MAN, model_output="man"),
        _item("b", "sound", "hard", "S1", "Man", MAN, model_output="woman"),
        _item("c", "music", "easy", "M1", "Piano", PIANO, model_output="Piano"),
        _item("d", "music", "easy", "M1", "Piano", PIANO),                       # no key: dropped
        _item("e", "speech", "medium", "P1", "Man", MAN, model_output=None),     # null: dropped
        _item("f", "speech", "medium", "P1", "Man", MAN, model_output=""),       # empty: wrong
    ]
    score = MMAU.score(records)
    assert (score["total"], score["n"], score["correct"]) == (50.0, 4, 2)
    assert score["task"] == {"sound": 50.0, "music": 100.0, "speech": 0.0}
    assert score["difficulty"] == {"easy": 100.0, "hard": 0.0, "medium": 0.0}
    assert score["sub-category"] == {"S1": 50.0, "M1": 100.0, "P1": 0.0}
    assert score["counts"]["task"]["speech"] == [0, 1]
    assert (score["missing"], score["null"], score["records"], score["total_all"]) == (1, 1, 6, 33.33)
    assert score["version"] == "unknown"
    assert any("no 'model_output'" in w for w in score["warnings"])
    assert any("null" in w for w in score["warnings"])


def test_score_mmau_rounds_like_the_official_script():
    records = [_item(str(i), "sound", "easy", "S", "Man", MAN, model_output="Man" if i < 2 else "Robot")
               for i in range(3)]
    assert MMAU.score(records)["total"] == 66.67


def test_score_mmau_rejects_unusable_records():
    with pytest.raises(ValueError, match="record a"):
        MMAU.score([_item("a", "sound", "easy", "S", "Man", MAN, model_output=["Man"])])
    with pytest.raises(ValueError, match="record b"):
        MMAU.score([{"id": "b", "choices": MAN, "model_output": "Man"}])


@pytest.mark.parametrize("response,letter", [
    ("A", "A"), ("B. Dog barking", "B"), ("The answer is C.", "C"), ("The answer is (D)", "D"),
    ("\n B \n", "B"), ("Dog", "D"),            # the official rule reads any leading A-D, even a word's
    ("answer: d", None), ("cat", None), ("x", None), ("", None), ("None", None), ("  \n ", None),
])
def test_mmsu_letter_rule(response, letter):
    assert mmsu_letter(response) == letter


def _mmsu(key, category, output=..., answer_index=1):
    record = {"key": key, "options": ["dog", "cat", "bird", "cow"], "answer_index": answer_index,
              "category": category}
    if output is not ...:
        record["model_output"] = output
    return record


def test_score_mmsu_official_and_strict():
    records = [
        _mmsu("1", "perception-linguistics-semantics", "B"),          # right
        _mmsu("2", "perception-paralinguistics-emotion", "A"),        # wrong
        _mmsu("3", "reasoning-linguistics-semantics", "I don't know"),  # unparsed: dropped
        _mmsu("4", "reasoning-linguistics-semantics", ""),            # empty: wrong
        _mmsu("5", "reasoning-linguistics-semantics"),                # missing: wrong
        _mmsu("6", "reasoning-paralinguistics-emotion", " cat "),     # unparsed (officially), strictly right
        _mmsu("7", "reasoning-paralinguistics-emotion", None),        # null: dropped
    ]
    score = MMSU.score(records)
    assert (score["total"], score["n"], score["correct"]) == (25.0, 4, 1)
    assert (score["unparsed"], score["null"], score["empty"], score["missing"]) == (2, 1, 1, 1)
    assert score["category"]["perception"] == 50.0
    assert score["category"]["perception-linguistics"] == 100.0
    assert score["category"]["reasoning"] == 0.0
    assert score["counts"]["category"]["reasoning-linguistics-semantics"] == [0, 2]
    strict = score["strict"]
    assert (strict["total"], strict["n"], strict["correct"]) == (14.29, 7, 1)
    assert strict["category"]["reasoning-paralinguistics"] == 50.0
    assert any("no A-D letter" in w for w in score["warnings"])


def test_mmsu_names_the_key_of_another_tool():
    records = [{**_mmsu("1", "perception"), "model_prediction": "B"}, _mmsu("2", "perception", "B")]
    score = MMSU.score(records)
    assert (score["missing"], score["total"]) == (1, 50.0)  # still scored as wrong, as the official scorer counts it
    assert "1 records have 'model_prediction' but not 'model_output'" in " ".join(score["warnings"])
    assert not any("another tool" in w for w in MMSU.score(records, key="model_prediction")["warnings"])


def test_mmsu_formats_and_duplicate_options():
    official = {"choice_a": "yes", "choice_b": "no", "choice_c": "yes", "choice_d": "maybe", "answer_gt": "yes",
                "category": "Reasoning", "sub-category": "Sarcasm", "model_output": "C"}
    assert mmsu_item(official) == (["yes", "no", "yes", "maybe"], "yes")
    assert category_path(official) == ["Reasoning", "Reasoning-Sarcasm"]
    assert MMSU.score([official])["total"] == 100.0  # the official check compares option texts
    with pytest.raises(ValueError, match="record z"):
        mmsu_item({"id": "z", "question": "q"})


def test_permutation_consistency():
    outcomes = {("1", 0): True, ("1", 1): True, ("2", 0): True, ("2", 1): False,
                ("3", 0): False, ("3", 1): True, ("4", 0): True}
    records = [{"id": i, "permutation": k, "ok": ok} for (i, k), ok in outcomes.items()]
    result = permutation_consistency(records, lambda r: r["ok"])
    assert result == {"k": 2, "items": 4, "consistent": 25.0, "consistent_n": 1, "incomplete": 1,
                      "per_order": {"0": 75.0, "1": 66.67}}
    with pytest.raises(ValueError, match="permutation 0 appears twice"):
        permutation_consistency(records + records[:1], lambda r: r["ok"])


def test_score_mmau_with_permutations_uses_order_zero_officially():
    records = []
    for i, (first, second) in enumerate([("Man", "Man"), ("Man", "Robot"), ("Robot", "Man")]):
        records.append(_item(str(i), "sound", "easy", "S", "Man", MAN, model_output=first, permutation=0))
        records.append(_item(str(i), "sound", "easy", "S", "Man", MAN[::-1], model_output=second, permutation=1))
    score = MMAU.score(records)
    assert (score["total"], score["n"], score["records"]) == (66.67, 3, 3)
    assert score["permutations"]["consistent"] == 33.33
    assert score["permutations"]["per_order"] == {"0": 66.67, "1": 66.67}


@needs_mmau
def test_cli_json_and_report(tmp_path, capsys):
    records = _mmau("v05.15.25")
    for i, r in enumerate(records):
        if i % 4:
            r["model_output"] = r["answer"]
        elif i % 8:
            r["model_output"] = next(c for c in r["choices"] if tokenize(c) != tokenize(r["answer"]))
    path = tmp_path / "pred.json"
    path.write_text(json.dumps(records), encoding="utf-8")
    assert cli.main(["score", "--benchmark", "mmau", "--predictions", str(path), "--json"]) == 0
    out, err = capsys.readouterr()
    score = json.loads(out)
    assert {"total", "n", "task", "difficulty", "sub-category", "missing", "version", "ambiguous"} <= set(score)
    assert (score["n"], score["missing"], score["version"]) == (875, 125, "v05.15.25")
    assert score["total"] == round(750 / 875 * 100, 2)
    assert list(score["task"]) == ["sound", "music", "speech"]
    assert len(score["ambiguous"]) == AMBIGUOUS_COUNT["v05.15.25"]
    assert "125 of 1000 records have no 'model_output'" in err
    for suffix in ("json", "md", "png"):
        assert (tmp_path / f"pred.score.{suffix}").stat().st_size > 0


def test_cli_legacy_key(tmp_path, capsys):
    path = tmp_path / "old.json"
    path.write_text(json.dumps([_item("a", "sound", "easy", "S", "Man", MAN, model_prediction="Man")]))
    assert cli.main(["score", "--benchmark", "mmau", "--predictions", str(path), "--no-report"]) == 2
    err = capsys.readouterr().err
    assert "--key model_prediction" in err and "no record has a usable 'model_output'" in err
    assert cli.main(["score", "--benchmark", "mmau", "--predictions", str(path), "--no-report", "--json",
                     "--key", "model_prediction"]) == 0
    assert json.loads(capsys.readouterr().out)["total"] == 100.0
    assert not list(tmp_path.glob("*.score.*"))


def test_cli_malformed_file(tmp_path, capsys):
    path = tmp_path / "bad.json"
    path.write_text("[{")
    assert cli.main(["score", "--benchmark", "mmsu", "--predictions", str(path)]) == 2
    assert "bad.json: not valid JSON" in capsys.readouterr().err
