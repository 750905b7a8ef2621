"""MMAR: the question file's reader, its scorer on predictions built from the real MMAR-meta.jsonl, prepare, eval."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest
from helpers import MMAR_META, needs_mmar, write_tone

from r1_aqa.benchmarks.common import tokenize
from r1_aqa.benchmarks.mmar import BENCHMARK as MMAR
from r1_aqa.benchmarks.mmar import MODALITIES as MMAR_MODALITIES
from r1_aqa.benchmarks.mmar import load_mmar
from r1_aqa.benchmarks.token_rule import ambiguous_items
from r1_aqa.cli import main
from r1_aqa.evaluate.predict import prediction_fields

pytestmark = needs_mmar


@pytest.fixture(scope="module")
def meta() -> list[dict]:
    return [json.loads(line) for line in MMAR_META.read_text(encoding="utf-8").splitlines()]


def _write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def _score_cli(capsys, predictions: Path, *extra: str) -> tuple[int, dict | None, str]:
    code = main(["score", "--benchmark", "mmar", "--predictions", str(predictions), "--json", *extra])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if code == 0 else None), err


# ---------------------------------------------------------------------------------------------------------- reader
def test_real_file_loads(meta):
    records = load_mmar(MMAR_META)
    assert len(records) == len(meta) == 1000
    assert all(r["choices"][r["answer_idx"]] == r["answer"] for r in records)
    assert {r["modality"] for r in records} == set(MMAR_MODALITIES)
    assert all(r["audio"] is None for r in records)  # no clips beside the question file


@pytest.mark.parametrize("edit,message", [
    (lambda r: r.pop("modality"), "missing field(s): modality"),
    (lambda r: r.update(answer="Nowhere"), "answer 'Nowhere' is not one of its choices"),
    (lambda r: r.update(choices="A, B"), "choices must be a list of strings"),
    (lambda r: r.update(question=7), "question must be a string"),
])
def test_bad_question_file_names_the_line(meta, tmp_path, edit, message):
    records = [dict(r) for r in meta[:10]]
    edit(records[6])
    path = _write_jsonl(tmp_path / "meta.jsonl", records)
    with pytest.raises(ValueError, match=r"meta\.jsonl:7: " + re.escape(message)):
        load_mmar(path)


def test_repeated_id_and_broken_line_name_the_line(meta, tmp_path):
    path = _write_jsonl(tmp_path / "meta.jsonl", meta[:3] + [meta[1]])
    with pytest.raises(ValueError, match=r"meta\.jsonl:4: id .* already on line 2"):
        load_mmar(path)
    path.write_text(path.read_text().replace("{", "[", 1))
    with pytest.raises(ValueError, match=r"meta\.jsonl:1: not valid JSON"):
        load_mmar(path)


# ---------------------------------------------------------------------------------------------------------- scorer
def test_answer_scores_100_with_every_breakdown(meta):
    score = MMAR.score([{**r, "answer_prediction": r["answer"]} for r in meta])
    assert score["total"] == 100.0 and score["n"] == 1000 and score["missing"] == 0
    for name in ("modality", "category", "sub-category"):
        counts = Counter(r[name] for r in meta)
        assert {k: n for k, (_, n) in score["counts"][name].items() if n} == dict(counts)
        assert all(score[name][k] == 100.0 for k in counts)
    assert len(score["sub-category"]) == 16
    assert len(score["ambiguous"]) == 20  # checked by hand: options that reorder the answer's words


def test_first_option_and_missing_keys(meta):
    """Always the first option: right where it is the answer, or a wrong option with the answer's tokens; records
    without ``answer_prediction`` are dropped (counted in ``missing``, wrong in ``total_all``)."""
    same_tokens = {a["id"]: a["same_tokens"] for a in ambiguous_items(meta)}
    dropped = {r["id"] for r in meta[::10]}
    predictions = [r if r["id"] in dropped else {**r, "answer_prediction": r["choices"][0]} for r in meta]
    kept = [r for r in meta if r["id"] not in dropped]

    def right(r: dict) -> bool:
        return r["choices"][0] == r["answer"] or r["choices"][0] in same_tokens.get(r["id"], [])

    score = MMAR.score(predictions)
    correct = sum(map(right, kept))
    assert (score["n"], score["correct"], score["missing"]) == (900, correct, 100)
    assert score["total"] == round(100 * correct / 900, 2) and score["total_all"] == round(100 * correct / 1000, 2)
    for modality in MMAR_MODALITIES:
        group = [r for r in kept if r["modality"] == modality]
        assert score["counts"]["modality"][modality] == [sum(map(right, group)), len(group)]
    assert any("100 of 1000 records have no 'answer_prediction'" in w for w in score["warnings"])


def test_wrong_option_and_null_prediction(meta):
    records = [{**r, "answer_prediction": next(c for c in r["choices"] if tokenize(c) != tokenize(r["answer"]))}
               for r in meta[:50]]
    records[0]["answer_prediction"] = None
    records[1] = {k: v for k, v in records[1].items() if k != "answer_prediction"} | {"model_output": "x"}
    score = MMAR.score(records)
    assert (score["total"], score["n"], score["null"], score["missing"]) == (0.0, 48, 1, 1)
    assert any("--key model_output" in w for w in score["warnings"])


def test_score_cli_reads_json_and_jsonl_and_writes_reports(meta, tmp_path, capsys):
    records = [{**r, "answer_prediction": r["answer"] if i % 3 else r["choices"][-1]} for i, r in enumerate(meta)]
    as_json = tmp_path / "pred.json"
    as_json.write_text(json.dumps(records))
    code, from_json, _ = _score_cli(capsys, as_json)
    assert code == 0
    code, from_jsonl, _ = _score_cli(capsys, _write_jsonl(tmp_path / "pred.jsonl", records), "--no-report")
    assert code == 0 and from_jsonl == from_json
    assert {"total", "n", "modality", "category", "sub-category"} <= set(from_json) and from_json["n"] == 1000
    assert from_json == MMAR.score(records)
    report = (tmp_path / "pred.score.md").read_text()
    assert "## Official, by modality" in report and "| mix-sound-music-speech |" in report
    assert (tmp_path / "pred.score.png").stat().st_size > 0 and not (tmp_path / "pred.score.png").is_symlink()
    assert not (tmp_path / "pred.jsonl.score.md").exists()


def test_score_with_question_file_matches_ids(meta, tmp_path, capsys):
    """Predictions holding only id + answer_prediction take the question fields from --data; ids must match."""
    bare = [{"id": r["id"], "answer_prediction": r["answer"]} for r in meta]
    pred = _write_jsonl(tmp_path / "bare.jsonl", bare)
    code, score, _ = _score_cli(capsys, pred, "--data", str(MMAR_META), "--no-report")
    assert code == 0 and score["total"] == 100.0 and score["n"] == 1000
    bad = bare[:-3] + [{"id": "not-an-id", "answer_prediction": "x"}]
    code, _, err = _score_cli(capsys, _write_jsonl(tmp_path / "bad.jsonl", bad), "--data", str(MMAR_META))
    assert code == 2
    assert "1 prediction ids are not in" in err and "not-an-id" in err
    assert "3 questions have no prediction" in err and all(r["id"] in err for r in meta[-3:])
    code, _, err = _score_cli(capsys, _write_jsonl(tmp_path / "short.jsonl", bare[:-1]), "--data", str(MMAR_META))
    assert code == 2 and "1 questions have no prediction" in err and meta[-1]["id"] in err


# ------------------------------------------------------------------------------------------------ prepare and eval
def test_prediction_fields_add_the_mmar_keys():
    response = "<think> two beeps\n</think><answer> two </answer>"
    fields = prediction_fields(response, "mmar", "think")
    assert fields["answer_prediction"] == fields["model_output"] == "two"
    assert fields["thinking_prediction"] == "two beeps"
    assert "thinking_prediction" not in prediction_fields(response, "mmar", "default")
    assert "answer_prediction" not in prediction_fields(response, "mmau", "think")


@pytest.fixture(scope="module")
def mmar_dir(meta, tmp_path_factory) -> Path:
    """The first 5 real MMAR items with synthesized clips under audio/, but none for the 5th."""
    root = tmp_path_factory.mktemp("mmar")
    (root / "audio").mkdir()
    for i, r in enumerate(meta[:4]):
        write_tone(root / r["audio_path"], freq=300.0 + 100 * i, seconds=0.5 + 0.25 * i)
    _write_jsonl(root / "MMAR-meta.jsonl", meta[:5])
    _write_jsonl(root / "four.jsonl", meta[:4])
    return root


def test_prepare_keeps_fields_and_skips_missing_clips(mmar_dir, meta, tmp_path):
    import pandas as pd

    out = tmp_path / "mmar.parquet"
    assert main(["prepare", "mmar", "--input", str(mmar_dir / "MMAR-meta.jsonl"), "--output", str(out),
                 "--workers", "1"]) == 0
    table = pd.read_parquet(out)
    assert list(table["id"]) == [r["id"] for r in meta[:4]]
    assert list(table["thinking"]) == [r["thinking"] for r in meta[:4]] and set(table["dataset_name"]) == {"mmar"}
    assert list(table["modality"]) == [r["modality"] for r in meta[:4]]
    report = json.loads(out.with_suffix(".report.json").read_text())
    assert [(s["line"], s["id"]) for s in report["skipped"]] == [(5, meta[4]["id"])]
    assert "audio not found" in report["skipped"][0]["reason"]


def test_prepare_stops_on_a_malformed_line(mmar_dir, meta, tmp_path, capsys):
    records = [dict(r) for r in meta[:4]]
    records[2]["answer"] = "none of these"
    bad = _write_jsonl(mmar_dir / "bad.jsonl", records)
    assert main(["prepare", "mmar", "--input", str(bad), "--output", str(tmp_path / "x.parquet")]) == 2
    assert "bad.jsonl:3: answer 'none of these' is not one of its choices" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_eval_writes_mmar_keys_and_scores_them(mmar_dir, tiny_model_dir, tmp_path):
    """The raw question file and a sweep over two checkpoints (the think template: ``thinking_prediction`` too)."""
    run = tmp_path / "run"
    for step in (1, 2):
        (run / f"checkpoint-{step}").mkdir(parents=True)
        for f in Path(tiny_model_dir).iterdir():
            (run / f"checkpoint-{step}" / f.name).symlink_to(f)
    output = tmp_path / "pred.json"
    assert main(["eval", "--benchmark", "mmar", "--data", str(mmar_dir / "four.jsonl"), "--model", str(run),
                 "--output", str(output), "--max-new-tokens", "4", "--template", "think"]) == 0
    records = json.loads((tmp_path / "pred.checkpoint-2.json").read_text())
    assert [r["id"] for r in records] == [json.loads(x)["id"] for x in (mmar_dir / "four.jsonl").open()]
    for r in records:
        assert r["answer_prediction"] == r["model_output"] and "thinking_prediction" in r
    score = json.loads((tmp_path / "pred.checkpoint-2.score.json").read_text())
    assert score["benchmark"] == "mmar" and score["key"] == "answer_prediction" and score["n"] == 4
    assert score == MMAR.score(records)
    sweep = json.loads((tmp_path / "pred.sweep.json").read_text())
    assert sorted(sweep) == ["1", "2"]
    table = (tmp_path / "pred.sweep.md").read_text()
    assert table.startswith("# MMAR checkpoint sweep") and "| step | total | sound | music | speech |" in table


def test_eval_on_prepared_parquet_keeps_nested_fields(mmar_dir, tiny_model_dir, tmp_path, meta):
    prepared = tmp_path / "mmar.parquet"
    assert main(["prepare", "mmar", "--input", str(mmar_dir / "four.jsonl"), "--output", str(prepared),
                 "--workers", "1"]) == 0
    output = tmp_path / "pred.json"
    assert main(["eval", "--benchmark", "mmar", "--data", str(prepared), "--model", str(tiny_model_dir),
                 "--output", str(output), "--max-new-tokens", "4"]) == 0
    records = json.loads(output.read_text())
    assert [r["rubric"] for r in records] == [r["rubric"] for r in meta[:4]]
    assert all("answer_prediction" in r and "thinking_prediction" not in r for r in records)
