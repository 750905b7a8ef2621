"""``AudioGRPOTrainer``: TRL's ``GRPOTrainer`` with the audio reaching every forward pass, and colocated vLLM rollouts.

Stock TRL 1.16 passes a processor's outputs to ``generate`` only, and forwards a fixed list of image fields to the
old/reference/policy log-prob passes, so an audio model trains without ever seeing its audio. This subclass:

* loads each row's clip from the dataset's ``audio`` column (``r1_aqa.audio.load_audio_capped``: decoded once, up
  to the cap) and builds the prompt ids and audio features with the model's processor (``_tokenize_prompts``),
  never truncating a prompt;
* keeps the features as per-row batch tensors in the generation batch, so TRL's own shuffle and split carry them row
  by row with their completions through ``num_generations``, gradient accumulation, ``steps_per_generation`` and
  ``num_iterations`` (``_generate_and_score_completions``);
* feeds them to every log-prob forward (``_get_per_token_logps_and_entropies``, ``_compute_loss``) and to HF
  generate, with each row's clip index (``audio_clip``), so the audio tower encodes each distinct clip of a forward
  once (``r1_aqa.training.encoder.ClipEncoder``; ``share_clip_encodings=False`` keeps the model's own per-row encoding);
* with ``freeze_audio_tower`` encodes each distinct clip once per generation batch and reuses it in generation and in
  every log-prob pass of that batch (the reference model too, when its tower provably holds the same frozen weights);
  ``freeze_audio_projector`` freezes the layer that maps the encoder's output to the LM width;
* runs each group's prompt once in every log-prob pass (policy, old policy, reference: one packed row per group, a
  4D mask, the unshared layout's position ids) and in HF generate's prefill (``r1_aqa.training.share_prompt``;
  ``share_prompt=False`` runs every row in full);
* forbids the audio placeholder token in completions, in both generate paths, and scores completions under the
  distribution without it (the one the rollouts sample from);
* in vLLM colocate mode, sends one audio placeholder per request with the waveform (vLLM expands it itself), syncs
  weights under the checkpoint's names in place, leaving the engine as a fresh load would (MoE experts repacked;
  proved once at construction by a round trip), and resets vLLM's encoder and prefix caches after every sync
  (``_generate_single_turn``).

Every optimizer step's learning rate is scaled by its share of groups with signal (``min_signal_share``;
``r1_aqa.training.learning_signal``): a step without signal leaves the weights as they were.

Logged beyond TRL's metrics: ``audio/cut_at_cap_ratio`` (share of clips cut at the cap), ``signal/share`` and
``signal/lr_scale``, and ``accuracy_by_answer/<answer>`` (training accuracy per right answer, for training sets with
at most ``MAX_ANSWER_CLASSES`` distinct answers). TRL itself logs
``sampling/sampling_logp_difference/mean`` (vLLM vs trainer log-probs; ~1e-3 when weight sync works) in vLLM mode.
"""

from __future__ import annotations

import os
import sys
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass

import numpy as np
import torch
from trl import GRPOTrainer
from trl.extras.profiling import profiling_context
from trl.trainer.utils import selective_log_softmax_and_entropy

from . import share_prompt as shared
from ..audio import SAMPLE_RATE, load_audio_capped
from .configs import AudioGRPOOptions
from .dynamic_sampling import DynamicSampling
from .encoder import ClipEncoder, audio_towers, same_weights
from ..families import family_of
from .learning_signal import MAX_ANSWER_CLASSES, SignalScaledSteps, accuracy_by_answer
from ..families.loading import HubNamedCheckpoints, audio_token_id, load_processor, without_router_logits
from ..plot import BY_ANSWER
from ..prompts import extract_answer
from ..families.vllm_audio import audio_request, check_sync_round_trip, check_tensor_parallel, collapse_audio_tokens, \
    configure_cpu_env, on_cpu, sync_weights, without_audio_token

# The batch key of each row's clip index within its generation batch (not a model input).
_CLIP_KEY = "audio_clip"


@dataclass
class _BatchAudio:
    """The clips of the rows of one generation batch (one row per completion), and the features built from them."""

    sources: list
    waveforms: list[np.ndarray]
    features: dict[str, torch.Tensor] | None = None
    clips: torch.Tensor | None = None  # per row: the index of its distinct clip in this batch


def load_batch_audio(sources: list, max_seconds: float | None) -> tuple[list[np.ndarray], list[bool]]:
    """Load each distinct clip (a path or encoded bytes) once; return per-row waveforms and whether each was cut."""
    cache: dict = {}
    for src in sources:
        if src not in cache:
            cache[src] = load_audio_capped(src, max_seconds)
    return [cache[src][0] for src in sources], [cache[src][1] for src in sources]


def _answer_classes(dataset) -> list[str] | None:
    """The distinct right answers of a training set with a ``solution`` column, if there are few enough to log each
    one's accuracy (``MAX_ANSWER_CLASSES``); else None."""
    if dataset is None or "solution" not in getattr(dataset, "column_names", ()):
        return None
    answers = sorted({extract_answer(s) for s in dataset["solution"]})
    return answers if len(answers) <= MAX_ANSWER_CLASSES else None


def _refuse_unsupported(args, kwargs: dict) -> None:
    """Refuse TRL options whose rollouts would bypass the audio path (each prompt generated with its own clip)."""
    sampling = (args.generation_kwargs or {}) if args is not None else {}
    unsupported = [name for name, used in (
        ("use_transformers_continuous_batching", args is not None and args.use_transformers_continuous_batching),
        ("rollout_func", kwargs.get("rollout_func") is not None),
        ("vllm_structured_outputs_regex", args is not None and args.vllm_structured_outputs_regex is not None),
        ("generation_kwargs.structured_outputs", sampling.get("structured_outputs") is not None),
    ) if used]
    if unsupported:
        raise ValueError(f"AudioGRPOTrainer cannot honour {', '.join(unsupported)}: its rollouts are HF generate or "
                         "colocated vLLM with each prompt's clip; remove the option")


@contextmanager
def _replaced(module, name: str, value):
    """``module.name`` is ``value`` inside the block."""
    original = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, original)


class AudioGRPOTrainer(HubNamedCheckpoints, GRPOTrainer):
    """GRPO for audio LMs (the families of ``r1_aqa.families``); the dataset needs ``prompt`` and ``audio``.

    The audio options are ``args``' when it is an ``AudioGRPOConfig`` (``r1_aqa.training.trl_configs``), else
    ``AudioGRPOOptions``' defaults.

    ``prompt`` is a conversation whose user turn holds one ``{"type": "audio"}`` item; ``audio`` is a path (or
    encoded bytes) per row. Other columns (e.g. ``solution``) reach the reward functions as TRL passes them.
    """

    def __init__(self, model, reward_funcs=None, args=None, *, audio_column: str = "audio", **kwargs):
        _refuse_unsupported(args, kwargs)
        options = args if isinstance(args, AudioGRPOOptions) else AudioGRPOOptions()  # AudioGRPOConfig's, or defaults
        if isinstance(model, (str, os.PathLike)):
            model = family_of(model).model_class().from_pretrained(model)
        self.family = family_of(model.name_or_path)
        self.family.prepare_model(model)
        without_router_logits(model)  # TRL asks for them in the passes that use them
        if args is not None and args.use_vllm:
            if args.vllm_mode != "colocate":
                raise ValueError("AudioGRPOTrainer supports vLLM in colocate mode only (vllm_mode: colocate)")
            if args.vllm_enable_sleep_mode:
                raise ValueError("AudioGRPOTrainer's vLLM rollouts need vllm_enable_sleep_mode off (the in-place sync "
                                 "and its round-trip check write into the engine's live weights)")
            check_tensor_parallel(model.config, args.vllm_tensor_parallel_size)
            self.family.check_vllm(model.name_or_path)
            configure_cpu_env()  # float32-capable eager engine with a fixed KV cache on CPU; no-op on GPU
        if kwargs.get("processing_class") is None:
            kwargs["processing_class"] = load_processor(model.name_or_path)
        self.audio_column = audio_column
        self.max_audio_seconds = options.max_audio_seconds
        self.audio_token_id = audio_token_id(model.config)
        self._batch_audio: _BatchAudio | None = None
        self._audio_inputs: dict[str, torch.Tensor] | None = None
        self._audio_clips: torch.Tensor | None = None
        self._audio_keys: list[str] = []  # the processor's audio feature keys, known after the first batch
        # TRL's HF-generate setup suppresses `config.image_token_id` for any processor, and Qwen2-Audio has none: lend
        # it the audio token for the duration of the parent's __init__ (which is the token to suppress anyway).
        config = model.config
        lent = not hasattr(config, "image_token_id")
        if lent:
            config.image_token_id = self.audio_token_id
        try:
            with self._trl_construction(args, type(model), model.dtype, model.name_or_path):
                super().__init__(model, reward_funcs, args, **kwargs)
        finally:
            if lent:
                del config.image_token_id
        core = self._core(self.model)
        self._unsampled_tokens = torch.tensor([self.audio_token_id], device=self.accelerator.device)
        self._decoder = self.family.decoder(core)  # what the LM head reads
        self._setup_audio_encoding(core, options.freeze_audio_tower, options.freeze_audio_projector,
                                   options.share_clip_encodings)
        self._setup_share_prompt(core, options.share_prompt)
        # DAPO's dynamic sampling (r1_aqa.training.dynamic_sampling); None: off. Its refill rounds number their clips on
        # from the previous rounds' (_clip_base), so one generation batch's clip indices and cache stay distinct.
        self._dynamic_sampling = (DynamicSampling(self, options.dynamic_sampling_max_extra)
                                  if options.dynamic_sampling else None)
        self._clip_base = 0
        self._signal_steps = SignalScaledSteps(options.min_signal_share)
        self.add_callback(self._signal_steps)
        self._answer_classes = _answer_classes(self.train_dataset)
        if self.use_vllm:
            check_sync_round_trip(self.vllm_generation.llm, self._vllm_weights, self.family)
        else:
            suppress = sorted({*(self.generation_kwargs.get("suppress_tokens") or []), self.audio_token_id})
            self.generation_kwargs["suppress_tokens"] = suppress
            self.generation_config.suppress_tokens = suppress

    def _trl_construction(self, args, policy_class, policy_dtype, path):
        """What TRL's ``GRPOTrainer.__init__`` must build differently, as scoped replacements of two names it calls.

        * With β > 0 TRL builds the reference model with ``create_model_from_path``, inferring the class from the
          checkpoint's ``architectures``: a full Omni layout names e.g. ``Qwen2_5OmniModel``, no transformers
          class, and the fallback has no entry for it. It gets the policy's class as ``architecture``.
        * The colocated vLLM engine TRL builds with ``LLM(...)`` (which passes neither a dtype nor modality limits):
          on CPU it computes in the policy's dtype (vLLM would pick bf16 for a float32 policy, and its greedy output
          would part from the policy's); it gets the family's engine arguments (``Family.vllm_engine_kwargs``: the
          modality limits, after the family's shims).
        """
        import functools

        from trl.generation import vllm_generation
        from trl.trainer import grpo_trainer

        stack = ExitStack()
        if args is not None and args.beta != 0.0:
            stack.enter_context(_replaced(grpo_trainer, "create_model_from_path", functools.partial(
                grpo_trainer.create_model_from_path, architecture=policy_class)))
        engine_kwargs = {}
        if args is not None and args.use_vllm:
            if on_cpu():
                engine_kwargs["dtype"] = str(policy_dtype).removeprefix("torch.")
            engine_kwargs.update(self.family.vllm_engine_kwargs(path))
        if engine_kwargs:
            stack.enter_context(_replaced(vllm_generation, "LLM", functools.partial(
                vllm_generation.LLM, **engine_kwargs)))
        return stack

    def _setup_audio_encoding(self, core, freeze_tower: bool, freeze_projector: bool, share: bool) -> None:
        """Freeze what is asked and wrap the policy's (and a separate reference model's) audio tower."""
        towers = audio_towers(core)
        if len(towers) != 1:
            raise ValueError(f"{type(core).__name__}: expected one audio_tower module, found {len(towers)}")
        tower = towers[0]
        if freeze_tower and core is not self.accelerator.unwrap_model(self.model):  # PEFT
            from peft.tuners.tuners_utils import BaseTunerLayer

            if any(isinstance(m, BaseTunerLayer) for m in tower.modules()):
                raise ValueError(
                    "freeze_audio_tower: the PEFT adapter has layers inside the audio tower; leave the tower out of "
                    "lora_target_modules (e.g. a regex over language_model) or train the tower"
                )
        projectors = self.family.audio_projectors(core) if freeze_projector else []
        for module in ([tower] if freeze_tower else []) + projectors:
            module.requires_grad_(False)
        self.freeze_audio_tower = freeze_tower
        self.share_clip_encodings = share
        self._encoder = self._ref_encoder = None
        self._ref_shares_cache = False
        self._clip_caches: dict[str, dict | None] = {"train": None, "eval": None}
        if not share:
            return
        self._encoder = ClipEncoder.of(tower, self.family)
        if self.ref_model is None:  # beta 0, or PEFT: the reference pass is this model with its adapter disabled
            self._ref_encoder, self._ref_shares_cache = self._encoder, True
        else:
            ref_tower = audio_towers(self.ref_model)[0]
            self._ref_encoder = ClipEncoder.of(ref_tower, self.family)
            self._ref_shares_cache = freeze_tower and same_weights(tower, ref_tower)

    def _setup_share_prompt(self, core, wanted: bool) -> None:
        """Each prompt once per group in the log-prob passes (``.share_prompt``) where that is exact; where it is not,
        one line says why and every pass runs each row in full."""
        reason = shared.blocker(core.config) if wanted else None
        if reason is None and wanted and self.aux_loss_enabled and not self.family.router_modules(core):
            reason = f"the router aux loss of {type(core).__name__} is not available to a packed pass"
        self.share_prompt = wanted and reason is None
        self.share_prompt_reason = reason
        self._share_prefill = wanted  # generate's causal mask needs no custom one
        self._pack_width = core.config.get_text_config().hidden_size  # how many completions a packed row holds
        if reason is not None and self.accelerator.is_main_process:
            print(f"r1-aqa: share_prompt off: {reason}; each prompt runs once per completion", file=sys.stderr)

    def _core(self, model):
        """The transformers model inside ``model`` (through DDP, DeepSpeed and PEFT wrappers)."""
        core = self.accelerator.unwrap_model(model)
        return core.get_base_model() if hasattr(core, "get_base_model") else core

    def _encoding(self, model, clips: torch.Tensor):
        """The context of a forward of ``model`` whose audio rows hold ``clips`` (see ``r1_aqa.training.encoder``)."""
        if self._encoder is None:
            return nullcontext()
        reference = self.ref_model is not None and model is self.ref_model
        cache = self._clip_caches["train" if self.model.training else "eval"] if self.freeze_audio_tower else None
        if reference and not self._ref_shares_cache:
            cache = None
        return (self._ref_encoder if reference else self._encoder).clips(clips, cache)

    # ---- audio for each generation batch ---------------------------------------------------------------------------

    def _generate_and_score_completions(self, inputs: list[dict]) -> dict:
        self._clip_base = 0
        if not self.model.training:
            return self._generate_and_score_audio(inputs)
        if self._dynamic_sampling is None:
            output = self._generate_and_score_audio(inputs)
        else:
            output = self._dynamic_sampling.generate(inputs, self._generate_and_score_audio)
        share, scale = self._signal_steps.observe(output["advantages"], self.num_generations, self.accelerator)
        self._metrics["train"]["signal/share"].append(share)
        self._metrics["train"]["signal/lr_scale"].append(scale)
        return output

    def _prepare_inputs(self, generation_batch):
        inputs = super()._prepare_inputs(generation_batch)
        if self.model.training:  # every micro-batch, before the backward that may step the optimizer (DeepSpeed)
            self._signal_steps.scale_lr(self.optimizer)
        return inputs

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        if self._answer_classes and "accuracy_reward" in self.reward_func_names:
            from accelerate.utils import gather_object

            answers = gather_object([extract_answer(x["solution"]) for x in inputs])
            column = rewards[:, self.reward_func_names.index("accuracy_reward")].tolist()
            mode = "train" if self.model.training else "eval"
            for answer, value in accuracy_by_answer(answers, column).items():
                self._metrics[mode][BY_ANSWER + answer].append(value)
        return rewards

    def _generate_and_score_audio(self, inputs: list[dict]) -> dict:
        mode = "train" if self.model.training else "eval"
        if self.audio_column not in inputs[0]:
            raise KeyError(f"the training rows have no {self.audio_column!r} column (is remove_unused_columns on?)")
        sources = [x[self.audio_column] for x in inputs]
        waveforms, cut = load_batch_audio(sources, self.max_audio_seconds)
        cut_ratio = self.accelerator.gather(torch.tensor(cut, dtype=torch.float32, device=self.accelerator.device))
        self._metrics[mode]["audio/cut_at_cap_ratio"].append(cut_ratio.mean().item())
        self._batch_audio = _BatchAudio(sources=sources, waveforms=waveforms)
        try:
            output = super()._generate_and_score_completions(inputs)
            features, clips = self._batch_audio.features, self._batch_audio.clips
        finally:
            self._batch_audio = None
            self._audio_inputs = self._audio_clips = None
        # One row per completion, so TRL's shuffle_sequence_dict / split_tensor_dict keep them with their completions.
        output.update(features)
        output[_CLIP_KEY] = clips
        return output

    def _tokenize_prompts(self, prompts: list):
        """Prompt ids with each audio placeholder expanded to its clip's length, and per-row audio features.

        Rows sharing a prompt and clip (a GRPO group) are processed once and gathered back per row. Each row's clip
        index goes to ``_BatchAudio.clips``; with a frozen tower the distinct clips are encoded here, once.
        """
        batch = self._batch_audio
        if batch is None or len(batch.waveforms) != len(prompts):
            raise RuntimeError("AudioGRPOTrainer: prompts reached tokenization without their batch's clips")
        texts = self.processing_class.apply_chat_template(
            prompts, chat_template=self.chat_template, add_generation_prompt=True, tokenize=False,
            **self.chat_template_kwargs,
        )
        keys, index, first = [], {}, []
        for i, key in enumerate(zip(texts, batch.sources, strict=True)):
            if key not in index:
                index[key] = len(first)
                first.append(i)
            keys.append(index[key])
        encoded = self.processing_class(
            text=[texts[i] for i in first], audio=[batch.waveforms[i] for i in first],
            sampling_rate=SAMPLE_RATE, text_kwargs={"padding": True}, return_tensors="pt",  # see engines.hf_batch
        )
        rows = torch.tensor(keys)
        unique_ids = [ids[mask.bool()].tolist() for ids, mask in zip(encoded["input_ids"], encoded["attention_mask"])]
        prompt_ids = [unique_ids[k] for k in keys]
        self._check_audio_tokens(unique_ids, [batch.waveforms[i] for i in first])
        dtype = self.accelerator.unwrap_model(self.model).get_input_embeddings().weight.dtype
        device = self.accelerator.device
        features = {}
        for key in self.family.feature_keys:
            value = encoded.get(key)
            if not isinstance(value, torch.Tensor) or value.size(0) != len(first):
                raise ValueError(f"processor output {key!r} is not a tensor with one row per clip (a clip longer than "
                                 f"the encoder's window? cap it with max_audio_seconds)")
            value = value[rows].to(device)
            features[key] = value.to(dtype) if value.is_floating_point() else value
        clip_of: dict = {}
        clips = [clip_of.setdefault(src, len(clip_of)) for src in batch.sources]
        base, self._clip_base = self._clip_base, self._clip_base + len(clip_of)
        batch.features, batch.clips = features, torch.tensor(clips, device=device) + base
        self._audio_keys = list(features)
        self._audio_inputs, self._audio_clips = features, batch.clips
        if self._encoder is not None and self.freeze_audio_tower:
            firsts = torch.tensor([clips.index(c) for c in range(len(clip_of))], device=device)
            core = self._core(self.model)
            cache = self._encoder.encode_clips(core, {k: v[firsts] for k, v in features.items()})
            mode = "train" if self.model.training else "eval"
            previous = self._clip_caches[mode] if base else {}  # the earlier rounds' clips of this generation batch
            self._clip_caches[mode] = {**previous, **{base + c: e for c, e in cache.items()}}
        return prompt_ids, None, features

    def _check_audio_tokens(self, prompt_ids: list[list[int]], waveforms: list[np.ndarray]) -> None:
        """Each prompt holds as many placeholders as its clip has audio tokens (``Family.audio_tokens``), for clips
        within the encoder's window: fewer would drop audio, more would shift it (the model raises on neither)."""
        window = self.processing_class.feature_extractor.chunk_length
        for ids, wav in zip(prompt_ids, waveforms, strict=True):
            count = ids.count(self.audio_token_id)
            if count == 0:
                raise ValueError(f"a prompt has no audio placeholder: {self._tokenizer.decode(ids)!r}")
            expected = self.family.audio_tokens(len(wav), window)
            if len(wav) <= window * SAMPLE_RATE and count != expected:
                raise RuntimeError(f"the processor expanded a {len(wav) / SAMPLE_RATE:.2f} s clip to {count} audio "
                                   f"tokens; the {self.family.title} encoder gives {expected}")

    # ---- log-prob forwards -----------------------------------------------------------------------------------------

    @contextmanager
    def _audio_for(self, inputs: dict):
        previous = self._audio_inputs, self._audio_clips
        self._audio_inputs = {k: inputs[k] for k in self._audio_keys}
        self._audio_clips = inputs[_CLIP_KEY]
        try:
            yield
        finally:
            self._audio_inputs, self._audio_clips = previous

    def _compute_loss(self, model, inputs):
        with self._audio_for(inputs):
            return super()._compute_loss(model, inputs)

    def _get_per_token_logps_and_entropies(
        self, model, input_ids, attention_mask, logits_to_keep, batch_size=None, compute_entropy=False,
        compute_aux_loss=False, **image_kwargs,
    ):
        """TRL's chunked log-prob pass, with the audio features of exactly these rows (image inputs unsupported)."""
        if any(value is not None for value in image_kwargs.values()):
            raise ValueError("AudioGRPOTrainer takes audio, not image inputs")
        audio, clips = self._audio_inputs, self._audio_clips
        if not audio:
            raise RuntimeError("AudioGRPOTrainer: a log-prob forward without audio features")
        for key, value in {**audio, _CLIP_KEY: clips}.items():
            if value.size(0) != input_ids.size(0):
                raise RuntimeError(f"{key} has {value.size(0)} rows for {input_ids.size(0)} sequences")
        batch_size = batch_size or input_ids.size(0)
        all_logps, all_entropies, all_aux = [], [], []
        for start in range(0, input_ids.size(0), batch_size):
            end = start + batch_size
            ids, mask = input_ids[start:end], attention_mask[start:end]
            features = {k: v[start:end] for k, v in audio.items()}
            if self.share_prompt:
                logits, scored, aux = self._shared_prompt_forward(
                    model, ids, mask, logits_to_keep, features, clips[start:end], compute_aux_loss)
            else:
                model_inputs = {"input_ids": ids, "attention_mask": mask, **features}
                if compute_aux_loss:
                    model_inputs["output_router_logits"] = True
                with (self.accelerator.autocast(), self._encoding(model, clips[start:end]),
                      self._last_positions(model, logits_to_keep + 1)):
                    outputs = model(**model_inputs, use_cache=False)
                logits, scored = outputs.logits[:, -logits_to_keep - 1 : -1], None
                aux = outputs.aux_loss if compute_aux_loss else None
            logits = logits / self.temperature
            # The rollouts never sample <|AUDIO|> (suppressed in both generate paths), so the policy is the
            # distribution without it: with its mass left in, a negative advantage lowers a sampled token's
            # log-prob most cheaply by raising <|AUDIO|>, which the sampler never shows, until greedy decoding
            # emits it (measured on the demo: held-out accuracy 0.00 after 1000 steps, KL to the reference 1e9).
            logits = logits.index_fill(-1, self._unsampled_tokens, torch.finfo(logits.dtype).min)
            logps, entropies = selective_log_softmax_and_entropy(logits, ids[:, -logits_to_keep:])
            if scored is not None:  # a packed pass computes no token after a row's last kept one (masked anyway)
                logps, entropies = logps.masked_fill(~scored, 0.0), entropies.masked_fill(~scored, 0.0)
            all_logps.append(logps)
            if compute_entropy:
                all_entropies.append(entropies)
            if compute_aux_loss:
                all_aux.append(aux)
        logps = torch.cat(all_logps, dim=0)
        entropies = torch.cat(all_entropies, dim=0) if compute_entropy else None
        aux_loss = torch.stack(all_aux).mean() if compute_aux_loss else None
        return logps, entropies, aux_loss

    def _shared_prompt_forward(self, model, ids, mask, logits_to_keep, features, clips, compute_aux_loss):
        """The forward of one chunk with each group's prompt once (``r1_aqa.training.share_prompt``): the logits of the
        completion tokens ``[B, C, V]``, which of them were computed, and the router aux loss (or None)."""
        core = self._core(model)
        packing = shared.pack(ids, mask, logits_to_keep, clips, self._tokenizer.pad_token_id, self._pack_width)
        dtype = shared.additive_mask_dtype(core.config, core.get_input_embeddings().weight.dtype)
        model_inputs = {
            "input_ids": packing.input_ids, "attention_mask": packing.attention_mask(dtype),
            "position_ids": packing.positions(self.family.position_ids(core, ids, mask, features)),
            **{k: v[packing.first] for k, v in features.items()},
        }
        routers = self.family.router_modules(core) if compute_aux_loss else []
        with (self.accelerator.autocast(), self._encoding(model, clips[packing.first]),
              shared.reading(self.family.decoder(core), packing.reads), shared.recording(routers) as router_logits):
            logits = model(**model_inputs, use_cache=False).logits
        aux = self.family.router_aux_loss(core, router_logits, packing.weights) if compute_aux_loss else None
        return logits, packing.scored, aux

    @contextmanager
    def _last_positions(self, model, k: int):
        """Within the block, the LM head of ``model`` runs on the last ``k`` positions only (what HF generate and the
        log-prob passes read), not on every prompt position: neither model takes ``logits_to_keep``, and the full
        logits of a 7B model on 8 rows of ~900 tokens are ~4 GB and ~8% of the forward's FLOPs."""
        decoder = self._decoder
        if model is self.ref_model:
            decoder = self.family.decoder(self.accelerator.unwrap_model(model))

        def keep(module, args, output):
            output.last_hidden_state = output.last_hidden_state[:, -k:]
            return output

        handle = decoder.register_forward_hook(keep)
        try:
            yield
        finally:
            handle.remove()

    # ---- vLLM colocate rollouts -------------------------------------------------------------------------------------

    def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
        if not self.use_vllm:
            with (self._encoding(self.model, self._batch_audio.clips), self._last_positions(self.model, 1),
                  self._prefilled_once(prompt_ids)):
                return super()._generate_single_turn(
                    prompt_ids, images, multimodal_fields, num_generations, has_tool_images
                )
        from trl.generation.vllm_generation import extract_logprobs

        if self.state.global_step != self._last_loaded_step:
            with profiling_context(self, "sync_weights"):
                self.sync_vllm_weights()
            self._last_loaded_step = self.state.global_step
        gen = self.vllm_generation
        expands = self.family.vllm_expands_audio
        requests = [
            audio_request(collapse_audio_tokens(ids, self.audio_token_id) if expands else ids, wav)
            for ids, wav in zip(prompt_ids, self._batch_audio.waveforms, strict=True)
        ]
        if gen.tensor_parallel_size > 1:  # as TRL's colocate TP: each rank of a group serves the group's requests
            gathered = [None] * gen.tensor_parallel_size
            torch.distributed.all_gather_object(gathered, requests, group=gen.tp_group)
            mine = torch.distributed.get_rank(group=gen.tp_group) * len(requests)
            requests = [r for group in gathered for r in group]
        with profiling_context(self, "vLLM.generate"):
            outputs = gen.llm.generate(requests, sampling_params=self._vllm_sampling_params(), use_tqdm=False)
        if gen.tensor_parallel_size > 1:
            outputs = outputs[mine : mine + len(prompt_ids)]  # this rank's share
        for out, ids in zip(outputs, prompt_ids, strict=True):
            if list(out.prompt_token_ids) != list(ids):
                raise RuntimeError(
                    f"vLLM expanded the audio prompt to {len(out.prompt_token_ids)} tokens, the processor to {len(ids)}"
                )
        completion_ids = [list(o.token_ids) for out in outputs for o in out.outputs]
        logprobs, _ = extract_logprobs(outputs)
        return completion_ids, [[lp[0] for lp in seq] for seq in logprobs]

    def _prefilled_once(self, prompt_ids: list[list[int]]):
        """HF generate prefills each group's prompt once (``share_prompt.prefill_once``), where rows share one."""
        clips = self._batch_audio.clips
        first, group = shared.group_rows(list(zip(map(tuple, prompt_ids), clips.tolist(), strict=True)))
        if not self._share_prefill or len(first) == len(group):
            return nullcontext()
        keys = ("input_ids", "attention_mask", "position_ids", *self._audio_keys)
        return shared.prefill_once(self._core(self.model), group, first, keys,
                                   lambda rows: self._encoding(self.model, clips[rows]))

    def _vllm_sampling_params(self):
        from vllm import SamplingParams

        gen = self.vllm_generation
        kwargs = {
            "n": 1,
            "repetition_penalty": gen.repetition_penalty,
            "temperature": gen.temperature,
            "top_p": gen.top_p,
            "top_k": gen.top_k,
            "min_p": 0.0 if gen.min_p is None else gen.min_p,
            "max_tokens": gen.max_completion_length,
            "logprobs": gen.logprobs,
            **gen.generation_kwargs,
        }
        audio_token = self._tokenizer.convert_ids_to_tokens(self.audio_token_id)
        for key, value in without_audio_token(self.vllm_generation.llm, audio_token, self.audio_token_id).items():
            kwargs[key] = [*(kwargs.get(key) or []), *value]
        return SamplingParams(**kwargs)

    def sync_vllm_weights(self) -> None:
        """Push the policy's weights into the colocated vLLM engine and drop everything computed with the old ones.

        Names are mapped to the checkpoint's (what vLLM loads); ``vllm_audio.sync_weights`` leaves the engine as a
        fresh load of the same weights would (MoE experts repacked as at load) and resets its encoder and prefix
        caches. ``__init__`` proved that on this build once, before any rollout (``check_sync_round_trip``).
        """
        sync_weights(self.vllm_generation.llm, self._vllm_weights(), self.family)

    def _vllm_weights(self):
        """The policy's weights as the engine loads them (the names and layout of the checkpoint vLLM reads), one
        tensor at a time."""
        config = self.accelerator.unwrap_model(self.model).config
        # _iter_named_params gathers ZeRO-3 shards and merges LoRA.
        return self.family.vllm_weights(config, self.vllm_generation._iter_named_params())
