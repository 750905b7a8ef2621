"""The audio encoder once per distinct clip: rows that share a clip (a GRPO group's completions) share one pass.

``ClipEncoder`` wraps the ``forward`` of a model's own ``audio_tower`` module in place (Qwen2-Audio's and Audio
Flamingo 3's Whisper encoders; an Omni thinker's audio encoder, whose output projection is part of it). While the
trainer has told it which clip each audio row holds (``ClipEncoder.rows``), a tower call encodes each distinct clip
once and gives every row its clip's output (``last_hidden_state``, all the models read); the model's own merge of
audio embeddings into the text embeddings, its projector and its position ids are untouched. Autograd sums the
rows' gradients into the clip's one pass, as the per-row path does. Because the wrapped module is the model's own
(not a copy), DeepSpeed ZeRO-3's parameter gathering (hooks around the module call), PEFT adapters inside the tower
and gradient checkpointing of its layers work unchanged. Without ``rows`` (any call from outside the trainer) the
tower runs as the model defines it.

Frozen encoder: with a ``cache`` (a dict clip -> output, one per generation batch) the encodings are kept under
``torch.no_grad`` and reused by every later call that holds those clips; ``encode_clips`` fills it for all of a
generation batch's clips in one tower call, the same call on every rank, so no rank waits for another in a collective
(under ZeRO-3 with the tower's parameters gathered for that call).

Two input layouts, as the models call their towers:

* padded (Qwen2-Audio, Audio Flamingo 3): ``tower(input_features[N, mel, frames], <mask>=[N, ...] | None)`` ->
  ``[N, L, d]``;
* packed (Omni thinker): ``tower(input_features[mel, sum(frames)], feature_lens=[N], aftercnn_lens=[N])`` ->
  ``[sum(L), d]``.
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext

import torch
from transformers.modeling_outputs import BaseModelOutput


def audio_towers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The modules named ``audio_tower`` inside ``model`` (through DDP, DeepSpeed and PEFT wrappers)."""
    return [m for name, m in model.named_modules() if name.rsplit(".", 1)[-1] == "audio_tower"]


class ClipEncoder:
    """One pass per distinct clip through ``tower``, whose ``forward`` it replaces (see the module docstring)."""

    @classmethod
    def of(cls, tower: torch.nn.Module, family) -> ClipEncoder:
        """The tower's encoder: the one already wrapping it (a second trainer on the same model), else a new one
        (``family``: the model's ``r1_aqa.families.Family``)."""
        wrapper = getattr(tower.forward, "__self__", None)
        return wrapper if isinstance(wrapper, cls) else cls(tower, family)

    def __init__(self, tower: torch.nn.Module, family):
        self.tower = tower
        self.family = family
        self._encode = tower.forward
        self.rows: torch.Tensor | None = None
        self.cache: dict[int, torch.Tensor] | None = None
        tower.forward = self.forward

    @contextmanager
    def clips(self, rows: torch.Tensor, cache: dict[int, torch.Tensor] | None = None):
        """Within the block, a tower call holds one audio row per entry of ``rows`` (its clip's index)."""
        previous = self.rows, self.cache
        self.rows, self.cache = rows, cache
        try:
            yield
        finally:
            self.rows, self.cache = previous

    def forward(self, input_features: torch.Tensor, *args, **kwargs):
        rows = self.rows
        if rows is None or args or kwargs.get("output_hidden_states") or kwargs.get("output_attentions"):
            return self._encode(input_features, *args, **kwargs)
        packed = kwargs.get("feature_lens") is not None
        n = kwargs["feature_lens"].numel() if packed else input_features.size(0)
        if n != rows.numel():
            raise RuntimeError(f"the audio tower got {n} clips for {rows.numel()} rows")
        clips = rows.tolist()
        cache = self.cache if self.cache is not None else {}
        missing = list(dict.fromkeys(c for c in clips if c not in cache))
        if missing:
            first = torch.tensor([clips.index(c) for c in missing], device=input_features.device)
            with torch.no_grad() if self.cache is not None else nullcontext():
                features, kwargs = (_take_packed if packed else _take_padded)(input_features, kwargs, first)
                out = self._encode(features, **kwargs)
            hidden = out.last_hidden_state
            if packed:
                pieces = hidden.split(self.family.packed_lengths(self.tower, kwargs["feature_lens"]))
            else:
                pieces = hidden.unbind(0)
            cache.update(zip(missing, pieces))
        pieces = [cache[c] for c in clips]
        return BaseModelOutput(last_hidden_state=torch.cat(pieces) if packed else torch.stack(pieces))

    def encode_clips(self, model: torch.nn.Module, features: dict[str, torch.Tensor]) -> dict[int, torch.Tensor]:
        """Encode every clip of ``features`` (one row per distinct clip, the processor's keys) into a fresh cache,
        calling the tower as the family's model does."""
        cache: dict[int, torch.Tensor] = {}
        n = features[self.family.feature_keys[0]].size(0)
        with self.clips(torch.arange(n), cache), torch.no_grad(), _gathered(self.tower):
            self.family.encode_audio(model, self.tower, features)
        return cache


def _gathered(module: torch.nn.Module):
    """Outside the model's forward, DeepSpeed ZeRO-3 leaves a parameter the encoder reads directly (Qwen2-Audio's
    position table) partitioned: gather the tower's parameters for the call (every rank makes it at the same point)."""
    params = list(module.parameters())
    if not any(hasattr(p, "ds_id") for p in params):
        return nullcontext()
    import deepspeed

    return deepspeed.zero.GatheredParameters(params)


def _take_padded(features: torch.Tensor, kwargs: dict, first: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """The rows ``first`` of the features and of every per-row tensor argument (the mask, whatever its name)."""
    n = features.size(0)
    rows = {k: v[first] for k, v in kwargs.items() if isinstance(v, torch.Tensor) and v.dim() and v.size(0) == n}
    return features[first], {**kwargs, **rows}


def _take_packed(features: torch.Tensor, kwargs: dict, first: torch.Tensor) -> tuple[torch.Tensor, dict]:
    lens = kwargs["feature_lens"]
    chunks = features.split(lens.tolist(), dim=1)
    kept = dict(kwargs, feature_lens=lens[first])
    if kwargs.get("aftercnn_lens") is not None:
        kept["aftercnn_lens"] = kwargs["aftercnn_lens"][first]
    return torch.cat([chunks[i] for i in first.tolist()], dim=1), kept


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    """Whether two modules hold equal tensors under the same names (False for ZeRO-3-partitioned parameters)."""
    if a is b:
        return True
    if any(hasattr(p, "ds_id") for p in (*a.parameters(), *b.parameters())):
        return False
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(
        sa[k].shape == sb[k].shape and torch.equal(sa[k], sb[k].to(sa[k].device)) for k in sa
    )
