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
import sys
from pathlib import Path

from .benchmarks import check_audio, check_permutations, load_items
from .predict import DEFAULT_BATCH_SIZE, evaluate
from .scoring import BENCHMARKS
from .sweep import check_output_kind, checkpoint_output, failure_path, find_checkpoints, finish_sweep
from .workers import isolate_worker, launcher_rank, spawn_workers, worker_units

HELP = ("Evaluate a model, or every checkpoint-* of a run, on MMAU test-mini, MMSU or MMAR (greedy, hf or vLLM "
        "engine).")


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def add_arguments(parser) -> None:
    parser.add_argument("--benchmark", choices=BENCHMARKS, default="mmau",
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
        checked_inputs(args)  # bad input stops here, with one message, before any worker starts
        return spawn_workers(args.num_workers, args.argv)
    if world > 1 and args.num_workers not in (1, world):
        raise ValueError(f"--num-workers {args.num_workers} under a launcher with {world} processes: drop the flag")
    if world > 1:
        isolate_worker(local_rank)
    checkpoints, items = checked_inputs(args)
    sweep = checkpoints != [Path(args.model)]
    check_output_kind(Path(args.output), args.model, sweep)
    outputs = [checkpoint_output(args.output, m) if sweep else Path(args.output) for m in checkpoints]
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


def checked_inputs(args) -> tuple[list[Path], list[dict]]:
    """The checkpoints and items of an ``eval`` command line, checked (every clip decoded)."""
    checkpoints = find_checkpoints(args.model)
    items = load_items(args.benchmark, args.data, args.audio_dir, limit=args.limit)
    check_permutations(items, args.permutations)
    check_audio(items, args.audio_dir or (Path(args.data).parent if args.benchmark != "mmsu" else None))
    return checkpoints, items


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
