"""Weak-to-strong on a CPU with the tiny model: does ``filter`` find the items that need listening, and does GRPO on
them teach listening better than GRPO on everything, for the same number of steps?

    OMP_NUM_THREADS=2 python bench/weak_to_strong.py --out bench_w2s [--n-train 320] [--giveaway-share 0.4] \\
        [--grpo-steps 300] [--seeds 0 1] [--samples 8]

Data: the demo's 4-option pitch task (the answer is only in the audio, its position uniformly random). In a known
share of the training items the question gives the answer away: it ends with a word that names the pitch without
being an option ("... It sounds shrill." for "top"); the others can only be answered by listening. Held-out items are
listening-only (balanced labels).

Warm start (``r1-aqa sft`` with the demo's recipe), standing in for a model that has learned the text shortcut but
not the task: the giveaway items with their answers and silent audio (so the wording is what it learns from them),
the listening items with a random option as target (the answer format only) and beep-count items with their answers
(so the model can hear), as the demo does.

(a) ``r1-aqa filter`` with the warm model (``--samples`` answers per item and condition) labels the
    training set; precision and recall of "strong" against "is a listening item" (target: >= 0.9 each).
(b) GRPO with the demo's recipe for ``--grpo-steps`` steps from the warm model, on the filter's strong subset vs on
    the unfiltered set, per seed: held-out accuracy with the audio, with silence, and the listening gap.

Prints markdown tables and writes ``OUT/results.json`` and ``OUT/results.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

# The giveaway wording: a word per pitch that is not one of the options (copying an option word out of the question
# is much harder for the tiny model than listening; measured: 25% with silence after 150 SFT steps).
CUES = {"low": "deep", "mid": "plain", "high": "bright", "top": "shrill"}


def _cli(argv: list[str]) -> None:
    from r1_aqa.cli import main

    code = main(argv)
    if code:
        raise RuntimeError(f"r1-aqa {' '.join(argv)} exited with {code}")


def make_data(data: Path, n_train: int, n_eval: int, share: float, seed: int) -> dict[str, Path]:
    """Synthesize and prepare the sets; the first ``share`` of the training items get the giveaway wording."""
    import numpy as np
    import pandas as pd
    import soundfile as sf

    from r1_aqa.demo import CLIP_SECONDS

    for task, split, n, split_seed, extra in (("pitch", "train", n_train, seed, []),
                                              ("pitch", "eval", n_eval, seed + 1_000_003, ["--balanced"]),
                                              ("count", "train", n_train, seed, [])):
        name = f"{task}_{split}"
        _cli(["synth", str(data / name), "--n", str(n), "--seed", str(split_seed), "--task", task, "--seconds",
              str(CLIP_SECONDS), "--overwrite", *extra])
        _cli(["prepare", "avqa", "--input", str(data / name / f"{task}.jsonl"), "--output",
              str(data / f"{name}.parquet")])
    frame = pd.read_parquet(data / "pitch_train.parquet")
    n_giveaway = round(share * len(frame))
    frame["giveaway"] = [i < n_giveaway for i in range(len(frame))]
    frame.loc[frame.giveaway, "question"] = [f"{q} It sounds {CUES[a]}." for q, a in
                                             zip(frame.question[frame.giveaway], frame.answer[frame.giveaway])]
    paths = {"train": data / "train.parquet", "giveaway": data / "giveaway.parquet",
             "listening": data / "listening.parquet", "eval": data / "pitch_eval.parquet"}
    frame.to_parquet(paths["train"])
    frame[frame.giveaway].to_parquet(paths["giveaway"])
    frame[~frame.giveaway].to_parquet(paths["listening"])
    silence = data / "silence.wav"
    sf.write(silence, np.zeros(int(CLIP_SECONDS * 16_000), dtype=np.float32), 16_000)
    giveaway = frame[frame.giveaway].assign(audio=str(silence.resolve()))
    taught = pd.concat([giveaway, pd.read_parquet(data / "count_train.parquet")], ignore_index=True)
    taught.to_parquet(data / "taught.parquet")
    paths["taught"] = data / "taught.parquet"
    return paths


def warm_start(paths: dict[str, Path], out: Path, seed: int, steps: int) -> Path:
    from r1_aqa.demo import SFT_RECIPE, WINDOW_SECONDS, write_warm_start_data
    from r1_aqa.families.tiny_model import build_tiny_model

    tiny = build_tiny_model(out / "tiny", seed=seed, window_seconds=WINDOW_SECONDS)
    data = write_warm_start_data(paths["listening"], paths["taught"], out / "warm_start.parquet", seed=seed)
    _cli(["sft", "--config", str(SFT_RECIPE), "--model_name_or_path", str(tiny), "--dataset_path", str(data),
          "--output_dir", str(out / "warm"), "--max_steps", str(steps), "--seed", str(seed)])
    return out / "warm"


def label_quality(labelled: Path) -> dict:
    """Precision and recall of "strong" against the ground truth "is a listening item"."""
    import pandas as pd

    frame = pd.read_parquet(labelled)
    strong, listening = frame.audio_contribution == "strong", ~frame.giveaway
    tp = int((strong & listening).sum())
    return {"items": len(frame), "listening": int(listening.sum()), "giveaway": int((~listening).sum()),
            "strong": int(strong.sum()), "weak": int((frame.audio_contribution == "weak").sum()),
            "unlabelled": int(frame.audio_contribution.isna().sum()),
            "precision": round(tp / max(1, int(strong.sum())), 3),
            "recall": round(tp / max(1, int(listening.sum())), 3)}


def grpo(model: Path, data: Path, out: Path, seed: int, steps: int) -> float:
    from r1_aqa.demo import RECIPE
    from r1_aqa.training.train import parse_trl_args, train

    start = time.time()
    trainer = train(*parse_trl_args(["--config", str(RECIPE), "--model_name_or_path", str(model), "--dataset_path",
                                     str(data), "--output_dir", str(out), "--seed", str(seed), "--max_steps",
                                     str(steps), "--logging_steps", str(max(1, steps // 20))]))
    del trainer
    return time.time() - start


def held_out(model: Path, data: Path, out: Path) -> dict:
    """Greedy accuracy on the held-out listening items, with the audio and with silence of each clip's length."""
    from r1_aqa.demo import WINDOW_SECONDS
    from r1_aqa.evaluate.benchmarks import load_items
    from r1_aqa.evaluate.predict import evaluate
    from r1_aqa.evaluate.scoring import score_records

    items = load_items("mmau", data)
    result = {}
    for name, silence in (("audio", False), ("silence", True)):
        records = evaluate(items, model, out / f"{name}.json", benchmark="mmau", data=data, batch_size=50,
                           max_new_tokens=16, max_audio_seconds=WINDOW_SECONDS, silence=silence,
                           overwrite=True)  # a rerun's models are new: redo, never refuse
        result[name] = round(score_records("mmau", records)["total"] / 100, 3)
    result["gap"] = round(result["audio"] - result["silence"], 3)
    return result


def markdown(results: dict) -> str:
    q = results["filter"]
    lines = ["# Weak-to-strong on the tiny model (CPU)", "",
             f"{results['n_train']} training items, {q['giveaway']} with the answer in the question; warm start "
             f"{results['sft_steps']} SFT steps; filter {results['samples']} answers per item and condition "
             f"(temperature {results['temperature']}); GRPO "
             f"{results['grpo_steps']} steps (demo recipe); {results['n_eval']} held-out listening items.", "",
             "## (a) filter labels vs ground truth", "",
             "| items | listening | giveaway | strong | weak | unlabelled | precision(strong) | recall(strong) |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|",
             f"| {q['items']} | {q['listening']} | {q['giveaway']} | {q['strong']} | {q['weak']} | {q['unlabelled']} "
             f"| {q['precision']:.3f} | {q['recall']:.3f} |", "",
             f"Warm start on held-out listening items: accuracy {results['warm']['audio']:.3f}, with silence "
             f"{results['warm']['silence']:.3f}.", "",
             "## (b) GRPO on the strong subset vs on everything (held-out listening items)", "",
             "| GRPO data | seed | train items | accuracy | with silence | listening gap | GRPO seconds |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for run in results["grpo"]:
        lines.append(f"| {run['data']} | {run['seed']} | {run['train_items']} | {run['audio']:.3f} | "
                     f"{run['silence']:.3f} | {run['gap']:+.3f} | {run['seconds']:.0f} |")
    lines += ["", f"Total {results['seconds']:.0f} s on this machine ({os.cpu_count()} CPUs visible)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="bench_w2s")
    parser.add_argument("--n-train", type=int, default=320)
    parser.add_argument("--n-eval", type=int, default=100)
    parser.add_argument("--giveaway-share", type=float, default=0.4)
    parser.add_argument("--sft-steps", type=int, default=300)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--temperature", type=float, default=1.0, help="of the filter's sampled answers")
    parser.add_argument("--grpo-steps", type=int, default=300)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    args = parser.parse_args(argv)

    import pandas as pd

    out = Path(args.out)
    start = time.time()
    paths = make_data(out / "data", args.n_train, args.n_eval, args.giveaway_share, seed=0)
    warm = warm_start(paths, out / "model", seed=0, steps=args.sft_steps)
    labelled = out / "data" / "labelled.parquet"
    _cli(["filter", "--data", str(paths["train"]), "--model", str(warm), "--output", str(labelled), "--samples",
          str(args.samples), "--temperature", str(args.temperature), "--max-new-tokens", "12",
          "--max-audio-seconds", "2", "--batch-size", "50"])
    _cli(["filter", "--data", str(labelled), "--keep", "strong", "--output", str(out / "data" / "strong.parquet")])
    results = {"n_train": args.n_train, "n_eval": args.n_eval, "sft_steps": args.sft_steps, "samples": args.samples,
               "temperature": args.temperature,
               "grpo_steps": args.grpo_steps, "filter": label_quality(labelled),
               "warm": held_out(warm, paths["eval"], out / "eval" / "warm"), "grpo": []}
    print(json.dumps(results["filter"]), flush=True)
    for seed in args.seeds:
        for name, data in (("strong subset", out / "data" / "strong.parquet"), ("unfiltered", paths["train"])):
            run_dir = out / "grpo" / f"{name.split()[0]}-{seed}"
            seconds = grpo(warm, data, run_dir, seed, args.grpo_steps)
            results["grpo"].append({"data": name, "seed": seed, "train_items": len(pd.read_parquet(data)),
                                    "seconds": round(seconds, 1), **held_out(run_dir, paths["eval"], run_dir / "eval")})
            print(json.dumps(results["grpo"][-1]), flush=True)
    results["seconds"] = round(time.time() - start, 1)
    from r1_aqa.files import write_json, write_text

    write_json(out / "results.json", results)
    write_text(out / "results.md", markdown(results))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
