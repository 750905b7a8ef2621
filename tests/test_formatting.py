"""A number shown to a person is the number in the score file: the score JSON, the markdown and the HTML page."""

from __future__ import annotations

import re

from r1_aqa.evaluate import html_report
from r1_aqa.formatting import fmt, pct, signed
from r1_aqa.evaluate.reports import listening_markdown
from r1_aqa.benchmarks.mmau import BENCHMARK as MMAU
from r1_aqa.evaluate.scoring import listening_gap

N_MAX = 1000


def _score(tallies: dict[str, list[int]]) -> dict:
    """A score dict as the scorers build it, with one breakdown ("task") holding ``tallies``."""
    correct = sum(t[0] for t in tallies.values())
    n = sum(t[1] for t in tallies.values())
    return {"benchmark": "mmau", "rule": "mmau-official", "counts": {"task": tallies}, "correct": correct, "n": n}


def test_every_percentage_and_gap_is_the_same_string_in_json_markdown_and_page():
    """All right/n pairs with n <= 1000, each as a breakdown entry with audio and (a different count) with silence:
    the page's table cells equal the markdown's, and both equal the listening-gap JSON's numbers as text."""
    row = re.compile(r"<tr><td>(r\d+)</td><td>([^<]*)</td><td>\d+/\d+</td><td>([^<]*)</td><td>([^<]*)</td></tr>")
    checked = 0
    for n in range(1, N_MAX + 1):
        audio = {f"r{right}": [right, n] for right in range(n + 1)}
        silence = {f"r{right}": [(7 * right + 3) % (n + 1), n] for right in range(n + 1)}
        gap = listening_gap(_score(audio), _score(silence))
        shown = {name: (fmt(r["accuracy"]), fmt(r["silence"]), signed(r["gap"]))
                 for name, r in gap["groups"]["task"].items()}
        markdown = {cells[0]: tuple(cells[1:4]) for line in listening_markdown(gap).splitlines()
                    if line.startswith("| r") for cells in [[c.strip() for c in line.strip("|").split("|")]]}
        page = {m[1]: m.groups()[1:] for m in row.finditer(html_report._categories(_score(audio), _score(silence)))}
        assert markdown == shown, n
        assert page == shown, n
        checked += len(shown)
    assert checked == sum(n + 1 for n in range(1, N_MAX + 1))


def test_a_percentage_is_the_official_scripts_right_over_n_times_100():
    """The official scripts print ``(right / n) * 100`` with two decimals; ``right * 100 / n`` rounds otherwise for 41
    pairs with n <= 1000, e.g. 23 of 160: 14.374999... -> 14.37, where 14.375 -> 14.38."""
    assert pct(23, 160) == 14.37 and pct(0, 7) == 0.0 and pct(7, 7) == 100.0 and pct(0, 0) is None
    differ = [(right, n) for n in range(1, N_MAX + 1) for right in range(n + 1)
              if f"{(right / n) * 100:.2f}" != f"{right * 100 / n:.2f}"]
    assert len(differ) == 41 and all(pct(right, n) == float(f"{(right / n) * 100:.2f}") for right, n in differ)
    records = [{"id": str(i), "question": "Which?", "choices": ["yes", "no"], "answer": "yes", "task": "sound",
                "difficulty": "easy", "model_output": "yes" if i < 23 else "no"} for i in range(160)]
    score = MMAU.score(records)
    assert (score["total"], score["task"]["sound"]) == (14.37, 14.37)
