"""What the README and the help texts promise, checked against the code and the real question files."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib

import pytest
from helpers import MMAU_DIR, ROOT, needs_mmau, write_tone

from r1_aqa.cli import build_parser, main

README = (ROOT / "README.md").read_text()


def test_readme_recipe_builds_a_layout_prepare_reads(tmp_path, monkeypatch):
    """The README's snippet for building a gijs/avqa-processed directory runs in this venv (no torchcodec) and
    ``prepare avqa --from-hf`` reads what it wrote."""
    snippet = re.search(r"```python\n(import datasets\n.*?)```", README, re.DOTALL).group(1)
    monkeypatch.chdir(tmp_path)
    clips = [str(write_tone(tmp_path / f"clip{i}.wav", freq=300.0 + 200 * i)) for i in range(2)]
    questions = [f"What is in the video?\nChoices:\nA. dog\nB. tone {i}" for i in range(2)]
    exec(snippet, {"clips": clips, "questions": questions, "answers": ["B. tone 0", "B"]})
    out = tmp_path / "train.parquet"
    assert main(["prepare", "avqa", "--from-hf", "avqa-processed", "--output", str(out), "--workers", "1"]) == 0
    import pyarrow.parquet as pq

    rows = pq.read_table(out).to_pylist()
    assert [(r["question"], r["answer"]) for r in rows] == [("What is in the audio?", "tone 0"),
                                                            ("What is in the audio?", "tone 1")]


def test_prepare_help_describes_the_layout(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["prepare", "avqa", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for words in ("save_to_disk", "'Choices:'", "file_name", "answer ('B. text' or 'B')", "torchcodec"):
        assert words in text


@needs_mmau
def test_always_option_one_figures_per_question_file():
    from r1_aqa.benchmarks.mmau import BENCHMARK as MMAU

    figures = {}
    for version in ("v05.15.25", "2025-01-28"):
        records = json.loads((MMAU_DIR / f"mmau-test-mini.{version}.json").read_text())
        share = 100 * sum(r["choices"][0] == r["answer"] for r in records) / len(records)
        score = MMAU.score([{**r, "model_output": r["choices"][0]} for r in records])["total"]
        figures[version] = (f"{share:.1f}%", f"{score:.1f}%")
    text = " ".join(README.split())
    share, score = figures["v05.15.25"]
    assert f"option 1 for {share} of items and always answering it scores {score} on v05.15.25" in text
    share, score = figures["2025-01-28"]
    assert f"{share} and {score} on 2025-01-28" in text


def test_gpu_extra_admits_every_patch_release_of_vllm_0_31():
    from packaging.requirements import Requirement
    from packaging.specifiers import SpecifierSet

    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["vllm"]
    spec: SpecifierSet = Requirement(extra[0]).specifier
    assert spec.contains("0.31.0") and spec.contains("0.31.3") and not spec.contains("0.32.0")


def test_first_day_path_runs_as_written(tmp_path):
    """The README's first-day block, verbatim, from a directory that sees the repository's recipes."""
    block = re.search(r"## First day.*?```bash\n(.*?)```", README, re.DOTALL).group(1)
    (tmp_path / "src").symlink_to(ROOT / "src")
    script = f'r1-aqa() {{ "{sys.executable}" -m r1_aqa.cli "$@"; }}\n{block}'
    done = subprocess.run(["bash", "-ec", script], cwd=tmp_path, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout + done.stderr
    assert "first_day/train.parquet: kept 64 of 64 rows, skipped 0" in out
    assert re.search(r"kept \d+ strong of 64 rows", out) and "r1-aqa train: 20 steps" in out
    assert (tmp_path / "first_day" / "eval" / "pred.report.html").exists()
    assert len(json.loads((tmp_path / "first_day" / "eval" / "pred.json").read_text())) == 32
    # GRPO with almost no signal says so and leaves the model at least as good as its warm start.
    assert "this GRPO run had almost no learning signal" in out
    warm = subprocess.run(
        [sys.executable, "-m", "r1_aqa.cli", "eval", "--data", "first_day/heldout.parquet", "--model", "first_day/sft",
         "--max-new-tokens", "12", "--output", "first_day/eval/warm.json"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert warm.returncode == 0, warm.stderr[-3000:]
    score = {name: json.loads((tmp_path / "first_day" / "eval" / f"{name}.score.json").read_text())["total"]
             for name in ("pred", "warm")}
    assert score["pred"] >= score["warm"], score
