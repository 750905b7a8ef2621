"""Evaluation over several workers: wall time of `r1-aqa eval --num-workers N` for each N; prints a markdown table.

    python bench/eval_workers.py                                   # tiny Qwen2-Audio on CPU, 32 clips, N = 1, 2
    python bench/eval_workers.py --model M --engine vllm -n 1000 --workers 1,2,4,8   # GPUs: one worker per GPU

Each run is the whole command (worker start, model load, generation, merge, reports) on the same synthetic MMAU-format
question file (tones of 1-10 s) in a fresh output folder; every run's predictions must equal the one-worker run's
byte for byte.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf


def write_questions(root: Path, n: int, seed: int = 0) -> Path:
    """``n`` MMAU-format questions over synthetic tones under ``root``; the question file's path."""
    rng = np.random.default_rng(seed)
    records = []
    for i in range(n):
        t = np.arange(int(rng.uniform(1.0, 10.0) * 16_000)) / 16_000
        sf.write(root / f"{i}.wav", (0.3 * np.sin(2 * np.pi * rng.uniform(100, 2000) * t)).astype(np.float32), 16_000)
        records.append({"id": f"q{i}", "audio_id": f"{i}.wav", "question": "How many beeps are there?",
                        "choices": ["one", "two", "three", "four"], "answer": "two", "task": "sound"})
    path = root / "questions.json"
    path.write_text(json.dumps(records))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=None, help="model directory; default: a tiny Qwen2-Audio")
    parser.add_argument("--engine", choices=("hf", "vllm"), default="hf")
    parser.add_argument("-n", "--num-clips", type=int, default=32)
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts; the first is the reference")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    args = parser.parse_args(argv)

    counts = [int(n) for n in args.workers.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = args.model
        if model is None:
            from r1_aqa.families.tiny_model import build_tiny_model

            model = build_tiny_model(tmp / "tiny")
        questions = write_questions(tmp, args.num_clips)
        reference = None
        for n in counts:
            output = tmp / f"workers-{n}" / "pred.json"
            command = [sys.executable, "-m", "r1_aqa.cli", "eval", "--data", str(questions), "--model", str(model),
                       "--engine", args.engine, "--output", str(output), "--max-new-tokens",
                       str(args.max_new_tokens), "--num-workers", str(n)]
            start = time.perf_counter()
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            wall = time.perf_counter() - start
            reference = reference or output.read_bytes()
            rows.append((n, wall, output.read_bytes() == reference))
    print(f"\n{args.engine} engine, {args.num_clips} clips of 1-10 s, max {args.max_new_tokens} new tokens, "
          f"{os.cpu_count()} CPU cores\n")
    print("| workers | wall s | items/s | speed-up | predictions = first run |")
    print("|---:|---:|---:|---:|---|")
    for n, wall, same in rows:
        same = "yes" if same else "NO"
        print(f"| {n} | {wall:.1f} | {args.num_clips / wall:.2f} | {rows[0][1] / wall:.2f} | {same} |")
    return 0 if all(same for _, _, same in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
