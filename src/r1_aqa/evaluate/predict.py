"""The prediction loop: items x engine x generation settings -> records, appended to a resumable partial file per
batch; and ``eval``'s use of it (:func:`evaluate`: one model, one output, resumed and merged across workers)."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from .benchmarks import clip, expand
from .resume import PartialRecords, drop_stale, locked, partial_paths, prefetched, settings_diff

_THINK = re.compile(r"<think>(.*?)</think>", re.DOTALL)
DEFAULT_BATCH_SIZE = {"hf": 8, "vllm": 64}  # vLLM schedules a call's requests itself: give it many
# Settings that change the predictions: a partial file made with other values is not resumed.
RESUME_SETTINGS = ("benchmark", "data", "model", "model_files", "engine", "dtype", "template", "sampling",
                   "max_audio_seconds", "permutations", "silence")


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


def output_record(item: dict, response: str, benchmark: str, template: str) -> dict:
    """An input item with its model fields (:func:`prediction_fields`); decoded audio is left out."""
    record = {k: v for k, v in item.items() if not (k == "audio" and not isinstance(v, str))}
    return {**record, **prediction_fields(response, benchmark, template)}


def record_key(record: dict) -> tuple:
    """An eval record's key in its partial file: its id and option order."""
    return str(record["id"]), record.get("permutation", 0)


def meta_path(output: str | os.PathLike) -> Path:
    """The metadata sidecar of a predictions file (settings, engine, model, data version)."""
    output = Path(output)
    return output.with_name(f"{output.stem}.meta.json")


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


def predict(todo: Sequence[dict], engine, requests: Requests, partial: PartialRecords, bar, batch_size: int) -> None:
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
        drop_stale(output, settings, RESUME_SETTINGS)
    finished = {} if overwrite else _finished(output, settings)
    beyond = finished.keys() - {record_key(r) for r in expanded}
    if beyond:
        raise ValueError(f"{output} holds {len(beyond)} records this run would drop (a smaller --limit?): pass "
                         "--overwrite to replace it, or choose another --output")
    if finished and finished.keys() == {record_key(r) for r in expanded}:
        print(f"{output}: already evaluated with these settings; nothing to do (--overwrite to redo it)",
              file=sys.stderr)
        return [finished[record_key(r)] for r in expanded] if shard == 0 and all(map(is_settled, also)) else None
    partial = PartialRecords(output, settings, RESUME_SETTINGS, record_key, shard, shards)
    partial.done.update(finished)
    share = expanded[shard::shards]
    todo = partial.todo(share)
    if len(todo) < len(share):
        print(f"{output}: resuming after {len(share) - len(todo)} of {len(share)} items"
              + (f" of share {shard + 1}/{shards}" if shards > 1 else ""), file=sys.stderr)
    if todo:
        requests = Requests(clip=lambda r: clip(r["audio"], max_audio_seconds or None, silence),
                            prompt=lambda r: format_prompt(r["question"], r["choices"], template),
                            record=lambda r, answers: output_record(r, answers[0], benchmark, template))
        eng = load_engine(engine, model, max_new_tokens=max_new_tokens, batch_size=batch_size, dtype=dtype)
        desc = (f"eval {Path(model).name}" + (" (silence)" if silence else "")
                + (f" [{shard + 1}/{shards}]" if shards > 1 else ""))
        with partial, tqdm(total=len(share), initial=len(share) - len(todo), unit="item", desc=desc,
                           position=position) as bar:
            predict(todo, eng, requests, partial, bar, batch_size)
        eng.close()
    with locked(output.parent):  # one worker merges, once every share is in
        done = {**finished, **partial.collect()}
        if any(record_key(r) not in done for r in expanded):
            return None
        records = [done[record_key(r)] for r in expanded]
        files.write_json(output, records)
        files.write_json(meta_path(output), {**settings, "workers": workers, "n_items": len(items),
                                             "n_records": len(records)})
        partial.remove()
        return records if all(map(is_settled, also)) else None


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
    diff = settings_diff(saved, settings, RESUME_SETTINGS)
    if diff:
        raise ValueError(f"{output} exists, made with other settings {diff} (saved, now): pass --overwrite to "
                         "replace it, or choose another --output")
    from .scoring import load_predictions

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
    from ..models import default_dtype

    return str(default_dtype()).removeprefix("torch.") if dtype == "auto" else dtype


def _data_version(benchmark: str, items: Sequence[dict]) -> str | None:
    if benchmark != "mmau":
        return None
    from .scoring import mmau_version

    return mmau_version(items)


def is_settled(output: Path) -> bool:
    """Whether ``output`` is a merged result (no share of it is being written)."""
    return output.exists() and not partial_paths(output)
