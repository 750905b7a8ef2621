"""``r1-aqa prepare avqa|BENCHMARK``: validated rows with probed audio -> one parquet plus a skip report.

A source's reader (AVQA's in :mod:`.avqa`; a benchmark's own, :meth:`Benchmark.prepare_rows`, for every benchmark with a
``prepare_help``) yields ``items.Item`` (a usable question whose clip is still to be probed) or ``items.Skip`` (a row
that is unusable as it stands); ``prepare`` probes every clip on all cores, writes clips that come as bytes or arrays
out as wav files, and writes ``OUT.parquet`` and ``OUT.report.json`` atomically.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path
from typing import Iterable

from ..benchmarks import NAMES, get_benchmark
from ..items import COLUMNS, AudioSource, Item, Skip
from .avqa import HF_LAYOUT, read_avqa_hf, read_avqa_jsonl

HELP = ("Prepare AVQA (training data) or a benchmark's own file as a parquet of validated rows with probed audio, plus "
        "a skip report.")


def _is_wav(data: bytes) -> bool:
    return data[:4] == b"RIFF" and data[8:12] == b"WAVE"


def probe_clip(audio: AudioSource, dest: str | None) -> tuple[str, float, int] | str:
    """Probe one clip; bytes and arrays are first written to ``dest`` as wav.

    Returns ``(absolute path, duration in seconds, sample rate)``, or the reason the clip is unusable.
    """
    import soundfile as sf

    from ..audio import AudioError, check_samples, load_audio, probe_audio
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
            check_samples(wav, dest)
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


def clips_dir(output: str | os.PathLike) -> Path:
    """``OUT.audio/`` for ``OUT.parquet``: where clips that come as bytes or arrays are written (one folder per
    output, so that two outputs in one directory never share or overwrite each other's clips)."""
    return Path(output).with_suffix(".audio")


def prepare(
    rows: Iterable[Item | Skip],
    rows_in: int,
    output: str | os.PathLike,
    template: str = "default",
    workers: int | None = None,
) -> dict:
    """Probe the clips of ``rows`` and write ``output`` (parquet) and its report; return the report.

    Clips given as bytes or arrays are written to ``OUT.audio/<clip>.wav`` (:func:`clips_dir`) so that the ``audio``
    column is always an absolute path. Items whose clip is missing, undecodable, empty or not finite are skipped and
    reported; the report is ``{"rows_in", "rows_out", "skipped": [{"line", "id", "reason"}]}`` sorted by line. When
    no row is usable nothing is written and ``ValueError`` says why.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ..files import atomic_path, write_json
    from ..prompts import format_prompt

    format_prompt("", [], template)  # an unknown template fails before any work
    output = Path(output).absolute()
    items, skipped, probed = _probe_rows(rows, rows_in, clips_dir(output), workers or default_workers())
    records = []
    for it in items:
        result = probed[it.clip]
        if isinstance(result, str):
            skipped.append(Skip(it.line, it.id, result))
            continue
        path, duration_s, sample_rate = result
        answer = it.choices[it.answer_idx] if it.answer_idx is not None else it.extra.get("reference") or ""
        records.append({
            **it.extra,  # original fields first, so that the standard columns win
            "id": it.id, "question": it.question, "choices": it.choices, "answer": answer,
            "answer_idx": it.answer_idx, "solution": f"<answer>{answer}</answer>",
            "prompt": format_prompt(it.question, it.choices, template), "audio": path, "duration_s": duration_s,
            "sample_rate": sample_rate, "dataset_name": it.dataset_name,
        })
    skipped.sort(key=lambda s: s.line)
    if not records:
        shown = "".join(f"\n  line {s.line} (id {s.id}): {s.reason}" for s in skipped[:10])
        more = f"\n  ... and {len(skipped) - 10} more" if len(skipped) > 10 else ""
        raise ValueError(f"no usable rows among the {rows_in} read ({len(skipped)} skipped): nothing written to "
                         f"{output}{shown}{more}")
    names = list(COLUMNS) + [k for k in dict.fromkeys(k for r in records for k in r) if k not in COLUMNS]
    table = pa.table({n: _column(n, [r.get(n) for r in records]) for n in names})
    report = {"rows_in": rows_in, "rows_out": len(records),
              "skipped": [dataclasses.asdict(s) for s in skipped]}
    with atomic_path(output) as tmp:  # the report is renamed into place only once the parquet is fully written
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
                                   "'video' in questions becomes 'audio'. " + HF_LAYOUT)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--input", type=Path, metavar="JSONL", help="R1-AQA JSONL file")
    src.add_argument("--from-hf", type=Path, metavar="DIR",
                     help="datasets save_to_disk directory (gijs/avqa-processed layout)")
    p.add_argument("--audio-dir", type=Path, default=None, metavar="DIR",
                   help="where clips live: tries DIR/audio_path, audio_path, DIR/basename; None: the JSONL's dir")
    p.add_argument("--split", default="train", help="split to take with --from-hf")

    for benchmark in map(get_benchmark, NAMES):
        if benchmark.prepare_help:
            p = sub.add_parser(benchmark.name, parents=[common], formatter_class=fmt, help=benchmark.prepare_help,
                               description=benchmark.prepare_description)
            benchmark.add_prepare_arguments(p)


def run(args: argparse.Namespace) -> int:
    if args.dataset == "avqa":
        rows, rows_in = (read_avqa_hf(args.from_hf, args.split) if args.from_hf is not None
                         else read_avqa_jsonl(args.input, args.audio_dir))
    else:
        rows, rows_in = get_benchmark(args.dataset).prepare_rows(args)
    report = prepare(rows, rows_in, args.output, template=args.template, workers=args.workers)
    print(f"{args.output}: kept {report['rows_out']} of {report['rows_in']} rows, skipped "
          f"{len(report['skipped'])} (see {report_path(args.output)})")
    return 0
