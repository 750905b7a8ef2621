"""Each prompt once per group in the log-prob passes: the rows of a GRPO group share one packed row.

A log-prob pass gets rows of prompt (left-padded) + completion (right-padded), TRL's layout; every completion of a
group repeats the same prompt (~800 tokens for a 30 s clip against ~30-128 answer tokens). ``pack`` turns a chunk of
rows into one packed row per group (rows with the same prompt tokens and clip): the prompt once, then each
completion up to its last kept token, right-padded to the longest packed row (a tiny model with long answers, whose
dense attention over the packed row would cost more than the prompt copies it saves, packs fewer completions per
row: ``completions_per_row``). A 4D attention mask lets each completion token see the prompt and its own
completion's earlier tokens, nothing else (a masked token of the unshared layout stays masked as a key). Every packed
token keeps the position id it has in the unshared layout (``Family.position_ids``: the column index for a plain
RoPE LM, the multimodal RoPE index of the Omni thinkers), so each token's attention scores and values are the
unshared pass's, up to floating-point rounding (Prefix Grouper, arXiv 2506.05433: exact under causal attention,
gradients included).

The LM head then reads, for completion token j of a row, the hidden state of its token j - 1 (j = 0: the prompt's
last token), ``B x C`` positions as in the unshared pass. MoE: the router aux loss is the model's own
(``Family.router_aux_loss``) over the routers' logits of the packed tokens, each prompt token weighted by the rows of
its group, each kept completion token by 1 and padding by 0: the unshared pass's token weights.

Exact only where the attention honours an arbitrary 4D mask over all layers: ``blocker`` names what is not
(flash-attention kernels, sliding-window layers).

Rollouts with HF generate (``prefill_once``): the prefill runs one row per group and its KV cache and last logits
are gathered back to one row per completion before the first token is sampled; the decode steps, the sampling and
its random numbers are generate's own, unchanged.
"""

from __future__ import annotations

import functools
from contextlib import contextmanager
from dataclasses import dataclass

import torch

# Attention implementations that take a custom 4D mask as given (transformers' masking_utils returns it as is), and
# whether theirs is additive (eager adds it to the scores) or boolean (sdpa).
MASKED_ATTENTION = {"sdpa": False, "eager": True}


def blocker(config) -> str | None:
    """Why a shared-prompt pass cannot be exact for a model with ``config``, or None."""
    text = config.get_text_config()
    impl = text._attn_implementation
    if impl not in MASKED_ATTENTION:
        return f"the {impl} attention takes no custom 4D mask (use sdpa or eager)"
    if "sliding_attention" in (getattr(text, "layer_types", None) or []):
        return "the language model has sliding-window layers, which a packed row would widen"
    return None


def additive_mask_dtype(config, dtype: torch.dtype) -> torch.dtype | None:
    """The dtype of an additive mask for the model's attention (eager), None where it takes a boolean one (sdpa)."""
    return dtype if MASKED_ATTENTION[config.get_text_config()._attn_implementation] else None


@dataclass
class Packing:
    """One packed row per group of a chunk of ``B`` rows with completions of ``C`` tokens (see the module docstring).

    ``source``: per packed token, its flat index ``row * L + column`` in the unshared ``[B, L]`` batch (0 for the
    padding); ``reads``: per completion token, the flat index into ``[G * T]`` of the hidden state that predicts it;
    ``scored``: which of those the packing holds (a row's tokens after its last kept one get 0).
    """

    first: torch.Tensor  # [G] one row of each packed row's group: its prompt, clip and audio features
    input_ids: torch.Tensor  # [G, T]
    source: torch.Tensor  # [G, T]
    segment: torch.Tensor  # [G, T] 0: prompt, s > 0: the group's s-th completion, -1: padding
    keys: torch.Tensor  # [G, T] bool: attended to (a kept token of the unshared layout)
    weights: torch.Tensor  # [G, T] float: rows that hold the token (aux-loss weights)
    reads: torch.Tensor  # [B, C]
    scored: torch.Tensor  # [B, C] bool

    def attention_mask(self, additive: torch.dtype | None = None) -> torch.Tensor:
        """``[G, 1, T, T]``: query q sees key k <= q of the prompt or of its own completion. Boolean (True: attend),
        or with ``additive`` a dtype, 0 or its minimum."""
        t = self.input_ids.size(1)
        index = torch.arange(t, device=self.input_ids.device)
        causal = index[None, :] <= index[:, None]
        seg_q, seg_k = self.segment[:, :, None], self.segment[:, None, :]
        allowed = causal & self.keys[:, None, :] & ((seg_k == 0) | (seg_k == seg_q))
        allowed = allowed[:, None]
        if additive is None:
            return allowed
        zero = torch.zeros((), dtype=additive, device=allowed.device)
        return torch.where(allowed, zero, torch.finfo(additive).min)

    def positions(self, unshared: torch.Tensor) -> torch.Tensor:
        """The packed tokens' position ids, gathered from the unshared batch's ``[B, L]`` or ``[k, B, L]``."""
        flat = unshared.flatten(-2)
        return flat[..., self.source.flatten()].reshape(*unshared.shape[:-2], *self.source.shape)


def group_rows(keys: list) -> tuple[list[int], list[int]]:
    """The first row of each distinct key, and each row's group (its key's number, in order of first appearance)."""
    numbers: dict = {}
    groups = [numbers.setdefault(key, len(numbers)) for key in keys]
    first: dict[int, int] = {}
    for r, g in enumerate(groups):
        first.setdefault(g, r)
    return list(first.values()), groups


def completions_per_row(prompt: int, completion: int, group: int, hidden: int) -> int:
    """How many of a group's completions to pack behind one copy of its prompt, for the fewest FLOPs: per layer a
    token's projections cost ~24 x hidden^2 and each (query, key) pair of the row 4 x hidden (the 4D mask makes the
    attention dense), so a row of T tokens costs ~ 6 x hidden x T + T^2. A 7B model packs a whole group; a tiny one
    with long answers packs few."""

    def cost(n: int) -> tuple[int, int]:
        tokens = prompt + n * completion
        return -(-group // n) * (6 * hidden * tokens + tokens * tokens), -n

    return min(range(1, group + 1), key=cost)


def pack(input_ids: torch.Tensor, attention_mask: torch.Tensor, completion_length: int, clips: torch.Tensor,
         pad_id: int, hidden: int) -> Packing:
    """Group the rows of ``input_ids`` (prompt + ``completion_length`` completion columns) by prompt and clip, and
    pack each group's completions behind its prompt, as many per packed row as ``completions_per_row`` gives for a
    language model of width ``hidden``."""
    rows, width = input_ids.shape
    prompt_width = width - completion_length
    ids, mask = input_ids.tolist(), attention_mask.bool().tolist()
    starts = [next((c for c in range(prompt_width) if mask[r][c]), prompt_width) for r in range(rows)]
    if prompt_width in starts:
        raise ValueError(f"row {starts.index(prompt_width)} of a log-prob pass has no prompt token")
    _, group = group_rows([(tuple(ids[r][starts[r]:prompt_width]), tuple(mask[r][starts[r]:prompt_width]),
                            int(clips[r])) for r in range(rows)])
    groups: dict[int, list[int]] = {}
    for r, g in enumerate(group):
        groups.setdefault(g, []).append(r)
    spans = [max((j for j in range(completion_length) if mask[r][prompt_width + j]), default=-1) + 1
             for r in range(rows)]
    packs = []
    for members in groups.values():
        n = completions_per_row(prompt_width - starts[members[0]], max(spans[r] for r in members), len(members),
                                hidden)
        packs += [members[i : i + n] for i in range(0, len(members), n)]
    packed = []  # per group: source, segment, keys, weights
    reads = [[(0, 0)] * completion_length for _ in range(rows)]  # (group, index in its packed row)
    scored = [[False] * completion_length for _ in range(rows)]
    for g, members in enumerate(packs):
        lead = members[0]
        columns = range(starts[lead], prompt_width)
        source = [lead * width + c for c in columns]
        keys = [mask[lead][c] for c in columns]
        weights = [float(len(members)) if k else 0.0 for k in keys]
        segment = [0] * len(source)
        for s, r in enumerate(members, start=1):
            completion, span = mask[r][prompt_width:], spans[r]
            previous = len(columns) - 1  # the prompt's last token predicts the first completion token
            for j in range(min(span + 1, completion_length)):
                reads[r][j], scored[r][j] = (g, previous), True
                if j < span:
                    previous = len(source)
                    source.append(r * width + prompt_width + j)
                    keys.append(completion[j])
                    weights.append(1.0 if completion[j] else 0.0)
                    segment.append(s)
        packed.append((source, segment, keys, weights))
    length = max(len(p[0]) for p in packed)
    device = input_ids.device

    def padded(part: int, fill) -> torch.Tensor:
        return torch.tensor([p[part] + [fill] * (length - len(p[part])) for p in packed], device=device)

    source, segment = padded(0, 0), padded(1, -1)
    return Packing(
        first=torch.tensor([m[0] for m in packs], device=device),
        input_ids=torch.where(segment >= 0, input_ids.flatten()[source], pad_id), source=source, segment=segment,
        keys=padded(2, False), weights=padded(3, 0.0),
        reads=torch.tensor([[g * length + i for g, i in row] for row in reads], device=device),
        scored=torch.tensor(scored, device=device),
    )


@contextmanager
def reading(decoder: torch.nn.Module, reads: torch.Tensor):
    """Within the block, the LM head behind ``decoder`` gets, per completion token, the hidden state that predicts
    it (``reads``: flat indices into the decoder's ``[G * T]`` output) as a ``[B, C, d]`` batch."""

    def gather(module, args, output):
        hidden = output.last_hidden_state
        output.last_hidden_state = hidden.flatten(0, 1)[reads.flatten()].view(*reads.shape, hidden.size(-1))
        return output

    handle = decoder.register_forward_hook(gather)
    try:
        yield
    finally:
        handle.remove()


@contextmanager
def recording(modules: list[torch.nn.Module]):
    """Within the block, each call of ``modules`` appends its first output (an MoE router's logits) to the list
    yielded; the hooks are gone before any backward (a checkpointed layer's recomputation records nothing)."""
    logits: list[torch.Tensor] = []
    handles = [m.register_forward_hook(lambda module, args, output: logits.append(output[0])) for m in modules]
    try:
        yield logits
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def prefill_once(model: torch.nn.Module, group: list[int], first: list[int], batch_keys: tuple[str, ...], encoding):
    """Within the block, HF generate's prefill of ``model`` (its call with an empty cache and one row per completion)
    runs the rows ``first`` only (one per group) and hands every row its group's KV cache and logits (``group[b]``:
    row b's group). ``batch_keys``: the per-row inputs to select; ``encoding(rows)``: the context in which the
    audio tower sees those rows."""
    from transformers import DynamicCache

    index = torch.tensor(group, device=model.device)
    rows = torch.tensor(first, device=model.device)
    own = model.__dict__.get("forward")
    original = model.forward

    @functools.wraps(original)  # generate checks its inputs against the forward's signature
    def forward(*args, **kwargs):
        cache, ids = kwargs.get("past_key_values"), kwargs.get("input_ids")
        if (args or not isinstance(cache, DynamicCache) or cache.get_seq_length() or ids is None
                or ids.size(0) != index.numel()):
            return original(*args, **kwargs)
        for key in batch_keys:
            value = kwargs.get(key)
            if isinstance(value, torch.Tensor):  # multimodal RoPE position ids are [k, B, L]
                kwargs[key] = value.index_select(1 if key == "position_ids" and value.dim() == 3 else 0, rows)
        with encoding(rows):
            out = original(**kwargs)
        cache.batch_select_indices(index)
        out.logits = out.logits.index_select(0, index)
        return out

    model.forward = forward
    try:
        yield
    finally:
        if own is None:
            del model.forward
        else:
            model.forward = own
