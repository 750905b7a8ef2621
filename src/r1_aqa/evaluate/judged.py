"""Benchmarks scored by a judge (those whose :class:`r1_aqa.benchmarks.Benchmark` is ``judged``: ``open`` and
``mmau-pro``): the judge, the score file, its report and its page.

``eval`` and ``score`` hand these benchmarks here (:func:`score_file`): the judge (``--judge-model``, and
``--embed-model`` for an embedder) is built with its cache beside the predictions (``PRED.judge_cache.sqlite``, or
``--judge-cache``), so the same command run again asks the judge nothing and loads no model; the score goes to
``PRED.score.{json,md,png}`` and the page ``PRED.report.html`` (overview, a table per breakdown, every item with its
clips, question, reference, answer, score and the judge's reply or matched choice).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Sequence

from ..benchmarks import get_benchmark
from ..formatting import fmt, markdown_table
from .paths import judge_cache_path


def add_judge_arguments(parser: argparse.ArgumentParser) -> None:
    """The judge flags of ``score`` (``eval`` has the same as fields of its arguments)."""
    parser.add_argument("--judge-model", default=None, metavar="DIR_OR_URL",
                        help="open / mmau-pro: the LLM judge, a text LM directory or hub id (run here; vllm:DIR on "
                        "a vLLM engine) or an OpenAI-compatible endpoint http(s)://HOST:PORT/v1[#MODEL]; mmau-pro "
                        "default: Qwen/Qwen2.5-7B-Instruct (the official one)")
    parser.add_argument("--embed-model", default=None, metavar="DIR_OR_URL",
                        help="mmau-pro: the embedder matching closed-ended answers to their choices; default: "
                        "nvidia/NV-Embed-v2 (the official one)")
    parser.add_argument("--judge-cache", default=None, type=Path, metavar="FILE",
                        help="the judge's reply cache (SQLite); default: PRED.judge_cache.sqlite beside the "
                        "predictions")
    parser.add_argument("--judge-temperature", default=0.0, type=float,
                        help="judge sampling temperature (0: greedy; the official MMAU-Pro script samples at 0.1)")
    parser.add_argument("--judge-max-new-tokens", default=None, type=int,
                        help="tokens per judge reply; default: 512 for mmau-pro (official), 64 for open")


def make_judge(benchmark: str, predictions: Path, judge_model: str | None, embed_model: str | None = None,
               cache: Path | None = None, temperature: float = 0.0, max_new_tokens: int | None = None):
    """The judge of a judged benchmark's predictions file (nothing loads until a reply is missing from the cache)."""
    from ..judge.core import Judge

    spec = get_benchmark(benchmark)
    judge_model, embed_model = judge_model or spec.judge_model, embed_model or spec.embed_model
    if not judge_model:
        raise ValueError(f"--benchmark {benchmark} is scored by an LLM judge: give --judge-model DIR_OR_URL")
    cache = cache or judge_cache_path(predictions)
    return Judge(judge_model, cache, embed_model=embed_model,
                 sampling={"temperature": temperature, "max_new_tokens": max_new_tokens or spec.judge_tokens},
                 trust_remote_code=embed_model is not None and embed_model == spec.embed_model)


def score_judged(benchmark: str, records: Sequence[dict], judge, key: str = "model_output") -> dict:
    """The benchmark's judged score; the judge's identity and what it did go into the score (``judge``)."""
    score = get_benchmark(benchmark).score_judged(records, judge, key)
    stats = judge.stats
    score["judge"] = {"model": judge.specs["chat"], "embedder": judge.specs["embed"], "sampling": judge.sampling,
                      "cache": str(judge.cache.path), "asked": stats.calls + stats.embedded,
                      "from_cache": stats.hits + stats.embed_hits, "loaded": list(stats.loaded)}
    return score


def judged_markdown(score: dict) -> str:
    """A markdown report of a judged score: rule, judge, total, a table per breakdown, warnings."""
    judge = score["judge"]
    lines = [f"# {score['benchmark'].upper()}", "", f"- rule: {score['rule']}; prediction key `{score['key']}`",
             f"- judge: `{judge['model']}`" + (f", embedder `{judge['embedder']}`" if judge["embedder"] else "")
             + f"; sampling {judge['sampling']}; {judge['asked']} asked, {judge['from_cache']} from the cache",
             f"- total: **{fmt(score['total'])}** (0-100, {score['n']} scored of {score['records']})"]
    if score.get("rubric_total") is not None:
        lines.append(f"- rubric share: **{fmt(score['rubric_total'])}**")
    lines += [f"- warning: {w}" for w in score["warnings"]]
    for group, entries in score["counts"].items():
        rows = [[name, fmt(score[group][name]), str(n)] for name, (_, n) in entries.items()]
        lines += ["", f"## By {group}", "", markdown_table([group, "score (0-100)", "n"], rows)]
    return "\n".join(lines) + "\n"


def judged_figure(score: dict):
    """One bar chart per breakdown, the total dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(group, entries) for group, entries in score["counts"].items() if entries]
    fig, axes = plt.subplots(1, max(1, len(panels)), figsize=(4 + 2.5 * len(panels), 4.2), squeeze=False,
                             layout="constrained")
    for ax, (group, entries) in zip(axes[0], panels):
        names = list(entries)
        bars = ax.bar(range(len(names)), [score[group][k] for k in names], color="#4C72B0")
        ax.bar_label(bars, labels=[f"{score[group][k]:.1f}\nn={entries[k][1]}" for k in names], fontsize=8)
        if score["total"] is not None:
            ax.axhline(score["total"], color="#C44E52", linestyle="--", linewidth=1, label=f"total {score['total']}")
            ax.legend(loc="lower right", fontsize=8)
        ax.set_xticks(range(len(names)), [k.replace(" ", "\n") for k in names], fontsize=8)
        ax.set_ylim(0, 115)
        ax.set_title(f"by {group}")
    fig.suptitle(f"{score['benchmark'].upper()}: judged score (0-100), judge {Path(str(score['judge']['model'])).name}")
    return fig


def judged_page(score: dict, records: Sequence[dict], page: Path) -> str:
    """The HTML page of a judged score: the overview and plot, a table per breakdown, then one row per item with its
    audio players (clips referenced by their path relative to the page)."""
    from .html_report import esc, page_html, png_uri, relative_url, table_html

    judge = score["judge"]
    facts = [("total (0-100)", fmt(score["total"])), ("scored", f"{score['n']} of {score['records']}"),
             ("rule", score["rule"]), ("judge", judge["model"]), ("embedder", judge["embedder"]),
             ("sampling", judge["sampling"]), ("asked / from the cache", f"{judge['asked']} / {judge['from_cache']}")]
    overview = ("<section id=\"overview\"><h2>Overview</h2><div class=\"split\"><ul>"
                + "".join(f"<li><b>{esc(k)}</b>: <span data-stat=\"{esc(k)}\">{esc(v)}</span></li>" for k, v in facts
                          if v is not None)
                + "".join(f'<li class="warn">{esc(w)}</li>' for w in score["warnings"])
                + f'</ul><img alt="scores" src="{png_uri(judged_figure(score))}"></div></section>')
    tables = "".join(f"<h3>by {esc(group)}</h3>"
                     + table_html([group, "score (0-100)", "n"],
                                  [[k, fmt(score[group][k]), n] for k, (_, n) in entries.items()])
                     for group, entries in score["counts"].items())
    rows = []
    for record, item in zip(records, score["items"], strict=True):
        clips = record.get("audio") if isinstance(record.get("audio"), list) else [record.get("audio")]
        players = "".join(f'<audio controls preload="none" src="{relative_url(Path(c), page.parent)}"></audio>'
                          for c in clips if isinstance(c, str))
        target = record.get("reference") or record.get("answer") or "; ".join(record.get("rubric") or [])
        detail = item.get("judge_reply") or item.get("matched") or item.get("verdicts") or ""
        rows.append([item["id"], record.get("category") or record.get("dataset_name") or "", ("html", players),
                     record.get("question", ""), target, record.get(score["key"]) or "",
                     "—" if item["score"] is None else f"{item['score']:.2f}", str(detail)[:600]])
    items = table_html(["id", "group", "audio", "question", "reference", "answer", "score", "judge"], rows,
                       ' id="item-table"')
    body = (overview + f'<section id="categories"><h2>Breakdowns</h2>{tables}</section>'
            f'<section id="items"><h2>Items</h2>{items}</section>')
    nav = "".join(f'<a href="#{s}">{s.capitalize()}</a>' for s in ("overview", "categories", "items"))
    return page_html(f"{score['benchmark'].upper()} — {page.name}", nav, body, None)


def score_file(benchmark: str, predictions: str | os.PathLike, judge_args: dict, key: str = "model_output",
               report: bool = True, records: list[dict] | None = None) -> dict:
    """Score a judged benchmark's predictions file and (``report``) write ``PRED.score.{json,md,png}``; the
    paths written are listed on stderr. ``judge_args``: :func:`make_judge`'s keyword arguments."""
    from ..benchmarks.common import load_predictions
    from ..files import save_figure, write_json, write_text
    from .paths import page_path, score_stem

    predictions = Path(predictions)
    records = load_predictions(predictions) if records is None else records
    judge = make_judge(benchmark, predictions, **judge_args)
    try:
        score = score_judged(benchmark, records, judge, key)
    finally:
        judge.close()
    if report:
        paths = [predictions.parent / f"{score_stem(predictions)}.{suffix}" for suffix in ("json", "md", "png")]
        paths.append(page_path(predictions))
        write_json(paths[0], score)
        write_text(paths[1], judged_markdown(score))
        save_figure(judged_figure(score), paths[2])
        write_text(paths[3], judged_page(score, records, paths[3]))
        print("report: " + ", ".join(map(str, paths)), file=sys.stderr)
    return score
