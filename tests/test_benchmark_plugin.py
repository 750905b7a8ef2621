"""A benchmark is one module: a toy one, defined and registered here, goes through ``prepare``, ``eval``, ``score``,
its reports and the page without a line of the package naming it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import write_tone

from r1_aqa.benchmarks import NAMES, Benchmark, get_benchmark, register
from r1_aqa.benchmarks.common import Score, item_id, order_zero, tally
from r1_aqa.cli import main
from r1_aqa.files import iter_jsonl
from r1_aqa.formatting import pct
from r1_aqa.items import Item, Skip, resolve_audio

CHOICES = [["low", "high"], ["dog", "cat", "car"], ["yes", "no"], ["one", "two", "three"]]


class Exact(Benchmark):
    """Right iff the extracted answer is the answer's text, case aside; accuracy by ``dataset_name``."""

    name = "toy-exact"
    title = "Toy exact match"
    prepare_help = "toy items (JSONL: id, question, choices, answer, dataset_name, clip)"
    prepare_input = ("JSONL", "toy question file")
    prepare_audio_dir = "where the clips are; unset: the file's folder"

    def prepare_rows(self, args):
        rows = []
        for line, rec in iter_jsonl(args.input):
            audio = resolve_audio(rec["clip"], args.audio_dir or args.input.parent)
            rows.append(Skip(line, str(rec["id"]), f"no clip {rec['clip']}") if audio is None else Item(
                line=line, id=str(rec["id"]), question=rec["question"], choices=rec["choices"],
                answer_idx=rec["choices"].index(rec["answer"]), dataset_name=rec["dataset_name"], audio=audio,
                clip=audio))
        return rows, len(rows)

    def prediction_fields(self, answer, think, template):
        return {"toy_answer": (answer or "").lower()}

    def score(self, records, key=None) -> Score:
        records, key = list(records), key or self.key
        counts: dict[str, list[int]] = {}
        base = order_zero(records)
        outcomes = [self.outcome(r, key, i) for i, r in enumerate(base)]
        for record, ok in zip(base, outcomes):
            tally(counts, [str(record.get("dataset_name"))], bool(ok))
        correct = sum(map(bool, outcomes))
        return {"benchmark": self.name, "rule": "exact match, case aside", "key": key,
                "total": pct(correct, len(outcomes)) if outcomes else None, "n": len(outcomes), "correct": correct,
                "dataset": {k: pct(*v) for k, v in counts.items()}, "counts": {"dataset": counts},
                "records": len(outcomes), "missing": 0, "null": 0, "warnings": []}

    def outcome(self, record, key=None, index=0, strict=False):
        if not isinstance(record.get("answer"), str):
            raise ValueError(f"record {item_id(record, index)}: no answer")
        value = record.get(key or self.key)
        return None if value is None else value.strip().lower() == record["answer"].lower()

    def panels(self, score):
        return [("Dataset", {k: (score["dataset"][k], n) for k, (_, n) in score["counts"]["dataset"].items()})]

    def tables(self, score):
        return [("Exact, by dataset", "dataset", score["dataset"], score["counts"]["dataset"])]


@pytest.fixture(scope="module")
def toy() -> Benchmark:
    return get_benchmark(Exact.name) if Exact.name in NAMES else register(Exact())


def _prepared(root: Path) -> Path:
    """The toy's own question file (one clip missing), through ``prepare toy-exact``."""
    rows = []
    (root / "clips").mkdir()
    for i, choices in enumerate(CHOICES):
        write_tone(root / "clips" / f"tone{i}.wav", freq=300.0 + 150.0 * i)
        rows.append({"id": i, "question": f"Which tone is number {i}?", "choices": choices,
                     "answer": choices[i % len(choices)], "dataset_name": "AVQA" if i % 2 else "other",
                     "clip": f"tone{i}.wav"})
    rows.append({**rows[0], "id": "gone", "clip": "gone.wav"})
    (root / "toy.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    parquet = root / "toy.parquet"
    assert main(["prepare", "toy-exact", "--input", str(root / "toy.jsonl"), "--audio-dir", str(root / "clips"),
                 "--output", str(parquet), "--workers", "1"]) == 0
    report = json.loads((root / "toy.report.json").read_text())
    assert report == {"rows_in": 5, "rows_out": 4, "skipped": [{"line": 5, "id": "gone", "reason": "no clip gone.wav"}]}
    return parquet


def test_a_registered_benchmark_runs_eval_score_reports_and_the_page(toy, tiny_model_dir, tmp_path, capsys):
    parquet = _prepared(tmp_path)
    pred = tmp_path / "eval" / "pred.json"
    assert main(["eval", "--benchmark", toy.name, "--data", str(parquet), "--model", str(tiny_model_dir),
                 "--output", str(pred), "--engine", "hf", "--max-new-tokens", "4", "--batch-size", "4"]) == 0
    records = json.loads(pred.read_text())
    assert [r["toy_answer"] for r in records] == [(r["model_output"] or "").lower() for r in records]
    assert json.loads((tmp_path / "eval" / "pred.meta.json").read_text())["benchmark"] == toy.name
    score = json.loads((tmp_path / "eval" / "pred.score.json").read_text())
    assert score["benchmark"] == toy.name and score["n"] == 4
    assert sum(n for _, n in score["counts"]["dataset"].values()) == 4
    assert (tmp_path / "eval" / "pred.score.png").stat().st_size > 0
    assert "## Exact, by dataset" in (tmp_path / "eval" / "pred.score.md").read_text()
    assert (tmp_path / "eval" / "pred.report.html").is_file()

    # Two answers made right by hand: `score` counts them through the toy's own rule, in its breakdown.
    for record in records[:2]:
        record["model_output"] = record["answer"].upper()
    fixed = tmp_path / "score" / "pred.json"
    fixed.parent.mkdir()
    fixed.write_text(json.dumps(records))
    capsys.readouterr()
    assert main(["score", "--benchmark", toy.name, "--predictions", str(fixed), "--json"]) == 0
    rescored = json.loads(capsys.readouterr().out)
    right = sum(r["model_output"].lower() == r["answer"].lower() for r in records if r["model_output"])
    assert rescored["correct"] == right >= 2
    assert rescored["counts"]["dataset"]["other"][0] >= 1 and rescored["counts"]["dataset"]["AVQA"][0] >= 1
    page = (tmp_path / "score" / "pred.report.html").read_text()
    assert page.count('"v":"right"') == right
