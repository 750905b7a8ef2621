"""Reports of scores: markdown tables and PNG plots (per breakdown of the benchmark's; accuracy vs checkpoint step).

Inputs are the score dicts of :mod:`r1_aqa.evaluate.scoring`; each benchmark names its breakdowns
(:class:`r1_aqa.benchmarks.Benchmark`). Every file is written atomically (``r1_aqa.files``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Sequence

from ..benchmarks import get_benchmark
from ..benchmarks.common import Score, attach_questions, load_predictions
from ..files import save_figure, write_json, write_text
from ..formatting import fmt, group_tables, markdown_table, signed
from .scoring import listening_gap, same_items, score_records

SWEEP_NAME = "sweep"


def _breakdown_table(title: str, percents: dict[str, float], counts: dict[str, list[int]]) -> str:
    rows = [[name, fmt(percents[name] if counts[name][1] else None), f"{counts[name][0]}/{counts[name][1]}"]
            for name in percents]
    return markdown_table([title, "accuracy %", "correct/n"], rows)


def score_markdown(score: Score) -> str:
    """A markdown report of one score: rule, version, totals, breakdown tables, dropped records, ambiguous items."""
    title = score["benchmark"].upper() + (f" test-mini ({score['version']} questions)" if "version" in score else "")
    spec = get_benchmark(score["benchmark"])
    lines = [f"# {title}", "", f"- rule: {score['rule']}; prediction key `{score['key']}`",
             f"- total: **{fmt(score['total'])}%** ({score['correct']}/{score['n']} scored of {score['records']})",
             *spec.summary_lines(score)]
    if "permutations" in score:
        perm = score["permutations"]
        orders = ", ".join(f"{k}: {v:.2f}" for k, v in perm["per_order"].items())
        lines.append(f"- permutation-consistent accuracy over {perm['k']} option orders: "
                     f"**{fmt(perm['consistent'])}%** ({perm['consistent_n']}/{perm['items']} items, "
                     f"{perm['incomplete']} incomplete); per order: {orders}")
    for warning in score["warnings"]:
        lines.append(f"- warning: {warning}")
    for heading, column, percents, counts in spec.tables(score):
        lines += ["", f"## {heading}", "", _breakdown_table(column, percents, counts)]
    if score.get("ambiguous"):
        lines += ["", "## Ambiguous items", "",
                  "A wrong option has the answer's token set, so the official rule scores it correct too.", "",
                  markdown_table(["id", "answer", "same tokens"],
                         [[a["id"], a["answer"], "; ".join(a["same_tokens"])] for a in score["ambiguous"]],
                         text_columns=3)]
    return "\n".join(lines) + "\n"


def plot_score(score: Score, path: str | os.PathLike) -> Path:
    """Save :func:`score_figure` as a PNG."""
    return save_figure(score_figure(score), path)


def score_figure(score: Score):
    """A bar chart per breakdown the benchmark shows (:meth:`~r1_aqa.benchmarks.Benchmark.panels`) with the total
    dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = get_benchmark(score["benchmark"]).panels(score)
    widths = [max(3, len(entries)) for _, entries in panels]
    fig, axes = plt.subplots(1, len(panels), figsize=(0.9 * sum(widths) + 2, 4.2), squeeze=False,
                             gridspec_kw={"width_ratios": widths}, layout="constrained")
    for i, (ax, (title, entries)) in enumerate(zip(axes[0], panels)):
        labels = list(entries)
        values = [entries[k][0] for k in labels]
        bars = ax.bar(range(len(labels)), values, color="#4C72B0")
        for bar, label in zip(bars, labels):
            percent, n = entries[label]
            inside = percent > 15  # mid-bar, clear of the total line near the bars' tops; above a short bar
            ax.annotate(f"{fmt(percent)}\nn={n}",
                        (bar.get_x() + bar.get_width() / 2, percent / 2 if inside else percent + 1),
                        ha="center", va="center" if inside else "bottom", fontsize=8,
                        color="white" if inside else "black")
        if score["total"] is not None:
            ax.axhline(score["total"], color="#C44E52", linestyle="--", linewidth=1,
                       label=f"total {score['total']:.2f}")
        if "strict" in score and score["strict"]["total"] is not None:
            ax.axhline(score["strict"]["total"], color="gray", linestyle=":", linewidth=1,
                       label=f"strict total {score['strict']['total']:.2f}")
        ax.legend(loc="lower right", fontsize=8)
        ax.set_xticks(range(len(labels)), [k.replace("-", "\n") for k in labels], fontsize=9)
        ax.set_ylim(0, 110)
        ax.set_title(title)
        if i == 0:
            ax.set_ylabel("accuracy (%)")
    version = f", {score['version']} questions" if "version" in score else ""
    fig.suptitle(f"{score['benchmark'].upper()}{version}: official rule, key {score['key']}")
    return fig


def _write_report(result: dict, out_dir: str | os.PathLike, name: str, markdown, plot) -> list[Path]:
    """``name.json`` (``result``), ``name.md`` (``markdown(result)``) and ``name.png`` (``plot``) in ``out_dir``."""
    out_dir = Path(out_dir)
    paths = [out_dir / f"{name}.json", out_dir / f"{name}.md", out_dir / f"{name}.png"]
    write_json(paths[0], result)
    write_text(paths[1], markdown(result))
    plot(result, paths[2])
    return paths


def write_score_report(score: Score, out_dir: str | os.PathLike, name: str) -> list[Path]:
    """Write ``name.json`` (the score), ``name.md`` (tables) and ``name.png`` (bar charts) into ``out_dir``."""
    return _write_report(score, out_dir, name, score_markdown, plot_score)


def _sweep_series(score: Score) -> dict[str, float | None]:
    """The per-checkpoint numbers tracked in a sweep: total, then the benchmark's (MMAU's tasks, say)."""
    return get_benchmark(score["benchmark"]).sweep_series(score)


def sweep_markdown(results: list[tuple[int, dict]], failures: Sequence[tuple[str, str]] = ()) -> str:
    """A markdown table of a checkpoint sweep (one row per step, best total in bold), then the checkpoints that
    failed, ``(checkpoint, reason)`` each."""
    results = sorted(results, key=lambda r: r[0])
    columns = list(dict.fromkeys(c for _, s in results for c in _sweep_series(s)))
    totals = [s["total"] for _, s in results if s["total"] is not None]
    best = max(totals) if totals else None
    rows = []
    for step, score in results:
        series = _sweep_series(score)
        cells = [fmt(series.get(c)) for c in columns]
        if score["total"] is not None and score["total"] == best:
            cells[0] = f"**{cells[0]}**"
        rows.append([str(step)] + cells)
    first = results[0][1] if results else {}
    head = f"# {first.get('benchmark', '').upper()} checkpoint sweep"
    if "version" in first:
        head += f" ({first['version']} questions)"
    versions = {s.get("version") for _, s in results}
    note = "\n\nwarning: the checkpoints were scored on different question files\n" if len(versions) > 1 else "\n"
    if failures:
        note += "\n## Failed checkpoints\n\n" + "".join(f"- `{name}`: {reason}\n" for name, reason in failures)
    return head + "\n\n" + markdown_table(["step"] + columns, rows) + note


def plot_sweep(results: list[tuple[int, dict]], path: str | os.PathLike) -> Path:
    """Save :func:`sweep_figure` as a PNG."""
    return save_figure(sweep_figure(results), path)


def sweep_figure(results: list[tuple[int, dict]]):
    """Accuracy vs checkpoint step: total (bold, best step marked) and the per-task/category lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = sorted(results, key=lambda r: r[0])
    steps = [step for step, _ in results]
    series = [_sweep_series(score) for _, score in results]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for column in dict.fromkeys(c for s in series for c in s):
        values = [s.get(column) for s in series]
        values = [float("nan") if v is None else v for v in values]
        bold = column == "total"
        ax.plot(steps, values, marker="o", linewidth=2.5 if bold else 1.2, label=column,
                color="black" if bold else None, linestyle="-" if bold else "--", zorder=3 if bold else 2)
    totals = [(s["total"], step) for s, step in zip(series, steps) if s["total"] is not None]
    if totals:
        best, best_step = max(totals)
        ax.scatter([best_step], [best], marker="*", s=220, color="gold", edgecolor="black", zorder=4,
                   label=f"best total {best:.2f} @ step {best_step}")
    ax.set_xlabel("checkpoint step")
    ax.set_ylabel("accuracy (%)")
    ax.set_xticks(steps)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    first = results[0][1] if results else {}
    version = f", {first['version']} questions" if "version" in first else ""
    ax.set_title(f"{first.get('benchmark', '').upper()} accuracy vs step{version}")
    return fig


def write_sweep_report(results: list[tuple[int, dict]], out_dir: str | os.PathLike,
                       name: str = SWEEP_NAME, failures: Sequence[tuple[str, str]] = ()) -> list[Path]:
    """Write ``name.json`` ({step: score}), ``name.md`` (table, failed checkpoints) and ``name.png`` (accuracy vs
    step) into ``out_dir``.

    ``results`` is a list of ``(step, score)`` pairs (any order), e.g. one per ``checkpoint-*`` directory;
    ``failures`` ``(checkpoint, reason)`` per checkpoint that could not be evaluated.
    """
    if not results:
        raise ValueError("write_sweep_report: no checkpoint results")
    out_dir = Path(out_dir)
    paths = [out_dir / f"{name}.json", out_dir / f"{name}.md", out_dir / f"{name}.png"]
    write_json(paths[0], {str(step): score for step, score in sorted(results, key=lambda r: r[0])})
    write_text(paths[1], sweep_markdown(results, failures))
    plot_sweep(results, paths[2])
    return paths


def listening_markdown(gap: dict) -> str:
    """A markdown report of a listening gap: accuracy with audio, with silence and the gap, overall and per group."""
    total = gap["total"]
    lines = [f"# {gap['benchmark'].upper()}: listening gap (audio vs silence of the same length)", "",
             f"- rule: {gap['rule']}",
             f"- accuracy **{fmt(total['accuracy'])}%**, with silence **{fmt(total['silence'])}%**, listening gap "
             f"**{signed(total['gap'])}** points (n={total['n']}, with silence n={total['n_silence']})"]
    if gap.get("predictions"):
        lines.append(f"- predictions: `{gap['predictions']}`; with silence: `{gap['silence_predictions']}`")
    lines += group_tables(gap["groups"], ["accuracy %", "silence %", "gap (points)", "n"],
                          lambda r: [fmt(r["accuracy"]), fmt(r["silence"]), signed(r["gap"]), str(r["n"])])
    return "\n".join(lines) + "\n"


def plot_listening(gap: dict, path: str | os.PathLike, max_entries: int = 12) -> Path:
    """Accuracy with audio and with silence side by side: overall, then each group (its first ``max_entries``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    panels = [("Overall", {"total": gap["total"]})]
    panels += [(group.capitalize(), dict(list(entries.items())[:max_entries]))
               for group, entries in gap["groups"].items() if entries]
    widths = [max(2, len(entries)) for _, entries in panels]
    fig, axes = plt.subplots(1, len(panels), figsize=(0.9 * sum(widths) + 2, 4.2), squeeze=False,
                             gridspec_kw={"width_ratios": widths}, layout="constrained")
    for i, (ax, (title, entries)) in enumerate(zip(axes[0], panels)):
        x = np.arange(len(entries))
        for offset, field, label, color in ((-0.2, "accuracy", "audio", "#4C72B0"),
                                            (0.2, "silence", "silence", "#C44E52")):
            values = [entries[k][field] or 0.0 for k in entries]
            bars = ax.bar(x + offset, values, width=0.4, color=color, label=label)
            ax.bar_label(bars, fmt="%.0f", fontsize=7)
        ax.set_xticks(x, [k.replace("-", "\n") for k in entries], fontsize=8)
        ax.set_ylim(0, 110)
        ax.set_title(title)
        if i == 0:
            ax.set_ylabel("accuracy (%)")
            ax.legend(fontsize=8, loc="upper right")
    fig.suptitle(f"{gap['benchmark'].upper()}: accuracy with audio vs silence "
                 f"(gap {signed(gap['total']['gap'])} points)")
    return save_figure(fig, path)


def write_listening_report(gap: dict, out_dir: str | os.PathLike, name: str) -> list[Path]:
    """Write ``name.json`` (the gap), ``name.md`` (tables) and ``name.png`` (audio vs silence bars) into ``out_dir``."""
    return _write_report(gap, out_dir, name, listening_markdown, plot_listening)


def compare_listening(audio_path: str | Path, silence_path: str | Path, benchmark: str, key: str | None = None,
                      report: bool = True, questions: str | Path | None = None) -> dict:
    """Score an audio and a silence prediction file of the same items and return their :func:`listening_gap`;
    print its table and (``report``) write ``AUDIO.listening.{json,md,png}`` beside the audio predictions.
    ``questions``: a question file both are matched to by id (see :func:`attach_questions`)."""
    audio_path, silence_path = Path(audio_path), Path(silence_path)
    audio, silence = load_predictions(audio_path), load_predictions(silence_path)
    if questions is not None:
        asked = load_predictions(questions)
        audio = attach_questions(audio, asked, str(audio_path), str(questions))
        silence = attach_questions(silence, asked, str(silence_path), str(questions))
    same_items(audio, silence, str(audio_path), str(silence_path))
    gap = listening_gap(score_records(benchmark, audio, key), score_records(benchmark, silence, key))
    gap["predictions"], gap["silence_predictions"] = str(audio_path), str(silence_path)
    print(listening_markdown(gap))
    if report:
        stem = audio_path.name.rsplit(".", 1)[0]
        paths = write_listening_report(gap, audio_path.parent, f"{stem}.listening")
        print("listening report: " + ", ".join(map(str, paths)), file=sys.stderr)
    return gap
