"""Shared fixtures: offline settings, the tiny models (built once per session), an MMAU-format question file."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_MODE", "disabled")

import gc
import json
import sys
from pathlib import Path

import pytest
from helpers import N_ITEMS, write_tone

from r1_aqa.families.vllm_audio import configure_cpu_env

configure_cpu_env()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny random Qwen2-Audio directory (the same classes and code paths as the 7B model)."""
    from r1_aqa.families.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-qwen2-audio"), family="qwen2-audio", seed=0)


@pytest.fixture(scope="session")
def tiny_judge_dir(tmp_path_factory):
    """A tiny random text LM standing in for an LLM judge and an embedder (`r1-aqa tiny-judge`)."""
    from r1_aqa.judge.tiny import build_tiny_judge

    return build_tiny_judge(tmp_path_factory.mktemp("tiny-judge"), seed=0)


@pytest.fixture(scope="session")
def tiny_omni_dir(tmp_path_factory):
    """A tiny random Qwen2.5-Omni thinker directory."""
    from r1_aqa.families.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-omni"), family="qwen2.5-omni", seed=0)


@pytest.fixture(scope="session")
def tiny_af3_dir(tmp_path_factory):
    """A tiny random Audio Flamingo 3 directory (hub weight names, ``<sound>``)."""
    from r1_aqa.families.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-af3"), family="audioflamingo3", seed=0)


@pytest.fixture(scope="session")
def tiny_qwen3_omni_dir(tmp_path_factory):
    """A tiny random Qwen3-Omni checkpoint in the hub's full layout (MoE thinker with 4 experts, talker, code2wav)."""
    from r1_aqa.families.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-qwen3-omni"), family="qwen3-omni", layout="full")


@pytest.fixture(scope="session")
def tiny_voxtral_dir(tmp_path_factory):
    """A tiny random Voxtral directory (hub weight names, a tiny ``tekken.json``, ``[AUDIO]``)."""
    from r1_aqa.families.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-voxtral"), family="voxtral", seed=0)


@pytest.fixture(scope="module")
def mmau_file(tmp_path_factory) -> Path:
    """An MMAU-format question file with its clips under ``test-mini-audios/`` (tones of 0.4 s to 32 s)."""
    root = tmp_path_factory.mktemp("mmau")
    (root / "test-mini-audios").mkdir()
    records = []
    for i in range(N_ITEMS):
        item_id = f"item-{i}"
        seconds = 32.0 if i == N_ITEMS - 1 else 0.4 + 0.7 * i  # the last one past Qwen2-Audio's 30 s window
        write_tone(root / "test-mini-audios" / f"{item_id}.wav", freq=220.0 * (i + 1), seconds=seconds)
        records.append({
            "id": item_id, "audio_id": f"./test-mini-audios/{item_id}.wav",
            "question": "How many beeps are there?" if i % 2 else "Which sound is heard in the audio clip?",
            "choices": ["one", "two", "three", "four"][: 2 + i % 3], "answer": "two", "dataset": "synth",
            "task": ["sound", "music", "speech"][i % 3], "split": "test-mini", "category": "Perception",
            "sub-category": "Counting", "difficulty": ["easy", "medium", "hard"][i % 3],
        })
    path = root / "questions.json"
    path.write_text(json.dumps(records, indent=1))
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


@pytest.fixture(autouse=True)
def _vllm_engines_end_with_their_test():
    """Every vLLM engine a test started is shut down when the test ends, as at the end of a process, while the
    process group its groups hang on still exists.

    Left running (an engine freezes the collector's view when it starts, and a frame that outlives its test can
    hold a trainer), an engine keeps its groups in vLLM's module globals; a later in-process run ends the process
    group under them (``end_training``) and every later engine in the session fails ("not initialized in the world
    group map"). No fixture keeps an engine across tests.
    """
    yield
    state = sys.modules.get("vllm.distributed.parallel_state")
    if state is None or state._WORLD is None:
        return
    from vllm.v1.engine.core_client import InprocClient

    gc.unfreeze()
    for client in [o for o in gc.get_objects() if isinstance(o, InprocClient)]:
        client.shutdown()  # its teardown ends vLLM's groups and the process group it made
    gc.collect()
