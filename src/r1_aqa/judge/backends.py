"""Where a judge runs: a local transformers model or an OpenAI-compatible HTTP endpoint, for chat replies and for
embeddings. ``load_chat``/``load_embedder`` pick one from a spec: ``http://``/``https://`` URLs (``URL#MODEL`` names
the served model, else the endpoint's first) are endpoints; ``vllm:MODEL`` runs a chat judge on an in-process vLLM
engine; anything else is a model directory or hub id run by transformers.

Endpoints: every request has a timeout; a connection error, a timeout, 429 or a 5xx answer is retried with growing
pauses, ``retries`` times at most; what still fails raises :class:`JudgeUnavailable` (one line naming the endpoint
and the last error), never a silent zero. Another 4xx answer (a wrong model name) fails at once.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

GREEDY = {"temperature": 0.0, "max_new_tokens": 64, "seed": 0}
VLLM_PREFIX = "vllm:"


class JudgeUnavailable(ConnectionError):
    """The judge endpoint kept failing (after its retries) or refused the request."""


class Chat(Protocol):
    def complete(self, chats: Sequence[list[dict]], sampling: dict) -> list[str]:
        """One reply per chat, in order."""


class Embedder(Protocol):
    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """One L2-normalised row per text."""


def is_url(spec: str) -> bool:
    return str(spec).startswith(("http://", "https://"))


def split_url(spec: str) -> tuple[str, str | None]:
    """``(base URL, model name or None)`` of ``URL[#MODEL]``; a URL without a path gets ``/v1``."""
    base, _, model = str(spec).partition("#")
    base = base.rstrip("/")
    if base.count("/") == 2:  # scheme://host[:port] only
        base += "/v1"
    return base, model or None


def load_chat(spec: str, batch_size: int = 8, timeout: float = 120.0, retries: int = 3, dtype: str = "auto") -> Chat:
    if is_url(spec):
        return HTTPChat(spec, concurrency=batch_size, timeout=timeout, retries=retries)
    if str(spec).startswith(VLLM_PREFIX):
        return VLLMChat(str(spec)[len(VLLM_PREFIX):], dtype=dtype)
    return TransformersChat(spec, batch_size=batch_size, dtype=dtype)


def load_embedder(spec: str, batch_size: int = 8, timeout: float = 120.0, retries: int = 3,
                  dtype: str = "auto", trust_remote_code: bool = False) -> Embedder:
    if is_url(spec):
        return HTTPEmbedder(spec, concurrency=batch_size, timeout=timeout, retries=retries)
    return TransformersEmbedder(spec, batch_size=batch_size, dtype=dtype, trust_remote_code=trust_remote_code)


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _tokenizer(path: str | os.PathLike, side: str, flag: str):
    """The tokenizer of a local judge or embedder (checked to exist first), padding on ``side``."""
    from transformers import AutoTokenizer

    from ..checks import check_model_path

    check_model_path(str(path), flag)
    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.padding_side = side
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


class TransformersChat:
    """A local causal LM: the tokenizer's chat template, left-padded batches, greedy unless ``temperature`` > 0."""

    def __init__(self, path: str | os.PathLike, batch_size: int = 8, dtype: str = "auto"):
        from transformers import AutoModelForCausalLM

        self.tokenizer = _tokenizer(path, "left", "--judge-model")
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).eval().to(_device())
        self.batch_size = batch_size

    def complete(self, chats: Sequence[list[dict]], sampling: dict) -> list[str]:
        import copy

        import torch

        config = copy.deepcopy(self.model.generation_config)
        sample = sampling["temperature"] > 0
        config.update(do_sample=sample, max_new_tokens=sampling["max_new_tokens"], num_beams=1, max_length=None,
                      temperature=sampling["temperature"] if sample else None,
                      **({} if sample else {"top_p": None, "top_k": None}))
        if config.pad_token_id is None:
            config.pad_token_id = self.tokenizer.pad_token_id
        replies: list[str] = []
        for start in range(0, len(chats), self.batch_size):
            texts = [self.tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True)
                     for c in chats[start : start + self.batch_size]]
            inputs = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
            inputs = inputs.to(self.model.device)
            if sample:
                torch.manual_seed(sampling["seed"])
            with torch.inference_mode():
                out = self.model.generate(**inputs, generation_config=config)
            replies += self.tokenizer.batch_decode(out[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
        return replies


class VLLMChat:
    """A local causal LM on an in-process vLLM engine (``LLM.chat``: the tokenizer's chat template; greedy unless
    ``temperature`` > 0). On a GPU shared with training, mind its memory share (``gpu_memory_utilization`` 0.3)."""

    def __init__(self, path: str | os.PathLike, dtype: str = "auto", max_model_len: int = 4096):
        from vllm import LLM

        from ..checks import check_model_path
        from ..families.vllm_audio import configure_cpu_env, on_cpu

        check_model_path(str(path), "--judge-model")
        configure_cpu_env()
        extra = {} if on_cpu() else {"gpu_memory_utilization": 0.3}
        self.llm = LLM(str(path), dtype=dtype, enforce_eager=on_cpu(), max_model_len=max_model_len, seed=0,
                       generation_config="vllm", **extra)

    def complete(self, chats: Sequence[list[dict]], sampling: dict) -> list[str]:
        from vllm import SamplingParams

        params = SamplingParams(temperature=sampling["temperature"], max_tokens=sampling["max_new_tokens"],
                                seed=sampling["seed"])
        return [out.outputs[0].text for out in self.llm.chat(list(chats), params, use_tqdm=False)]

    def close(self) -> None:
        from vllm.distributed.parallel_state import cleanup_dist_env_and_memory

        self.llm.llm_engine.engine_core.shutdown()
        del self.llm
        cleanup_dist_env_and_memory()


class TransformersEmbedder:
    """A local text encoder: its own ``encode`` (NV-Embed-v2, empty instruction) or the mask-averaged last hidden
    state, L2-normalised. ``trust_remote_code``: run the model's own code (NV-Embed-v2 ships it)."""

    def __init__(self, path: str | os.PathLike, batch_size: int = 8, dtype: str = "auto",
                 trust_remote_code: bool = False):
        from transformers import AutoModel

        self.tokenizer = _tokenizer(path, "right", "--embed-model")
        self.model = AutoModel.from_pretrained(path, dtype=dtype, trust_remote_code=trust_remote_code)
        self.model = self.model.eval().to(_device())
        self.batch_size = batch_size

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        import torch
        import torch.nn.functional as F

        rows = []
        for start in range(0, len(texts), self.batch_size):
            batch = list(texts[start : start + self.batch_size])
            with torch.inference_mode():
                if hasattr(self.model, "encode"):
                    vectors = self.model.encode(batch, instruction="", max_length=4096)
                else:
                    inputs = self.tokenizer(batch, return_tensors="pt", padding=True).to(self.model.device)
                    hidden = self.model(**inputs).last_hidden_state
                    mask = inputs["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                    vectors = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
                rows.append(F.normalize(vectors.float(), p=2, dim=1).cpu().numpy())
        return np.concatenate(rows) if rows else np.zeros((0, 0), dtype=np.float32)


class _Endpoint:
    """An OpenAI-compatible endpoint with timeouts, bounded retries and a few requests in flight."""

    def __init__(self, spec: str, concurrency: int, timeout: float, retries: int):
        self.base, self.model = split_url(spec)
        self.concurrency, self.timeout, self.retries = max(1, concurrency), timeout, max(1, retries)
        key = os.environ.get("R1_AQA_JUDGE_API_KEY") or os.environ.get("OPENAI_API_KEY")
        self.headers = {"Authorization": f"Bearer {key}"} if key else {}

    def request(self, method: str, route: str, payload: dict | None = None) -> dict:
        import requests

        url = f"{self.base}/{route}"
        error = ""
        for attempt in range(self.retries):
            if attempt:
                time.sleep(min(0.5 * 2 ** (attempt - 1), 8.0))
            try:
                answer = requests.request(method, url, json=payload, headers=self.headers, timeout=self.timeout)
            except requests.RequestException as e:
                error = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
                continue
            if answer.status_code == 200:
                return answer.json()
            error = f"HTTP {answer.status_code}: {answer.text.strip()[:200]}"
            if answer.status_code != 429 and answer.status_code < 500:
                raise JudgeUnavailable(f"judge endpoint {url} refused the request ({error})")
        raise JudgeUnavailable(f"judge endpoint {url} failed {self.retries} times in a row (last: {error}); is the "
                               "server up?")

    def model_name(self) -> str:
        """The model to ask: the one named in the spec, else the endpoint's first."""
        if self.model is None:
            served = self.request("GET", "models").get("data") or []
            if not served:
                raise JudgeUnavailable(f"judge endpoint {self.base}/models lists no model")
            self.model = served[0]["id"]
        return self.model

    def each(self, work, items: Sequence) -> list:
        with ThreadPoolExecutor(self.concurrency) as pool:
            return list(pool.map(work, items))


class HTTPChat(_Endpoint):
    """Chat completions from an OpenAI-compatible endpoint (``vllm serve`` on loopback, or a hosted judge)."""

    def complete(self, chats: Sequence[list[dict]], sampling: dict) -> list[str]:
        model = self.model_name()

        def one(chat: list[dict]) -> str:
            payload = {"model": model, "messages": chat, "temperature": sampling["temperature"],
                       "max_tokens": sampling["max_new_tokens"], "seed": sampling["seed"]}
            return self.request("POST", "chat/completions", payload)["choices"][0]["message"]["content"] or ""

        return self.each(one, chats)


class HTTPEmbedder(_Endpoint):
    """Embeddings from an OpenAI-compatible ``/embeddings`` route, L2-normalised here."""

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        model = self.model_name()
        batches = [list(texts[i : i + 32]) for i in range(0, len(texts), 32)]

        def one(batch: list[str]) -> list[list[float]]:
            data = self.request("POST", "embeddings", {"model": model, "input": batch})["data"]
            return [row["embedding"] for row in sorted(data, key=lambda r: r["index"])]

        rows = np.asarray([v for vectors in self.each(one, batches) for v in vectors], dtype=np.float32)
        return rows / np.clip(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12, None)


def model_identity(spec: str) -> tuple[str, str | None]:
    """``(name, local directory or None)``: a URL as given, a local directory resolved (``vllm:`` kept: another
    engine is another judge), a hub id as given."""
    from ..checks import looks_local

    spec = str(spec)
    engine = VLLM_PREFIX if spec.startswith(VLLM_PREFIX) else ""
    path = spec[len(engine):]
    if not is_url(spec) and (Path(path).expanduser().is_dir() or looks_local(path)):
        resolved = str(Path(path).expanduser().resolve())
        return engine + resolved, resolved
    return spec, None
