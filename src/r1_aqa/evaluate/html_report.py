"""Error-analysis pages (``r1-aqa report``): ``PRED.report.html`` for a predictions file, ``PRED.sweep.html`` for a
checkpoint sweep.

Each page is one self-contained HTML file: inline CSS and JavaScript, plots as base64 PNG, nothing fetched from a
network. The report page shows the accuracy overview, a table per breakdown (task, difficulty, category, ...), the
listening gap when a silence run exists (``PRED.silence.json`` beside the predictions, or ``--silence``), the
option-position bias, and every item (original option order) with its audio player, question, options, answer, the
model's answer and reasoning, filterable by verdict, group, listening and audio state, and searchable.

Audio: when all clips together are at most ``--embed-audio-mb`` (default 20 MB), they are embedded as data URIs and
the page can be moved alone; otherwise each player points to its clip by a path relative to the page, so the page
plays while it stays where it was written (or moves together with the clips). A clip that no longer exists when
the page is built is marked "audio missing"; records without a clip path (MMSU clips given as bytes) say so.

The sweep page compares checkpoints: accuracy per step overall and per group, the items that flip between
consecutive steps (linked to each checkpoint's page), and the checkpoints that failed.
"""

from __future__ import annotations

import argparse
import base64
import functools
import html
import json
import mimetypes
import os
import sys
from collections import Counter
from importlib import resources
from pathlib import Path
from typing import Sequence
from urllib.parse import quote

from ..benchmarks import NAMES, get_benchmark
from ..benchmarks.common import Score, load_predictions, order_zero
from ..files import figure_png, write_text
from ..formatting import fmt, pct, points, signed
from . import reports
from .analysis import analyse, shown, strict_view
from .paths import meta_path, page_path, silence_path, sweep_checkpoints, sweep_page_path
from .scoring import score_records

HELP = ("Write the error-analysis page PRED.report.html of a predictions file (with the checkpoint pages and "
        "PRED.sweep.html when PRED.json is a sweep's output name).")

EMBED_AUDIO_MB = 20.0
PAGE_SIZE = 100  # item cards rendered at a time; "show more" adds as many
_AUDIO_TYPES = {".wav": "audio/wav", ".flac": "audio/flac", ".mp3": "audio/mpeg", ".ogg": "audio/ogg",
                ".opus": "audio/ogg", ".m4a": "audio/mp4", ".webm": "audio/webm"}


# --- the report page ------------------------------------------------------------------------------------------------


def write_report_page(predictions: str | os.PathLike, benchmark: str, *, score: Score | None = None,
                      key: str | None = None, records: Sequence[dict] | None = None,
                      silence: str | os.PathLike | None = None, embed_audio_mb: float = EMBED_AUDIO_MB,
                      output: str | os.PathLike | None = None) -> Path:
    """Write the error-analysis page of ``predictions`` (default ``PRED.report.html``) and return its path.

    ``score`` is the file's score and ``records`` its records (read and computed when not given; ``records`` when
    ``score --data`` joined the questions to them); ``key`` the prediction field (the benchmark's own by default);
    ``silence`` a predictions file of the same items with silent audio (default: ``PRED.silence.json`` if present).
    """
    predictions = Path(predictions)
    out = Path(output) if output is not None else page_path(predictions)
    key = key or get_benchmark(benchmark).key
    records = list(records) if records is not None else load_predictions(predictions)
    score = score if score is not None else score_records(benchmark, records, key=key)
    if silence is None and silence_path(predictions).exists():
        silence = silence_path(predictions)
    silence_records = load_predictions(silence) if silence is not None else None
    strict = strict_view(score)
    analysis = analyse(benchmark, records, key, silence_records, strict=strict)
    meta = _read_meta(predictions)
    clips = _clips(order_zero(records), out.parent, embed_audio_mb)
    for item, (clip, state) in zip(analysis["items"], clips["refs"], strict=True):
        item["clip"], item["audio"] = clip, state
    silence_score = score_records(benchmark, silence_records, key=key) if silence_records is not None else None
    plot = png_uri(reports.score_figure(score))
    write_text(out, _report_html(predictions, shown(score, strict), plot, analysis, meta, clips, silence,
                                 silence_score and shown(silence_score, strict)))
    return out


def _read_meta(predictions: Path) -> dict:
    meta = meta_path(predictions)
    try:
        return json.loads(meta.read_text(encoding="utf-8")) if meta.exists() else {}
    except json.JSONDecodeError:
        return {}


def _clips(records: Sequence[dict], page_dir: Path, embed_audio_mb: float) -> dict:
    """Audio sources of the item cards: ``{"srcs": [unique sources], "refs": [(index or None, state)],
    "embedded": bool, "missing": n}``; state is "ok", "missing" (the file is gone) or "none" (no path)."""
    paths = []
    for record in records:
        audio = record.get("audio")
        paths.append(Path(audio) if isinstance(audio, str) and audio else None)
    present = {p for p in paths if p is not None and p.is_file()}
    embedded = sum(p.stat().st_size for p in present) <= embed_audio_mb * 1e6
    index: dict[Path, int] = {}
    srcs, refs = [], []
    for path in paths:
        if path is None:
            refs.append((None, "none"))
        elif path not in present:
            refs.append((None, "missing"))
        else:
            if path not in index:
                index[path] = len(srcs)
                srcs.append(_data_uri(path) if embedded else relative_url(path, page_dir))
            refs.append((index[path], "ok"))
    return {"srcs": srcs, "refs": refs, "embedded": embedded and bool(srcs),
            "missing": sum(state == "missing" for _, state in refs)}


def _data_uri(path: Path) -> str:
    kind = _AUDIO_TYPES.get(path.suffix.lower()) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return f"data:{kind};base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def relative_url(path: Path, page_dir: Path) -> str:
    return quote(Path(os.path.relpath(path.resolve(), page_dir.resolve())).as_posix())


def png_uri(fig) -> str:
    return "data:image/png;base64," + base64.b64encode(figure_png(fig)).decode("ascii")


def esc(value) -> str:
    return html.escape(str(value))


def _json_script(element_id: str, obj) -> str:
    """``obj`` as JSON in an inert script element (``<``, ``>``, ``&`` escaped so no text can end it)."""
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return f'<script type="application/json" id="{element_id}">{text}</script>'


def table_html(header: Sequence[str], rows: Sequence[Sequence], attrs: str = "") -> str:
    """An HTML table; cells are escaped unless given as ``("html", markup)``."""
    def cell(value, tag: str) -> str:
        if isinstance(value, tuple) and value[0] == "html":
            return f"<{tag}>{value[1]}</{tag}>"
        return f"<{tag}>{esc(value)}</{tag}>"

    head = "".join(cell(h, "th") for h in header)
    body = "".join("<tr>" + "".join(cell(c, "td") for c in row) + "</tr>" for row in rows)
    return f"<table{attrs}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _breakdowns(score: Score) -> dict[str, dict[str, list[int]]]:
    """``{breakdown: {label: [correct, n]}}`` of the official score, groups without items left out."""
    return {name: {label: tally for label, tally in tallies.items() if tally[1]}
            for name, tallies in score["counts"].items()}


def _title(score: Score) -> str:
    version = f" test-mini ({score['version']} questions)" if score.get("version") else ""
    return score["benchmark"].upper() + version


def _report_html(predictions: Path, score: Score, plot: str, analysis: dict, meta: dict, clips: dict,
                 silence: str | os.PathLike | None, silence_score: Score | None) -> str:
    items = analysis["items"]
    verdicts = Counter(it["v"] for it in items)
    sections = [_overview(score, plot, verdicts, clips, meta), _categories(score, silence_score),
                _listening(analysis, score, silence, silence_score), _positions(analysis["positions"]),
                _items_section(analysis, clips)]
    nav = "".join(f'<a href="#{s}">{s.capitalize()}</a>' for s in ("overview", "categories", "listening",
                                                                      "positions", "items"))
    return page_html(f"{_title(score)} — {predictions.name}", nav, "".join(sections), "items.js")


def _overview(score: Score, plot: str, verdicts: Counter, clips: dict, meta: dict) -> str:
    tiles = [("accuracy %", fmt(score["total"]), "total"), ("right", score["correct"], "correct"),
             ("scored", score["n"], "n"), ("records", score["records"], "records"),
             ("unscored", verdicts["unscored"], "unscored"), ("audio missing", clips["missing"], "audio-missing")]
    tile_html = "".join(f'<div class="tile"><div class="num" data-stat="{k}">{esc(v)}</div>'
                        f'<div class="label">{esc(label)}</div></div>' for label, v, k in tiles)
    settings = [(k, meta[k]) for k in ("model", "engine", "template", "dtype", "data", "data_version", "workers")
                if meta.get(k) is not None]
    rows = "".join(f"<li><b>{esc(k)}</b>: {esc(v)}</li>" for k, v in settings)
    rows += f"<li><b>rule</b>: {esc(score['rule'])}; prediction key <code>{esc(score['key'])}</code></li>"
    if "permutations" in score:
        perm = score["permutations"]
        rows += (f"<li><b>option orders</b>: {perm['k']}; correct under every order: "
                 f"<span data-stat=\"consistent\">{fmt(perm['consistent'])}</span>%</li>")
    warnings = "".join(f'<li class="warn">{esc(w)}</li>' for w in score["warnings"])
    if clips["missing"]:
        warnings += (f'<li class="warn">{clips["missing"]} clips are missing (moved or deleted since the run): '
                     "their items are marked \"audio missing\"</li>")
    return (f'<section id="overview"><h2>Overview</h2><div class="split"><div><div class="tiles">{tile_html}</div>'
            f'<ul>{rows}{warnings}</ul></div><img alt="accuracy per group" src="{plot}"></div></section>')


def _categories(score: Score, silence_score: Score | None) -> str:
    parts = ['<section id="categories"><h2>Categories</h2>']
    silent = _breakdowns(silence_score) if silence_score is not None else None
    for name, tallies in _breakdowns(score).items():
        header = [name, "accuracy %", "right/n"] + (["silence %", "gap (points)"] if silent is not None else [])
        rows = []
        for label, (right, n) in tallies.items():
            row = [label, fmt(pct(right, n)), f"{right}/{n}"]
            if silent is not None:
                s_right, s_n = silent.get(name, {}).get(label, [0, 0])
                row += [fmt(pct(s_right, s_n)), signed(points(pct(right, n), pct(s_right, s_n)))]
            rows.append(row)
        parts.append(f"<h3>by {esc(name)}</h3>" + table_html(header, rows, f' data-breakdown="{esc(name)}"'))
    return "".join(parts) + "</section>"


def _listening(analysis: dict, score: Score, silence, silence_score: Score | None) -> str:
    head = '<section id="listening"><h2>Listening</h2>'
    if silence_score is None:
        return (head + "<p>No silence run. Evaluate the same items with silent audio (<code>r1-aqa eval --silence"
                "</code>, saved as <code>PRED.silence.json</code>) or pass <code>r1-aqa report PRED.json --silence "
                "FILE</code> to see how much of the accuracy needs the audio.</p></section>")
    items = analysis["items"]
    pairs = Counter((it["v"], it["sv"]) for it in items)
    tiles = [("with silence %", fmt(silence_score["total"]), "silence-total"),
             ("listening gap (points)", signed(points(score["total"], silence_score["total"])), "gap"),
             ("right only with audio", pairs["right", "wrong"] + pairs["right", "unscored"], "needs-audio"),
             ("right without audio", pairs["right", "right"] + pairs["wrong", "right"] + pairs["unscored", "right"],
              "right-silent")]
    tile_html = "".join(f'<div class="tile"><div class="num" data-stat="{k}">{esc(v)}</div>'
                        f'<div class="label">{esc(label)}</div></div>' for label, v, k in tiles)
    return (head + f'<p>Silence run: <code>{esc(Path(silence).name)}</code> — the same items with silent audio of '
            f'each clip\'s length. Items a model answers right without hearing them measure what the text gives away.'
            f'</p><div class="tiles">{tile_html}</div><img alt="listening gap" '
            f'src="{png_uri(_gap_figure(score, silence_score))}"></section>')


def _gap_figure(score: Score, silence_score: Score):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    name, tallies = next(iter(_breakdowns(score).items()))
    silent = _breakdowns(silence_score).get(name, {})
    labels = [k for k in tallies if "-" not in k or name != "category"] or list(tallies)
    audio = [pct(*tallies[k]) for k in labels]
    quiet = [pct(*silent[k]) if k in silent else 0.0 for k in labels]
    fig, ax = plt.subplots(figsize=(max(4.5, 1.1 * len(labels) + 2), 3.6), layout="constrained")
    x = range(len(labels))
    ax.bar([i - 0.2 for i in x], audio, width=0.4, label="with audio", color="#4C72B0")
    ax.bar([i + 0.2 for i in x], quiet, width=0.4, label="with silence", color="#C9C9C9")
    ax.set_xticks(list(x), [k.replace("-", "\n") for k in labels], fontsize=9)
    ax.set_ylim(0, 105)
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"Listening gap by {name}")
    ax.legend(fontsize=8)
    return fig


def _positions(positions: dict) -> str:
    head = '<section id="positions"><h2>Option positions</h2>'
    if not positions["n"]:
        return head + "<p>No scored item.</p></section>"
    n = positions["n"]
    rows = [[r["position"], r["answers"], fmt(pct(r["answers"], n)), r["predictions"],
             fmt(pct(r["predictions"], n)), fmt(pct(r["right"], r["answers"]))] for r in positions["rows"]]
    table = table_html(["position", "answers", "answers %", "predictions", "predictions %", "accuracy % there"], rows,
                   ' data-breakdown="positions"')
    note = (f"<p>Over {n} scored items; \"answers %\" is what always picking that position would score. "
            f"{positions['unmatched']} predictions name no single option.</p>")
    return head + note + table + f'<img alt="option positions" src="{png_uri(_position_figure(positions))}"></section>'


def _position_figure(positions: dict):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, n = positions["rows"], positions["n"]
    x = range(len(rows))
    fig, ax = plt.subplots(figsize=(max(4.5, 1.0 * len(rows) + 2), 3.4), layout="constrained")
    ax.bar([i - 0.2 for i in x], [pct(r["answers"], n) for r in rows], width=0.4, label="answer here",
           color="#55A868")
    ax.bar([i + 0.2 for i in x], [pct(r["predictions"], n) for r in rows], width=0.4, label="predicted here",
           color="#C44E52")
    ax.set_xticks(list(x), [r["position"] for r in rows])
    ax.set_ylabel("share of scored items (%)")
    ax.set_title("Option-position bias")
    ax.legend(fontsize=8)
    return fig


def _items_section(analysis: dict, clips: dict) -> str:
    data = {"items": analysis["items"], "clips": clips["srcs"], "fields": analysis["fields"],
            "silence": any("sv" in it for it in analysis["items"]), "pageSize": PAGE_SIZE}
    where = ("embedded in this page" if clips["embedded"] else
             "referenced by their path relative to this page (keep it beside them)")
    return (f'<section id="items"><h2>Items</h2><p class="note">Original option order; clips {where}.</p>'
            '<div class="filters" id="filters"></div><p id="match-count"></p><div id="item-list"></div>'
            '<button id="more" hidden>show more</button>' + _json_script("report-data", data) + "</section>")


# --- the sweep page ---------------------------------------------------------------------------------------------------


def write_sweep_page(checkpoints: Sequence[tuple[int, Path, dict]], output: str | os.PathLike,
                     failures: Sequence[tuple[str, str]] = (), key: str | None = None) -> Path:
    """Write ``PRED.sweep.html`` comparing the checkpoints of a sweep and return its path.

    ``checkpoints`` holds ``(step, predictions file, score)`` per finished checkpoint (each with its own report page
    beside it); ``failures`` ``(checkpoint, reason)`` per checkpoint that could not be evaluated.
    """
    out = sweep_page_path(output)
    checkpoints = sorted(checkpoints, key=lambda c: c[0])
    plot = png_uri(reports.sweep_figure([(step, score) for step, _, score in checkpoints])) if checkpoints else ""
    strict = [strict_view(score) for _, _, score in checkpoints]
    checkpoints = [(step, path, shown(score, rule)) for (step, path, score), rule in zip(checkpoints, strict)]
    parts = []
    if failures:
        rows = "".join(f"<li><b>{esc(name)}</b>: {esc(reason)}</li>" for name, reason in failures)
        parts.append(f'<section id="failures"><h2>Failed checkpoints</h2><ul class="warn">{rows}</ul></section>')
    if checkpoints:
        benchmark = checkpoints[0][2]["benchmark"]
        parts.append(_sweep_overview(checkpoints, plot, out.parent))
        parts.append(_sweep_groups(checkpoints))
        parts.append(_flips(benchmark, checkpoints, strict, out.parent, key))
        title = f"{_title(checkpoints[0][2])} checkpoint sweep — {Path(output).name}"
    else:
        title = f"checkpoint sweep — {Path(output).name}"
    write_text(out, page_html(title, "", "".join(parts), None))
    return out


def _sweep_overview(checkpoints: Sequence[tuple[int, Path, dict]], plot: str, page_dir: Path) -> str:
    totals = [s["total"] for _, _, s in checkpoints if s["total"] is not None]
    best = max(totals) if totals else None
    rows = []
    for step, path, score in checkpoints:
        total = fmt(score["total"])
        link = f'<a href="{relative_url(page_path(path), page_dir)}">{esc(path.name)}</a>'
        rows.append([step, ("html", f"<b>{total}</b>" if score["total"] == best else total),
                     f"{score['correct']}/{score['n']}", ("html", link)])
    return ('<section id="overview"><h2>Accuracy per step</h2>'
            + table_html(["step", "accuracy %", "right/n", "page"], rows, ' data-breakdown="steps"')
            + f'<img alt="accuracy vs step" src="{plot}"></section>')


def _sweep_groups(checkpoints: Sequence[tuple[int, Path, dict]]) -> str:
    parts = ['<section id="categories"><h2>Accuracy per step and group</h2>']
    names = dict.fromkeys(name for _, _, s in checkpoints for name in _breakdowns(s))
    for name in names:
        per_step = [_breakdowns(score).get(name, {}) for _, _, score in checkpoints]
        labels = list(dict.fromkeys(label for tallies in per_step for label in tallies))
        rows = [[label] + [fmt(pct(*t[label])) if label in t else "—" for t in per_step] for label in labels]
        header = [name] + [str(step) for step, _, _ in checkpoints]
        parts.append(f"<h3>by {esc(name)}</h3>" + table_html(header, rows, f' data-breakdown="{esc(name)}"'))
    return "".join(parts) + "</section>"


def _flips(benchmark: str, checkpoints: Sequence[tuple[int, Path, dict]], strict: Sequence[bool], page_dir: Path,
           key: str | None) -> str:
    """Items whose verdict changes between consecutive steps: counts per step pair and the list of such items."""
    runs = [analyse(benchmark, load_predictions(path), key, strict=rule)["items"]
            for (_, path, _), rule in zip(checkpoints, strict)]
    steps = [step for step, _, _ in checkpoints]
    verdicts = [{it["id"]: it["v"] for it in items} for items in runs]
    pair_rows = []
    for i in range(1, len(steps)):
        common = verdicts[i - 1].keys() & verdicts[i].keys()
        fixed = sum(verdicts[i - 1][k] != "right" and verdicts[i][k] == "right" for k in common)
        broken = sum(verdicts[i - 1][k] == "right" and verdicts[i][k] != "right" for k in common)
        pair_rows.append([f"{steps[i - 1]} → {steps[i]}", fixed, broken])
    questions = {it["id"]: it["q"] for items in runs for it in items}
    flipping = [k for k in questions if len({v.get(k) for v in verdicts} - {None}) > 1]
    marks = {"right": "✓", "wrong": "✗", "unscored": "·", None: " "}
    rows = []
    for item in flipping:
        cells = []
        for (step, path, _), v in zip(checkpoints, verdicts):
            href = relative_url(page_path(path), page_dir) + "#item-" + quote(item, safe="")
            cells.append(("html", f'<a class="{v.get(item) or ""}" href="{href}">{marks[v.get(item)]}</a>'))
        rows.append([item, questions[item][:120]] + cells)
    head = ('<section id="flips"><h2>Items that flip between steps</h2>'
            f'<p><span data-stat="flipping">{len(flipping)}</span> items change verdict at least once.</p>')
    return (head + table_html(["steps", "wrong → right", "right → wrong"], pair_rows, ' data-breakdown="flips"')
            + table_html(["id", "question"] + [str(s) for s in steps], rows,
                         ' class="flips" data-breakdown="flip-items"')
            + "</section>")


# --- HTML skeleton --------------------------------------------------------------------------------------------------


def page_html(title: str, nav: str, body: str, script: str | None) -> str:
    """The page around ``body``: the package's stylesheet and (``script``: a file name) script, inlined."""
    script_tag = f"<script>\n{_asset(script)}</script>" if script else ""
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{esc(title)}</title>'
            f"<style>\n{_asset('report.css')}</style></head>"
            f"<body><header><h1>{esc(title)}</h1><nav>{nav}</nav></header><main>{body}</main>{script_tag}"
            "</body></html>\n")


@functools.cache
def _asset(name: str) -> str:
    """A file of the page's stylesheet or script, shipped with the package (``r1_aqa/evaluate/page/``)."""
    return (resources.files(__package__) / "page" / name).read_text(encoding="utf-8")


# --- CLI ------------------------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("predictions", type=Path,
                        help="predictions JSON of `r1-aqa eval`; for a sweep, its --output name (PRED.json): then "
                        "every PRED.checkpoint-N.json gets its page and PRED.sweep.html compares them")
    parser.add_argument("--benchmark", choices=NAMES, default=None, help="unset: read from PRED.meta.json")
    parser.add_argument("--silence", type=Path, default=None,
                        help="predictions of the same items with silent audio; unset: PRED.silence.json if present")
    parser.add_argument("--key", default=None, help="field holding the prediction; unset: the benchmark's own")
    parser.add_argument("--embed-audio-mb", type=float, default=EMBED_AUDIO_MB,
                        help="embed the clips in the page when all of them together are at most this many MB; "
                        "else the players refer to the clips by relative path")
    parser.add_argument("--output", type=Path, default=None,
                        help="the page; unset: PRED.report.html beside the predictions")


def run(args: argparse.Namespace) -> int:
    predictions: Path = args.predictions
    if predictions.exists():
        benchmark = _benchmark(args.benchmark, predictions)
        page = write_report_page(predictions, benchmark, key=args.key, silence=args.silence,
                                 embed_audio_mb=args.embed_audio_mb, output=args.output)
        print(f"report page: {page}", file=sys.stderr)
        return 0
    checkpoints = sweep_checkpoints(predictions)
    if not checkpoints:
        raise FileNotFoundError(f"{predictions}: no such predictions file, nor a sweep's "
                                f"{predictions.stem}.checkpoint-N{predictions.suffix} files beside it")
    if args.output is not None or args.silence is not None:
        raise ValueError("--output and --silence apply to one predictions file, not to a sweep")
    done = []
    for step, path in checkpoints:
        benchmark = _benchmark(args.benchmark, path)
        score = score_records(benchmark, load_predictions(path), key=args.key)
        page = write_report_page(path, benchmark, score=score, key=args.key, embed_audio_mb=args.embed_audio_mb)
        print(f"report page: {page}", file=sys.stderr)
        done.append((step, path, score))
    print(f"sweep page: {write_sweep_page(done, predictions, key=args.key)}", file=sys.stderr)
    return 0


def _benchmark(given: str | None, predictions: Path) -> str:
    benchmark = given or _read_meta(predictions).get("benchmark")
    if benchmark is None:
        raise ValueError(f"{predictions}: no {predictions.stem}.meta.json names the benchmark; pass --benchmark")
    return benchmark
