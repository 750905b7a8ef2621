"""Every clip of a training set checked before the first step, so that a bad clip is not met hours into a run.

Each distinct clip is decoded once, up to the run's cap, exactly as the trainer will load it (threads: libsndfile and
soxr release the GIL). In a multi-process run each process checks its share of the clips and the lists are gathered,
so every process reaches the same decision: all stop with the same error, or all drop the same rows.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Sequence

from ..files import write_json

_SHOWN = 20  # bad clips listed in an error message; the file beside the run lists them all


class BadAudioError(ValueError):
    """Clips of a training set that cannot be loaded; the message lists them (file, row id, reason)."""


def find_bad_clips(sources: Sequence, max_seconds: float | None, workers: int | None = None,
                   desc: str = "checking audio") -> dict:
    """``{clip: reason}`` for every distinct clip of ``sources`` (paths or encoded bytes) that does not load.

    Every process of a distributed run must call this with the same ``sources``; each decodes its share and all get
    the whole answer.
    """
    from concurrent.futures import ThreadPoolExecutor

    from accelerate import PartialState
    from accelerate.utils import gather_object
    from tqdm import tqdm

    from ..audio import AudioError, load_audio_capped

    state = PartialState()
    distinct = list(dict.fromkeys(sources))
    mine = distinct[state.process_index :: state.num_processes]

    def check(src) -> str | None:
        try:
            load_audio_capped(src, max_seconds)
        except AudioError as e:
            return str(e).removeprefix(f"{_label(src)}: ")
        return None

    workers = workers or min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)
    with ThreadPoolExecutor(max(1, workers)) as pool:
        reasons = list(tqdm(pool.map(check, mine), total=len(mine), desc=desc, unit="clip",
                            disable=not state.is_main_process))
    bad = [(src, reason) for src, reason in zip(mine, reasons) if reason is not None]
    if state.num_processes > 1:
        bad = gather_object(bad)
    order = {src: i for i, src in enumerate(distinct)}
    return dict(sorted(bad, key=lambda pair: order[pair[0]]))


def check_training_audio(dataset, *, max_seconds: float | None, skip_bad: bool, output_dir: str | os.PathLike,
                         name: str = "train", audio_column: str = "audio", id_column: str = "id"):
    """``dataset`` (a ``datasets.Dataset``) once every clip of it loads; else stop or, with ``skip_bad``, drop.

    Bad clips are written to ``output_dir/NAME.bad_audio.json`` (``[{"file", "ids", "reason"}]``) and the
    error lists the first of them with their row ids (the ``id`` column, else the 1-based row number). With
    ``skip_bad`` the rows of bad clips are dropped and their count printed; a set left empty is an error.
    """
    from accelerate import PartialState

    sources = list(dataset[audio_column])
    bad = find_bad_clips(sources, max_seconds, desc=f"checking {name} audio")
    if not bad:
        return dataset
    has_ids = id_column in dataset.column_names
    ids = list(dataset[id_column]) if has_ids else [str(i + 1) for i in range(len(dataset))]
    rows: dict = {src: [] for src in bad}
    for src, row_id in zip(sources, ids):
        if src in rows:
            rows[src].append(str(row_id))
    listing = [{"file": _label(src), "ids": rows[src], "reason": reason} for src, reason in bad.items()]
    state = PartialState()
    where = Path(output_dir) / f"{name}.bad_audio.json"
    if state.is_main_process:
        write_json(where, listing)
    state.wait_for_everyone()
    n_rows = sum(len(v) for v in rows.values())
    summary = f"{len(bad)} of {len(set(sources))} {name} clips cannot be used ({n_rows} of {len(dataset)} rows)"
    kept = [i for i, src in enumerate(sources) if src not in bad]
    if not skip_bad or not kept:
        lines = [f"  {e['file']} (row id {', '.join(e['ids'][:3])}{', ...' if len(e['ids']) > 3 else ''}): "
                 f"{e['reason']}" for e in listing[:_SHOWN]]
        more = f"\n  ... and {len(listing) - _SHOWN} more" if len(listing) > _SHOWN else ""
        advice = ("none left to train on: is the audio where the parquet says?" if skip_bad else
                  "fix or re-prepare them, or set skip_bad_audio: true to train without those rows")
        raise BadAudioError(f"{summary}; all listed in {where}:\n" + "\n".join(lines) + more + "\n" + advice)
    if state.is_main_process:
        print(f"r1-aqa: skip_bad_audio: dropped {summary}; see {where}", file=sys.stderr)
    return dataset.select(kept)


def _label(src) -> str:
    return f"<{len(src)} bytes>" if isinstance(src, (bytes, bytearray)) else str(src)
