"""MMSU, scored as ``mmsu_evaluation.py`` of dingdongwang/MMSU_Bench: the predicted letter is the first character of
the stripped response if it is A-D, else its second-to-last character; responses with neither are dropped from the
denominator. It is reported together with a strict score (the stripped response must equal the answer's option
text, over all records), each broken down along the hyphen-joined category path. Its data comes in its HF format
(audio, key, question, options, answer_index, category): a parquet file, a directory of parquet files, or a
``datasets`` save_to_disk directory."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from ..formatting import fmt, pct
from ..items import (COLUMNS, Item, Skip, audio_source, check_choices, check_question, clip_name, is_saved_dataset,
                     load_hf_split, missing_fields)
from .base import Benchmark
from .common import (DEFAULT_KEY, LEGACY_KEY, Score, is_permuted, item_id, legacy_warning, order_zero,
                     permutation_consistency, prediction, tally)

LETTERS = "ABCD"


def mmsu_letter(response: str) -> str | None:
    """The official MMSU letter: the first character of the stripped, newline-free response if it is A-D, else its
    second-to-last character if that is A-D (as in "The answer is B."); ``None`` when neither (or empty/"None")."""
    text = response.strip().replace("\n", "")
    if not text or text == "None":
        return None
    if text[0] in LETTERS:
        return text[0]
    if len(text) > 1 and text[-2] in LETTERS:
        return text[-2]
    return None


def mmsu_item(record: dict, index: int = 0) -> tuple[list[str], str]:
    """``(options, answer_text)`` of an MMSU record: HF format (``options``, ``answer_index``), the official scorer's
    (``choice_a``..``choice_d``, ``answer_gt``) or a prepared one (``choices``, ``answer``)."""
    if "options" in record and "answer_index" in record:
        options = list(record["options"])
        answer_index = int(record["answer_index"])
        if not 0 <= answer_index < len(options):
            raise ValueError(f"record {item_id(record, index)}: answer_index {answer_index} out of range")
        return options, options[answer_index]
    if "answer_gt" in record:
        return [record.get(f"choice_{c}", "") for c in LETTERS.lower()], record["answer_gt"]
    if "choices" in record and "answer" in record:
        return list(record["choices"]), record["answer"]
    raise ValueError(f"record {item_id(record, index)}: no MMSU options/answer fields "
                     "(options+answer_index, choice_a..d+answer_gt, or choices+answer)")


def category_path(record: dict) -> list[str]:
    """The prefixes of an MMSU record's hyphen-joined category path, shortest first; ``sub-category`` (official
    format) is appended as a last level. ``["perception", "perception-linguistics", ...]``."""
    parts = [p for p in str(record.get("category") or "unknown").split("-") if p]
    sub = record.get("sub-category")
    if sub and sub != parts[-1]:
        parts.append(str(sub))
    return ["-".join(parts[: i + 1]) for i in range(len(parts))]


def letter_correct(options: list[str], answer: str, letter: str | None) -> bool:
    """The official MMSU check: the option under ``letter`` has the answer's text (a missing option is wrong)."""
    index = LETTERS.index(letter) if letter else len(options)
    return index < len(options) and options[index] == answer


def _blank(response: str) -> bool:
    """An empty response ("None" too): no letter, yet the official rule keeps it, as wrong."""
    return response.strip().replace("\n", "") in ("", "None")


def _outcomes(record: dict, key: str, index: int) -> tuple[str | None, bool, bool | None]:
    """``(response, strict outcome, official outcome)`` of a record; a missing key is the empty response, and the
    official outcome is ``None`` where the letter rule drops the record (a null response, or no A-D letter in a
    non-empty one)."""
    options, answer = mmsu_item(record, index)
    response = prediction(record, key, index) if key in record else ""
    strict = response is not None and response.strip() == answer.strip()
    if response is None:
        return response, strict, None
    letter = mmsu_letter(response)
    if letter is None and not _blank(response):
        return response, strict, None
    return response, strict, letter_correct(options, answer, letter)


@dataclass
class _Tally:
    """One pass over MMSU records: the official letter rule's and the strict rule's per-category ``[correct, n]``
    and the counts the score reports (see :meth:`MMSU.score` for what each rule keeps and drops)."""

    official: dict[str, list[int]] = field(default_factory=dict)
    strict: dict[str, list[int]] = field(default_factory=dict)
    correct: int = 0
    total: int = 0
    strict_correct: int = 0
    missing: int = 0
    null: int = 0
    empty: int = 0
    unparsed: int = 0
    legacy: int = 0

    def add(self, record: dict, key: str, index: int) -> None:
        response, ok_strict, ok = _outcomes(record, key, index)
        path = category_path(record)
        present = key in record
        if not present:
            self.missing += 1
            self.legacy += LEGACY_KEY in record
        self.strict_correct += ok_strict
        tally(self.strict, path, ok_strict)
        if response is None:
            self.null += 1
            return
        if ok is None:
            self.unparsed += 1
            return
        self.empty += present and _blank(response)
        self.correct += ok
        self.total += 1
        tally(self.official, path, ok)

    def warnings(self, key: str, records: int) -> list[str]:
        warnings = [legacy_warning(self.legacy, key)] if self.legacy and key != LEGACY_KEY else []
        if self.unparsed:
            warnings.append(f"{self.unparsed} of {records} responses have no A-D letter: dropped from the official "
                            "denominator (as mmsu_evaluation.py does)")
        if self.null:
            warnings.append(f"{self.null} records have a null {key!r}: dropped from the official denominator")
        if self.missing:
            warnings.append(f"{self.missing} of {records} records have no {key!r}: counted as wrong (as "
                            "mmsu_evaluation.py counts them in its denominator)")
        if self.empty:
            warnings.append(f"{self.empty} of {records} responses are empty: counted as wrong")
        return warnings


# ---------------------------------------------------------------------------------------------------- its HF format
FIELDS = ("key", "question", "options", "answer_index")


def _open(path: str | os.PathLike, split: str | None) -> tuple[Iterator[dict], int, Path]:
    """Raw records of ``path``, their count, and the directory relative audio paths are tried against."""
    path = Path(path)
    if is_saved_dataset(path):
        ds = load_hf_split(path, split)
        return iter(ds), len(ds), path
    if path.is_file() and path.suffix == ".parquet":
        files = [path]
    elif path.is_dir():
        files = sorted(path.rglob("*.parquet"))
        if not files:
            raise ValueError(f"{path}: no parquet files and not a datasets save_to_disk directory")
    else:
        raise ValueError(f"{path}: not a parquet file or a directory (MMSU in its HF format); an MMAU JSON file is "
                         "`prepare mmau`, MMAR-meta.jsonl `prepare mmar`")
    import pyarrow as pa
    import pyarrow.parquet as pq

    def records() -> Iterator[dict]:
        for f in files:
            for batch in pq.ParquetFile(f).iter_batches(batch_size=64):
                yield from batch.to_pylist()

    rows = 0
    for f in files:
        try:
            rows += pq.ParquetFile(f).metadata.num_rows
        except pa.ArrowException as e:
            raise ValueError(f"{f}: not a readable parquet file ({e})") from None
    return records(), rows, path if path.is_dir() else path.parent


def _record(rec: dict, base_dir: Path) -> dict:
    options, idx = rec.get("options"), rec.get("answer_index")
    audio = rec.get("audio") if rec.get("audio") is not None else rec.get("path")
    valid = check_choices(options, idx) is None
    return {"id": None if rec.get("key") is None else str(rec["key"]), "question": rec.get("question"),
            "choices": options, "answer": options[idx] if valid else None, "answer_idx": idx,
            "category": rec.get("category"), "audio": audio_source(audio, base_dir)}


def iter_mmsu(path: str | os.PathLike, split: str | None = None) -> tuple[Iterator[dict], int]:
    """Lazy ``load_mmsu``: the records one by one, and how many there are."""
    raw, n, base_dir = _open(path, split)
    return (_record(rec, base_dir) for rec in raw), n


def load_mmsu(path: str | os.PathLike, split: str | None = None) -> list[dict]:
    """MMSU records as dicts: id (= key), question, choices, answer (text, None if the index is invalid),
    answer_idx, category, and audio (bytes, an absolute path, or an (array, rate) pair; None if absent).

    ``split`` picks a split of a save_to_disk DatasetDict (the only one when None).
    """
    return list(iter_mmsu(path, split)[0])


def read_mmsu(path: str | os.PathLike, split: str | None = None) -> tuple[Iterator, int]:
    """``Item``/``Skip`` rows of MMSU (``line`` is the 1-based row number), read lazily."""
    raw, n, base_dir = _open(path, split)

    def rows() -> Iterator[Item | Skip]:
        for line, rec in enumerate(raw, start=1):
            reason = (missing_fields(rec, FIELDS) or check_choices(rec["options"], rec["answer_index"])
                      or check_question(rec["question"]))
            r = _record(rec, base_dir)
            if reason is None and r["audio"] is None:
                reason = "audio missing (no bytes, array or existing path)"
            if reason is not None:
                yield Skip(line, r["id"], reason)
                continue
            yield Item(line=line, id=r["id"], question=str(r["question"]), choices=r["choices"],
                       answer_idx=r["answer_idx"], dataset_name="mmsu", audio=r["audio"],
                       clip=r["audio"] if isinstance(r["audio"], str) else clip_name(r["id"]),
                       extra={"category": r["category"]})

    return rows(), n


def _check_hf_format(data: Path) -> None:
    """Refuse parquet data that is not MMSU in its HF format (a save_to_disk directory, or parquet files with its
    columns), saying what it is and what to pass instead."""
    from ..files import parquet_columns

    if is_saved_dataset(data):
        return
    files = [data] if data.is_file() else sorted(data.rglob("*.parquet"))
    if not files:
        raise ValueError(f"{data}: a directory with no parquet files, nor a datasets save_to_disk directory: pass "
                         "the benchmark's question file or a parquet from `r1-aqa prepare` as --data")
    names = set(parquet_columns(files[0]))
    if data.is_dir() and set(COLUMNS) <= names:
        raise ValueError(f"{data}: a directory of parquet files from `r1-aqa prepare` ({files[0].name}"
                         f"{', ...' if len(files) > 1 else ''}): pass one of them as --data")
    if not set(FIELDS) <= names:
        raise ValueError(f"{files[0]}: neither MMSU's HF format (columns {', '.join(FIELDS)}, audio) nor a parquet "
                         f"from `r1-aqa prepare`; its columns: {', '.join(sorted(names))}")


class MMSU(Benchmark):
    name = "mmsu"
    title = "MMSU"
    file_format = "MMSU data in its HF format (parquet files or a directory)"
    key = DEFAULT_KEY
    clips_beside_data = False  # its clips are bytes inside the data
    prepare_help = "MMSU in HF format"
    prepare_description = ("MMSU (audio, key, question, options, answer_index, category) from a parquet file, a "
                           "directory of parquet files or a datasets save_to_disk directory.")
    prepare_input = ("PATH", "parquet file, directory of parquet files, or save_to_disk directory")

    def read(self, data: Path, audio_dir: str | Path | None) -> list[dict]:
        return load_mmsu(data)

    def add_prepare_arguments(self, parser: argparse.ArgumentParser) -> None:
        super().add_prepare_arguments(parser)
        parser.add_argument("--split", default=None, help="split of a save_to_disk DatasetDict (needed if it has "
                            "several)")

    def prepare_rows(self, args: argparse.Namespace) -> tuple[Iterator, int]:
        return read_mmsu(args.input, args.split)

    def looks_like(self, data: Path) -> bool:
        if not (data.is_dir() or data.suffix == ".parquet"):
            return False
        _check_hf_format(data)
        return True

    def owns(self, record: dict) -> bool:
        return ({"options", "answer_index"} <= set(record) or "answer_gt" in record
                or "-" in str(record.get("category") or ""))

    def score(self, records: Iterable[dict], key: str | None = None) -> Score:
        """The official letter rule and a strict option-text rule.

        Official (``total``, ``n``, ``category``): responses without a parseable letter are dropped from the
        denominator (``unparsed``), as are ``null`` ones (``null``; the official scorer skips them after an error);
        empty responses and records without the key stay in it as wrong (``empty``, ``missing``; the official scorer
        keeps them too but reuses the previous record's letter, a bug not reproduced). A letter is correct iff its
        option's text equals the answer's. Strict (``strict``): the stripped response equals the answer's option
        text; every record counts. ``category`` maps every category-path prefix to a percentage.
        """
        records, key = list(records), key or self.key
        base = order_zero(records)
        t = _Tally()
        for i, record in enumerate(base):
            t.add(record, key, i)
        result = {
            "benchmark": self.name,
            "rule": "official MMSU letter rule (dingdongwang/MMSU_Bench mmsu_evaluation.py)",
            "key": key,
            "total": pct(t.correct, t.total) if t.total else None,
            "n": t.total,
            "correct": t.correct,
            "category": {k: pct(*v) for k, v in sorted(t.official.items())},
            "counts": {"category": dict(sorted(t.official.items()))},
            "records": len(base),
            "missing": t.missing,
            "null": t.null,
            "empty": t.empty,
            "unparsed": t.unparsed,
            "strict": {
                "rule": "stripped response equals the answer's option text; all records count",
                "total": pct(t.strict_correct, len(base)) if base else None,
                "n": len(base),
                "correct": t.strict_correct,
                "category": {k: pct(*v) for k, v in sorted(t.strict.items())},
                "counts": {"category": dict(sorted(t.strict.items()))},
            },
            "warnings": t.warnings(key, len(base)),
        }
        if is_permuted(records):
            result["permutations"] = permutation_consistency(
                records, lambda r: bool(isinstance(r.get(key), str) and self.outcome(r, key)))
        return result

    def outcome(self, record: dict, key: str | None = None, index: int = 0,
                strict: bool = False) -> bool | None:
        _, ok_strict, ok = _outcomes(record, key or self.key, index)
        return ok_strict if strict else ok

    def options(self, record: dict, index: int = 0) -> tuple[list[str], str]:
        return mmsu_item(record, index)

    def predicted_option(self, record: dict, key: str | None = None) -> int | None:
        """Its letter, else an option's own text (R1-AQA's answers)."""
        prediction_ = record.get(key or self.key)
        if not isinstance(prediction_, str):
            return None
        options, _ = self.options(record)
        letter = mmsu_letter(prediction_)
        index = LETTERS.index(letter) if letter else None
        if index is None and prediction_.strip() in options:
            index = options.index(prediction_.strip())
        return index if index is not None and index < len(options) else None

    def panels(self, score: Score) -> list[tuple[str, dict[str, tuple[float, int]]]]:
        counts = score["counts"]["category"]
        panels = []
        for depth, title in ((1, "Category"), (2, "Category, level 2")):
            entries = {k: (score["category"][k], n) for k, (_, n) in counts.items()
                       if k.count("-") == depth - 1 and n}
            if entries:
                panels.append((title, entries))
        if not panels:  # no response carries a letter (the usual case with option-text answers): totals only
            overall = {"letter rule": (score["total"], score["n"])} if score["total"] is not None else {}
            if score.get("strict", {}).get("total") is not None:
                overall["strict"] = (score["strict"]["total"], score["strict"]["n"])
            panels.append(("Overall", overall))
        return panels

    def summary_lines(self, score: Score) -> list[str]:
        strict = score["strict"]
        return [f"- unparsed (no A-D letter, dropped as the official scorer does): {score['unparsed']}; null "
                f"(dropped): {score['null']}; missing key: {score['missing']}, empty: {score['empty']} (counted "
                "wrong)",
                f"- strict (response equals the option text, all records): **{fmt(strict['total'])}%** "
                f"({strict['correct']}/{strict['n']})"]

    def tables(self, score: Score) -> list[tuple[str, str, dict, dict]]:
        strict = score["strict"]
        return [("Official, by category", "category", score["category"], score["counts"]["category"]),
                ("Strict, by category", "category", strict["category"], strict["counts"]["category"])]

    def sweep_series(self, score: Score) -> dict[str, float | None]:
        return {"total": score["total"], **{c: score["category"][c] for c in score["category"] if "-" not in c},
                "strict total": score["strict"]["total"]}

    def strict_view(self, score: Score) -> bool:
        """When no response carries an A-D letter (R1-AQA's option-text answers), the official letter rule scores
        nothing and the strict score is the one to read."""
        return score["total"] is None


BENCHMARK = MMSU()
