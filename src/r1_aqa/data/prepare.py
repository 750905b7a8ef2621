"""``r1-aqa prepare avqa|mmau|mmsu``: validated rows with probed audio -> one parquet plus a skip report.

Dataset readers (``avqa``, ``mmau``, ``mmsu``) yield ``Item`` (a usable question whose clip is still to be probed)
or ``Skip`` (a row that is unusable as it stands); ``prepare`` probes every clip on all cores, writes clips that
come as bytes or arrays out as wav files, and writes ``OUT.parquet`` and ``OUT.report.json`` atomically.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
from pathlib import Path
from typing import Any, Iterable, Sequence, Union

HELP = "Prepare AVQA, MMAU or MMSU as a parquet of validated rows with probed audio, plus a skip report."

# Parquet columns every prepared dataset has, in order; readers may add columns (``Item.extra``) after them.
COLUMNS = ("id", "question", "choices", "answer", "answer_idx", "solution", "prompt", "audio", "duration_s",
           "sample_rate", "dataset_name")

# A clip as a reader finds it: a resolved path, encoded bytes, or a decoded (array, sample rate) pair.
AudioSource = Union[str, bytes, tuple]


@dataclasses.dataclass
class Item:
    """A question whose fields are valid; ``clip`` names its audio (the wav file name when written out)."""

    line: int
    id: str
    question: str
    choices: list[str]
    answer_idx: int
    dataset_name: str
    audio: AudioSource | None  # None once handed to the prober
    clip: str
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Skip:
    """A row left out, with its line (JSONL line, or 1-based record/row number) and the reason."""

    line: int
    id: str | None
    reason: str


def check_choices(choices: Any, answer_idx: Any = None) -> str | None:
    """Why ``choices`` (and ``answer_idx``, unless None) are unusable, or None when they are a non-empty list of
    strings and an index into it."""
    if not isinstance(choices, list) or not all(isinstance(c, str) for c in choices):
        return "choices must be a list of strings"
    if not choices:
        return "empty choices"
    if answer_idx is None:
        return None
    if not isinstance(answer_idx, int) or isinstance(answer_idx, bool):
        return f"answer index must be an integer, got {answer_idx!r}"
    if not 0 <= answer_idx < len(choices):
        return f"answer index {answer_idx} out of range for {len(choices)} choices"
    return None


def missing_fields(record: dict, required: Sequence[str]) -> str | None:
    """A skip reason naming the required fields ``record`` lacks (or has as null), or None."""
    missing = [k for k in required if record.get(k) is None]
    return f"missing field(s): {', '.join(missing)}" if missing else None


def resolve_audio(audio_path: str, audio_dir: str | os.PathLike | None) -> str | None:
    """The absolute path of the first existing file among DIR/audio_path, audio_path as given, DIR/basename."""
    candidates = [audio_path] if audio_dir is None else [
        os.path.join(audio_dir, audio_path), audio_path, os.path.join(audio_dir, os.path.basename(audio_path))]
    return next((os.path.abspath(c) for c in candidates if os.path.isfile(c)), None)


def audio_source(value: Any, base_dir: str | os.PathLike | None = None) -> AudioSource | None:
    """Normalize an HF-style audio value (bytes, path, ``{"bytes", "path"}`` or ``{"array", "sampling_rate"}``).

    Returns bytes, an (array, rate) pair or an existing absolute path (relative paths tried against
    ``base_dir`` too); None when the value holds no usable reference.
    """
    import numpy as np

    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, dict):
        if value.get("bytes"):
            return bytes(value["bytes"])
        if value.get("array") is not None:
            return np.asarray(value["array"], dtype=np.float32), int(value["sampling_rate"])
        value = value.get("path")
    if isinstance(value, str) and value:
        return resolve_audio(value, base_dir)
    return None


def load_hf_split(path: str | os.PathLike, split: str | None):
    """``datasets.load_from_disk`` of a Dataset or DatasetDict (taking ``split``; the only one when None), with
    audio columns left undecoded (``{"bytes", "path"}``)."""
    import datasets

    ds = datasets.load_from_disk(str(path))
    if isinstance(ds, datasets.DatasetDict):
        if split is None and len(ds) == 1:
            split = next(iter(ds))
        if split not in ds:
            raise ValueError(f"{path}: no split {split!r}; splits are {sorted(ds)} (pick one with --split)")
        ds = ds[split]
    for name, feature in ds.features.items():
        if isinstance(feature, datasets.Audio):
            ds = ds.cast_column(name, datasets.Audio(decode=False))
    return ds


def clip_name(name: str) -> str:
    """A file-name-safe stem for a clip written out as wav (from its original file name's stem or the row id)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip(".") or "clip"


def _is_wav(data: bytes) -> bool:
    return data[:4] == b"RIFF" and data[8:12] == b"WAVE"


def probe_clip(audio: AudioSource, dest: str | None) -> tuple[str, float, int] | str:
    """Probe one clip; bytes and arrays are first written to ``dest`` as wav.

    Returns ``(absolute path, duration in seconds, sample rate)``, or the reason the clip is unusable.
    """
    import soundfile as sf

    from ..audio import AudioError, load_audio, probe_audio
    from ..files import atomic_path

    try:
        if isinstance(audio, str):
            info = probe_audio(audio)
            return audio, info.duration_s, info.sample_rate
        if isinstance(audio, bytes):
            info = probe_audio(audio)
            sr, duration_s = info.sample_rate, info.duration_s
            wav = None if _is_wav(audio) else load_audio(audio, sampling_rate=sr)
        else:
            wav, sr = audio
            if wav.size == 0:
                raise AudioError(f"{dest}: audio has no samples")
            duration_s = len(wav) / sr
    except AudioError as e:
        return str(e)
    with atomic_path(dest) as tmp:
        if wav is None:  # already a wav file: keep its bytes
            tmp.write_bytes(audio)
        else:
            sf.write(str(tmp), wav, sr, format="WAV", subtype="FLOAT")
    return dest, duration_s, sr


def default_workers() -> int:
    """The cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _probe_rows(rows: Iterable[Item | Skip], rows_in: int, audio_out: Path, workers: int):
    """Probe each distinct clip once (a process pool when ``workers`` > 1), keeping few clips in flight."""
    import concurrent.futures as cf
    import contextlib
    import multiprocessing

    from tqdm import tqdm

    items: list[Item] = []
    skipped: list[Skip] = []
    probed: dict[str, tuple[str, float, int] | str] = {}
    pending: dict[cf.Future, str] = {}

    def collect(futures):
        for fut in futures:
            probed[pending.pop(fut)] = fut.result()

    with contextlib.ExitStack() as stack:
        pool = None
        if workers > 1:
            pool = stack.enter_context(
                cf.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")))
        for row in tqdm(rows, total=rows_in, desc="probing audio", unit="row"):
            if isinstance(row, Skip):
                skipped.append(row)
                continue
            items.append(dataclasses.replace(row, audio=None))  # drop payload bytes once submitted
            if row.clip in probed or row.clip in pending.values():
                continue
            dest = None if isinstance(row.audio, str) else str(audio_out / f"{row.clip}.wav")
            if pool is None:
                probed[row.clip] = probe_clip(row.audio, dest)
                continue
            if len(pending) >= 4 * workers:
                done, _ = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
                collect(done)
            pending[pool.submit(probe_clip, row.audio, dest)] = row.clip
        collect(list(pending))
    return items, skipped, probed


def _column(name: str, values: list):
    import pyarrow as pa

    types = {"choices": pa.list_(pa.string()), "answer_idx": pa.int64(), "duration_s": pa.float64(),
             "sample_rate": pa.int64()}
    if name in COLUMNS:
        return pa.array(values, type=types.get(name, pa.string()))
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # an extra field with mixed types across rows: keep it as text
        return pa.array([None if v is None else str(v) for v in values], type=pa.string())


def report_path(output: str | os.PathLike) -> Path:
    """``OUT.report.json`` for ``OUT.parquet``."""
    return Path(output).with_suffix(".report.json")


def prepare(
    rows: Iterable[Item | Skip],
    rows_in: int,
    output: str | os.PathLike,
    template: str = "default",
    workers: int | None = None,
) -> dict:
    """Probe the clips of ``rows`` and write ``output`` (parquet) and its report; return the report.

    Clips given as bytes or arrays are written to ``<output dir>/audio/<clip>.wav`` so that the ``audio`` column is
    always an absolute path. Items whose clip is missing, undecodable or empty are skipped and reported; the report is
    ``{"rows_in", "rows_out", "skipped": [{"line", "id", "reason"}]}`` sorted by line.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ..files import atomic_path, write_json
    from ..prompts import format_prompt

    format_prompt("", [], template)  # an unknown template fails before any work
    output = Path(output).absolute()
    items, skipped, probed = _probe_rows(rows, rows_in, output.parent / "audio", workers or default_workers())
    records = []
    for it in items:
        result = probed[it.clip]
        if isinstance(result, str):
            skipped.append(Skip(it.line, it.id, result))
            continue
        path, duration_s, sample_rate = result
        answer = it.choices[it.answer_idx]
        records.append({
            **it.extra,  # original fields first, so that the standard columns win
            "id": it.id, "question": it.question, "choices": it.choices, "answer": answer,
            "answer_idx": it.answer_idx, "solution": f"<answer>{answer}</answer>",
            "prompt": format_prompt(it.question, it.choices, template), "audio": path, "duration_s": duration_s,
            "sample_rate": sample_rate, "dataset_name": it.dataset_name,
        })
    names = list(COLUMNS) + [k for k in dict.fromkeys(k for r in records for k in r) if k not in COLUMNS]
    table = pa.table({n: _column(n, [r.get(n) for r in records]) for n in names})
    report = {"rows_in": rows_in, "rows_out": len(records),
              "skipped": [dataclasses.asdict(s) for s in sorted(skipped, key=lambda s: s.line)]}
    with atomic_path(output) as tmp:
        pq.write_table(table, tmp)
        write_json(report_path(output), report)
    return report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--output", required=True, type=Path, metavar="OUT.parquet",
                        help="parquet file to write; OUT.report.json lists the skipped rows")
    common.add_argument("--template", default="default", choices=["default", "think", "new"],
                        help="prompt template for the 'prompt' column")
    common.add_argument("--workers", type=int, default=default_workers(), help="processes probing audio")
    sub = parser.add_subparsers(dest="dataset", required=True, metavar="DATASET")
    fmt = argparse.ArgumentDefaultsHelpFormatter

    p = sub.add_parser("avqa", parents=[common], formatter_class=fmt,
                       help="AVQA: R1-AQA JSONL (or the gijs/avqa-processed layout with --from-hf)",
                       description="AVQA from the R1-AQA JSONL (id, question_text, multi_choice, answer index, "
                                   "dataset_name, audio_path) or from a gijs/avqa-processed save_to_disk directory. "
                                   "'video' in questions becomes 'audio'.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--input", type=Path, metavar="JSONL", help="R1-AQA JSONL file")
    src.add_argument("--from-hf", type=Path, metavar="DIR",
                     help="datasets save_to_disk directory (gijs/avqa-processed layout)")
    p.add_argument("--audio-dir", type=Path, default=None, metavar="DIR",
                   help="where clips live: tries DIR/audio_path, audio_path, DIR/basename; None: the JSONL's dir")
    p.add_argument("--split", default="train", help="split to take with --from-hf")

    p = sub.add_parser("mmau", parents=[common], formatter_class=fmt, help="MMAU question file (JSON list)",
                       description="MMAU (e.g. mmau-test-mini.json); keeps all original fields as columns.")
    p.add_argument("--input", type=Path, required=True, metavar="JSON", help="MMAU JSON question file")
    p.add_argument("--audio-dir", type=Path, default=None, metavar="DIR",
                   help="directory holding test-mini-audios/ (or the clips themselves); None: the JSON's dir")

    p = sub.add_parser("mmsu", parents=[common], formatter_class=fmt, help="MMSU in HF format",
                       description="MMSU (audio, key, question, options, answer_index, category) from a parquet "
                                   "file, a directory of parquet files or a datasets save_to_disk directory.")
    p.add_argument("--input", type=Path, required=True, metavar="PATH",
                   help="parquet file, directory of parquet files, or save_to_disk directory")
    p.add_argument("--split", default=None, help="split of a save_to_disk DatasetDict (needed if it has several)")


def run(args: argparse.Namespace) -> int:
    if args.dataset == "avqa":
        from .avqa import read_avqa_hf, read_avqa_jsonl

        rows, rows_in = (read_avqa_hf(args.from_hf, args.split) if args.from_hf is not None
                         else read_avqa_jsonl(args.input, args.audio_dir))
    elif args.dataset == "mmau":
        from .mmau import read_mmau

        rows, rows_in = read_mmau(args.input, args.audio_dir)
    else:
        from .mmsu import read_mmsu

        rows, rows_in = read_mmsu(args.input, args.split)
    report = prepare(rows, rows_in, args.output, template=args.template, workers=args.workers)
    print(f"{args.output}: kept {report['rows_out']} of {report['rows_in']} rows, skipped "
          f"{len(report['skipped'])} (see {report_path(args.output)})")
    return 0 if report["rows_out"] else 1
