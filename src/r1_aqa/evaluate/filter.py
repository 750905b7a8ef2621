"""``r1-aqa filter``: label every item of a prepared parquet by its audio contribution (weak or strong).

AudioMCQ's labelling (arXiv 2509.21060): each item is answered ``--samples`` times (one greedy answer, then sampled
ones at ``--temperature``) by each ``--model``, once with its real audio and once with silence of the same length
(as loaded, after the clip cap). An answer is right when its ``<answer>`` text equals the solution's, exactly as
GRPO's accuracy reward scores it. The rule: an item is **weak** (answerable without listening) when more than
``--weak-above`` (default 0.5: a strict majority) of its silent-audio answers, over all models and samples, are
right; otherwise **strong**. An item whose clip cannot be decoded is left unlabelled and listed in the report.

Output: the input rows with, per model ``j`` (the order of ``--model``), ``m{j}_audio_correct`` and
``m{j}_silence_correct`` (right answers out of ``--samples``), and overall ``silence_correct_share`` and
``audio_contribution`` (``weak``, ``strong`` or null); with ``--keep``, only the rows of that label. The report
``OUT.filter.{json,md,png}`` gives the counts per task/category, accuracy with audio and with silence and their
difference (the listening gap), examples of each label and the clips that failed. Runs resume like ``eval``: answers
go to ``OUT.parquet.partial.jsonl`` as they come, and a rerun of the same command finishes the same file.
``--keep`` without ``--model`` takes the subset of an already labelled parquet.
"""

from __future__ import annotations

import argparse
import os
import zlib
from pathlib import Path
from dataclasses import dataclass, field
from typing import Sequence

from ..files import write_frame
from .arguments import GenerationArguments, add_dataclass_arguments, from_namespace, resume_settings

HELP = ("Label a prepared parquet by audio contribution: answer each item with its audio and with silence (K samples, "
        "one or more models); weak = answerable without listening. --keep strong|weak writes a subset.")

LABEL = "audio_contribution"
CONDITIONS = ("audio", "silence")
REQUIRED = ("id", "question", "choices", "solution", "audio")
GROUP_COLUMNS = ("task", "category", "sub-category", "modality", "dataset_name")
N_EXAMPLES = 5


@dataclass(kw_only=True)
class FilterArguments(GenerationArguments):
    """``r1-aqa filter``: what to label, with which models and how many answers, and what to keep."""

    data: str = field(metadata={"resume": True, "help": "a parquet from `r1-aqa prepare` (or one `filter` labelled)"})
    model: list[str] | None = field(default=None, metadata={
        "action": "append", "metavar": "MODEL", "resume": "models",
        "help": "a model directory; repeat to vote with several models (omit with --keep to take the subset of an "
        "already labelled parquet)"})
    output: str = field(metadata={"help": "the labelled parquet (the report goes beside it)"})
    samples: int = field(default=1, metadata={
        "type": int, "resume": True,
        "help": "answers per item and condition: one greedy, the rest sampled at --temperature"})
    temperature: float = field(default=1.0, metadata={"type": float, "resume": True,
                                                      "help": "sampling temperature of answers 2..K"})
    weak_above: float = field(default=0.5, metadata={
        "type": float, "help": "weak when more than this share of the silent-audio answers (all models and samples) "
        "are right; 0.5 is a strict majority"})
    keep: str | None = field(default=None, metadata={"choices": ("strong", "weak"),
                                                     "help": "write only the rows of this label"})
    limit: int | None = field(default=None, metadata={"type": int, "resume": True,
                                                      "help": "label only the first N rows"})
    seed: int = field(default=0, metadata={"type": int, "resume": True,
                                           "help": "seeds the sampled answers (each item has its own seed)"})


# Settings that change the answers: a partial file made with other values is not resumed.
RESUME_SETTINGS = resume_settings(FilterArguments)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_dataclass_arguments(parser, FilterArguments)


def interrupted(args: argparse.Namespace) -> str:
    """What a Ctrl-C leaves (the CLI's message)."""
    from .resume import partial_path

    return f"; the answers so far are in {partial_path(args.output)}: the same command resumes from them"


def run(args: argparse.Namespace) -> int:
    from ..checks import check_model_path

    opts = from_namespace(FilterArguments, args)
    for model in opts.model or ():
        check_model_path(model)
    frame = read_prepared(opts.data, opts.limit)
    if not opts.model:
        if opts.keep is None:
            raise ValueError("give --model to label the items, or --keep strong|weak to take a labelled subset")
        if LABEL not in frame.columns:
            raise ValueError(f"{opts.data}: not labelled (no {LABEL!r} column); label it first with `r1-aqa filter "
                             f"--data {opts.data} --model MODEL --output LABELLED.parquet`")
        kept = keep_rows(frame, opts.keep)
        check_kept(frame, kept, opts.keep, opts.output)
        write_frame(kept, opts.output)
        print(f"r1-aqa filter: kept {len(kept)} {opts.keep} of {len(frame)} rows -> {opts.output}")
        return 0
    if opts.samples < 1:
        raise ValueError(f"--samples must be >= 1, got {opts.samples}")
    if not 0 <= opts.weak_above < 1:
        raise ValueError(f"--weak-above must be in [0, 1), got {opts.weak_above}")
    labelled, report = label(frame, opts)
    from .resume import partial_path
    from ..files import write_json, write_text

    if opts.keep:
        check_kept(labelled, keep_rows(labelled, opts.keep), opts.keep, opts.output)
    output = Path(opts.output)
    stem = output.name.rsplit(".", 1)[0] + ".filter"
    report["kept"] = opts.keep
    write_json(output.with_name(f"{stem}.json"), report)
    write_text(output.with_name(f"{stem}.md"), report_markdown(report))
    plot_report(report, output.with_name(f"{stem}.png"))
    write_frame(keep_rows(labelled, opts.keep) if opts.keep else labelled, output)
    partial_path(output).unlink(missing_ok=True)
    print(report_markdown(report))
    print(f"r1-aqa filter: {output}; report {output.with_name(stem)}.{{json,md,png}}")
    return 0


# --- data --------------------------------------------------------------------------------------------------------


def read_prepared(path: str | os.PathLike, limit: int | None = None):
    """The parquet's rows (the first ``limit``); missing columns or duplicate ids are one clear error."""
    import pandas as pd

    from ..checks import check_parquet

    check_parquet(path, REQUIRED, "--data")
    frame = pd.read_parquet(path)
    frame = frame.head(limit) if limit is not None else frame
    duplicated = frame["id"].astype(str)[frame["id"].astype(str).duplicated()].unique().tolist()
    if duplicated:
        raise ValueError(f"{path}: {len(duplicated)} duplicate id(s): {', '.join(duplicated[:20])}")
    return frame.reset_index(drop=True)


def keep_rows(frame, keep: str):
    """The rows labelled ``keep`` (unlabelled rows are never kept)."""
    return frame[frame[LABEL] == keep].reset_index(drop=True)


def check_kept(frame, kept, keep: str, output: str | os.PathLike) -> None:
    """Refuse to write an empty subset (the next stage would fail on it): say what the labels are instead."""
    if len(kept):
        return
    counts = frame[LABEL].value_counts(dropna=False)
    labels = ", ".join(f"{int(counts.get(k, 0))} {k}" for k in ("weak", "strong"))
    raise ValueError(f"--keep {keep}: none of the {len(frame)} rows is {keep} ({labels}, "
                     f"{int(frame[LABEL].isna().sum())} unlabelled); nothing written to {output}. Keep the other "
                     "label, or move the line with --weak-above when labelling")


# --- answering ---------------------------------------------------------------------------------------------------


def _key(record: dict) -> tuple:
    return str(record["id"]), int(record["model"]), record["condition"]


def sample_seed(seed: int, item_id: str, condition: str) -> int:
    """The seed of an item's sampled answers under a condition (stable across runs and batch compositions)."""
    return zlib.crc32(f"{seed}/{item_id}/{condition}".encode())


def answer_all(frame, opts: FilterArguments) -> dict[tuple, dict]:
    """Every item's answers per model and condition, ``{(id, model index, condition): record}``; a record holds
    ``responses`` and ``correct``, or ``error`` (its clip could not be decoded). Resumes from the partial file,
    which the caller removes once its outputs are written."""
    from tqdm import tqdm

    from .engines import load_engine
    from .predict import audio_cap, generation_settings, predict
    from .resume import PartialRecords

    settings = {"data": str(Path(opts.data).resolve()), "models": [str(Path(m).resolve()) for m in opts.model],
                **generation_settings(opts, {"max_new_tokens": opts.max_new_tokens}, opts.max_audio_seconds,
                                      {"samples": opts.samples, "temperature": opts.temperature, "seed": opts.seed,
                                       "limit": opts.limit})}
    batch_size, dtype = settings["batch_size"], settings["dtype"]
    rows = {str(r["id"]): r for r in frame.to_dict("records")}
    jobs = [{"id": i, "model": j, "condition": c} for j in range(len(opts.model)) for c in CONDITIONS for i in rows]
    partial = PartialRecords(Path(opts.output), settings, RESUME_SETTINGS, _key)
    todo = partial.todo(jobs)
    with partial, tqdm(total=len(jobs), initial=len(jobs) - len(todo), unit="answer set", desc="filter") as bar:
        for j, model in enumerate(opts.model):
            mine = [job for job in todo if job["model"] == j]
            if not mine:
                continue
            eng = load_engine(opts.engine, model, max_new_tokens=opts.max_new_tokens, batch_size=batch_size,
                              dtype=dtype)
            predict(mine, eng, _requests(rows, opts, audio_cap(model, opts.max_audio_seconds) or None), partial,
                    bar, batch_size)
            eng.close()
    return dict(partial.done)  # the partial file stays until the outputs are written


def _requests(rows: dict[str, dict], opts: FilterArguments, cap: float | None):
    """How a job (item id, model, condition) becomes a request, and its answers a record with the right ones
    counted; an undecodable clip makes an error record."""
    from .benchmarks import clip
    from .predict import Requests
    from ..prompts import format_prompt
    from ..prompts import extract_answer

    def record(job: dict, responses: list[str]) -> dict:
        wanted = extract_answer(rows[job["id"]]["solution"])
        return {**job, "responses": responses, "correct": sum(extract_answer(r) == wanted for r in responses)}

    def prompt(job: dict) -> str:
        item = rows[job["id"]]
        return format_prompt(item["question"], list(item["choices"]), opts.template)

    return Requests(clip=lambda job: clip(rows[job["id"]]["audio"], cap, silence=job["condition"] == "silence"),
                    prompt=prompt, record=record, samples=opts.samples, temperature=opts.temperature,
                    seed=lambda job: sample_seed(opts.seed, job["id"], job["condition"]), keep_errors=True)


# --- labels and report -------------------------------------------------------------------------------------------


def label(frame, opts: FilterArguments) -> tuple:
    """Answer every item (:func:`answer_all`), add the label columns and build the report: ``(frame, report)``."""
    import pandas as pd

    done = answer_all(frame, opts)
    models, samples, weak_above = opts.model, opts.samples, opts.weak_above
    ids = frame["id"].astype(str).tolist()
    errors = {}
    for (item, _, condition), record in done.items():
        if "error" in record:
            errors.setdefault(item, f"{condition}: {record['error']}")
    out = frame.copy()
    for j in range(len(models)):
        for condition in CONDITIONS:
            out[f"m{j}_{condition}_correct"] = pd.array(
                [None if i in errors else done[(i, j, condition)]["correct"] for i in ids], dtype="Int64")
    silent = sum(out[f"m{j}_silence_correct"] for j in range(len(models)))
    out["silence_correct_share"] = (silent / (samples * len(models))).astype("Float64")
    out[LABEL] = [None if i in errors else ("weak" if share > weak_above else "strong")
                  for i, share in zip(ids, out["silence_correct_share"])]
    report = build_report(out, models, samples, weak_above, errors,
                          {"data": opts.data, "temperature": opts.temperature})
    return out, report


def _accuracy(frame, models: Sequence[int], samples: int) -> dict:
    """Share of right answers (percent) of the models with these indices, with audio and with silence, over the
    rows of ``frame``, and their difference (the listening gap)."""
    n = len(frame) * samples * len(models)
    if not n:
        return {"audio": None, "silence": None, "gap": None, "answers": 0}
    audio = sum(int(frame[f"m{j}_audio_correct"].sum()) for j in models) / n * 100
    silence = sum(int(frame[f"m{j}_silence_correct"].sum()) for j in models) / n * 100
    return {"audio": round(audio, 2), "silence": round(silence, 2), "gap": round(audio - silence, 2), "answers": n}


def build_report(frame, models: Sequence[str], samples: int, weak_above: float, errors: dict[str, str],
                 settings: dict) -> dict:
    """Counts per label and per task/category, accuracy with audio vs silence (the listening gap), examples."""
    labelled = frame[frame[LABEL].notna()]
    indices = range(len(models))
    groups = {}
    for column in (c for c in GROUP_COLUMNS if c in frame.columns):
        groups[column] = {}
        for value, part in labelled.groupby(labelled[column].astype(str), sort=True):
            groups[column][value] = {"n": len(part), "weak": int((part[LABEL] == "weak").sum()),
                                     "strong": int((part[LABEL] == "strong").sum()),
                                     **_accuracy(part, indices, samples)}

    def examples(kind: str) -> list[dict]:
        part = labelled[labelled[LABEL] == kind].head(N_EXAMPLES)
        return [{"id": str(r["id"]), "question": r["question"], "choices": list(r["choices"]),
                 "answer": r.get("answer"), "silence_correct_share": float(r["silence_correct_share"])}
                for r in part.to_dict("records")]

    return {
        "data": settings.get("data") and str(settings["data"]),
        "models": [str(m) for m in models],
        "samples": samples,
        "temperature": settings.get("temperature"),
        "rule": f"weak when more than {weak_above:g} of the silent-audio answers (all models and samples) are right",
        "weak_above": weak_above,
        "items": len(frame),
        "labelled": len(labelled),
        "weak": int((labelled[LABEL] == "weak").sum()),
        "strong": int((labelled[LABEL] == "strong").sum()),
        "accuracy": _accuracy(labelled, indices, samples),
        "per_model": [{"model": str(m), **_accuracy(labelled, [j], samples)} for j, m in enumerate(models)],
        "groups": groups,
        "examples": {"weak": examples("weak"), "strong": examples("strong")},
        "unlabelled": [{"id": i, "reason": reason} for i, reason in errors.items()],
    }


def report_markdown(report: dict) -> str:
    """The report as markdown: totals, per-group table, per-model accuracy, examples, unlabelled clips."""
    from ..formatting import fmt, group_tables, markdown_table

    acc = report["accuracy"]
    lines = ["# Audio contribution", "",
             f"- models: {', '.join(f'`{m}`' for m in report['models'])}; " + (
                 "one greedy answer per item and condition" if report["samples"] == 1 else
                 f"{report['samples']} answers per item and condition (greedy, then sampled at temperature "
                 f"{report['temperature']})"),
             f"- rule: {report['rule']}",
             f"- items: {report['items']}; labelled {report['labelled']}: **{report['weak']} weak**, "
             f"**{report['strong']} strong**; unlabelled (clip failed) {len(report['unlabelled'])}",
             f"- right answers with audio {fmt(acc['audio'])}%, with silence {fmt(acc['silence'])}%: listening "
             f"gap **{fmt(acc['gap'])}** points"]
    if report.get("kept"):
        lines.append(f"- written: the {report['kept']} rows only")
    lines += group_tables(report["groups"], ["n", "weak", "strong", "audio %", "silence %", "gap (points)"],
                          lambda e: [str(e["n"]), str(e["weak"]), str(e["strong"]), fmt(e["audio"]), fmt(e["silence"]),
                                     fmt(e["gap"])])
    if len(report["per_model"]) > 1:
        rows = [[m["model"], fmt(m["audio"]), fmt(m["silence"]), fmt(m["gap"])] for m in report["per_model"]]
        lines += ["", "## By model", "", markdown_table(["model", "audio %", "silence %", "gap (points)"], rows)]
    for kind in ("weak", "strong"):
        rows = [[e["id"], e["question"], str(e["answer"]), f"{e['silence_correct_share']:.2f}"]
                for e in report["examples"][kind]]
        if rows:
            lines += ["", f"## Examples: {kind}", "",
                      markdown_table(["id", "question", "answer", "right with silence"], rows, text_columns=3)]
    if report["unlabelled"]:
        rows = [[u["id"], u["reason"]] for u in report["unlabelled"]]
        lines += ["", "## Unlabelled (clip could not be decoded)", "",
                  markdown_table(["id", "reason"], rows, text_columns=2)]
    return "\n".join(lines) + "\n"


def plot_report(report: dict, path: str | os.PathLike) -> Path:
    """Weak/strong counts per group (first group column, or overall) and accuracy with audio vs silence."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from ..files import save_figure

    column = next(iter(report["groups"]), None)
    entries = report["groups"][column] if column else {"all": {"weak": report["weak"], "strong": report["strong"],
                                                               **report["accuracy"]}}
    names = list(entries)[:16]
    x = np.arange(len(names))
    fig, (left, right) = plt.subplots(1, 2, figsize=(max(8, 1.2 * len(names) + 4), 4.2), layout="constrained")
    weak = [entries[k]["weak"] for k in names]
    strong = [entries[k]["strong"] for k in names]
    left.bar(x, weak, color="#C44E52", label="weak (answered without audio)")
    left.bar(x, strong, bottom=weak, color="#4C72B0", label="strong")
    left.set_xticks(x, names, fontsize=8, rotation=30 if len(names) > 6 else 0)
    left.set(ylabel="items", title=f"Labels by {column or 'item'}")
    left.legend(fontsize=8)
    for offset, kind, color in ((-0.2, "audio", "#4C72B0"), (0.2, "silence", "#C44E52")):
        bars = right.bar(x + offset, [entries[k][kind] or 0.0 for k in names], width=0.4, color=color,
                         label=f"right with {kind}")
        right.bar_label(bars, fmt="%.0f", fontsize=7)
    right.set_xticks(x, names, fontsize=8, rotation=30 if len(names) > 6 else 0)
    right.set(ylabel="right answers (%)", ylim=(0, 110), title="Listening gap")
    right.legend(fontsize=8)
    return save_figure(fig, path)
