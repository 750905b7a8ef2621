"""The prediction loop: items x engine x generation settings -> records, appended to a resumable partial file per
batch; and ``eval``'s use of it (:func:`evaluate`: one model, one output, resumed and merged across workers)."""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from .. import files
from ..benchmarks import get_benchmark
from ..benchmarks.common import load_predictions
from .arguments import DEFAULT_BATCH_SIZE, EvalArguments, GenerationArguments, resume_settings
from .benchmarks import clip, expand
from .paths import meta_path
from .resume import PartialRecords, drop_stale, locked, partial_paths, prefetched, settings_diff
from .workers import Share

if TYPE_CHECKING:
    from .engines import Engine

_THINK = re.compile(r"<think>(.*?)</think>", re.DOTALL)
# Settings that change the predictions: a partial file made with other values is not resumed.
RESUME_SETTINGS = resume_settings(EvalArguments)


def prediction_fields(response: str, benchmark: str = "mmau", template: str = "default") -> dict:
    """The model fields of an output record: extracted answer (twice), raw response, think content, and the fields
    the benchmark's scorer reads besides (MMAR's ``answer_prediction``; ``thinking_prediction`` with the think
    template)."""
    from ..prompts import extract_answer

    answer = extract_answer(response)
    think = _THINK.search(response)
    think = think.group(1).strip() if think else None
    return {"model_output": answer, "model_prediction": answer, "model_response": response, "model_think": think,
            **get_benchmark(benchmark).prediction_fields(answer, think, template)}


def output_record(item: dict, response: str, benchmark: str, template: str) -> dict:
    """An input item with its model fields (:func:`prediction_fields`); decoded audio is left out."""
    paths = item.get("audio")
    paths = paths if isinstance(paths, str) or (isinstance(paths, list) and all(isinstance(a, str) for a in paths)) \
        else None
    record = {k: v for k, v in item.items() if k != "audio" or paths is not None}
    return {**record, **prediction_fields(response, benchmark, template)}


def record_key(record: dict) -> tuple:
    """An eval record's key in its partial file: its id and option order."""
    return str(record["id"]), record.get("permutation", 0)


@dataclass(frozen=True)
class Requests:
    """How :func:`predict` turns an item into a generation request and its answers into a record."""

    clip: Callable[[dict], Any]  # the item's clip as the engines take it (see ``benchmarks.clip``)
    prompt: Callable[[dict], str]  # the item's text prompt
    record: Callable[[dict, list[str]], dict]  # the item's record from its answers (greedy first)
    samples: int = 1  # answers per item: one greedy, then ``samples - 1`` sampled at ``temperature``
    temperature: float = 1.0
    seed: Callable[[dict], int] | None = None  # the seed of an item's sampled answers
    keep_errors: bool = False  # an undecodable clip makes ``{**item, "error": reason}`` instead of raising


def predict(todo: Sequence[dict], engine: Engine, requests: Requests, partial: PartialRecords, bar,
            batch_size: int) -> None:
    """The prediction loop: ``todo`` in batches of ``batch_size`` through ``engine`` (the next batch's clips decode
    meanwhile), each batch's records appended to ``partial`` (flushed) and counted on the progress ``bar``."""
    from ..audio import AudioError

    def load(batch: list[dict]) -> list:
        clips = []
        for item in batch:
            try:
                clips.append(requests.clip(item))
            except AudioError as e:
                if not requests.keep_errors:
                    raise
                clips.append(e)
        return clips

    batches = [todo[i : i + batch_size] for i in range(0, len(todo), batch_size)]
    for batch, clips in prefetched(batches, load):
        ok = [(item, c) for item, c in zip(batch, clips) if not isinstance(c, AudioError)]
        answers: list[list[str]] = []
        if ok:
            prompts, audios = [requests.prompt(item) for item, _ in ok], [c for _, c in ok]
            answers = [[response] for response in engine.generate(prompts, audios)]
            if requests.samples > 1:
                seeds = [requests.seed(item) for item, _ in ok]
                for mine, more in zip(answers, engine.sample(prompts, audios, requests.samples - 1,
                                                             requests.temperature, seeds), strict=True):
                    mine += more
        made = iter([requests.record(item, mine) for (item, _), mine in zip(ok, answers, strict=True)])
        partial.add([{**item, "error": str(c)} if isinstance(c, AudioError) else next(made)
                     for item, c in zip(batch, clips)])
        bar.update(len(batch))


def evaluate(items: Sequence[dict], model: str | os.PathLike, output: str | os.PathLike,
             opts: EvalArguments | None = None, *, silence: bool = False, share: Share = Share(),
             **arguments) -> list[dict] | None:
    """Predict this worker's ``share`` of the items (every ``share.shards``-th, under each option order) with
    ``model`` into ``output``, resuming from its partial files; once every item is done, by this worker or others,
    merge them.

    ``opts``: the ``eval`` arguments (their ``model`` and ``output`` are the command line's; this call's are the
    parameters), or the same as keyword ``arguments`` (``benchmark``, ``data``, ``engine``, ...). ``silence``: each
    clip is replaced by silence of its length (as loaded, after the cap). Merging writes ``output`` (atomically, in
    input order) and its ``.meta.json`` sidecar (``workers`` among the settings), then removes the partial files.
    Returns the records when this call finished the last of ``output`` and ``share.also`` (outputs the reports need
    as well, e.g. the silence run); ``None`` otherwise (other shares or outputs still missing). An existing
    ``output`` made with the same settings is reused (only items it lacks are generated; nothing when it has them
    all); one made with other settings, or without a sidecar, is refused unless ``overwrite``, which generates
    everything again, also dropping partial files made with other settings (one made with these settings, by a
    killed ``overwrite`` run, is resumed).
    """
    output = Path(output)
    opts = opts or EvalArguments(model=str(model), output=str(output), **arguments)
    settings = _settings(items, model, opts, silence)
    expanded = expand(items, opts.permutations)
    if opts.overwrite:  # other settings' partial files go; this run's own, from a killed try, are resumed
        drop_stale(output, settings, RESUME_SETTINGS)
    finished = {} if opts.overwrite else _finished(output, settings)
    beyond = finished.keys() - {record_key(r) for r in expanded}
    if beyond:
        raise ValueError(f"{output} holds {len(beyond)} records this run would drop (a smaller --limit?): pass "
                         "--overwrite to replace it, or choose another --output")
    if finished and finished.keys() == {record_key(r) for r in expanded}:
        print(f"{output}: already evaluated with these settings; nothing to do (--overwrite to redo it)",
              file=sys.stderr)
        return ([finished[record_key(r)] for r in expanded] if share.shard == 0 and all(map(is_settled, share.also))
                else None)
    partial = PartialRecords(output, settings, RESUME_SETTINGS, record_key, share.shard, share.shards)
    partial.done.update(finished)
    _predict_share(expanded[share.shard::share.shards], model, opts, settings, partial, share)
    with locked(output.parent):  # one worker merges, once every share is in
        done = {**finished, **partial.collect()}
        if any(record_key(r) not in done for r in expanded):
            return None
        records = [done[record_key(r)] for r in expanded]
        files.write_json(output, records)
        files.write_json(meta_path(output), {**settings, "workers": share.workers, "n_items": len(items),
                                             "n_records": len(records)})
        partial.remove()
        return records if all(map(is_settled, share.also)) else None


def _settings(items: Sequence[dict], model: str | os.PathLike, opts: EvalArguments, silence: bool) -> dict:
    """What an output is made with (its ``.meta.json``, and the first line of its partial files)."""
    from .engines import greedy_settings

    return {
        "benchmark": opts.benchmark, "data": str(Path(opts.data).resolve()),
        "data_version": get_benchmark(opts.benchmark).version(items), "model": _model_name(model),
        "model_files": _model_files(model),
        **generation_settings(opts, {"sampling": greedy_settings(opts.max_new_tokens)},
                              audio_cap(model, opts.max_audio_seconds) or None,
                              {"permutations": opts.permutations, "silence": silence}),
    }


def generation_settings(opts: GenerationArguments, length: dict, max_audio_seconds: float | None,
                        own: dict) -> dict:
    """The generation part of what ``eval`` and ``filter`` record an output is made with: engine, dtype, template,
    the answers' length (``length``: greedy settings, or the token cap), the clip cap, the command's ``own`` settings
    and the batch size, in that order."""
    return {"engine": opts.engine, "dtype": dtype_name(opts.dtype), "template": opts.template, **length,
            "max_audio_seconds": max_audio_seconds, **own,
            "batch_size": opts.batch_size or DEFAULT_BATCH_SIZE[opts.engine]}


def _predict_share(mine: list[dict], model: str | os.PathLike, opts: EvalArguments, settings: dict,
                   partial: PartialRecords, share: Share) -> None:
    """Predict the items of ``mine`` not in ``partial`` yet, with a progress bar."""
    from tqdm import tqdm

    from ..prompts import format_prompt
    from .engines import load_engine

    todo = partial.todo(mine)
    if len(todo) < len(mine):
        print(f"{partial.output}: resuming after {len(mine) - len(todo)} of {len(mine)} items"
              + (f" of share {share.shard + 1}/{share.shards}" if share.shards > 1 else ""), file=sys.stderr)
    if not todo:
        return
    silence, cap = settings["silence"], settings["max_audio_seconds"]
    requests = Requests(clip=lambda r: clip(r["audio"], cap, silence),
                        prompt=lambda r: format_prompt(r["question"], r["choices"], opts.template),
                        record=lambda r, answers: output_record(r, answers[0], opts.benchmark, opts.template))
    max_clips = max(len(r["audio"]) if isinstance(r["audio"], list) else 1 for r in todo)
    eng = load_engine(opts.engine, model, max_new_tokens=opts.max_new_tokens, batch_size=settings["batch_size"],
                      dtype=settings["dtype"], max_clips=max_clips)
    desc = (f"eval {Path(model).name}" + (" (silence)" if silence else "")
            + (f" [{share.shard + 1}/{share.shards}]" if share.shards > 1 else ""))
    with partial, tqdm(total=len(mine), initial=len(mine) - len(todo), unit="item", desc=desc,
                       position=share.position) as bar:
        predict(todo, eng, requests, partial, bar, settings["batch_size"])
    eng.close()


def _model_name(model: str | os.PathLike) -> str:
    """A local model directory as an absolute path; a hub id as given."""
    return str(Path(model).resolve()) if Path(model).is_dir() else str(model)


def _model_files(model: str | os.PathLike) -> str | None:
    """A fingerprint of a local model's weight files (``files.weights_fingerprint``); ``None`` for a hub id."""
    return files.weights_fingerprint(model) if Path(model).is_dir() else None


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
    diff = settings_diff(saved, settings, RESUME_SETTINGS)
    if diff:
        raise ValueError(f"{output} exists, made with other settings {diff} (saved, now): pass --overwrite to "
                         "replace it, or choose another --output")
    return {record_key(r): r for r in load_predictions(output)}


def audio_cap(model: str | os.PathLike, max_audio_seconds: float | None) -> float:
    """The clip cap for ``model``: as given (0: none), else its family's (``Family.max_audio_seconds``: 30 s for
    Qwen2-Audio and Audio Flamingo 3, their encoders' window; none for Omni)."""
    from ..families import family_of

    if max_audio_seconds is not None:
        return max_audio_seconds
    return family_of(model).max_audio_seconds


def dtype_name(dtype: str) -> str:
    """``auto`` resolved to the machine's default (bf16 on GPU, float32 on CPU); other names as they are."""
    from ..families.loading import default_dtype

    return str(default_dtype()).removeprefix("torch.") if dtype == "auto" else dtype


def is_settled(output: Path) -> bool:
    """Whether ``output`` is a merged result (no share of it is being written)."""
    return output.exists() and not partial_paths(output)
