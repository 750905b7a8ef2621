"""The ``r1-aqa score`` command: a prediction file's score (``scoring``), its markdown/PNG report (``reports``) and its
error-analysis page (``html_report``), and with ``--silence-predictions`` the listening gap."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..benchmarks import NAMES, get_benchmark
from ..benchmarks.common import LEGACY_KEY, attach_questions, load_predictions
from .judged import add_judge_arguments
from .reports import compare_listening
from .scoring import same_items, score_records

HELP = ("Score an MMAU, MMSU or MMAR prediction file (the official-compatible numbers plus stricter views), or an "
        "open-ended or MMAU-Pro one with a judge.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--benchmark", choices=NAMES, required=True)
    parser.add_argument("--predictions", required=True, type=Path,
                        help="prediction file from `r1-aqa eval` (JSON list, or .jsonl)")
    parser.add_argument("--key", default=None,
                        help="field holding the prediction (default: the one the benchmark's official scorer reads: "
                             + ", ".join(f"{get_benchmark(n).key!r} for {n}" for n in NAMES)
                             + f"); {LEGACY_KEY!r} for MMAU files of older tools")
    parser.add_argument("--data", type=Path, default=None, metavar="QUESTIONS",
                        help="the question file (MMAU JSON list or MMAR JSONL): predictions are matched to it by id "
                             "(any mismatch is an error) and take the question fields they lack from it")
    parser.add_argument("--silence-predictions", type=Path, default=None, metavar="SILENCE_PRED",
                        help="predictions of the same items with silent audio (`eval --silence` writes "
                             "PRED.silence.json): also report accuracy, silence accuracy and the listening gap, "
                             "overall and per task/category (PRED.listening.{json,md,png})")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    parser.add_argument("--no-report", action="store_true",
                        help="do not write PRED.score.{json,md,png} and PRED.report.html next to the predictions")
    add_judge_arguments(parser)


def check_made_for(predictions: Path, benchmark: str) -> None:
    """Refuse predictions that ``eval`` made for another benchmark (its ``PRED.meta.json`` says which), whatever
    fields the records carry."""
    from .paths import meta_path

    meta = meta_path(predictions)
    made = json.loads(meta.read_text(encoding="utf-8")).get("benchmark") if meta.is_file() else None
    if made is not None and made != benchmark:
        raise ValueError(f"{predictions}: made by `r1-aqa eval --benchmark {made}` ({meta.name}), so its items are "
                         f"{made.upper()} items: use --benchmark {made}")


def run(args: argparse.Namespace) -> int:
    from .reports import score_markdown, write_score_report

    key = args.key or get_benchmark(args.benchmark).key
    if get_benchmark(args.benchmark).judged:
        return _run_judged(args, key)
    try:
        check_made_for(args.predictions, args.benchmark)
        records = load_predictions(args.predictions)
        if args.data is not None:
            records = attach_questions(records, load_predictions(args.data), str(args.predictions), str(args.data))
        score = score_records(args.benchmark, records, key=key)
        if args.silence_predictions is not None:
            same_items(records, load_predictions(args.silence_predictions), str(args.predictions),
                       str(args.silence_predictions))
    except (OSError, ValueError) as e:  # the message names the file; exit 2 as every command's bad input
        named = any(str(p) in str(e) for p in (args.predictions, args.data, args.silence_predictions) if p)
        where = "" if named else f"{args.predictions}: "
        print(f"r1-aqa score: error: {where}{e}", file=sys.stderr)
        return 2
    for warning in score["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    print(json.dumps(score, ensure_ascii=False) if args.json else score_markdown(score))
    if score["total"] is None and (score.get("strict") or {}).get("total") is None:
        print(f"r1-aqa score: error: {args.predictions}: no record has a usable {key!r}", file=sys.stderr)
        return 2
    if score["total"] is None:  # MMSU with option-text answers (R1-AQA's): only the strict score exists
        print(f"note: no response carries an A-D letter, so the official {args.benchmark.upper()} score is empty; the "
              f"strict score ({score['strict']['total']:.2f}%) is the one to read", file=sys.stderr)
    if not args.no_report:
        from .html_report import write_report_page
        from .paths import score_stem

        paths = write_score_report(score, args.predictions.parent, score_stem(args.predictions))
        paths.append(write_report_page(args.predictions, args.benchmark, score=score, key=key, records=records,
                                       silence=args.silence_predictions))
        print("report: " + ", ".join(str(p) for p in paths), file=sys.stderr)
    if args.silence_predictions is not None:
        compare_listening(args.predictions, args.silence_predictions, args.benchmark, key, report=not args.no_report,
                          questions=args.data)
    return 0


def _run_judged(args: argparse.Namespace, key: str) -> int:
    """``score`` of a judged benchmark (``judged.score_file``): its table, or one JSON object with ``--json``."""
    from .judged import judged_markdown, score_file

    if args.silence_predictions is not None:
        raise ValueError(f"--silence-predictions: no listening gap for {args.benchmark} yet; score "
                         f"{args.silence_predictions} on its own (`score --predictions {args.silence_predictions}`)")
    check_made_for(args.predictions, args.benchmark)
    records = load_predictions(args.predictions)
    if args.data is not None:
        records = attach_questions(records, load_predictions(args.data), str(args.predictions), str(args.data))
    score = score_file(args.benchmark, args.predictions, judge_options(args), key, report=not args.no_report,
                       records=records)
    for warning in score["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    print(json.dumps(score, ensure_ascii=False) if args.json else judged_markdown(score))
    return 0


def judge_options(args) -> dict:
    """``judged.make_judge``'s keyword arguments from the judge flags."""
    return {"judge_model": args.judge_model, "embed_model": args.embed_model, "cache": args.judge_cache,
            "temperature": args.judge_temperature, "max_new_tokens": args.judge_max_new_tokens}
