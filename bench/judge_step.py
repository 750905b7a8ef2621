"""The judge's share of a GRPO step: `r1-aqa train` on the tiny policy with judged rewards (the tiny judge, or any
judge given), time per step and the judge's share of it, with a cold and a warm (fully cached) judge cache; prints a
markdown table.

    python bench/judge_step.py                                  # tiny Qwen2-Audio policy, tiny judge, CPU
    python bench/judge_step.py --judge http://127.0.0.1:8000/v1  # a served judge (e.g. `vllm serve`)

Each row is one run of ``--steps`` steps on ``synth --task open`` items (``tiny_grpo.yaml``: 2 completions per
step); the first step (loading, warm-up) is left out of the means. "warm cache" reruns the row above it with the same
seed and cache, so the same completions find every judge reply cached.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RECIPE = ROOT / "examples" / "r1_aqa" / "recipes" / "tiny_grpo.yaml"


def cli(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "r1_aqa.cli", *args], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)


def run(work: Path, name: str, rewards: list[str], judge: str, steps: int, cache: Path) -> dict:
    out = work / name
    cli("train", "--config", str(RECIPE), "--model_name_or_path", str(work / "policy"), "--dataset_path",
        str(work / "open.parquet"), "--output_dir", str(out), "--max_steps", str(steps), "--save_strategy", "no",
        "--max_audio_seconds", "2", "--reward_funcs", *rewards, "--judge_model", judge, "--judge_cache", str(cache),
        "--overwrite_output_dir")
    logs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    logs = [r for r in logs if "loss" in r][1:]
    judged = [n for n in rewards if n != "format"]
    return {"step_s": sum(r["step_time"] for r in logs) / len(logs),
            "share": sum(r.get("judge/step_share", 0.0) for r in logs) / len(logs),
            "calls": sum(r.get(f"judge/{n}/calls", 0.0) for r in logs for n in judged),
            "hits": sum(r.get(f"judge/{n}/cache_hits", 0.0) for r in logs for n in judged)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--judge", default=None, help="judge spec (default: a tiny judge built here)")
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        cli("tiny-model", str(work / "policy"), "--window-seconds", "2")
        judge = args.judge or str(work / "judge")
        if args.judge is None:
            cli("tiny-judge", judge)
        cli("synth", str(work / "synth"), "--task", "open", "--n", "32")
        cli("prepare", "open", "--input", str(work / "synth" / "open.jsonl"), "--output", str(work / "open.parquet"),
            "--workers", "1")
        rows = []
        for rewards in (["format"], ["judge", "format"], ["judge", "rubric", "format"]):
            cache = work / f"cache-{len(rewards)}.sqlite"
            for label in ("cold cache", "warm cache"):
                if rewards == ["format"] and label == "warm cache":
                    continue
                found = run(work, f"run-{len(rewards)}-{label[:4]}", rewards, judge, args.steps, cache)
                rows.append((" + ".join(rewards), label if rewards != ["format"] else "-", found))
    print(f"| rewards | judge cache | s/step | judge share of the step | judge calls | cache hits |\n"
          "|---|---|---:|---:|---:|---:|")
    for rewards, label, r in rows:
        print(f"| {rewards} | {label} | {r['step_s']:.2f} | {100 * r['share']:.1f}% | {r['calls']:.0f} | "
              f"{r['hits']:.0f} |")


if __name__ == "__main__":
    main()
