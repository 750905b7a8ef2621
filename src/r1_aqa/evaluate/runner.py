"""The ``eval`` command: greedy predictions on MMAU test-mini, MMSU or MMAR with the hf or vLLM engine, resumable.

Output is an MMAU-format JSON list (every input field plus ``model_output``, ``model_prediction``,
``model_response``, ``model_think``; for MMAR also ``answer_prediction``, and ``thinking_prediction`` with the think
template) so the official scorers read it; the settings go to ``PRED.meta.json``.
While running, finished records are appended to ``PRED.json.partial.jsonl`` (flushed per batch); a rerun of the
same command resumes from it and the final file is identical to an uninterrupted run.

Several workers: ``--num-workers N`` starts N processes through ``torchrun``; the same command started by ``torchrun``
or ``accelerate launch`` makes each rank a worker. Each worker pins one GPU (``LOCAL_RANK`` modulo the visible GPUs)
where there are any and runs its own engine. A sweep with at least as many checkpoints as workers deals out whole
checkpoints; otherwise each checkpoint's items are split between the workers assigned to it (every S-th item). A
worker appends to its own ``PRED.json.partial.K-of-S.jsonl``; whichever worker finds every item done merges the
shares into exactly the file one process writes, then scores and reports it. A rerun resumes every share, also with
another number of workers.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Sequence

from ..checks import check_model_path
from .resume import PartialRecords, drop_stale, locked, partial_paths, prefetched, settings_diff

HELP = ("Evaluate a model, or every checkpoint-* of a run, on MMAU test-mini, MMSU or MMAR (greedy, hf or vLLM "
        "engine).")

_THINK = re.compile(r"<think>(.*?)</think>", re.DOTALL)
_CHECKPOINT = re.compile(r"checkpoint-(\d+)")
DEFAULT_BATCH_SIZE = {"hf": 8, "vllm": 64}  # vLLM schedules a call's requests itself: give it many
# Settings that change the predictions: a partial file made with other values is not resumed.
_RESUME_SETTINGS = ("benchmark", "data", "model", "model_files", "engine", "dtype", "template", "sampling",
                    "max_audio_seconds", "permutations", "silence")


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def add_arguments(parser) -> None:
    parser.add_argument("--benchmark", choices=("mmau", "mmsu", "mmar"), default="mmau",
                        help="which benchmark's format and scorer (the data's format is checked against it)")
    parser.add_argument("--data", required=True,
                        help="the benchmark's own file (MMAU JSON; MMSU in its HF format; MMAR-meta.jsonl) or a "
                             "parquet from `prepare`")
    parser.add_argument("--audio-dir", default=None,
                        help="directory MMAU `audio_id` and MMAR `audio_path` paths are relative to; unset: the data "
                             "file's directory")
    parser.add_argument("--model", required=True,
                        help="a model/checkpoint directory; a run directory (then every checkpoint-* is evaluated); "
                        "or a hub model id such as Qwen/Qwen2-Audio-7B-Instruct (a baseline of the base model)")
    parser.add_argument("--engine", choices=("hf", "vllm"), default="hf", help="generation engine")
    parser.add_argument("--output", required=True, help="predictions JSON (MMAU format); a sweep writes one per "
                        "checkpoint, PRED.checkpoint-N.json")
    parser.add_argument("--overwrite", action="store_true",
                        help="evaluate again and replace the output, also one made with other settings (without it "
                        "such an output is refused, and one made with the same settings is kept); a killed "
                        "--overwrite run resumes when the same command is run again")
    parser.add_argument("--template", choices=("default", "think", "new"), default="default",
                        help="R1-AQA prompt template")
    parser.add_argument("--batch-size", type=positive_int, default=None,
                        help="items per generate call and per flush of results; unset: "
                        + ", ".join(f"{k} {v}" for k, v in DEFAULT_BATCH_SIZE.items()))
    parser.add_argument("--max-new-tokens", type=positive_int, default=256,
                        help="generated tokens per item, at most (R1-AQA's 256; a random-weight tiny model never "
                        "stops before it: use e.g. 16 there)")
    parser.add_argument("--limit", type=positive_int, default=None, help="evaluate only the first N items; unset: all")
    parser.add_argument("--permutations", type=positive_int, default=1,
                        help="evaluate each item under K >= 1 option orders: order 0 is the original, the others "
                        "shuffled by id; at most the number of distinct orders of the item with fewest options")
    parser.add_argument("--max-audio-seconds", type=float, default=None,
                        help="cut clips to this length (default: 30 for Qwen2-Audio, no cap for Omni; 0: no cap)")
    parser.add_argument("--dtype", choices=("auto", "bfloat16", "float16", "float32"), default="auto",
                        help="auto: bf16 on GPU, float32 on CPU")
    parser.add_argument("--silence", action="store_true",
                        help="also evaluate with each clip replaced by silence of its length (PRED.silence.json) and "
                             "report accuracy, silence accuracy and the listening gap (PRED.listening.{json,md,png})")
    parser.add_argument("--num-workers", type=positive_int, default=1,
                        help="worker processes (one GPU each where there are GPUs), started through torchrun; under "
                        "torchrun/accelerate launch every rank is a worker already")


def interrupted(args) -> str:
    """What a Ctrl-C leaves (the CLI's message)."""
    return (f"; the items done so far are kept beside {args.output} (*.partial*.jsonl): the same command resumes "
            "from them")


def run(args) -> int:
    from ..files import write_json
    from .html_report import silence_path
    from .scoring import compare_listening

    rank, world, local_rank = launcher_rank()
    if world == 1 and args.num_workers > 1:
        _inputs(args)  # bad input stops here, with one message, before any worker starts
        return spawn_workers(args.num_workers, args.argv)
    if world > 1 and args.num_workers not in (1, world):
        raise ValueError(f"--num-workers {args.num_workers} under a launcher with {world} processes: drop the flag")
    if world > 1:
        isolate_worker(local_rank)
    checkpoints, items = _inputs(args)
    sweep = checkpoints != [Path(args.model)]
    check_output_kind(Path(args.output), args.model, sweep)
    outputs = [_checkpoint_output(args.output, m) if sweep else Path(args.output) for m in checkpoints]
    settings = dict(benchmark=args.benchmark, data=args.data, engine=args.engine, template=args.template,
                    batch_size=args.batch_size, max_new_tokens=args.max_new_tokens, permutations=args.permutations,
                    max_audio_seconds=args.max_audio_seconds, dtype=args.dtype, overwrite=args.overwrite)
    status = 0
    shown: set[str] = set()  # warnings already printed (a sweep's checkpoints share most)
    for index, shard, shards in worker_units(len(checkpoints), world)[rank]:
        model, output = checkpoints[index], outputs[index]
        # The silence run comes before the reports, so the error-analysis page shows the listening gap too.
        runs = {output: False, **({silence_path(output): True} if args.silence else {})}
        try:
            merged = [evaluate(items, model, path, silence=quiet, also=[p for p in runs if p != path], shard=shard,
                               shards=shards, workers=world, position=rank, **settings)
                      for path, quiet in runs.items()]
        except Exception as e:  # noqa: BLE001 - a sweep goes on past a checkpoint it cannot evaluate
            if not sweep:
                raise
            print(f"error: {model}: {type(e).__name__}: {e}", file=sys.stderr)
            write_json(failure_path(output), {"checkpoint": str(model), "error": f"{type(e).__name__}: {e}"})
            status = 1
            continue
        failure_path(output).unlink(missing_ok=True)
        if any(records is not None for records in merged):  # this worker finished the checkpoint's last output
            score_and_report(output, args.benchmark, table=not sweep, shown=shown)
            if args.silence:
                compare_listening(output, silence_path(output), args.benchmark)
    if sweep:
        status = max(status, finish_sweep(Path(args.output), checkpoints, outputs))
    return status


def finish_sweep(output: Path, checkpoints: Sequence[Path], outputs: Sequence[Path]) -> int:
    """Once every checkpoint is settled (evaluated or failed), the sweep report, made by one worker: the first to
    find the set complete; a worker coming later (or a rerun with nothing new) finds the report up to date and says
    so in one line. Returns 1 when a checkpoint failed."""
    from .html_report import sweep_page_path

    with locked(output.parent):  # the last worker to finish finds every checkpoint settled
        failed = [json.loads(failure_path(o).read_text()) for o in outputs if failure_path(o).exists()]
        finished = [(checkpoint_step(m), o) for m, o in zip(checkpoints, outputs) if _settled(o)]
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


def _inputs(args) -> tuple[list[Path], list[dict]]:
    """The checkpoints and items of an ``eval`` command line, checked (every clip decoded)."""
    checkpoints = find_checkpoints(args.model)
    items = load_items(args.benchmark, args.data, args.audio_dir, limit=args.limit)
    check_permutations(items, args.permutations)
    check_audio(items, args.audio_dir or (Path(args.data).parent if args.benchmark != "mmsu" else None))
    return checkpoints, items


# --- workers -----------------------------------------------------------------------------------------------------

_LAUNCHER_ENV = ("LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK", "GROUP_WORLD_SIZE",
                 "ROLE_RANK", "ROLE_WORLD_SIZE", "ROLE_NAME", "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RUN_ID",
                 "TORCHELASTIC_RESTART_COUNT", "TORCHELASTIC_MAX_RESTARTS", "TORCHELASTIC_USE_AGENT_STORE",
                 "TORCH_NCCL_ASYNC_ERROR_HANDLING")


def launcher_rank() -> tuple[int, int, int]:
    """``(rank, world size, local rank)`` set by torchrun or accelerate launch; ``(0, 1, 0)`` otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if not 0 <= rank < world:
        raise ValueError(f"RANK={rank} is outside WORLD_SIZE={world}")
    return rank, world, int(os.environ.get("LOCAL_RANK", rank))


def isolate_worker(local_rank: int) -> None:
    """Make a launched rank an independent single-process evaluation: pin one GPU (``local_rank`` modulo the
    visible ones) where there are any, and drop the launcher's rendezvous variables so the engine sets itself up
    alone (``RANK`` and ``WORLD_SIZE`` stay: they only name this worker, e.g. for messages printed once)."""
    import torch

    gpus = torch.cuda.device_count()  # NVML: CUDA is not initialised yet, so the pin below still applies
    if gpus:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        devices = [d.strip() for d in visible.split(",")] if visible else [str(i) for i in range(gpus)]
        os.environ["CUDA_VISIBLE_DEVICES"] = devices[local_rank % gpus]
    for key in _LAUNCHER_ENV:
        os.environ.pop(key, None)


def spawn_workers(n: int, argv: Sequence[str]) -> int:
    """Run this same ``r1-aqa`` command as ``n`` ranks under torchrun (standalone, this machine); its exit status.
    Unless ``OMP_NUM_THREADS`` is set, the workers share the CPU cores equally."""
    import subprocess

    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={n}",
               "-m", "r1_aqa.cli", *argv]
    print(f"starting {n} workers: torchrun --standalone --nproc-per-node={n} -m r1_aqa.cli {' '.join(argv)}",
          file=sys.stderr)
    threads = os.environ.get("OMP_NUM_THREADS") or str(max(1, (os.cpu_count() or 1) // n))
    return subprocess.call(command, env={**os.environ, "OMP_NUM_THREADS": threads})


def worker_units(checkpoints: int, workers: int) -> list[list[tuple[int, int, int]]]:
    """What each worker evaluates: ``[(checkpoint index, shard, shards)]`` per worker.

    With at least as many checkpoints as workers, worker w takes whole checkpoints w, w + workers, ...; otherwise
    worker w takes shard w // checkpoints of checkpoint w % checkpoints, which is split between the workers it has.
    Every worker loads as few engines as possible and every item belongs to exactly one share.
    """
    if checkpoints >= workers:
        return [[(c, 0, 1) for c in range(w, checkpoints, workers)] for w in range(workers)]
    sizes = [len(range(c, workers, checkpoints)) for c in range(checkpoints)]
    return [[(w % checkpoints, w // checkpoints, sizes[w % checkpoints])] for w in range(workers)]


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


def failure_path(output: str | os.PathLike) -> Path:
    """Where a sweep records why a checkpoint could not be evaluated: ``PRED.checkpoint-N.failed.json``."""
    output = Path(output)
    return output.with_name(f"{output.stem}.failed.json")


def _settled(output: Path) -> bool:
    """Whether ``output`` is a merged result (no share of it is being written)."""
    return output.exists() and not partial_paths(output)


# --- inputs ------------------------------------------------------------------------------------------------------


def find_checkpoints(model: str | os.PathLike) -> list[Path]:
    """``[model]`` for a model directory or a hub model id; for a run directory its ``checkpoint-*`` directories,
    sorted by step."""
    check_model_path(model)
    model = Path(model)
    if not model.is_dir():
        from ..models import model_family

        model_family(model)  # a hub id (from the local cache or the hub), or an error naming the path
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


def _checkpoint_output(output: str | os.PathLike, checkpoint: Path) -> Path:
    output = Path(output)
    return output.with_name(f"{output.stem}.{checkpoint.name}{output.suffix}")


def load_items(benchmark: str, data: str | os.PathLike, audio_dir: str | os.PathLike | None = None,
               limit: int | None = None) -> list[dict]:
    """Benchmark records with an ``audio`` source (absolute path or bytes), in file order; ids must be unique.

    ``data`` is the MMAU JSON, an MMSU file in its HF format, MMAR-meta.jsonl, or a parquet written by
    ``r1-aqa prepare``.
    """
    data = Path(data)
    if not data.exists():
        raise FileNotFoundError(f"{data}: no such data file")
    try:
        records = _read_items(benchmark, data, audio_dir)
    except OSError as e:  # e.g. a directory where a file was expected
        raise ValueError(f"{data}: cannot be read ({e})") from None
    records = records[:limit] if limit is not None else records
    counts = Counter(str(r["id"]) for r in records)
    duplicates = sorted(i for i, n in counts.items() if n > 1)
    if duplicates:
        raise ValueError(f"{data}: {len(duplicates)} duplicate ids: {', '.join(duplicates[:20])}")
    return records


def _read_items(benchmark: str, data: Path, audio_dir: str | os.PathLike | None) -> list[dict]:
    if _is_prepared(data):
        import pandas as pd

        return [_plain(r) for r in pd.read_parquet(data).to_dict("records")]
    _check_format(data, benchmark)
    if benchmark == "mmau":
        from ..data.mmau import load_mmau

        return load_mmau(data, audio_dir if audio_dir is not None else data.parent)
    if benchmark == "mmar":
        from ..data.mmar import load_mmar

        return load_mmar(data, audio_dir)
    from ..data.mmsu import load_mmsu

    return load_mmsu(data)


def _is_prepared(data: Path) -> bool:
    """Whether ``data`` is a parquet written by ``r1-aqa prepare`` (all its columns; ``audio`` an absolute path)."""
    if data.suffix != ".parquet" or not data.is_file():
        return False
    from ..data.prepare import COLUMNS

    return set(COLUMNS) <= set(_schema(data))


_FORMATS = {"mmau": "an MMAU JSON file (a list)", "mmar": "an MMAR JSON-lines file",
            "mmsu": "MMSU data in its HF format (parquet files or a directory)"}


def _check_format(data: Path, benchmark: str) -> None:
    """Refuse one benchmark's own data under another's ``--benchmark``, naming the right flag."""
    if data.is_dir() or data.suffix == ".parquet":
        found = _parquet_kind(data)
    else:
        with open(data, "rb") as f:
            found = {b"[": "mmau", b"{": "mmar"}.get(f.read(64).lstrip()[:1])
    if found is not None and found != benchmark:
        raise ValueError(f"{data}: looks like {_FORMATS[found]}, not {benchmark.upper()} data: use --benchmark "
                         f"{found}")


def _parquet_kind(data: Path) -> str:
    """"mmsu" for MMSU in its HF format (a save_to_disk directory, or parquet files with its columns); anything else
    that is parquet raises ``ValueError`` saying what it is and what to pass instead."""
    from ..data.mmsu import FIELDS
    from ..data.prepare import COLUMNS

    if data.is_dir() and any((data / f).is_file() for f in ("dataset_dict.json", "state.json")):
        return "mmsu"
    files = [data] if data.is_file() else sorted(data.rglob("*.parquet"))
    if not files:
        raise ValueError(f"{data}: a directory with no parquet files, nor a datasets save_to_disk directory: pass "
                         "the benchmark's question file or a parquet from `r1-aqa prepare` as --data")
    names = set(_schema(files[0]))
    if data.is_dir() and set(COLUMNS) <= names:
        raise ValueError(f"{data}: a directory of parquet files from `r1-aqa prepare` ({files[0].name}"
                         f"{', ...' if len(files) > 1 else ''}): pass one of them as --data")
    if not set(FIELDS) <= names:
        raise ValueError(f"{files[0]}: neither MMSU's HF format (columns {', '.join(FIELDS)}, audio) nor a parquet "
                         f"from `r1-aqa prepare`; its columns: {', '.join(sorted(names))}")
    return "mmsu"


def _schema(path: Path) -> list[str]:
    """The column names of a parquet file; an unreadable one raises ``ValueError`` naming it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_schema(path).names
    except pa.ArrowException as e:
        raise ValueError(f"{path}: not a readable parquet file ({e})") from None


def _plain(value):
    """Parquet cells as JSON values (numpy arrays -> lists, numpy scalars -> Python), nested ones included."""
    import numpy as np

    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_plain(v) for v in value]
    return value.item() if isinstance(value, np.generic) else value


def check_permutations(items: Sequence[dict], permutations: int) -> None:
    """Refuse more option orders than the item with the fewest options has (``n!``)."""
    if permutations <= 1 or not items:
        return
    fewest = min(items, key=lambda r: len(r["choices"]))
    orders = math.factorial(len(fewest["choices"]))
    if permutations > orders:
        raise ValueError(f"--permutations {permutations}: item {fewest['id']} has {len(fewest['choices'])} options, "
                         f"so only {orders} distinct orders; use --permutations {orders} or less")


def check_audio(items: Sequence[dict], audio_dir: str | os.PathLike | None = None, shown: int = 20) -> None:
    """Decode every item's clip (with a progress bar) and raise one error listing each unusable one: missing, not
    audio, or empty (the first ``shown`` by id and reason, then a count)."""
    from concurrent.futures import ThreadPoolExecutor

    from tqdm import tqdm

    from ..audio import probe_audio

    def problem(record: dict) -> str | None:
        audio = record["audio"]
        if audio is None or (isinstance(audio, str) and not os.path.isfile(audio)):
            return f"{record.get('audio_id') or record.get('audio_path') or audio}: file not found"
        try:
            probe_audio(_encoded(audio))
        except ValueError as e:  # AudioError names the clip and the reason
            return str(e)
        return None

    with ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:
        found = list(tqdm(pool.map(problem, items), total=len(items), desc="check clips", unit="clip",
                          disable=len(items) < 100))
    bad = [(r["id"], reason) for r, reason in zip(items, found) if reason is not None]
    if bad:
        where = f" (looked under {audio_dir})" if audio_dir is not None else ""
        lines = "\n".join(f"  {i}: {reason}" for i, reason in bad[:shown])
        more = f"\n  ... and {len(bad) - shown} more" if len(bad) > shown else ""
        raise FileNotFoundError(f"{len(bad)} of {len(items)} audio clips are missing or unusable{where}:\n"
                                f"{lines}{more}")


def permuted(record: dict, k: int) -> dict:
    """``record`` with its options in order ``k``: 0 is the original, others a shuffle seeded by id and ``k``.

    ``answer_idx`` follows the answer; a ``prompt`` built for the original order is dropped.
    """
    if k == 0:
        return dict(record)
    choices = list(record["choices"])
    order = list(range(len(choices)))
    random.Random(f"{record['id']}/{k}").shuffle(order)
    out = {key: value for key, value in record.items() if key != "prompt"}
    out["choices"] = [choices[i] for i in order]
    if isinstance(record.get("answer_idx"), int):
        out["answer_idx"] = order.index(record["answer_idx"])
    return out


def expand(items: Sequence[dict], permutations: int) -> list[dict]:
    """Each item under ``permutations`` option orders (item-major); orders > 1 carry ``"permutation": k``."""
    if permutations < 1:
        raise ValueError(f"--permutations must be >= 1, got {permutations}")
    if permutations == 1:
        return [dict(r) for r in items]
    return [{**permuted(r, k), "permutation": k} for r in items for k in range(permutations)]


# --- predictions -------------------------------------------------------------------------------------------------


def prediction_fields(response: str, benchmark: str = "mmau", template: str = "default") -> dict:
    """The model fields of an output record: extracted answer (twice), raw response, think content; for MMAR also
    the keys its scorer reads (``answer_prediction``; ``thinking_prediction`` with the think template)."""
    from ..rewards import extract_answer

    answer = extract_answer(response)
    think = _THINK.search(response)
    think = think.group(1).strip() if think else None
    fields = {"model_output": answer, "model_prediction": answer, "model_response": response, "model_think": think}
    if benchmark == "mmar":
        fields["answer_prediction"] = answer
        if template == "think":
            fields["thinking_prediction"] = think
    return fields


def _output_record(item: dict, response: str, benchmark: str, template: str) -> dict:
    record = {k: v for k, v in item.items() if not (k == "audio" and not isinstance(v, str))}
    return {**record, **prediction_fields(response, benchmark, template)}


def _key(record: dict) -> tuple:
    return str(record["id"]), record.get("permutation", 0)


def meta_path(output: str | os.PathLike) -> Path:
    """The metadata sidecar of a predictions file (settings, engine, model, data version)."""
    output = Path(output)
    return output.with_name(f"{output.stem}.meta.json")


def evaluate(items: Sequence[dict], model: str | os.PathLike, output: str | os.PathLike, *, benchmark: str,
             data: str | os.PathLike, engine: str = "hf", template: str = "default", batch_size: int | None = None,
             max_new_tokens: int = 256, permutations: int = 1, max_audio_seconds: float | None = None,
             dtype: str = "auto", silence: bool = False, overwrite: bool = False, shard: int = 0, shards: int = 1,
             workers: int = 1, also: Sequence[Path] = (), position: int = 0) -> list[dict] | None:
    """Predict share ``shard`` of ``shards`` of the items (every ``shards``-th, under each option order), resuming
    from the partial files of ``output``; once every item is done, by this worker or others, merge them.

    ``silence``: each clip is replaced by silence of its length (as loaded, after the cap). Merging writes ``output``
    (atomically, in input order) and its ``.meta.json`` sidecar (``workers`` among the settings), then removes the
    partial files. Returns the records when this call finished the last of ``output`` and ``also`` (outputs the
    reports need as well, e.g. the silence run); ``None`` otherwise (other shares or outputs still missing). An
    existing ``output`` made with the same settings is reused (only items it lacks are generated; nothing when it
    has them all); one made with other settings, or without a sidecar, is refused unless ``overwrite``, which
    generates everything again, also dropping partial files made with other settings (one made with these settings,
    by a killed ``overwrite`` run, is resumed). ``position`` places this worker's progress bar.
    """
    from tqdm import tqdm

    from .. import files
    from ..prompts import format_prompt
    from .engines import greedy_settings, load_engine

    output = Path(output)
    batch_size = batch_size or DEFAULT_BATCH_SIZE[engine]
    max_audio_seconds = audio_cap(model, max_audio_seconds)
    dtype = dtype_name(dtype)
    settings = {
        "benchmark": benchmark, "data": str(Path(data).resolve()), "data_version": _data_version(benchmark, items),
        "model": _model_name(model), "model_files": _model_files(model), "engine": engine, "dtype": dtype,
        "template": template, "sampling": greedy_settings(max_new_tokens),
        "max_audio_seconds": max_audio_seconds or None, "permutations": permutations, "silence": silence,
        "batch_size": batch_size,
    }
    expanded = expand(items, permutations)
    if overwrite:  # other settings' partial files go; this run's own, from a killed try, are resumed
        drop_stale(output, settings, _RESUME_SETTINGS)
    finished = {} if overwrite else _finished(output, settings)
    beyond = finished.keys() - {_key(r) for r in expanded}
    if beyond:
        raise ValueError(f"{output} holds {len(beyond)} records this run would drop (a smaller --limit?): pass "
                         "--overwrite to replace it, or choose another --output")
    if finished and finished.keys() == {_key(r) for r in expanded}:
        print(f"{output}: already evaluated with these settings; nothing to do (--overwrite to redo it)",
              file=sys.stderr)
        return [finished[_key(r)] for r in expanded] if shard == 0 and all(map(_settled, also)) else None
    partial = PartialRecords(output, settings, _RESUME_SETTINGS, _key, shard, shards)
    partial.done.update(finished)
    share = expanded[shard::shards]
    todo = partial.todo(share)
    if len(todo) < len(share):
        print(f"{output}: resuming after {len(share) - len(todo)} of {len(share)} items"
              + (f" of share {shard + 1}/{shards}" if shards > 1 else ""), file=sys.stderr)
    if todo:
        eng = load_engine(engine, model, max_new_tokens=max_new_tokens, batch_size=batch_size, dtype=dtype)
        batches = [todo[i : i + batch_size] for i in range(0, len(todo), batch_size)]

        def load_batch(batch: list[dict]):
            return [clip(r["audio"], max_audio_seconds or None, silence) for r in batch]

        desc = (f"eval {Path(model).name}" + (" (silence)" if silence else "")
                + (f" [{shard + 1}/{shards}]" if shards > 1 else ""))
        with partial, tqdm(total=len(share), initial=len(share) - len(todo), unit="item", desc=desc,
                           position=position) as bar:
            for batch, audios in prefetched(batches, load_batch):  # the next batch's clips decode meanwhile
                prompts = [format_prompt(r["question"], r["choices"], template) for r in batch]
                responses = eng.generate(prompts, audios)
                partial.add(_output_record(item, response, benchmark, template)
                            for item, response in zip(batch, responses, strict=True))
                bar.update(len(batch))
        eng.close()
    with locked(output.parent):  # one worker merges, once every share is in
        done = {**finished, **partial.collect()}
        if any(_key(r) not in done for r in expanded):
            return None
        records = [done[_key(r)] for r in expanded]
        files.write_json(output, records)
        files.write_json(meta_path(output), {**settings, "workers": workers, "n_items": len(items),
                                             "n_records": len(records)})
        partial.remove()
        return records if all(map(_settled, also)) else None


def _model_name(model: str | os.PathLike) -> str:
    """A local model directory as an absolute path; a hub id as given."""
    return str(Path(model).resolve()) if Path(model).is_dir() else str(model)


def _model_files(model: str | os.PathLike) -> str | None:
    """A fingerprint of a local model's weight files (names, sizes, modification times): a model trained again into
    the same directory is another model. ``None`` for a hub id."""
    import hashlib

    if not Path(model).is_dir():
        return None
    files = sorted(p for p in Path(model).iterdir() if p.suffix in (".safetensors", ".bin"))
    stats = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    return hashlib.sha256(json.dumps(stats).encode()).hexdigest()[:16]


def _finished(output: Path, settings: dict) -> dict[tuple, dict]:
    """The records of a finished ``output`` made with ``settings`` (none if there is no output); an output made
    with other settings, or of unknown ones, raises ``ValueError`` naming ``--overwrite``."""
    if not output.exists():
        return {}
    meta = meta_path(output)
    if not meta.exists():
        raise ValueError(f"{output} exists and has no {meta.name} to tell how it was made: pass --overwrite to "
                         "replace it, or choose another --output")
    saved = json.loads(meta.read_text(encoding="utf-8"))
    diff = settings_diff(saved, settings, _RESUME_SETTINGS)
    if diff:
        raise ValueError(f"{output} exists, made with other settings {diff} (saved, now): pass --overwrite to "
                         "replace it, or choose another --output")
    from .scoring import load_predictions

    return {_key(r): r for r in load_predictions(output)}


def audio_cap(model: str | os.PathLike, max_audio_seconds: float | None) -> float:
    """The clip cap for ``model``: as given (0: none), else its family's (``Family.max_audio_seconds``: 30 s for
    Qwen2-Audio and Audio Flamingo 3, their encoders' window; none for Omni)."""
    from ..families import family_of

    if max_audio_seconds is not None:
        return max_audio_seconds
    return family_of(model).max_audio_seconds


def dtype_name(dtype: str) -> str:
    """``auto`` resolved to the machine's default (bf16 on GPU, float32 on CPU); other names as they are."""
    from ..models import default_dtype

    return str(default_dtype()).removeprefix("torch.") if dtype == "auto" else dtype


def clip(audio, max_seconds: float | None, silence: bool = False):
    """An item's clip as the engines take it (float32, 16 kHz, cut at ``max_seconds``); with ``silence``, zeros of
    the same length."""
    import numpy as np

    from ..audio import load_audio

    wav = load_audio(_encoded(audio), max_seconds=max_seconds)
    return np.zeros_like(wav) if silence else wav


def _encoded(audio):
    """A path or encoded bytes for ``audio.load_audio``: a decoded ``(array, rate)`` pair becomes WAV bytes."""
    if not isinstance(audio, tuple):
        return audio
    import io

    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, audio[0], int(audio[1]), format="WAV", subtype="FLOAT")
    return buf.getvalue()


def _data_version(benchmark: str, items: Sequence[dict]) -> str | None:
    if benchmark != "mmau":
        return None
    from .scoring import mmau_version

    return mmau_version(items)


# --- scores and reports ------------------------------------------------------------------------------------------


def score_and_report(output: Path, benchmark: str, table: bool = True, shown: set[str] | None = None) -> dict:
    """Score a predictions file with the scoring module, print its table (``table``; else one line with the total)
    and write ``PRED.score.{json,md,png}`` and the error-analysis page ``PRED.report.html``. Warnings in ``shown``
    are not printed again (and are added to it)."""
    from .html_report import write_report_page
    from .reports import score_markdown, write_score_report
    from .scoring import load_predictions, score_records

    score = score_records(benchmark, load_predictions(output))
    shown = set() if shown is None else shown
    for warning in score["warnings"]:
        if warning not in shown:
            print(f"warning: {warning}", file=sys.stderr)
            shown.add(warning)
    strict = score.get("strict") or {}
    line = (f"{output.name}: total {score['total']}% ({score['n']} scored)" if score["total"] is not None
            else f"{output.name}: strict total {strict.get('total')}% ({strict.get('n')} records)")
    print(score_markdown(score) if table else line)
    paths = write_score_report(score, output.parent, f"{output.stem}.score")
    paths.append(write_report_page(output, benchmark, score=score))
    print("report: " + ", ".join(map(str, paths)), file=sys.stderr)
    return score


def sweep_report(finished: Sequence[tuple[int, Path]], output: Path,
                 failures: Sequence[tuple[str, str]] = ()) -> list[Path]:
    """Compare the checkpoints of a sweep, given ``(step, predictions file)`` each and ``(checkpoint, reason)`` per
    failed one: ``PRED.sweep.{json,md,png}`` (table; accuracy vs step) and the page ``PRED.sweep.html`` beside
    ``output``. Returns the paths written."""
    from .html_report import write_sweep_page
    from .reports import sweep_markdown, write_sweep_report
    from .scoring import load_predictions, score_records

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
