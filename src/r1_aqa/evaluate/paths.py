"""The names of what `eval`, `score`, `report` and a sweep write beside a predictions file ``PRED.json``: one place,
so every command finds what another wrote."""

from __future__ import annotations

import os
import re
from pathlib import Path


def _beside(path: str | os.PathLike, suffix: str) -> Path:
    """``NAME.SUFFIX`` beside ``NAME.json``."""
    path = Path(path)
    return path.with_name(f"{path.stem}.{suffix}")


def meta_path(predictions: str | os.PathLike) -> Path:
    """``PRED.meta.json``: the run's settings, engine, model and data version."""
    return _beside(predictions, "meta.json")


def silence_path(predictions: str | os.PathLike) -> Path:
    """``PRED.silence.json``: the same items answered with silent audio."""
    return _beside(predictions, "silence.json")


def score_stem(predictions: str | os.PathLike) -> str:
    """``PRED.score``: the name of the score report's files (``.json``, ``.md``, ``.png``)."""
    return f"{Path(predictions).stem}.score"


def page_path(predictions: str | os.PathLike) -> Path:
    """``PRED.report.html``: the error-analysis page."""
    return _beside(predictions, "report.html")


def judge_cache_path(predictions: str | os.PathLike) -> Path:
    """``PRED.judge_cache.sqlite``: the judge's replies for a judged benchmark's score."""
    return _beside(predictions, "judge_cache.sqlite")


def checkpoint_output(output: str | os.PathLike, checkpoint: Path) -> Path:
    """``PRED.checkpoint-N.json``: a sweep's predictions of one checkpoint (``output`` is ``PRED.json``)."""
    return _beside(output, f"{checkpoint.name}{Path(output).suffix}")


def failure_path(output: str | os.PathLike) -> Path:
    """``PRED.checkpoint-N.failed.json``: why a sweep could not evaluate a checkpoint (``output``: its predictions)."""
    return _beside(output, "failed.json")


def sweep_page_path(output: str | os.PathLike) -> Path:
    """``PRED.sweep.html`` beside a sweep's ``PRED.checkpoint-N.json`` files (``output`` is ``PRED.json``)."""
    return _beside(output, "sweep.html")


def sweep_checkpoints(output: str | os.PathLike) -> list[tuple[int, Path]]:
    """``(step, PRED.checkpoint-N.json)`` of a sweep whose output name is ``output``, sorted by step."""
    output = Path(output)
    name = re.compile(re.escape(output.stem) + r"\.checkpoint-(\d+)" + re.escape(output.suffix))
    if not output.parent.is_dir():
        return []
    matches = ((name.fullmatch(p.name), p) for p in output.parent.iterdir())
    return sorted((int(m.group(1)), p) for m, p in matches if m)
