"""``r1-aqa synth``: a synthetic audio multiple-choice task in the R1-AQA JSONL format, with its wav files.

The question text is the same for every item and the four option words come in a random order, so the answer is
only knowable from the audio; its position is uniform over the four slots. Tasks:

- ``pitch``: one tone at 220 / 440 / 880 / 1760 Hz -> "low" / "mid" / "high" / "top".
- ``count``: one to four short beeps -> "one" / "two" / "three" / "four".
- ``open``: an open-ended stand-in (no options, ``open.jsonl`` for ``prepare open``): a pitch clip, the question
  what the audio holds, a reference answer ("One steady high tone.") and two weighted rubric lines.

Everything is a function of (seed, task, item index), so a seed gives the same files byte for byte. With
``balanced`` the labels cycle through the option words (item ``i`` has label ``i mod 4``), so every label has the same
share and any constant answer scores exactly chance (held-out sets); the answer position stays random.
"""

from __future__ import annotations

import argparse
import json
import os
import zlib
from pathlib import Path

import numpy as np

from ..benchmarks import get_benchmark, sniff

HELP = "Write a synthetic audio multiple-choice task (pitch or beep count) as R1-AQA JSONL plus wav files."

SAMPLE_RATE = 16_000
PITCHES_HZ = {"low": 220.0, "mid": 440.0, "high": 880.0, "top": 1760.0}
COUNTS = {"one": 1, "two": 2, "three": 3, "four": 4}
TASKS = {
    "pitch": ("Which pitch is the tone in the audio?", list(PITCHES_HZ)),
    "count": ("How many beeps are in the audio?", list(COUNTS)),
}
OPEN_QUESTION = "What do you hear in the audio? Describe the sound and how high it is."
OPEN_RUBRIC_WEIGHTS = [1.0, 2.0]  # the tone's kind, then its pitch (what needs listening) counts double
_FADE_S = 0.005


def _envelope(n: int, sr: int) -> np.ndarray:
    """Flat with short linear fades, so clips have no clicks."""
    fade = min(int(_FADE_S * sr), n // 2)
    env = np.ones(n)
    if fade:
        ramp = np.linspace(0.0, 1.0, fade, endpoint=False)
        env[:fade], env[n - fade:] = ramp, ramp[::-1]
    return env


def _tone(freq: float, n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n) / sr
    return rng.uniform(0.2, 0.5) * np.sin(2 * np.pi * freq * t + rng.uniform(0, 2 * np.pi)) * _envelope(n, sr)


def render(task: str, label: int, seconds: float, rng: np.random.Generator, sr: int = SAMPLE_RATE) -> np.ndarray:
    """The clip for option ``label`` (index into the task's option words), float32 mono at ``sr``."""
    n = int(round(seconds * sr))
    wav = rng.normal(0.0, 0.003, n)  # a faint noise floor
    if task == "pitch":
        wav += _tone(list(PITCHES_HZ.values())[label], n, sr, rng)
    else:
        beeps = label + 1
        beep = max(1, n // 12)  # four beeps and three equal gaps fill 7/12 of the clip at most
        start = rng.integers(0, n - (2 * beeps - 1) * beep + 1)
        freq = rng.uniform(600.0, 1200.0)
        for k in range(beeps):
            at = start + 2 * k * beep
            wav[at:at + beep] += _tone(freq, beep, sr, rng)
    return wav.astype(np.float32)


def make_item(task: str, index: int, seed: int, seconds: float, balanced: bool = False) -> tuple[dict, np.ndarray]:
    """Item ``index`` of ``task`` for ``seed``: its JSONL row (without ``audio_path``) and its clip."""
    if task == "open":
        return open_item(index, seed, seconds)
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {sorted(TASKS)}")
    question, words = TASKS[task]
    rng = np.random.default_rng([seed, list(TASKS).index(task), index])
    label, position = int(rng.integers(len(words))), int(rng.integers(len(words)))
    if balanced:
        label = index % len(words)
    others = [words[j] for j in rng.permutation(len(words)) if j != label]
    choices = others[:position] + [words[label]] + others[position:]
    row = {"id": f"synth-{task}-{seed}-{index:05d}", "question_text": question, "multi_choice": choices,
           "answer": position, "dataset_name": f"synth-{task}", "task": task}
    return row, render(task, label, seconds, rng)


def open_item(index: int, seed: int, seconds: float) -> tuple[dict, np.ndarray]:
    """Open-ended item ``index`` for ``seed``: a pitch clip with its reference answer and weighted rubric lines."""
    rng = np.random.default_rng([seed, len(TASKS), index])
    label = int(rng.integers(len(PITCHES_HZ)))
    word = list(PITCHES_HZ)[label]
    row = {"id": f"synth-open-{seed}-{index:05d}", "question": OPEN_QUESTION,
           "reference": f"One steady {word} tone ({PITCHES_HZ[word]:.0f} Hz).",
           "rubric": ["The answer says the audio holds one steady tone.", f"The answer says the tone is {word}."],
           "rubric_weights": OPEN_RUBRIC_WEIGHTS, "dataset_name": "synth-open", "task": "open"}
    return row, render("pitch", label, seconds, rng)


def synthesize(out_dir: str | os.PathLike, n: int = 200, seed: int = 0, task: str = "pitch",
               seconds: float = 1.0, balanced: bool = False, overwrite: bool = False) -> Path:
    """Write ``n`` items of ``task`` to ``out_dir/<task>.jsonl`` and ``out_dir/audio/<id>.wav``; return the JSONL path.

    ``audio_path`` in the JSONL is relative to ``out_dir`` (``prepare avqa --audio-dir out_dir`` resolves it). A
    folder that already holds a task is refused unless ``overwrite``, which first removes that task's JSONL and the
    clips it lists (so no stale clip of a larger or other set stays behind).
    """
    import soundfile as sf
    from tqdm import tqdm

    from ..files import atomic_path, write_text

    if n < 1 or seconds <= 0:
        raise ValueError(f"need n >= 1 and seconds > 0, got n={n}, seconds={seconds}")
    out_dir = Path(out_dir)
    _clear_tasks(out_dir, overwrite)
    (out_dir / "audio").mkdir(parents=True, exist_ok=True)
    lines = []
    for i in tqdm(range(n), desc=f"synth {task}", unit="clip"):
        row, wav = make_item(task, i, seed, seconds, balanced)
        row["audio_path"] = f"audio/{row['id']}.wav"
        with atomic_path(out_dir / row["audio_path"]) as tmp:
            sf.write(str(tmp), wav, SAMPLE_RATE, format="WAV", subtype="PCM_16")
        lines.append(json.dumps(row))
    path = out_dir / f"{task}.jsonl"
    write_text(path, "\n".join(lines) + "\n")
    return path


def _clear_tasks(out_dir: Path, overwrite: bool) -> None:
    """Refuse ``out_dir`` when it holds a task (a ``<task>.jsonl``) unless ``overwrite``; then remove each such JSONL
    and the clips it lists."""
    from ..files import read_jsonl

    held = [out_dir / f"{task}.jsonl" for task in (*TASKS, "open") if (out_dir / f"{task}.jsonl").is_file()]
    if not held:
        return
    if not overwrite:
        raise ValueError(f"{out_dir} already holds a task ({', '.join(p.name for p in held)}): pass --overwrite to "
                         "replace it (its clips are removed), or choose another folder")
    root = out_dir.resolve()
    for jsonl in held:
        for row in read_jsonl(jsonl):
            clip = (root / str(row.get("audio_path", ""))).resolve()
            if clip.is_relative_to(root / "audio") and clip.is_file():
                clip.unlink()
        jsonl.unlink()


def stand_ins(benchmark_file: str | os.PathLike, out_dir: str | os.PathLike, seconds: float = 1.0,
              seed: int = 0) -> tuple[int, str]:
    """Write a stand-in clip (a tone of ``seconds``, its pitch drawn from the item's id and path) at the audio path of
    every item of a benchmark's question file whose clips are paths (MMAU JSON, MMAR JSONL, MMAU-Pro; every clip of a
    multi-clip item), under ``out_dir``, so that ``prepare``/``eval --audio-dir out_dir`` run on it before the real
    clips are downloaded. Returns the number of clips written and the benchmark's name."""
    import soundfile as sf
    from tqdm import tqdm

    from ..files import atomic_path

    if seconds <= 0:
        raise ValueError(f"--seconds must be > 0, got {seconds}")
    benchmark_file = Path(benchmark_file)
    spec = sniff(benchmark_file) if benchmark_file.is_file() else None
    records = spec.like(benchmark_file, Path(out_dir)) if spec is not None else None
    if records is None:
        raise ValueError(f"--like {benchmark_file}: neither an MMAU JSON list, MMAR JSON lines nor MMAU-Pro records")
    kind, field = spec.name, spec.clip_field
    root = Path(out_dir).resolve()
    clips = {}
    for record in records:
        paths = record[field] if isinstance(record[field], list) else [record[field]]  # MMAU-Pro: several
        for path in paths:
            target = (root / path).resolve()
            if not target.is_relative_to(root):
                raise ValueError(f"--like {benchmark_file}: item {record['id']}: {path!r} points outside {out_dir}")
            clips.setdefault(target, str(record["id"]) if len(paths) == 1 else f"{record['id']}/{path}")
    for i, (target, name) in enumerate(tqdm(clips.items(), desc="stand-in clips", unit="clip")):
        rng = np.random.default_rng([seed, i])
        wav = render("pitch", zlib.crc32(name.encode()) % len(PITCHES_HZ), seconds, rng)
        with atomic_path(target) as tmp:
            sf.write(str(tmp), wav, SAMPLE_RATE, format="WAV", subtype="PCM_16")
    return len(clips), kind


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out_dir", type=Path, help="directory for <task>.jsonl and audio/*.wav (with --like: the "
                        "audio dir for the benchmark file)")
    parser.add_argument("--like", type=Path, default=None, metavar="BENCHMARK_FILE",
                        help="instead of a task: a stand-in clip (a tone) at the audio path of every item of an MMAU "
                        "JSON or MMAR-meta.jsonl file, to try prepare/eval --audio-dir OUT_DIR before downloading "
                        "the real clips (scores on them mean nothing)")
    parser.add_argument("--n", type=int, default=200, help="number of items")
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same files)")
    parser.add_argument("--task", default="pitch", choices=[*sorted(TASKS), "open"],
                        help="pitch: which of 4 tones; count: how many beeps (1-4); open: open-ended questions "
                        "with a reference answer and rubric lines (open.jsonl, for `prepare open`)")
    parser.add_argument("--seconds", type=float, default=1.0, help="clip length in seconds")
    parser.add_argument("--balanced", action="store_true",
                        help="labels cycle through the options (equal shares; for held-out sets)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the task OUT_DIR already holds (its JSONL and clips are removed first)")


def run(args: argparse.Namespace) -> int:
    if args.like is not None:
        n, kind = stand_ins(args.like, args.out_dir, seconds=args.seconds, seed=args.seed)
        prepare = "" if not get_benchmark(kind).prepare_help else (
            f" (or r1-aqa prepare {kind} --input {args.like} --audio-dir {args.out_dir} --output OUT.parquet)")
        print(f"wrote {n} stand-in clips under {args.out_dir} for {args.like}; next: r1-aqa eval --benchmark {kind} "
              f"--data {args.like} --audio-dir {args.out_dir} --model MODEL --output PRED.json{prepare}")
        return 0
    path = synthesize(args.out_dir, n=args.n, seed=args.seed, task=args.task, seconds=args.seconds,
                      balanced=args.balanced, overwrite=args.overwrite)
    print(f"wrote {args.n} {args.task} items to {path} (clips in {path.parent / 'audio'}); next: r1-aqa prepare "
          f"{'open' if args.task == 'open' else 'avqa'} --input {path} --output OUT.parquet")
    return 0
