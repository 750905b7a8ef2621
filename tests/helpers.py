"""What several test modules share: paths, recipes, data and trainer builders, run helpers, layout checks."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
import soundfile as sf
from safetensors import safe_open

from r1_aqa.training.rewards import accuracy_reward, format_reward

if TYPE_CHECKING:
    import torch

# conftest imports this module: torch, pandas and the package's heavy modules load inside the functions that use them.
HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# Where make_trainer trains: bench/gpu_acceptance.sh runs these tests with R1_AQA_TEST_DEVICE=cuda.
DEVICE = os.environ.get("R1_AQA_TEST_DEVICE", "cpu")
RECIPE = str(ROOT / "examples/r1_aqa/recipes/tiny_grpo.yaml")
SFT_RECIPE = str(ROOT / "examples/r1_aqa/recipes/tiny_sft.yaml")
# The fixture of each family's tiny model.
FIXTURES = {"qwen2-audio": "tiny_model_dir", "qwen2.5-omni": "tiny_omni_dir", "audioflamingo3": "tiny_af3_dir",
            "qwen3-omni": "tiny_qwen3_omni_dir", "voxtral": "tiny_voxtral_dir"}


def _checkouts() -> list[Path]:
    """This checkout, and for a git worktree also its main checkout (``.git`` is then a file naming
    ``MAIN/.git/worktrees/NAME``)."""
    found = [ROOT]
    git = ROOT / ".git"
    if git.is_file() and git.read_text().startswith("gitdir:"):
        found.append(Path(git.read_text().split(":", 1)[1].strip()).parents[2])
    return found


def _shared_data(name: str, env: str) -> Path:
    """A real benchmark's question files: $env, else shared/data/NAME beside the checkout (or its main checkout)."""
    candidates = [Path(os.environ[env])] if os.environ.get(env) else []
    candidates += [root.parent / "shared" / "data" / name for root in _checkouts()]
    return next((c for c in candidates if c.is_dir()), candidates[0])


def _needs(directory: Path, what: str, env: str):
    """Skip where the files are absent (a user's clone); in CI (CI=true) a missing file fails the tests instead."""
    return pytest.mark.skipif(not directory.is_dir() and not os.environ.get("CI"),
                              reason=f"{what} not found (set {env}); looked in {directory}")


MMAU_DIR = _shared_data("mmau", "R1_AQA_MMAU_DIR")
needs_mmau = _needs(MMAU_DIR, "MMAU question files", "R1_AQA_MMAU_DIR")
MMAR_META = _shared_data("mmar", "R1_AQA_MMAR_DIR") / "MMAR-meta.jsonl"
needs_mmar = _needs(MMAR_META.parent, "MMAR-meta.jsonl", "R1_AQA_MMAR_DIR")


def write_tone(path, freq: float = 440.0, seconds: float = 1.0, sr: int = 16_000, channels: int = 1, fmt=None):
    """Write a sine tone to ``path`` (any soundfile format) and return the path."""
    t = np.arange(int(seconds * sr)) / sr
    wav = (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    if channels > 1:
        wav = np.stack([wav] * channels, axis=1)
    sf.write(str(path), wav, sr, format=fmt)
    return path


# Training: a tone dataset, a GRPO trainer on a tiny model, and what the trainer tests inspect.


def make_parquet(tmp_path, n: int = 4):
    """A prepared-style parquet of ``n`` tone questions: distinct tone per row, two clip lengths."""
    import pandas as pd

    rows = []
    for i in range(n):
        seconds = 1.0 if i % 2 == 0 else 1.5
        path = write_tone(tmp_path / f"tone{i}.wav", freq=300.0 + 150.0 * i, seconds=seconds)
        choices = ["low", "high", "middle"]
        rows.append(dict(
            id=f"q{i}", question=f"Which tone is number {i}?", choices=choices, answer=choices[i % 3],
            answer_idx=i % 3, solution=f"<answer>{choices[i % 3]}</answer>", prompt="", audio=str(path.resolve()),
            duration_s=seconds, sample_rate=16_000, dataset_name="synthetic",
        ))
    out = tmp_path / "train.parquet"
    pd.DataFrame(rows).to_parquet(out)
    return out


def length_reward(completions, **kwargs) -> list[float]:
    """A reward that varies within every group, so advantages (and gradients) are never all zero."""
    return [float(len(c[-1]["content"]) % 5) for c in completions]


def make_trainer(tiny_model_dir, parquet, out_dir, trainer_kwargs: dict | None = None, model=None, **overrides):
    """An AudioGRPOTrainer on ``tiny_model_dir`` (or ``model``) and ``parquet``: 2 steps, ``AudioGRPOConfig`` settings
    ``overrides`` (TRL's and the audio options), further trainer arguments ``trainer_kwargs`` (e.g. ``peft_config``)."""
    from r1_aqa.families.loading import load_model
    from r1_aqa.training.stages import build_dataset
    from r1_aqa.training.trainer import AudioGRPOTrainer
    from r1_aqa.training.trl_configs import AudioGRPOConfig

    settings = dict(
        output_dir=str(out_dir), per_device_train_batch_size=2, num_generations=2, max_completion_length=6,
        learning_rate=1e-3, beta=0.04, max_steps=2, logging_steps=1, save_strategy="no", report_to="none",
        use_cpu=DEVICE == "cpu", bf16=False, gradient_checkpointing=False, seed=0, dataloader_num_workers=0,
    )
    settings.update(overrides)
    model = (model or load_model(tiny_model_dir, device=DEVICE)).train()
    return AudioGRPOTrainer(
        model=model, reward_funcs=[accuracy_reward, format_reward, length_reward], args=AudioGRPOConfig(**settings),
        train_dataset=build_dataset(str(parquet), "default"), **(trainer_kwargs or {}),
    )


# A generation batch of 8 rows (2 prompts x 4 completions) split by TRL, after its shuffle, into 2 micro-batches of
# 4: every micro-batch mixes rows of both groups. num_iterations 2 makes TRL compute the old log-probs as well.
SPLIT = dict(per_device_train_batch_size=4, num_generations=4, steps_per_generation=2, gradient_accumulation_steps=2,
             num_iterations=2)


def record_step(trainer) -> dict:
    """Train one optimizer step; return the generation batch, generate's logits, each micro-batch's loss and the
    gradients."""
    from transformers import TrainerCallback

    record: dict = {"loss": [], "generate": []}
    generate, compute_loss = trainer._generate_and_score_completions, trainer.compute_loss

    def generated(inputs):
        record["batch"] = out = generate(inputs)
        return out

    def loss(*args, **kwargs):
        value = compute_loss(*args, **kwargs)
        record["loss"].append(value.detach().clone())
        return value

    class Grads(TrainerCallback):
        def on_pre_optimizer_step(self, args, state, control, **kwargs):
            record["grads"] = {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None}

    def generate_step(module, args, kwargs, output):
        if kwargs.get("use_cache") is not False:  # HF generate, not a log-prob pass
            record["generate"].append(output.logits.detach().clone())

    trainer._generate_and_score_completions, trainer.compute_loss = generated, loss
    trainer.model.register_forward_hook(generate_step, with_kwargs=True)
    trainer.add_callback(Grads())
    trainer.train()
    return record


def audio_params(model) -> dict[str, torch.Tensor]:
    """The audio encoder's and projector's tensors (names with ``audio_tower`` or ``multi_modal_projector``)."""
    names = ("audio_tower", "multi_modal_projector")
    return {n: p.detach().clone() for n, p in model.named_parameters() if any(k in n for k in names)}


def unused_audio_params(trainer) -> set[str]:
    """Trainable audio parameters the model's own forward never reads (no gradient from a plain forward/backward with
    audio)."""
    from r1_aqa.audio import load_audio

    row = trainer.train_dataset[0]
    processor, model = trainer.processing_class, trainer.model
    text = processor.apply_chat_template([row["prompt"]], add_generation_prompt=True, tokenize=False)[0]
    enc = processor(text=[text], audio=[load_audio(row["audio"])], sampling_rate=16_000, return_tensors="pt")
    model.zero_grad()
    model(**enc).logits.float().pow(2).mean().backward()
    unused = {n for n, p in model.named_parameters() if n in audio_params(model) and p.requires_grad and p.grad is None}
    model.zero_grad()
    return unused


def favour_token(model, token_id: int) -> None:
    """Rig the LM head: logits +-1e3 * h.w for ``token_id`` and token 0, 0 elsewhere (half the steps pick it)."""
    import torch

    head = model.get_output_embeddings().weight
    with torch.no_grad():
        direction = torch.randn(head.size(1), generator=torch.Generator().manual_seed(0))
        head.zero_()
        head[token_id] = 1e3 * direction
        head[0] = -1e3 * direction


def audio_token_counts(trainer) -> tuple[list[int], set[int]]:
    """Record the <|AUDIO|> count of every row of every log-prob forward; also return the counts prompts have."""
    from r1_aqa.audio import load_audio

    audio_id, processor = trainer.audio_token_id, trainer.processing_class
    counts: list[int] = []
    def hook(module, args, kwargs):
        if kwargs.get("use_cache") is False:  # TRL's log-prob passes
            counts.extend((kwargs["input_ids"] == audio_id).sum(1).tolist())

    trainer.model.register_forward_pre_hook(hook, with_kwargs=True)
    prompt_counts = set()
    for row in trainer.train_dataset:
        text = processor.apply_chat_template([row["prompt"]], add_generation_prompt=True, tokenize=False)[0]
        ids = processor(text=[text], audio=[load_audio(row["audio"])], sampling_rate=16_000)["input_ids"][0]
        prompt_counts.add(sum(int(t == audio_id) for t in ids))
    return counts, prompt_counts


def sft_argv(model, parquet, out, *extra: str) -> list[str]:
    """``r1-aqa sft`` flags (after the command) for the tiny SFT recipe, saving nothing but the final model."""
    return ["--config", SFT_RECIPE, "--model_name_or_path", str(model), "--dataset_path", str(parquet),
            "--output_dir", str(out), "--save_strategy", "no", *extra]


# Dynamic sampling: a reward with one all-equal group, a trainer with it, and a record of its rounds.

PLANTED = "q0"  # the prompt whose completions all score alike


def planted_reward(completions: list, id: list[str], **kwargs) -> list[float]:  # noqa: A002 (the dataset's column)
    """1.0 for every completion of the planted prompt; otherwise each completion's position (never equal in a group)."""
    return [1.0 if i == PLANTED else float(k) for k, i in enumerate(id)]


def dynamic_sampling_trainer(tiny_model_dir, tmp_path, max_extra: float = 1.0, **overrides):
    """A dynamic-sampling AudioGRPOTrainer with ``planted_reward`` on 4 prompts: one step of 8 rows."""
    from r1_aqa.families.loading import load_model
    from r1_aqa.training.stages import build_dataset
    from r1_aqa.training.trainer import AudioGRPOTrainer
    from r1_aqa.training.trl_configs import AudioGRPOConfig

    settings = dict(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=8, num_generations=2, max_completion_length=6,
        learning_rate=1e-3, beta=0.04, max_steps=1, logging_steps=1, save_strategy="no", report_to="none",
        use_cpu=DEVICE == "cpu", bf16=False, gradient_checkpointing=False, seed=0, dataloader_num_workers=0,
        dynamic_sampling=True, dynamic_sampling_max_extra=max_extra,
    )
    settings.update(overrides)
    return AudioGRPOTrainer(
        model=load_model(tiny_model_dir, device=DEVICE).train(), reward_funcs=[planted_reward],
        args=AudioGRPOConfig(**settings), train_dataset=build_dataset(str(make_parquet(tmp_path, n=4)), "default"),
    )


def record_dynamic_sampling(trainer) -> tuple[list[list[dict]], list[dict]]:
    """Wrap the trainer's one-round generation and the dynamic sampling around it: (rounds per generation, batches)."""
    rounds, batches = [], []
    score = trainer._generate_and_score_audio
    generate = trainer._dynamic_sampling.generate

    def recorded_score(inputs):
        out = score(inputs)
        rounds[-1].append({**out, "ids": [x["id"] for x in inputs]})
        return out

    def recorded_generate(inputs, _score):
        rounds.append([])
        batch = generate(inputs, recorded_score)
        batches.append(batch)
        return batch

    trainer._dynamic_sampling.generate = recorded_generate
    return rounds, batches


# vLLM: greedy continuations from the colocated engine and the policy, and seeded weight changes.


def vllm_and_hf_greedy(trainer, prompt, clip, n: int = 8):
    """vLLM's and the HF policy's greedy continuations of one audio prompt, and vLLM's prompt ids."""
    import torch
    from vllm import SamplingParams

    from r1_aqa.families.vllm_audio import audio_request, collapse_audio_tokens, without_audio_token

    processor, audio_id, llm = trainer.processing_class, trainer.audio_token_id, trainer.vllm_generation.llm
    text = processor.apply_chat_template([prompt], add_generation_prompt=True, tokenize=False)[0]
    enc = processor(text=[text], audio=[clip], sampling_rate=16_000, return_tensors="pt")
    params = SamplingParams(temperature=0.0, max_tokens=n, **without_audio_token(llm, processor.audio_token, audio_id))
    ids = enc["input_ids"][0].tolist()
    request = audio_request(collapse_audio_tokens(ids, audio_id) if trainer.family.vllm_expands_audio else ids, clip)
    out = llm.generate([request], sampling_params=params, use_tqdm=False)[0]
    model = trainer.accelerator.unwrap_model(trainer.model).eval()
    with torch.no_grad():
        hf = model.generate(**enc, do_sample=False, max_new_tokens=n, suppress_tokens=[audio_id])
    model.train()
    return list(out.outputs[0].token_ids), hf[0, enc["input_ids"].size(1):].tolist(), out, enc


def engine_tensors(llm) -> dict[str, torch.Tensor]:
    """A copy of every parameter of an in-process vLLM engine's model, as its kernels read them (e.g. repacked)."""

    def copy(worker):
        return {n: p.detach().clone() for n, p in worker.model_runner.model.named_parameters()}

    return llm.collective_rpc(copy)[0]


def perturb_params(model, part: str, scale: float, seed: int) -> None:
    """Add seeded noise to every trainable parameter whose name contains ``part`` (and to nothing else)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if part in name and param.requires_grad:
                param.add_(scale * torch.randn(param.shape, generator=generator, dtype=param.dtype))


# Saved checkpoints: weight names and the hub's full layouts of the Omni models.


def weight_names(folder) -> list[str]:
    """The tensor names of the HF-format weight files in ``folder`` (``model*.safetensors``; a Voxtral checkpoint
    also holds the Mistral format), file by file in name order."""
    names = []
    for file in sorted(folder.glob("model*.safetensors")):
        with safe_open(str(file), "pt") as f:
            names += list(f.keys())
    return names


def assert_omni_full_layout(folder) -> None:
    """``folder`` is a Qwen2.5-Omni checkpoint in the hub's full layout, holding thinker weights only."""
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "qwen2_5_omni" and config["architectures"] == ["Qwen2_5OmniModel"]
    assert config["enable_audio_output"] is False  # the speech parts were not trained
    assert config["thinker_config"]["model_type"] == "qwen2_5_omni_thinker"
    assert {"talker_config", "token2wav_config"} <= set(config)
    names = weight_names(folder)
    assert names and all(n.startswith("thinker.") for n in names), [n for n in names if not n.startswith("thinker.")]


def assert_qwen3_omni_full_layout(folder) -> None:
    """``folder`` is a Qwen3-Omni checkpoint in the hub's full layout: thinker weights only, experts under hub names."""
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "qwen3_omni_moe"
    assert config["architectures"] == ["Qwen3OmniMoeForConditionalGeneration"]
    assert config["enable_audio_output"] is False  # the speech parts were not trained
    assert config["thinker_config"]["model_type"] == "qwen3_omni_moe_thinker"
    names = weight_names(folder)
    assert names and all(n.startswith("thinker.") for n in names), [n for n in names if not n.startswith("thinker.")]
    assert any(".mlp.experts.3.down_proj." in n for n in names)  # the hub's per-expert names


# Eval: the CLI on an MMAU-format question file (the ``mmau_file`` fixture), and waiting on a running one.

N_ITEMS = 6  # questions in mmau_file
EVAL_TOKENS = "16"  # new tokens per item: the tiny model rarely stops early, so every item decodes this many


def eval_argv(mmau_file: Path, model: Path, output: Path, *extra: str) -> list[str]:
    """``r1-aqa eval`` on the MMAU file ``mmau_file`` with ``model``, writing ``output``."""
    return ["eval", "--benchmark", "mmau", "--data", str(mmau_file), "--model", str(model), "--output", str(output),
            "--max-new-tokens", EVAL_TOKENS, *extra]


def run_eval(mmau_file: Path, model: Path, output: Path, *extra: str) -> list[dict]:
    """Run ``eval_argv`` in this process, assert exit 0, and return the predictions."""
    from r1_aqa.cli import main

    assert main(eval_argv(mmau_file, model, output, *extra)) == 0
    return json.loads(output.read_text())


def wait_for_lines(proc: subprocess.Popen, path: Path, lines: int, seconds: float = 240) -> None:
    """Wait until ``path`` holds ``lines`` lines, ``proc`` ends, or ``seconds`` pass."""
    deadline = time.time() + seconds
    while time.time() < deadline and proc.poll() is None:
        if path.exists() and path.read_text().count("\n") >= lines:
            return
        time.sleep(0.02)


# Multi-process runs: a free port, the children's environment, a launch to a log file.


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env(**extra: str) -> dict[str, str]:
    """This environment for a launched child: DeepSpeed on CPU, one thread, tests/ on PYTHONPATH, this venv's tools."""
    env = dict(os.environ, DS_ACCELERATOR="cpu", OMP_NUM_THREADS="1", **extra)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(HERE), env.get("PYTHONPATH")) if p)
    env["PATH"] = os.pathsep.join((str(Path(sys.executable).parent), env["PATH"]))  # this venv's accelerate, torchrun
    return env


def run(cmd: list[str], env: dict[str, str], log: Path) -> None:
    """Run ``cmd`` from the checkout's root with its output in ``log``; assert exit 0 (the log's tail if not)."""
    with log.open("w") as f:
        proc = subprocess.run(cmd, env=env, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, f"exit {proc.returncode}: {' '.join(cmd)}\n{log.read_text()[-4000:]}"
