"""Benchmarks scored by a judge (:data:`JUDGED`): ``open`` (any prepared open-ended parquet: each answer graded by
the LLM judge against its reference answer, and its rubric lines judged) and ``mmau-pro`` (:mod:`.mmau_pro`).

``eval`` and ``score`` hand these benchmarks here (:func:`score_file`): the judge (``--judge-model``, and
``--embed-model`` for MMAU-Pro's closed items) is built with its cache beside the predictions
(``PRED.judge_cache.sqlite``, or ``--judge-cache``), so the same command run again asks the judge nothing and loads
no model; the score goes to ``PRED.score.{json,md,png}`` and the page ``PRED.report.html`` (overview, a table per
breakdown, every item with its clips, question, reference, answer, score and the judge's reply or matched choice).

``open``: any prepared parquet (``prepare open`` writes ``reference`` and ``rubric``; elsewhere the item's ``answer``
is the reference). An item's score is its reference grade (0-10 from the judge, as a share;
:mod:`r1_aqa.judge.grading`), or its weighted rubric share when it has rubric lines and no reference; an unparsable reply counts
``grading.UNPARSABLE`` (0) and is counted. The total is the mean in percent, with tables by ``dataset_name`` and
``task``; the rubric share is reported beside it where items have rubric lines.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Sequence

from .formatting import fmt, markdown_table, pct
from .paths import judge_cache_path

JUDGED = ("open", "mmau-pro")


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
    from .mmau_pro import OFFICIAL_EMBEDDER, OFFICIAL_JUDGE

    if benchmark == "open" and not judge_model:
        raise ValueError("--benchmark open is scored by an LLM judge: give --judge-model DIR_OR_URL")
    if benchmark == "mmau-pro":
        judge_model, embed_model = judge_model or OFFICIAL_JUDGE, embed_model or OFFICIAL_EMBEDDER
    tokens = max_new_tokens or (512 if benchmark == "mmau-pro" else 64)
    cache = cache or judge_cache_path(predictions)
    return Judge(judge_model, cache, embed_model=embed_model,
                 sampling={"temperature": temperature, "max_new_tokens": tokens},
                 trust_remote_code=embed_model == OFFICIAL_EMBEDDER)


def score_open(records: Sequence[dict], judge, key: str = "model_output") -> dict:
    """Score open-ended predictions under ``key`` (see the module docstring)."""
    from ..judge.grading import UNPARSABLE, rubric_share

    records = list(records)
    references = [r.get("reference") or r.get("answer") for r in records]  # answer: any prepared parquet's
    for i, r in enumerate(records):
        if not references[i] and not len(r.get("rubric") or []):
            raise ValueError(f"record {r.get('id', i)}: neither a reference answer nor rubric lines (prepare it with "
                             "`r1-aqa prepare open`)")
    answers = ["" if r.get(key) is None else str(r[key]) for r in records]
    missing = sum(key not in r for r in records)
    with_reference = [i for i in range(len(records)) if references[i]]
    grades = dict(zip(with_reference, judge.grade([str(records[i]["question"]) for i in with_reference],
                                                   [str(references[i]) for i in with_reference],
                                                   [answers[i] for i in with_reference])))
    asked = [(i, line) for i, r in enumerate(records) for line in (r.get("rubric") or [])]
    verdicts = judge.verdicts([str(records[i]["question"]) for i, _ in asked], [line for _, line in asked],
                              [answers[i] for i, _ in asked]) if asked else []
    per_item: dict[int, list] = {}
    for (i, _), verdict in zip(asked, verdicts):
        per_item.setdefault(i, []).append(verdict)
    items, groups = [], {"dataset_name": {}, "task": {}}
    rubric_sum = rubric_n = 0.0
    for i, record in enumerate(records):
        grade = grades.get(i)
        share = rubric_share(per_item[i], record.get("rubric_weights")) if i in per_item else None
        if share is not None:
            rubric_sum, rubric_n = rubric_sum + share, rubric_n + 1
        score = (UNPARSABLE if grade is None else grade) if i in grades else share
        items.append({"id": str(record.get("id", i)), "score": score, "grade": grade, "rubric": share,
                      "verdicts": per_item.get(i)})
        for group in groups:
            entry = groups[group].setdefault(str(record.get(group) or "unknown"), [0.0, 0])
            entry[0] += score
            entry[1] += 1
    unparsable = sum(g is None for g in grades.values()) + sum(v is None for v in verdicts)
    warnings = [f"{unparsable} judge replies had no readable grade or verdict: each counted {UNPARSABLE}"] \
        if unparsable else []
    if missing:
        warnings.append(f"{missing} of {len(records)} records have no {key!r}: graded as empty answers")
    total = sum(item["score"] for item in items)
    return {"benchmark": "open", "rule": "LLM judge: grade 0-10 against the reference answer (else the weighted "
            "share of rubric lines met); unparsable replies count 0", "key": key,
            "total": pct(total, len(items)) if items else None, "n": len(items), "records": len(records),
            "rubric_total": pct(rubric_sum, rubric_n) if rubric_n else None, "unparsable": unparsable,
            "missing": missing,
            **{group: {k: pct(s, n) for k, (s, n) in entries.items()} for group, entries in groups.items()},
            "counts": {group: {k: [round(s, 4), n] for k, (s, n) in entries.items()}
                       for group, entries in groups.items()},
            "items": items, "warnings": warnings}


def score_judged(benchmark: str, records: Sequence[dict], judge, key: str = "model_output") -> dict:
    """Dispatch to :func:`score_open` or :func:`.mmau_pro.score_mmau_pro`; the judge's identity and what it did
    go into the score (``judge``)."""
    from .mmau_pro import score_mmau_pro

    score = (score_open if benchmark == "open" else score_mmau_pro)(records, judge, key)
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
    from ..files import write_json, write_text
    from .paths import page_path, score_stem
    from .reports import save_figure
    from .scoring import load_predictions

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
