"""A sweep: every ``checkpoint-*`` of a run directory evaluated, each into its own ``PRED.checkpoint-N.json``, a
failed one recorded beside it, and once all are settled the sweep report comparing them."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Sequence

from ..checks import check_model_path
from .paths import failure_path, meta_path, sweep_page_path
from .predict import is_settled
from .resume import locked

_CHECKPOINT = re.compile(r"checkpoint-(\d+)")


def finish_sweep(output: Path, checkpoints: Sequence[Path], outputs: Sequence[Path]) -> int:
    """Once every checkpoint is settled (evaluated or failed), the sweep report, made by one worker: the first to
    find the set complete; a worker coming later (or a rerun with nothing new) finds the report up to date and says
    so in one line. Returns 1 when a checkpoint failed."""
    with locked(output.parent):  # the last worker to finish finds every checkpoint settled
        failed = [json.loads(failure_path(o).read_text()) for o in outputs if failure_path(o).exists()]
        finished = [(checkpoint_step(m), o) for m, o in zip(checkpoints, outputs) if is_settled(o)]
        if len(failed) + len(finished) < len(outputs):
            return 0
        page = sweep_page_path(output)
        inputs = [o for o in outputs if o.exists()] + [failure_path(o) for o in outputs if failure_path(o).exists()]
        if page.exists() and all(p.stat().st_mtime_ns <= page.stat().st_mtime_ns for p in inputs):
            print(f"sweep report: {page} is up to date", file=sys.stderr)
        else:
            sweep_report(finished, output, [(f["checkpoint"], f["error"]) for f in failed])
            if failed:
                print(f"error: {len(failed)} of {len(outputs)} checkpoints failed (listed in the sweep report)",
                      file=sys.stderr)
    return 1 if failed else 0


def check_output_kind(output: Path, model: str, sweep: bool) -> None:
    """Refuse to write a sweep (``PRED.checkpoint-N.json``) beside a one-model ``PRED.json``, or the reverse: the two
    would share one name and its reports."""
    if sweep and output.exists():
        raise ValueError(f"--output {output} holds the predictions of one model, and --model {model} is a run "
                         f"directory whose checkpoints would go beside them ({output.stem}.checkpoint-N"
                         f"{output.suffix}): choose another --output, or delete {output}")
    pattern = re.compile(re.escape(output.stem) + r"\.checkpoint-\d+" + re.escape(output.suffix))
    swept = sorted(p.name for p in output.parent.iterdir() if pattern.fullmatch(p.name)) if output.parent.is_dir() \
        else []
    if not sweep and swept:
        raise ValueError(f"--output {output}: {swept[0]} beside it is from a sweep of a run directory, and --model "
                         f"{model} is one model: choose another --output, or delete that sweep's files")


def find_checkpoints(model: str | os.PathLike) -> list[Path]:
    """``[model]`` for a model directory or a hub model id; for a run directory its ``checkpoint-*`` directories,
    sorted by step."""
    check_model_path(model)
    model = Path(model)
    if not model.is_dir():
        from ..families import family_of

        family_of(model)  # a hub id (from the local cache or the hub), or an error naming the path
        return [model]
    found = [p for p in model.iterdir() if _CHECKPOINT.fullmatch(p.name) and (p / "config.json").exists()]
    if found:
        return sorted(found, key=checkpoint_step)
    if not (model / "config.json").exists():
        raise FileNotFoundError(f"{model}: neither a model directory (config.json) nor a run directory (checkpoint-*)")
    return [model]


def checkpoint_step(path: str | os.PathLike) -> int:
    """The step of a ``checkpoint-N`` directory."""
    match = _CHECKPOINT.fullmatch(Path(path).name)
    if match is None:
        raise ValueError(f"{path}: not a checkpoint-N directory")
    return int(match.group(1))


def sweep_report(finished: Sequence[tuple[int, Path]], output: Path,
                 failures: Sequence[tuple[str, str]] = ()) -> list[Path]:
    """Compare the checkpoints of a sweep, given ``(step, predictions file)`` each and ``(checkpoint, reason)`` per
    failed one: ``PRED.sweep.{json,md,png}`` (table; accuracy vs step) and the page ``PRED.sweep.html`` beside
    ``output``. Returns the paths written."""
    from .html_report import write_sweep_page
    from .reports import sweep_markdown, write_sweep_report
    from ..benchmarks.common import load_predictions
    from .scoring import score_records

    results = []
    for step, path in finished:
        benchmark = json.loads(meta_path(path).read_text(encoding="utf-8"))["benchmark"]
        results.append((step, path, score_records(benchmark, load_predictions(path))))
    scores = [(step, score) for step, _, score in results]
    print(sweep_markdown(scores, failures) if scores else "no checkpoint finished")
    paths = write_sweep_report(scores, output.parent, f"{output.stem}.sweep", failures) if scores else []
    paths.append(write_sweep_page(results, output, failures))
    print("sweep report: " + ", ".join(map(str, paths)), file=sys.stderr)
    return paths
