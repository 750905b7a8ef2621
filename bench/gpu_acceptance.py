"""The steps of ``bench/gpu_acceptance.sh``, one process each so that a failing step leaves the others running.

    python bench/gpu_acceptance.py env OUT                       # versions and the device -> OUT/env.json
    python bench/gpu_acceptance.py model OUT [--tiny]            # 7B-shaped random Qwen2-Audio (bf16, on the GPU)
    python bench/gpu_acceptance.py moe-model OUT [--tiny]        # Qwen3-Omni-30B-A3B-shaped thinker, 4 of 48 layers
    python bench/gpu_acceptance.py grpo OUT RECIPE NAME [--tiny] [--max_steps N ...]   # -> OUT/NAME.json
    python bench/gpu_acceptance.py eval OUT [--tiny]             # hf engine items/s -> OUT/eval.json
    python bench/gpu_acceptance.py report OUT                    # OUT/acceptance.md and OUT/acceptance.json

``--tiny`` is the CPU form (``--dry-run`` of the shell script): the tiny Qwen2-Audio in float32, few tokens.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

# CPU overrides of the GPU recipes for the dry run: the same code paths at tiny sizes.
TINY_OVERRIDES = ["--use_cpu", "true", "--bf16", "false", "--dtype", "float32", "--per_device_train_batch_size", "2",
                  "--num_generations", "2", "--max_completion_length", "8"]


def _write(path: Path, obj) -> None:
    from r1_aqa.files import write_json

    write_json(path, obj)


def env(out: Path) -> None:
    import importlib.metadata as md

    import torch

    versions = {}
    for name in ("torch", "transformers", "accelerate", "peft", "trl", "datasets", "pyarrow", "soundfile", "vllm",
                 "deepspeed"):
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:
            versions[name] = None
    device = (f"{torch.cuda.get_device_name()} ({torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB)"
              if torch.cuda.is_available() else f"CPU ({os.cpu_count()} cores)")
    _write(out / "env.json", {"python": platform.python_version(), "device": device, "versions": versions})
    print(f"{device}; " + ", ".join(f"{k} {v}" for k, v in versions.items()))


def model_dir(out: Path, tiny: bool) -> Path:
    return out / ("model-tiny" if tiny else "model-7b")


def build_model(out: Path, tiny: bool) -> None:
    """The tiny model, or a random Qwen2-Audio of the real 7B dimensions built on the GPU in bf16 (no download)."""
    from eval_throughput import build_7b_model

    from r1_aqa.families.tiny_model import build_tiny_model

    start = time.perf_counter()
    path = build_tiny_model(model_dir(out, tiny)) if tiny else build_7b_model(model_dir(out, tiny))
    print(f"built {path} in {time.perf_counter() - start:.0f} s")


# Qwen3-Omni-30B-A3B's thinker (hub config): the MoE LM's and the audio encoder's per-layer dimensions.
MOE_TEXT = dict(hidden_size=2048, num_attention_heads=32, num_key_value_heads=4, head_dim=128, num_experts=128,
                num_experts_per_tok=8, moe_intermediate_size=768, router_aux_loss_coef=0.001,
                rope_parameters={"rope_type": "default", "mrope_section": [24, 20, 20], "rope_theta": 1_000_000.0,
                                 "mrope_interleaved": True})
MOE_AUDIO = dict(d_model=1280, encoder_layers=32, encoder_attention_heads=20, encoder_ffn_dim=5120, output_dim=2048,
                 downsample_hidden_size=480)


def moe_model_dir(out: Path, tiny: bool) -> Path:
    return out / ("moe-tiny" if tiny else "moe-shape")


def build_moe_model(out: Path, tiny: bool, layers: int = 4) -> None:
    """The tiny Qwen3-Omni, or its thinker with Qwen3-Omni-30B-A3B's per-layer shape (128 experts, 8 per token, the
    full audio encoder) but ``layers`` of its 48 LM layers and the tiny vocabulary: random, bf16, built on the GPU.
    Per-layer time and memory scale to the real model; the states of the other 44 layers do not fit one GPU. Both in
    the hub's full layout, which vLLM loads."""
    import torch
    from transformers import Qwen3OmniMoeThinkerConfig

    from r1_aqa.families import get_family
    from r1_aqa.families.tiny_model import build_tiny_model

    start = time.perf_counter()
    path = build_tiny_model(moe_model_dir(out, tiny), family="qwen3-omni", layout="full")
    if not tiny:
        full = json.loads((path / "config.json").read_text())
        config = full["thinker_config"]
        config["text_config"].update(MOE_TEXT, num_hidden_layers=layers)
        config["audio_config"].update(MOE_AUDIO)
        torch.manual_seed(0)
        torch.set_default_dtype(torch.bfloat16)
        with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
            model = get_family("qwen3-omni").model_class()(Qwen3OmniMoeThinkerConfig.from_dict(config)).eval()
        torch.set_default_dtype(torch.float32)
        model.config.dtype = "bfloat16"
        for stale in path.glob("model*.safetensors"):  # the tiny thinker, talker and code2wav
            stale.unlink()
        model.save_pretrained(path)
        get_family("qwen3-omni").write_full_layout(path, full)
    print(f"built {path} in {time.perf_counter() - start:.0f} s")


def make_data(out: Path, n: int = 16) -> Path:
    """A prepared-style parquet of ``n`` synthetic 10-30 s clips with four-option questions."""
    import pandas as pd
    import soundfile as sf
    from eval_throughput import synthetic_clips

    data = out / "data"
    data.mkdir(parents=True, exist_ok=True)
    rows, choices = [], ["one", "two", "three", "four"]
    for i, clip in enumerate(synthetic_clips(n, 10.0, 30.0)):
        path = data / f"clip{i}.wav"
        sf.write(str(path), clip, 16_000)
        rows.append({"id": f"c{i}", "question": f"How many beeps are in clip {i}?", "choices": choices,
                     "solution": f"<answer>{choices[i % 4]}</answer>", "audio": str(path.resolve())})
    pd.DataFrame(rows).to_parquet(data / "train.parquet")
    return data / "train.parquet"


def grpo(out: Path, recipe: str, name: str, tiny: bool, extra: list[str]) -> None:
    """GRPO steps through ``r1-aqa train``'s code path; per-step rollout vs update time and peak memory."""
    import torch

    from r1_aqa.training.train import parse_trl_args, train
    from r1_aqa.training.trainer import AudioGRPOTrainer

    rollouts: list[float] = []
    generate_and_score = AudioGRPOTrainer._generate_and_score_completions

    def timed(self, inputs):  # rollout + old/reference log-probs of one generation batch
        start = time.perf_counter()
        result = generate_and_score(self, inputs)
        rollouts.append(time.perf_counter() - start)
        return result

    AudioGRPOTrainer._generate_and_score_completions = timed
    argv = ["--config", recipe, "--model_name_or_path", str(model_dir(out, tiny)), "--dataset_path",
            str(make_data(out)), "--output_dir", str(out / name), "--save_strategy", "no", "--report_to", "none",
            "--logging_steps", "1", *(TINY_OVERRIDES if tiny else []), *extra]
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    trainer = train(*parse_trl_args(argv))
    total = time.perf_counter() - start
    steps = [e for e in trainer.state.log_history if "step_time" in e]
    args = trainer.args
    _write(out / f"{name}.json", {
        "recipe": recipe, "steps": len(steps), "total_s": total,
        "step_s": [e["step_time"] for e in steps], "rollout_s": rollouts,
        "completions_per_step": args.per_device_train_batch_size * args.gradient_accumulation_steps,
        "max_completion_length": args.max_completion_length, "gradient_checkpointing": args.gradient_checkpointing,
        "peft": bool(trainer.model.peft_config) if hasattr(trainer.model, "peft_config") else False,
        "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None,
        "mean_completion_length": [e.get("completions/mean_length") for e in steps],
    })
    print(f"{name}: {len(steps)} steps, {total:.0f} s")


def eval_throughput(out: Path, tiny: bool) -> None:
    from eval_throughput import bench_engine, synthetic_clips

    from r1_aqa.prompts import format_prompt

    n = 8 if tiny else 64
    prompts = [format_prompt(f"How many beeps are in clip {i}?", ["one", "two", "three", "four"]) for i in range(n)]
    result = bench_engine("hf", model_dir(out, tiny), prompts, synthetic_clips(n, 10.0, 30.0), batch_size=8,
                          max_new_tokens=32)
    result.pop("responses")
    _write(out / "eval.json", dict(result, items=n, max_new_tokens=32))
    print(f"eval hf: {result['items_per_s']:.2f} items/s")


def report(out: Path) -> None:
    """One markdown table and one JSON from what the steps wrote; a step without a result shows its failure."""
    def load(name):
        path = out / f"{name}.json"
        return json.loads(path.read_text()) if path.exists() else None

    status = {}
    for line in (out / "steps.tsv").read_text().splitlines() if (out / "steps.tsv").exists() else []:
        step, code, seconds = line.split("\t")
        status[step] = (int(code), float(seconds))
    env_info, eval_info = load("env") or {}, load("eval")
    rows = []

    def row(step, what, result):
        code, seconds = status.get(step, (None, 0.0))
        state = "not run" if code is None else ("ok" if code == 0 else ("timed out" if code == 124 else f"exit {code}"))
        rows.append((step, what, state, f"{seconds:.0f}", result))

    row("tests", "trainer tests on the tiny models (no vLLM)", (out / "tests.txt").read_text().strip().splitlines()[-1]
        if (out / "tests.txt").exists() and (out / "tests.txt").read_text().strip() else "—")
    row("model", "random Qwen2-Audio, real 7B dimensions, bf16", "—")
    for step, what in (("grpo", "GRPO, faithful recipe per GPU (8 completions, 256 tokens, grad. ckpt.)"),
                       ("dryrun", "1-GPU dry-run recipe (LoRA), 2 steps")):
        r = load(step)
        result = "—" if r is None else (
            f"{len(r['step_s'])} steps; s/step {', '.join(f'{s:.1f}' for s in r['step_s'])}; rollout "
            f"{', '.join(f'{s:.1f}' for s in r['rollout_s'])} s; peak "
            + (f"{r['peak_gib']:.1f} GiB" if r["peak_gib"] is not None else "n/a (CPU)"))
        row(step, what, result)
    shape = "Qwen3-Omni-30B-A3B thinker shape (4 of 48 LM layers), 2 steps"
    for step, what in (("moe", f"GRPO, {shape}, its recipe per GPU, HF generate"),
                       ("moe-vllm", f"GRPO, {shape}, colocated vLLM (expert sync proved before step 1)"),
                       ("moe-lora", f"GRPO, {shape}, the 8-GPU LoRA recipe (attention and experts)")):
        r = load(step)
        row(step, what, "—" if r is None else f"s/step {', '.join(f'{s:.1f}' for s in r['step_s'])}; rollout "
            f"{', '.join(f'{s:.1f}' for s in r['rollout_s'])} s; peak "
            + (f"{r['peak_gib']:.1f} GiB" if r["peak_gib"] is not None else "n/a (CPU)"))
    row("eval", "eval throughput, hf engine, batch 8, 32 new tokens",
        "—" if eval_info is None else f"{eval_info['items_per_s']:.2f} items/s over {eval_info['items']} clips")
    device = env_info.get("device", "?")
    kind = "Dry run (the tiny model, CPU settings)" if device.startswith("CPU") else "GPU acceptance"
    lines = [f"{kind} on {device} (Python {env_info.get('python', '?')}; "
             + ", ".join(f"{k} {v}" for k, v in env_info.get("versions", {}).items() if v) + ")", "",
             "| step | what | status | s | result |", "|---|---|---|---:|---|"]
    lines += [f"| {' | '.join(r)} |" for r in rows]
    from r1_aqa.files import write_text

    write_text(out / "acceptance.md", "\n".join(lines) + "\n")
    _write(out / "acceptance.json", {"env": env_info, "status": {k: {"exit": c, "seconds": s} for k, (c, s) in
                                                                 status.items()},
                                     **{k: load(k) for k in ("grpo", "dryrun", "moe", "moe-vllm", "moe-lora",
                                                             "eval")}})
    print("\n".join(lines))


def main(argv: list[str]) -> int:
    step, out, rest = argv[0], Path(argv[1]), argv[2:]
    tiny = "--tiny" in rest
    rest = [a for a in rest if a != "--tiny"]
    if step == "env":
        env(out)
    elif step == "model":
        build_model(out, tiny)
    elif step == "moe-model":
        build_moe_model(out, tiny)
    elif step == "grpo":
        grpo(out, rest[0], rest[1], tiny, rest[2:])
    elif step == "eval":
        eval_throughput(out, tiny)
    elif step == "report":
        report(out)
    else:
        raise SystemExit(f"unknown step {step!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
