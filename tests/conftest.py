"""Shared fixtures: offline settings, the tiny models (built once per session), synthesized clips."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_MODE", "disabled")

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from r1_aqa.vllm_audio import configure_cpu_env

configure_cpu_env()


def _shared_data(name: str, env: str) -> Path:
    """A real benchmark's question files: $env, else shared/data/NAME beside the checkout, else the dev path."""
    candidates = [Path(os.environ[env])] if os.environ.get(env) else []
    candidates += [Path(__file__).resolve().parents[2] / "shared" / "data" / name, Path("/work/shared/data") / name]
    return next((c for c in candidates if c.is_dir()), candidates[0])


def _needs(directory: Path, what: str, env: str):
    """Skip where the files are absent (a user's clone); in CI (CI=true) a missing file fails the tests instead."""
    return pytest.mark.skipif(not directory.is_dir() and not os.environ.get("CI"),
                              reason=f"{what} not found (set {env}); looked in {directory}")


MMAU_DIR = _shared_data("mmau", "R1_AQA_MMAU_DIR")
needs_mmau = _needs(MMAU_DIR, "MMAU question files", "R1_AQA_MMAU_DIR")
MMAR_META = _shared_data("mmar", "R1_AQA_MMAR_DIR") / "MMAR-meta.jsonl"
needs_mmar = _needs(MMAR_META.parent, "MMAR-meta.jsonl", "R1_AQA_MMAR_DIR")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny random Qwen2-Audio directory (the same classes and code paths as the 7B model)."""
    from r1_aqa.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-qwen2-audio"), family="qwen2-audio", seed=0)


@pytest.fixture(scope="session")
def tiny_omni_dir(tmp_path_factory):
    """A tiny random Qwen2.5-Omni thinker directory."""
    from r1_aqa.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-omni"), family="qwen2.5-omni", seed=0)


@pytest.fixture(scope="session")
def tiny_af3_dir(tmp_path_factory):
    """A tiny random Audio Flamingo 3 directory (hub weight names, ``<sound>``)."""
    from r1_aqa.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-af3"), family="audioflamingo3", seed=0)


@pytest.fixture(scope="session")
def tiny_qwen3_omni_dir(tmp_path_factory):
    """A tiny random Qwen3-Omni checkpoint in the hub's full layout (MoE thinker with 4 experts, talker, code2wav)."""
    from r1_aqa.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-qwen3-omni"), family="qwen3-omni", layout="full")


@pytest.fixture(scope="session")
def tiny_voxtral_dir(tmp_path_factory):
    """A tiny random Voxtral directory (hub weight names, a tiny ``tekken.json``, ``[AUDIO]``)."""
    from r1_aqa.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-voxtral"), family="voxtral", seed=0)


def write_tone(path, freq: float = 440.0, seconds: float = 1.0, sr: int = 16_000, channels: int = 1, fmt=None):
    """Write a sine tone to ``path`` (any soundfile format) and return the path."""
    t = np.arange(int(seconds * sr)) / sr
    wav = (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    if channels > 1:
        wav = np.stack([wav] * channels, axis=1)
    sf.write(str(path), wav, sr, format=fmt)
    return path


# What TRL's colocated vLLM engine writes into os.environ (a one-process "group" on port 29500). Left there, a later
# test's subprocess started with RANK=1 waits for a rank 0 that never comes.
_DISTRIBUTED_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@pytest.fixture(autouse=True)
def _restore_distributed_env():
    """Each test starts with the distributed variables the session started with."""
    before = {k: os.environ.get(k) for k in _DISTRIBUTED_ENV}
    yield
    for key, value in before.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
