"""Greedy generation engines for evaluation: transformers (``hf``) and vLLM (``vllm``).

Both take the same inputs — the user prompt text (without chat markup) and a float32 16 kHz clip per item (or a
list of clips, e.g. MMAU-Pro's multi-clip items, one audio placeholder each) — build the same chat-template
prompt (audio first), decode greedily and return the raw responses, in order. Neither ever
generates the family's audio placeholder (``<|AUDIO|>``, ``<sound>``, ...), as in training: GRPO rollouts never
sample it, so nothing holds its logit down, and after GRPO it can be the greedy pick (measured on the demo's tiny
model: 150 of 200 held-out answers were ``<answer`` followed by placeholders).
"""

from __future__ import annotations

import copy
import gc
import os
from typing import TYPE_CHECKING, Protocol, Sequence

import numpy as np

if TYPE_CHECKING:
    from transformers import BatchFeature

from ..prompts import chat_prompt

ENGINES = ("hf", "vllm")


class Engine(Protocol):
    """What the prediction loop asks of an engine (``load_engine`` builds one of ``ENGINES``)."""

    def generate(self, prompts: Sequence[str], audios: Sequence[np.ndarray]) -> list[str]:
        """One greedy response per item, in order."""

    def sample(self, prompts: Sequence[str], audios: Sequence[np.ndarray], n: int, temperature: float,
               seeds: Sequence[int]) -> list[list[str]]:
        """``n`` sampled responses per item, each item under its own seed."""

    def close(self) -> None:
        """Free the model (before the next checkpoint of a sweep loads)."""


def greedy_settings(max_new_tokens: int) -> dict:
    """The decoding settings every evaluation uses (recorded in the run's metadata)."""
    return {"do_sample": False, "temperature": 0.0, "num_beams": 1, "max_new_tokens": max_new_tokens}


def item_prompts(processor, prompts: Sequence[str], audios: Sequence, flat: bool = True) -> tuple[list[str], list]:
    """The chat-template texts of items (one audio placeholder per clip; an item's audio is a clip or a list of
    clips) and their clips: flattened in placeholder order, as the processor takes them, or (``flat=False``) as
    given."""
    texts, clips = [], []
    for prompt, audio in zip(prompts, audios, strict=True):
        texts.append(chat_prompt(processor, prompt, clips=len(audio) if isinstance(audio, list) else 1))
        clips += (audio if isinstance(audio, list) else [audio]) if flat else [audio]
    return texts, clips


def hf_batch(processor, texts: Sequence[str], audios: Sequence[np.ndarray]) -> BatchFeature:
    """Processor inputs for a batch of chat-template texts and 16 kHz clips, left-padded.

    ``texts`` are outputs of :func:`chat_prompt`; the processor expands each audio placeholder to the clip's audio
    tokens. No ``max_length``, so the text is never truncated (that could cut audio tokens). Do not pass
    ``truncation=False`` either: the processor hands it to the feature extractor too, which then keeps audio past its
    30 s window. Padding goes to the text alone: Audio Flamingo 3's feature extractor would otherwise pad its clips
    to the longest instead of to the window its encoder's positions need.
    """
    from ..audio import SAMPLE_RATE

    if processor.tokenizer.padding_side != "left":
        raise ValueError("batched generation needs a left-padding processor (models.load_processor sets it)")
    return processor(
        text=list(texts), audio=list(audios), sampling_rate=SAMPLE_RATE, text_kwargs={"padding": True},
        return_tensors="pt",
    )


class HFEngine:
    """transformers ``generate`` in batches of ``batch_size`` (left padding, greedy)."""

    def __init__(self, model_path: str | os.PathLike, max_new_tokens: int = 256, batch_size: int = 8,
                 dtype=None, device: str | None = None):
        import torch

        from ..families import family_of
        from ..families.loading import load_model, load_processor

        self.audio_token = family_of(model_path).audio_token
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.processor = load_processor(model_path)
        self.model = load_model(model_path, dtype=dtype, device=self.device)
        self.dtype = self.model.dtype
        self.batch_size = batch_size
        self.generation_config = self._greedy_config(max_new_tokens)

    def _greedy_config(self, max_new_tokens: int):
        config = copy.deepcopy(self.model.generation_config)
        config.update(do_sample=False, num_beams=1, max_new_tokens=max_new_tokens, temperature=None, top_p=None,
                      top_k=None, repetition_penalty=None, max_length=None)
        if config.pad_token_id is None:
            config.pad_token_id = self.processor.tokenizer.pad_token_id
        config.suppress_tokens = [self.processor.tokenizer.convert_tokens_to_ids(self.audio_token)]
        return config

    def generate(self, prompts: Sequence[str], audios: Sequence[np.ndarray]) -> list[str]:
        """Raw responses (special tokens removed) for user prompts and their clips."""
        import torch

        responses: list[str] = []
        for start in range(0, len(prompts), self.batch_size):
            texts, clips = item_prompts(self.processor, prompts[start : start + self.batch_size],
                                        audios[start : start + self.batch_size])
            inputs = hf_batch(self.processor, texts, clips).to(self.device)
            if "input_features" in inputs:
                inputs["input_features"] = inputs["input_features"].to(self.dtype)
            with torch.inference_mode():
                out = self.model.generate(**inputs, generation_config=self.generation_config)
            new_tokens = out[:, inputs["input_ids"].shape[1] :]
            responses += self.processor.batch_decode(new_tokens, skip_special_tokens=True)
        return responses

    def sample(self, prompts: Sequence[str], audios: Sequence[np.ndarray], n: int, temperature: float,
               seeds: Sequence[int]) -> list[list[str]]:
        """``n`` sampled responses per item (plain temperature sampling, no top-k/top-p). Each item is one
        ``generate`` call of ``n`` sequences under its own seed, so its samples do not depend on the batch."""
        import torch

        config = copy.deepcopy(self.generation_config)
        config.update(do_sample=True, temperature=temperature, num_return_sequences=n)
        responses = []
        for prompt, audio, seed in zip(prompts, audios, seeds, strict=True):
            inputs = hf_batch(self.processor, *item_prompts(self.processor, [prompt], [audio])).to(self.device)
            if "input_features" in inputs:
                inputs["input_features"] = inputs["input_features"].to(self.dtype)
            torch.manual_seed(seed)
            with torch.inference_mode():
                out = self.model.generate(**inputs, generation_config=config)
            responses.append(self.processor.batch_decode(out[:, inputs["input_ids"].shape[1] :],
                                                         skip_special_tokens=True))
        return responses

    def close(self) -> None:
        """Free the model (before loading the next checkpoint of a sweep)."""
        del self.model
        _free_memory()


class VLLMEngine:
    """An in-process vLLM engine (one clip per request, ``multi_modal_data={"audio": (array, 16000)}``)."""

    def __init__(self, model_path: str | os.PathLike, max_new_tokens: int = 256, dtype=None,
                 max_model_len: int = 4096, gpu_memory_utilization: float = 0.85, seed: int = 0, max_clips: int = 1):
        from vllm import LLM, SamplingParams

        from ..families import family_of
        from ..families.loading import default_dtype, load_processor
        from ..families.vllm_audio import configure_cpu_env, on_cpu, without_audio_token

        family = family_of(model_path)
        family.check_vllm(model_path)
        configure_cpu_env()
        engine_kwargs = {"limit_mm_per_prompt": {"audio": max_clips}, **family.vllm_engine_kwargs(model_path)}
        self.audio_token = family.audio_token
        self.expands_audio = family.vllm_expands_audio
        self.processor = load_processor(model_path)
        self.dtype = dtype or default_dtype("cpu" if on_cpu() else "cuda")
        if not on_cpu():
            engine_kwargs["gpu_memory_utilization"] = gpu_memory_utilization
        self.llm = LLM(str(model_path), dtype=str(self.dtype).removeprefix("torch."), enforce_eager=on_cpu(),
                       max_model_len=max_model_len, seed=seed, **engine_kwargs)
        # Token ids are decoded by the processor, as in the hf engine: vLLM's incremental detokenizer holds back a
        # trailing incomplete UTF-8 sequence, which would make equal token ids give different text.
        self.no_audio_token = without_audio_token(self.llm, self.audio_token,
                                                  self.processor.tokenizer.convert_tokens_to_ids(self.audio_token))
        self.sampling = SamplingParams(temperature=0.0, max_tokens=max_new_tokens, detokenize=False,
                                       **self.no_audio_token)

    def generate(self, prompts: Sequence[str], audios: Sequence[np.ndarray]) -> list[str]:
        """Raw responses for user prompts and their clips, in order (vLLM schedules the batch itself)."""
        outputs = self.llm.generate(self._requests(prompts, audios), self.sampling, use_tqdm=False)
        return self.processor.batch_decode([list(o.outputs[0].token_ids) for o in outputs], skip_special_tokens=True)

    def sample(self, prompts: Sequence[str], audios: Sequence[np.ndarray], n: int, temperature: float,
               seeds: Sequence[int]) -> list[list[str]]:
        """``n`` sampled responses per item (plain temperature sampling), each request under its own seed."""
        from vllm import SamplingParams

        requests = self._requests(prompts, audios)
        params = [SamplingParams(n=n, temperature=temperature, seed=seed, max_tokens=self.sampling.max_tokens,
                                 detokenize=False, **self.no_audio_token) for seed in seeds]
        outputs = self.llm.generate(requests, params, use_tqdm=False)
        return [self.processor.batch_decode([list(o.token_ids) for o in out.outputs], skip_special_tokens=True)
                for out in outputs]

    def _requests(self, prompts: Sequence[str], audios: Sequence) -> list[dict]:
        """One request per item (an item's audio is a clip or a list of clips): the chat prompt with one placeholder
        per clip, or, where the family's vLLM takes them expanded, the processor's token ids."""
        from ..audio import SAMPLE_RATE
        from ..families.vllm_audio import audio_request

        texts, clips = item_prompts(self.processor, prompts, audios, flat=False)
        if self.expands_audio:
            return [audio_request(t, c, self.audio_token) for t, c in zip(texts, clips, strict=True)]
        return [audio_request(self.processor(text=[t], audio=c if isinstance(c, list) else [c],
                                             sampling_rate=SAMPLE_RATE)["input_ids"][0].tolist(), c)
                for t, c in zip(texts, clips, strict=True)]

    def close(self) -> None:
        """Shut the engine down and free its memory (before loading the next checkpoint of a sweep)."""
        from vllm.distributed.parallel_state import cleanup_dist_env_and_memory

        self.llm.llm_engine.engine_core.shutdown()
        del self.llm
        cleanup_dist_env_and_memory()
        _free_memory()


def _free_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def load_engine(name: str, model_path: str | os.PathLike, max_new_tokens: int = 256, batch_size: int = 8,
                dtype=None, max_clips: int = 1) -> Engine:
    """Build the ``hf`` or ``vllm`` engine for a model directory (dtype: bf16 on GPU, float32 on CPU by default);
    ``max_clips``: the most clips one item has (vLLM sizes its requests by it)."""
    if name == "hf":
        return HFEngine(model_path, max_new_tokens=max_new_tokens, batch_size=batch_size, dtype=dtype)
    if name == "vllm":
        return VLLMEngine(model_path, max_new_tokens=max_new_tokens, dtype=dtype, max_clips=max_clips)
    raise ValueError(f"unknown engine {name!r}; choose one of {ENGINES}")
