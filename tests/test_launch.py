"""The shipped launch script refuses unusable settings before anything starts (its runs: test_distributed.py)."""

from __future__ import annotations

import os
import subprocess

import pytest
from helpers import ROOT

LAUNCH = ROOT / "examples/r1_aqa/run_grpo_r1_aqa_qwen2_audio_7b.sh"


def launch(*args: str, **env: str) -> subprocess.CompletedProcess:
    # PATH without accelerate: a check that let the launch through fails with "command not found" (127), not 2.
    full = dict(os.environ, PATH="/usr/bin:/bin", **env)
    return subprocess.run(["bash", str(LAUNCH), "--max_steps", "1", *args], env=full, capture_output=True,
                          text=True)


@pytest.mark.parametrize(("env", "message"), [
    (dict(GPUS_PER_NODE="3"), "TOTAL_COMPLETIONS=128 is not a multiple of PER_DEVICE x GPUs = 24"),
    (dict(GPUS_PER_NODE="2", NNODES="3"), "is not a multiple of PER_DEVICE x GPUs = 48"),
    (dict(GPUS_PER_NODE="0"), "GPUS_PER_NODE=0 must be a positive integer"),
    (dict(PER_DEVICE="eight"), "PER_DEVICE=eight must be a positive integer"),
    (dict(NNODES="2", NODE_RANK="2"), "NODE_RANK=2 must be an integer in [0, NNODES=2)"),
    (dict(RECIPE="no/such/recipe.yaml"), "no/such/recipe.yaml: no such file"),
])
def test_launch_script_rejects_bad_settings(env, message):
    proc = launch(**env)
    assert proc.returncode == 2 and message in proc.stderr, (proc.returncode, proc.stderr)


@pytest.mark.parametrize(("args", "code", "message"), [
    # the flag is PER_DEVICE: 48 x 8 GPUs does not divide the global batch of 128
    (["--per_device_train_batch_size", "48"], 2, "is not a multiple of PER_DEVICE x GPUs = 384"),
    (["--per_device_train_batch_size=48"], 2, "is not a multiple of PER_DEVICE x GPUs = 384"),
    (["--per_device_train_batch_size", "0"], 2, "PER_DEVICE=0 must be a positive integer"),
    (["--per_device_train_batch_size", "16"], 127, "accelerate: command not found"),  # 16 x 8 x 1 step = 128
    (["--gradient_accumulation_steps", "4"], 2, "set TOTAL_COMPLETIONS (and PER_DEVICE) instead"),
])
def test_batch_flags_never_change_the_global_batch_silently(args, code, message):
    proc = launch(*args)
    assert proc.returncode == code and message in proc.stderr, (proc.returncode, proc.stderr)


@pytest.mark.parametrize("script", sorted(str(p.relative_to(ROOT)) for p in [
    *ROOT.glob("examples/r1_aqa/*.sh"), *ROOT.glob("bench/*.sh"), *ROOT.glob("scripts/*.sh")]))
def test_shell_scripts_parse(script):
    proc = subprocess.run(["bash", "-n", str(ROOT / script)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_gpu_acceptance_rejects_unknown_arguments():
    proc = subprocess.run(["bash", str(ROOT / "bench/gpu_acceptance.sh"), "--fast"], capture_output=True, text=True)
    assert proc.returncode == 2 and "usage: bash bench/gpu_acceptance.sh [--dry-run]" in proc.stderr
