"""Benchmarks: everything ``eval``, ``score``, the reports, the sweep, the error-analysis page and ``synth --like``
need to know about a benchmark lives in one module per benchmark here, behind :class:`Benchmark`.

A benchmark says how its own file is read and recognised, which fields mark its records, which release its
questions are, which prediction field its official scorer reads (and which extra fields ``eval`` writes for it), how
it is scored (its official rule, or a judge), one record's outcome, and the breakdowns its reports, sweep table and
page show. Adding a benchmark is one module with a ``BENCHMARK`` instance, listed in ``_MODULES`` (or handed to
:func:`register`), plus its tests.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from .base import Benchmark

# Benchmark name -> its module (imported on first use). Records are matched to a benchmark in this order.
_MODULES = {
    "mmau": "mmau",
    "mmar": "mmar",
    "mmsu": "mmsu",
    "open": "open_ended",
    "mmau-pro": "mmau_pro",
}
NAMES: list[str] = list(_MODULES)  # the choices of every --benchmark flag; :func:`register` adds to it
_REGISTERED: dict[str, Benchmark] = {}

__all__ = ["Benchmark", "NAMES", "detect", "get_benchmark", "register", "sniff"]


def register(benchmark: Benchmark) -> Benchmark:
    """Add a benchmark defined elsewhere (a plug-in, a test's); its name must be new."""
    if benchmark.name in NAMES:
        raise ValueError(f"a benchmark named {benchmark.name!r} exists already")
    _REGISTERED[benchmark.name] = benchmark
    NAMES.append(benchmark.name)
    return benchmark


def get_benchmark(name: str) -> Benchmark:
    """The benchmark called ``name``; an unknown name raises ``ValueError`` listing the known ones."""
    if name not in _REGISTERED:
        if name not in _MODULES:
            raise ValueError(f"unknown benchmark {name!r}; choose from {', '.join(NAMES)}")
        _REGISTERED[name] = importlib.import_module(f"{__name__}.{_MODULES[name]}").BENCHMARK
    return _REGISTERED[name]


def _all() -> list[Benchmark]:
    return [get_benchmark(name) for name in NAMES]


def detect(records: list[dict]) -> str | None:
    """The benchmark whose own fields the first record carries, else ``None``."""
    if not records:
        return None
    return next((b.name for b in _all() if b.owns(records[0])), None)


def sniff(data: Path) -> Benchmark | None:
    """The benchmark whose own file format ``data`` is in (those that ``sniff_first`` checked first), else ``None``;
    a benchmark may raise ``ValueError`` saying what the file is instead."""
    ordered = sorted(_all(), key=lambda b: not b.sniff_first)
    return next((b for b in ordered if b.looks_like(data)), None)
