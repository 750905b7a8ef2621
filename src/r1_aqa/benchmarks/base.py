"""The :class:`Benchmark` protocol: everything ``prepare``, ``eval``, ``score``, the reports, the sweep, the page and
``synth --like`` need to know about one benchmark. The defaults are those of a multiple-choice benchmark whose records
carry ``choices`` and ``answer``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import ClassVar, Iterable, Sequence

from ..items import Item, Skip
from .common import DEFAULT_KEY, Score, mmau_match


class Benchmark:
    """One benchmark. Subclasses set the class attributes and override what differs from these defaults."""

    name: ClassVar[str]
    title: ClassVar[str]  # how people write it, for messages
    file_format: ClassVar[str] = ""  # its own question file, as messages name it ("an MMAU JSON file (a list)")
    key: ClassVar[str] = DEFAULT_KEY  # the prediction field its official scorer reads (and ``eval`` writes)
    judged: ClassVar[bool] = False  # scored by an LLM judge (:meth:`score_judged`) rather than :meth:`score`
    any_prepared: ClassVar[bool] = False  # takes a parquet prepared from any data (else only one of its own)
    clips_beside_data: ClassVar[bool] = True  # unset --audio-dir: clip paths are relative to the data file's folder
    judge_model: ClassVar[str | None] = None  # the judge used when none is given (None: one must be given)
    embed_model: ClassVar[str | None] = None  # the embedder used when none is given
    judge_tokens: ClassVar[int] = 64  # tokens per judge reply by default
    clip_field: ClassVar[str | None] = None  # the record field with the clip path(s) relative to the audio dir
    reads_parquet: ClassVar[bool] = False  # its own file may be a parquet: :meth:`read` takes every file
    sniff_first: ClassVar[bool] = False  # its files also look like another's (a JSON list like MMAU's): ask it first
    prepare_help: ClassVar[str] = ""  # its line in `r1-aqa prepare --help` ("": prepare does not take it)
    prepare_description: ClassVar[str] = ""  # `r1-aqa prepare NAME --help`
    prepare_input: ClassVar[tuple[str, str]] = ("FILE", "question file")  # --input's metavar and help
    prepare_audio_dir: ClassVar[str] = ""  # --audio-dir's help ("": no --audio-dir, the clips are in the data)

    # ---- input ------------------------------------------------------------------------------------------------------
    def read(self, data: Path, audio_dir: str | Path | None) -> list[dict]:
        """The items of the benchmark's own file, each with an ``audio`` source (a path, a list of them, or bytes)."""
        raise ValueError(f"{data}: --benchmark {self.name} takes a parquet from `r1-aqa prepare`")

    def looks_like(self, data: Path) -> bool:
        """Whether ``data`` is in this benchmark's own file format (to refuse it under another ``--benchmark``);
        may raise ``ValueError`` saying what the file is instead."""
        return False

    def owns(self, record: dict) -> bool:
        """Whether a record carries this benchmark's own fields (to refuse its records under another name)."""
        return False

    def version(self, items: Sequence[dict]) -> str | None:
        """Which release of the benchmark's questions the items are, where it has several."""
        return None

    def like(self, data: Path, out_dir: Path) -> list[dict] | None:
        """``synth --like``: the items of ``data``, this benchmark's file (:func:`sniff` said so), with their clips
        under ``out_dir`` (paths in :attr:`clip_field`); ``None`` where its clips are not paths."""
        return self.read(data, out_dir) if self.clip_field else None

    # ---- prepare --------------------------------------------------------------------------------------------------
    def add_prepare_arguments(self, parser: argparse.ArgumentParser) -> None:
        """``prepare NAME``'s flags beside ``--output``, ``--template`` and ``--workers``."""
        parser.add_argument("--input", type=Path, required=True, metavar=self.prepare_input[0],
                            help=self.prepare_input[1])
        if self.prepare_audio_dir:
            parser.add_argument("--audio-dir", type=Path, default=None, metavar="DIR", help=self.prepare_audio_dir)

    def prepare_rows(self, args: argparse.Namespace) -> tuple[Iterable[Item | Skip], int]:
        """``prepare``'s ``Item``/``Skip`` rows of ``args.input`` (a usable question, or why a record is left out),
        and how many records it holds."""
        raise NotImplementedError

    # ---- predictions ------------------------------------------------------------------------------------------------
    def prediction_fields(self, answer: str | None, think: str | None, template: str) -> dict:
        """Fields its scorer reads beyond ``eval``'s own (``model_output``, ``model_prediction``, ...)."""
        return {}

    # ---- scoring ----------------------------------------------------------------------------------------------------
    def score(self, records: Iterable[dict], key: str | None = None) -> Score:
        """The official score of predictions under ``key`` (the benchmark's own by default)."""
        raise ValueError(f"{self.name} is scored by a judge: `r1-aqa score --benchmark {self.name} --predictions "
                         "PRED --judge-model DIR_OR_URL`")

    def score_judged(self, records: Sequence[dict], judge, key: str) -> dict:
        """The judged score of predictions under ``key`` (``judged`` benchmarks)."""
        raise NotImplementedError

    def outcome(self, record: dict, key: str | None = None, index: int = 0,
                strict: bool = False) -> bool | None:
        """Whether one record is correct as :meth:`score` counts it; ``None`` where it leaves the record out."""
        raise NotImplementedError

    def options(self, record: dict, index: int = 0) -> tuple[list[str], str]:
        """``(options, answer_text)`` of a record."""
        return list(record["choices"]), record["answer"]

    def predicted_option(self, record: dict, key: str | None = None) -> int | None:
        """The index of the one option the prediction names (the token rule accepts it for that option only)."""
        prediction = record.get(key or self.key)
        if not isinstance(prediction, str):
            return None
        options, _ = self.options(record)
        matches = [i for i, option in enumerate(options) if mmau_match(option, prediction, options)]
        return matches[0] if len(matches) == 1 else None

    # ---- reports ----------------------------------------------------------------------------------------------------
    def panels(self, score: Score) -> list[tuple[str, dict[str, tuple[float, int]]]]:
        """The bar charts of a score: ``[(title, {label: (percent, n)})]``, entries without items left out."""
        raise NotImplementedError

    def summary_lines(self, score: Score) -> list[str]:
        """The report's lines under the total: what the rule dropped or counted wrong, further totals."""
        return []

    def tables(self, score: Score) -> list[tuple[str, str, dict, dict]]:
        """The report's breakdown tables: ``[(heading, column, {entry: percent}, {entry: [correct, n]})]``."""
        raise NotImplementedError

    def sweep_series(self, score: Score) -> dict[str, float | None]:
        """The numbers a checkpoint sweep tracks: ``total`` first."""
        return {"total": score["total"]}

    def strict_view(self, score: Score) -> bool:
        """Whether a page shows the benchmark's ``strict`` numbers rather than the official ones."""
        return False
