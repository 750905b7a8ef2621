"""vLLM glue for audio prompts, shared by the eval engine and colocated training rollouts (any family: its
placeholder, expanded by vLLM)."""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from .audio import SAMPLE_RATE
from .models import AUDIO_TOKEN

# On a CPU-only machine vLLM needs an explicit KV cache size; in-process engines with eager execution start in
# seconds instead of tens of seconds. Users' own settings win.
CPU_ENV = {
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
    "TORCHDYNAMO_DISABLE": "1",
    # vLLM >= 0.32 AOT-compiles by default, which fails with dynamo disabled; engines built by others (TRL's colocate
    # LLM takes no enforce_eager) then run eager.
    "VLLM_USE_AOT_COMPILE": "0",
}


def on_cpu() -> bool:
    import torch

    return not torch.cuda.is_available()


def configure_cpu_env() -> None:
    """Set vLLM's CPU defaults (unless already set); a no-op on GPU machines."""
    if on_cpu():
        for key, value in CPU_ENV.items():
            os.environ.setdefault(key, value)


def collapse_audio_tokens(token_ids: Sequence[int], audio_token_id: int) -> list[int]:
    """Collapse each run of expanded audio tokens back to one: vLLM expands a single placeholder itself."""
    out: list[int] = []
    for t in token_ids:
        if t == audio_token_id and out and out[-1] == audio_token_id:
            continue
        out.append(int(t))
    return out


def audio_request(prompt: str | Sequence[int], audio: np.ndarray | list[np.ndarray],
                  placeholder: str = AUDIO_TOKEN) -> dict:
    """A vLLM request for one clip, or for several (a list: one audio ``placeholder``, the family's ``audio_token``,
    per clip in order); a text ``prompt`` must hold exactly as many placeholders as clips."""
    key = "prompt" if isinstance(prompt, str) else "prompt_token_ids"
    clips = [(np.asarray(a, dtype=np.float32), SAMPLE_RATE) for a in (audio if isinstance(audio, list) else [audio])]
    if isinstance(prompt, str) and prompt.count(placeholder) != len(clips):
        raise ValueError(f"prompt must hold exactly {len(clips)} {placeholder}, found {prompt.count(placeholder)}")
    return {key: prompt if isinstance(prompt, str) else list(prompt),
            "multi_modal_data": {"audio": clips if isinstance(audio, list) else clips[0]}}
