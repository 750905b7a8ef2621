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

from ..benchmarks import get_benchmark
from ..benchmarks.common import load_predictions
from .benchmarks import check_audio, check_permutations, load_items
from .arguments import EvalArguments, add_dataclass_arguments, from_namespace
from .predict import evaluate
from .paths import checkpoint_output, failure_path, score_stem, silence_path
from .sweep import check_output_kind, find_checkpoints, finish_sweep
from .workers import Share, isolate_worker, launcher_rank, spawn_workers, worker_units

HELP = ("Evaluate a model, or every checkpoint-* of a run, on MMAU test-mini, MMSU, MMAR, MMAU-Pro or open-ended "
        "items (greedy, hf or vLLM engine).")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_dataclass_arguments(parser, EvalArguments)


def interrupted(args) -> str:
    """What a Ctrl-C leaves (the CLI's message)."""
    return (f"; the items done so far are kept beside {args.output} (*.partial*.jsonl): the same command resumes "
            "from them")


def run(args) -> int:
    from ..files import write_json
    from .reports import compare_listening

    opts = from_namespace(EvalArguments, args)
    rank, world, local_rank = launcher_rank()
    if world == 1 and opts.num_workers > 1:
        checked_inputs(opts)  # bad input stops here, with one message, before any worker starts
        return spawn_workers(opts.num_workers, args.argv)
    if world > 1 and opts.num_workers not in (1, world):
        raise ValueError(f"--num-workers {opts.num_workers} under a launcher with {world} processes: drop the flag")
    if world > 1:
        isolate_worker(local_rank)
    checkpoints, items = checked_inputs(opts)
    sweep = checkpoints != [Path(opts.model)]
    check_output_kind(Path(opts.output), opts.model, sweep)
    outputs = [checkpoint_output(opts.output, m) if sweep else Path(opts.output) for m in checkpoints]
    status = 0
    shown: set[str] = set()  # warnings already printed (a sweep's checkpoints share most)
    for index, shard, shards in worker_units(len(checkpoints), world)[rank]:
        model, output = checkpoints[index], outputs[index]
        # The silence run comes before the reports, so the error-analysis page shows the listening gap too.
        runs = {output: False, **({silence_path(output): True} if opts.silence else {})}
        try:
            merged = [evaluate(items, model, path, opts, silence=quiet,
                               share=Share(shard, shards, world, tuple(p for p in runs if p != path), rank))
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
            if get_benchmark(opts.benchmark).judged:  # a silence run stays in PRED.silence.json, for `score` to judge
                score_judged_output(output, opts)
                continue
            score_and_report(output, opts.benchmark, table=not sweep, shown=shown)
            if opts.silence:
                compare_listening(output, silence_path(output), opts.benchmark)
    if sweep and get_benchmark(opts.benchmark).judged:  # each checkpoint's judged score: PRED.checkpoint-N.score.*
        print(f"{len(outputs)} checkpoints evaluated; a judged benchmark has no sweep table: each checkpoint's score "
              "is beside its predictions", file=sys.stderr)
    elif sweep:
        status = max(status, finish_sweep(Path(opts.output), checkpoints, outputs))
    return status


def checked_inputs(opts: EvalArguments) -> tuple[list[Path], list[dict]]:
    """The checkpoints and items of an ``eval`` command line, checked (every clip decoded)."""
    checkpoints = find_checkpoints(opts.model)
    items = load_items(opts.benchmark, opts.data, opts.audio_dir, limit=opts.limit)
    check_permutations(items, opts.permutations)
    beside = get_benchmark(opts.benchmark).clips_beside_data
    check_audio(items, opts.audio_dir or (Path(opts.data).parent if beside else None))
    return checkpoints, items


def score_judged_output(output: Path, opts: EvalArguments) -> None:
    """Score a judged benchmark's predictions when ``--judge-model`` is given; else say how to score them."""
    from .judged import judged_markdown, score_file

    if not opts.judge_model:
        print(f"{output.name}: scored by a judge: r1-aqa score --benchmark {opts.benchmark} --predictions {output} "
              "--judge-model DIR_OR_URL", file=sys.stderr)
        return
    score = score_file(opts.benchmark, output, {"judge_model": opts.judge_model, "embed_model": opts.embed_model})
    print(judged_markdown(score))


def score_and_report(output: Path, benchmark: str, table: bool = True, shown: set[str] | None = None) -> dict:
    """Score a predictions file with the scoring module, print its table (``table``; else one line with the total)
    and write ``PRED.score.{json,md,png}`` and the error-analysis page ``PRED.report.html``. Warnings in ``shown``
    are not printed again (and are added to it)."""
    from .html_report import write_report_page
    from .reports import score_markdown, write_score_report
    from .scoring import score_records

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
    paths = write_score_report(score, output.parent, score_stem(output))
    paths.append(write_report_page(output, benchmark, score=score))
    print("report: " + ", ".join(map(str, paths)), file=sys.stderr)
    return score
