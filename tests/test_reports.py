"""Reports: markdown tables and PNG plots of one score and of a checkpoint sweep, written atomically."""

from __future__ import annotations

import pytest

from r1_aqa.evaluate.reports import score_markdown, sweep_markdown, write_score_report, write_sweep_report
from r1_aqa.benchmarks.mmau import BENCHMARK as MMAU
from r1_aqa.benchmarks.mmsu import BENCHMARK as MMSU

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CHOICES = ["Man", "Woman", "Child", "Robot"]


def _mmau_score(right: int, n: int = 6) -> dict:
    tasks, difficulties = ["sound", "music", "speech"], ["easy", "medium", "hard"]
    records = [{"id": str(i), "question": "q", "answer": "Man", "choices": CHOICES, "task": tasks[i % 3],
                "difficulty": difficulties[i % 3], "sub-category": f"sub|{i % 2}",
                "model_output": "Man" if i < right else "Robot"} for i in range(n)]
    return MMAU.score(records)


def _mmsu_score() -> dict:
    paths = ["perception-linguistics-semantics", "perception-paralinguistics-emotion",
             "reasoning-linguistics-phonology", "reasoning-paralinguistics-style"]
    records = [{"key": str(i), "options": ["a dog", "cat", "bird", "cow"], "answer_index": 1,
                "category": paths[i % 4], "model_output": "B" if i % 3 else "cat"} for i in range(8)]
    return MMSU.score(records)


def _assert_png(path):
    assert path.read_bytes()[:8] == PNG_MAGIC


@pytest.mark.parametrize("make", [_mmau_score, _mmsu_score], ids=["mmau", "mmsu"])
def test_write_score_report(tmp_path, make):
    score = make(4) if make is _mmau_score else make()
    paths = write_score_report(score, tmp_path / "out", "pred.score")
    assert [p.name for p in paths] == ["pred.score.json", "pred.score.md", "pred.score.png"]
    _assert_png(paths[2])
    text = paths[1].read_text()
    assert text.startswith("# ") and "| accuracy % | correct/n |" in text
    assert f"**{score['total']:.2f}%**" in text
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(p.name for p in paths)  # no temp files


def test_score_markdown_tables():
    text = score_markdown(_mmau_score(4))
    assert "| sound | 100.00 | 2/2 |" in text and "| speech | 50.00 | 1/2 |" in text
    assert "| sub\\|0 |" in text  # a "|" in a name does not break the table
    assert "questions)" in text and "unknown" in text
    mmsu = score_markdown(_mmsu_score())
    assert "## Strict, by category" in mmsu and "| perception-linguistics |" in mmsu


def test_write_sweep_report(tmp_path):
    results = [(300, _mmau_score(3)), (100, _mmau_score(2)), (200, _mmau_score(5))]
    paths = write_sweep_report(results, tmp_path)
    assert [p.name for p in paths] == ["sweep.json", "sweep.md", "sweep.png"]
    _assert_png(paths[2])
    rows = [line for line in paths[1].read_text().splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert [row.split(" | ")[0] for row in rows] == ["| 100", "| 200", "| 300"]
    assert "**83.33**" in rows[1]  # the best step in bold
    assert "step | total | sound | music | speech" in sweep_markdown(results)
    with pytest.raises(ValueError):
        write_sweep_report([], tmp_path)
