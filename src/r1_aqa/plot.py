"""``r1-aqa plot RUN_DIR``: training curves and a markdown summary from the run's ``metrics.jsonl``.

``train`` and ``sft`` append every log to ``OUTPUT_DIR/metrics.jsonl`` and run this at the end. Written into
``RUN_DIR/plots/``: ``rewards.png`` (total and per reward function), ``accuracy.png``, ``kl.png``,
``completion_length.png``, ``loss.png``, ``signal.png`` (share of groups whose rewards were all equal: TRL's
``frac_reward_zero_std``, and with dynamic sampling the share left in the batch) and ``entropy.png`` for the metrics
the run logged (raw values and a moving average), and ``summary.md`` (first, last and best value of each).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

HELP = ("Plot a training run's curves (rewards, accuracy, KL, completion length, loss, groups without signal, "
        "entropy) from OUTPUT_DIR/metrics.jsonl.")

CHANCE = "chance_accuracy"  # a metrics.jsonl line of its own: the training set's accuracy of a random option
BY_ANSWER = "accuracy_by_answer/"  # the GRPO trainer's training accuracy per right answer

# PNG name -> (title, y label, log keys; "rewards/*/mean" stands for every reward function's mean)
PANELS = {
    "rewards": ("Rewards", "reward", ("reward", "rewards/*/mean")),
    "accuracy": ("Accuracy reward, and per right answer", "accuracy reward",
                 ("rewards/accuracy_reward/mean", BY_ANSWER + "*")),
    "kl": ("KL to the reference model", "KL", ("kl",)),
    "completion_length": ("Completion length", "tokens", ("completions/mean_length",)),
    "loss": ("Loss", "loss", ("loss",)),
    "signal": ("Groups without signal (all rewards equal)", "share of groups",
               ("frac_reward_zero_std", "dynamic_sampling/no_signal_share")),
    "entropy": ("Completion entropy", "nats per token", ("entropy",)),
}
SUMMARY_KEYS = ("reward", "rewards/accuracy_reward/mean", "kl", "completions/mean_length", "loss", "grad_norm",
                "frac_reward_zero_std", "entropy", "dynamic_sampling/extra_rollouts")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a training output_dir holding metrics.jsonl")


def run(args: argparse.Namespace) -> int:
    paths = plot_run(args.run_dir)
    print("\n".join(map(str, paths)), file=sys.stderr)
    return 0


def read_metrics(run_dir: str | os.PathLike) -> list[dict]:
    """The training log lines of ``RUN_DIR/metrics.jsonl`` (those with a step and a loss or reward), by step.

    A later line for the same step wins; a torn last line (a run killed mid-write) is ignored.
    """
    return read_run(run_dir)[0]


def read_run(run_dir: str | os.PathLike) -> tuple[list[dict], list[dict]]:
    """``RUN_DIR/metrics.jsonl`` in one read: the training log lines as :func:`read_metrics` gives them, and the
    other lines (what the run said about itself, e.g. its chance accuracy), in file order."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (train and sft write it into their output_dir)")
    lines = path.read_text(encoding="utf-8").splitlines()
    rows: dict[int, dict] = {}
    others = []
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            if lineno == len(lines):
                break
            raise ValueError(f"{path}:{lineno}: not valid JSON") from None
        if isinstance(row, dict) and "step" in row and ("loss" in row or "reward" in row):
            rows[int(row["step"])] = row
        elif isinstance(row, dict):
            others.append(row)
    if not rows:
        raise ValueError(f"{path}: no training log lines")
    return [rows[s] for s in sorted(rows)], others


def _series(rows: list[dict], key: str) -> tuple[list[int], list[float]]:
    points = [(r["step"], float(r[key])) for r in rows if isinstance(r.get(key), (int, float))]
    return [s for s, _ in points], [v for _, v in points]


def _keys(rows: list[dict], pattern: str) -> list[str]:
    if "*" not in pattern:
        return [pattern]
    head, tail = pattern.split("*")
    return sorted({k for r in rows for k in r if k.startswith(head) and k.endswith(tail)})


def _smooth(values: list[float], window: int) -> list[float]:
    out, total, kept = [], 0.0, []
    for v in values:
        kept.append(v)
        total += v
        if len(kept) > window:
            total -= kept.pop(0)
        out.append(total / len(kept))
    return out


def plot_run(run_dir: str | os.PathLike) -> list[Path]:
    """Write the curves and ``summary.md`` of a run into ``RUN_DIR/plots``; return the paths written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .files import save_figure, write_text

    rows, info = read_run(run_dir)
    out = Path(run_dir) / "plots"
    window = max(1, len(rows) // 20)
    paths = []
    for name, (title, ylabel, patterns) in PANELS.items():
        keys = [k for p in patterns for k in _keys(rows, p) if _series(rows, k)[0]]
        if not keys:
            continue
        fig, ax = plt.subplots(figsize=(7, 4))
        for i, key in enumerate(keys):
            steps, values = _series(rows, key)
            color = f"C{i}"
            if window > 1:
                ax.plot(steps, values, color=color, alpha=0.25, linewidth=0.8)
            ax.plot(steps, _smooth(values, window), color=color, linewidth=1.8,
                    label=key + (f" (mean of {window})" if window > 1 else ""))
        if name == "accuracy":  # the whole range, and where a model that does not listen would sit
            ax.set_ylim(0, 1.02)
            chance = next((r[CHANCE] for r in reversed(info) if isinstance(r.get(CHANCE), (int, float))), None)
            if chance is not None:
                ax.axhline(chance, color="gray", linestyle=":", linewidth=1.2, label=f"chance ({chance:.2f})")
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        paths.append(save_figure(fig, out / f"{name}.png"))
        plt.close(fig)
    write_text(out / "summary.md", summary_markdown(rows, Path(run_dir).name))
    return [*paths, out / "summary.md"]


def summary_markdown(rows: list[dict], name: str) -> str:
    """A markdown table: first, last and best (max; min for loss, KL and grad norm) value of each key metric."""
    skipped = rows[-1].get("train/nonfinite_skipped", 0)
    lines = [f"# Training run {name}", "", f"- steps logged: {len(rows)} (last step {rows[-1]['step']})",
             f"- updates skipped for non-finite gradients: {skipped}", "",
             "| metric | first | last | best | best at step |", "|---|---:|---:|---:|---:|"]
    for key in SUMMARY_KEYS:
        steps, values = _series(rows, key)
        finite = [(v, s) for s, v in zip(steps, values) if math.isfinite(v)]
        if not finite:
            continue
        lower = key in ("loss", "kl", "grad_norm", "frac_reward_zero_std", "dynamic_sampling/extra_rollouts")
        best, at = (min if lower else max)(finite)
        lines.append(f"| {key} | {values[0]:.4g} | {values[-1]:.4g} | {best:.4g} | {at} |")
    return "\n".join(lines) + "\n"
