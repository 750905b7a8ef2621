"""Voxtral (``mistralai/Voxtral-Mini-3B-2507``): a Whisper encoder over fixed 30 s chunks (no mask, sinusoidal
positions), four encoder frames stacked into one by a two-layer projector, a Llama LM; ``[AUDIO]``, 375 tokens per
30 s chunk (a shorter clip is padded to the chunk). The tokenizer is Mistral's ``tekken.json`` (``mistral_common``).

transformers' ``VoxtralProcessor`` builds prompts from chat messages only (its ``__call__`` refuses text holding
``[AUDIO]``); the trainer, sft and eval hand every family's processor chat-template text with one placeholder per clip.
:class:`ChatTextProcessor` takes that text: ``apply_chat_template`` renders Mistral's instruct format (by
``mistral_common``, each clip collapsed to one ``[AUDIO]``), ``__call__`` expands each placeholder to the count
``mistral_common`` gives the clip and extracts the chunked features. Checkpoints are saved under the hub's names, as
Audio Flamingo 3's (transformers 5.17 writes ``language_model.model.model.*``), and, as the hub ships them, again in
the Mistral format that vLLM loads Voxtral from (``consolidated.safetensors``, ``params.json``: ``MISTRAL_NAMES``,
``mistral_params``); the colocated engine's weight sync goes through the same map. vLLM takes Voxtral prompts with
each clip's ``[AUDIO]`` tokens already expanded (mistral_common's count, as the processor expands them).
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

from ..audio import SAMPLE_RATE
from . import Family, sinusoids
from ._tiny import AUDIO, TEXT, feature_extractor, save_with_checkpoint_names, tokenizer_corpus
from .audioflamingo3 import AudioFlamingo3
from .qwen2_audio import FAMILY as QWEN2_AUDIO

AUDIO_TOKEN = "[AUDIO]"
AUDIO_TOKEN_ID = 24  # transformers' VoxtralProcessor fixes it (the hub tekken.json's rank)
FRAMES_PER_TOKEN = 8  # mel frames: the conv stride 2, then 4 encoder frames per projected token
# The tiny tekken's control tokens: mistral_common's names at the hub's ranks (BOS 1, EOS 2, pad 11, audio 24).
_CONTROL = ["<unk>", "<s>", "</s>", "[INST]", "[/INST]", "[AVAILABLE_TOOLS]", "[/AVAILABLE_TOOLS]", "[TOOL_RESULTS]",
            "[/TOOL_RESULTS]", "[TOOL_CALLS]", "[IMG]", "<pad>", "[IMG_BREAK]", "[IMG_END]", "[PREFIX]", "[MIDDLE]",
            "[SUFFIX]", "[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]", "[TOOL_CONTENT]", "[ARGS]", "[CALL_ID]",
            "<SPECIAL_22>", "<SPECIAL_23>", AUDIO_TOKEN, "[BEGIN_AUDIO]", "[TRANSCRIBE]"]
_NUM_CONTROL = 32
# The hub name of each Voxtral tensor (transformers' HF format) -> its Mistral-format name (consolidated.safetensors,
# what vLLM's Voxtral loader reads); every name must match one pattern. The encoder's sinusoidal position table has no
# Mistral name: vLLM computes it (and the tensor stays frozen, ``prepare_model``).
_ENCODER = "mm_whisper_embeddings.whisper_encoder."
_LM_LAYER = r"language_model\.model\.layers\.(\d+)\."
_ENCODER_LAYER = r"audio_tower\.layers\.(\d+)\."
_ENCODER_OUT = _ENCODER + r"transformer.layers.\1."
MISTRAL_NAMES = [
    (r"language_model\.model\.embed_tokens\.weight", "mm_whisper_embeddings.tok_embeddings.weight"),
    (_LM_LAYER + r"self_attn\.([qkvo])_proj\.weight", r"layers.\1.attention.w\2.weight"),
    (_LM_LAYER + r"mlp\.gate_proj\.weight", r"layers.\1.feed_forward.w1.weight"),
    (_LM_LAYER + r"mlp\.down_proj\.weight", r"layers.\1.feed_forward.w2.weight"),
    (_LM_LAYER + r"mlp\.up_proj\.weight", r"layers.\1.feed_forward.w3.weight"),
    (_LM_LAYER + r"input_layernorm\.weight", r"layers.\1.attention_norm.weight"),
    (_LM_LAYER + r"post_attention_layernorm\.weight", r"layers.\1.ffn_norm.weight"),
    (r"language_model\.model\.norm\.weight", "norm.weight"),
    (r"language_model\.lm_head\.weight", "output.weight"),
    (r"audio_tower\.conv1\.(weight|bias)", _ENCODER + r"conv_layers.0.conv.\1"),
    (r"audio_tower\.conv2\.(weight|bias)", _ENCODER + r"conv_layers.1.conv.\1"),
    (_ENCODER_LAYER + r"self_attn\.([qkv])_proj\.(weight|bias)", _ENCODER_OUT + r"attention.w\2.\3"),
    (_ENCODER_LAYER + r"self_attn\.out_proj\.(weight|bias)", _ENCODER_OUT + r"attention.wo.\2"),
    (_ENCODER_LAYER + r"self_attn_layer_norm\.(weight|bias)", _ENCODER_OUT + r"attention_norm.\2"),
    (_ENCODER_LAYER + r"fc1\.(weight|bias)", _ENCODER_OUT + r"feed_forward.w1.\2"),
    (_ENCODER_LAYER + r"fc2\.(weight|bias)", _ENCODER_OUT + r"feed_forward.w2.\2"),
    (_ENCODER_LAYER + r"final_layer_norm\.(weight|bias)", _ENCODER_OUT + r"ffn_norm.\2"),
    (r"audio_tower\.layer_norm\.(weight|bias)", _ENCODER + r"transformer.norm.\1"),
    (r"multi_modal_projector\.linear_1\.weight", "mm_whisper_embeddings.audio_language_projection.0.weight"),
    (r"multi_modal_projector\.linear_2\.weight", "mm_whisper_embeddings.audio_language_projection.2.weight"),
]
COMPUTED_BY_VLLM = "audio_tower.embed_positions.weight"
# Tekken's pre-tokenization pattern (Mistral's).
_PATTERN = (r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?"
            r"[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+"
            r"|\s+(?!\S)|\s+")


class Voxtral(Family):
    name = "voxtral"
    title = "Voxtral"
    hub_id = "mistralai/Voxtral-Mini-3B-2507"
    model_types = ("voxtral",)
    audio_token = AUDIO_TOKEN
    feature_keys = ("input_features",)
    checkpoint_prefixes = QWEN2_AUDIO.checkpoint_prefixes  # the hub's HF-format names are Qwen2-Audio's layout
    max_audio_seconds = 30.0  # longer clips become several feature rows; a batch needs one row per clip
    end_of_turn = "</s>"
    vllm_expands_audio = False  # vLLM's Voxtral takes the prompt as mistral_common encodes it
    # vLLM's Voxtral loads its projector with a plain copy, past reload_weights' deferred loaders: a reload alone
    # leaves it as it was.
    vllm_copied = {"mm_whisper_embeddings.audio_language_projection.0.weight": "audio_language_adapter.w_in.weight",
                   "mm_whisper_embeddings.audio_language_projection.2.weight": "audio_language_adapter.w_out.weight"}
    vllm_computed = ("whisper_encoder.whisper_encoder.embed_positions.weight",)  # the sinusoids

    def model_class(self):
        from transformers import VoxtralForConditionalGeneration

        return VoxtralForConditionalGeneration

    def prepare_model(self, model) -> None:
        # The encoder's sinusoidal positions stay fixed (vLLM recomputes them); from_pretrained makes them trainable.
        for name, param in model.named_parameters():
            if name.endswith("audio_tower.embed_positions.weight"):
                param.requires_grad_(False)

    def load_processor(self, path):
        from transformers import WhisperFeatureExtractor

        return processor_class()(WhisperFeatureExtractor.from_pretrained(path),
                                 tokenizer_class().from_pretrained(str(path)))

    def audio_tokens(self, num_samples: int, window_seconds: float = 30) -> int:
        chunk = int(window_seconds * SAMPLE_RATE)
        return max(1, -(-num_samples // chunk)) * int(window_seconds * 100) // FRAMES_PER_TOKEN

    def encode_audio(self, model, tower, features: dict) -> None:
        tower(features["input_features"])

    def save_layout(self, directory, source_config: dict, names: list[str]) -> None:
        AudioFlamingo3.save_layout(self, directory, source_config, names)  # every saved name back to the hub's
        write_mistral_format(Path(directory))

    def check_vllm(self, path) -> None:
        files = ("params.json", "consolidated.safetensors", "tekken.json")
        missing = [f for f in files if not (Path(path) / f).exists()]
        if missing:
            raise ValueError(
                f"{path}: no {', '.join(missing)}: vLLM loads {self.title} only in the Mistral format, which the hub's "
                "checkpoints and the ones r1-aqa saves hold beside the HF files. Use HF generate (use_vllm: false / "
                "--engine hf)")

    def vllm_engine_kwargs(self, path) -> dict:
        return {"limit_mm_per_prompt": {"audio": 1}, "tokenizer_mode": "mistral", "config_format": "mistral",
                "load_format": "mistral"}

    def vllm_weights(self, config, weights):
        text = config.text_config
        heads = {"wq": text.num_attention_heads, "wk": text.num_key_value_heads}
        for name, tensor in weights:
            name = self.checkpoint_name(name)
            if name != COMPUTED_BY_VLLM:
                yield mistral_tensor(name, tensor, heads, text.head_dim)

    def tiny_tokenizer(self):
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            write_tekken(Path(tmp), 30)
            return tokenizer_class().from_pretrained(tmp)

    def build_tiny(self, out: Path, seed: int, window_seconds: int, layout: str) -> None:
        """A tiny Voxtral: Whisper encoder with the sinusoidal positions vLLM recomputes (frozen), 4-frame projector,
        Llama LM; a tekken vocabulary of bytes and the tiny corpus' word pieces."""
        import torch
        from transformers import GenerationConfig, VoxtralConfig, VoxtralForConditionalGeneration

        write_tekken(out, window_seconds)
        tok = tokenizer_class().from_pretrained(str(out))
        ids = dict(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
        audio = dict(AUDIO, encoder_ffn_dim=4 * AUDIO["d_model"], max_source_positions=window_seconds * 50,
                     model_type="voxtral_encoder")
        config = VoxtralConfig(audio_config=audio, audio_token_id=AUDIO_TOKEN_ID, text_config=dict(
            TEXT, model_type="llama", head_dim=32, vocab_size=len(tok), rope_theta=1e6, **ids))
        torch.manual_seed(seed)
        model = VoxtralForConditionalGeneration(config).eval()
        positions = model.model.audio_tower.embed_positions.weight
        with torch.no_grad():
            positions.copy_(sinusoids(*positions.shape))
        model.generation_config = GenerationConfig(**ids, do_sample=False, max_new_tokens=64)
        save_with_checkpoint_names(model, out, self)
        feature_extractor(window_seconds).save_pretrained(out)
        write_mistral_format(out)


def mistral_name(name: str) -> str:
    """The Mistral-format name of a Voxtral tensor's hub name (``MISTRAL_NAMES``)."""
    for pattern, replacement in MISTRAL_NAMES:
        if re.fullmatch(pattern, name):
            return re.sub(pattern, replacement, name)
    raise ValueError(f"Voxtral tensor {name!r} has no Mistral-format name (MISTRAL_NAMES)")


def mistral_tensor(name: str, tensor, heads: dict[str, int], head_dim: int):
    """``(Mistral name, tensor)`` of a hub-named LM or encoder tensor. The LM's query and key rows go back to
    Mistral's interleaved rotary order (transformers' conversion splits each head's rotary pairs into halves; vLLM's
    Mistral loader undoes it)."""
    out = mistral_name(name)
    kind = out.split(".")[-2]
    if out.startswith("layers.") and kind in heads:
        n = heads[kind]
        tensor = tensor.reshape(n, 2, head_dim // 2, -1).transpose(1, 2).reshape(n * head_dim, -1)
    return out, tensor


def mistral_params(config: dict) -> dict:
    """``params.json`` (the Mistral-format config vLLM reads) of a Voxtral ``config.json``."""
    text, audio = config["text_config"], config["audio_config"]
    encoder = {
        "dim": audio["hidden_size"], "n_layers": audio["num_hidden_layers"], "hidden_dim": audio["intermediate_size"],
        "n_heads": audio["num_attention_heads"], "head_dim": audio["hidden_size"] // audio["num_attention_heads"],
        "vocab_size": audio["vocab_size"], "max_source_positions": audio["max_source_positions"],
        "audio_encoding_args": {"sampling_rate": SAMPLE_RATE, "num_mel_bins": audio["num_mel_bins"],
                                "hop_length": 160, "window_size": 400},
    }
    return {
        "dim": text["hidden_size"], "n_layers": text["num_hidden_layers"], "head_dim": text["head_dim"],
        "hidden_dim": text["intermediate_size"], "n_heads": text["num_attention_heads"],
        "n_kv_heads": text["num_key_value_heads"], "rope_theta": text["rope_parameters"]["rope_theta"],
        "norm_eps": text["rms_norm_eps"], "vocab_size": text["vocab_size"],
        "max_position_embeddings": text["max_position_embeddings"], "tied_embeddings": text["tie_word_embeddings"],
        "multimodal": {"whisper_model_args": {
            "encoder_args": encoder,
            # The projector stacks this many encoder frames into one token.
            "downsample_args": {"downsample_factor": audio["intermediate_size"] // audio["hidden_size"]},
        }},
    }


def write_mistral_format(directory: Path) -> None:
    """Write ``consolidated.safetensors`` and ``params.json`` beside a hub-named HF-format Voxtral checkpoint (as the
    hub's repository holds them), each atomically."""
    import json

    from safetensors import safe_open
    from safetensors.torch import save_file

    from ..files import atomic_path, write_json

    config = json.loads((directory / "config.json").read_text())
    text = config["text_config"]
    heads = {"wq": text["num_attention_heads"], "wk": text["num_key_value_heads"]}
    state = {}
    for file in sorted(directory.glob("model*.safetensors")):
        with safe_open(str(file), "pt") as f:
            for name in f.keys():
                if name != COMPUTED_BY_VLLM:
                    out, tensor = mistral_tensor(name, f.get_tensor(name), heads, text["head_dim"])
                    state[out] = tensor.contiguous()
    with atomic_path(directory / "consolidated.safetensors") as tmp:
        save_file(state, str(tmp), metadata={"format": "pt"})
    write_json(directory / "params.json", mistral_params(config))


def write_tekken(out: Path, window_seconds: int) -> None:
    """A tiny ``tekken.json`` (version v7, audio chunks of ``window_seconds``): the 256 bytes, then every prefix of
    the tiny corpus' words (so the byte-pair merges reach them), after ``_NUM_CONTROL`` control tokens."""
    import base64

    from ..files import write_json

    words = {w for line in tokenizer_corpus() for w in line.split()}
    pieces = {s.encode()[:i] for w in words for s in (w, " " + w) for i in range(2, len(s.encode()) + 1)}
    vocab = [bytes([i]) for i in range(256)] + sorted(pieces, key=lambda b: (len(b), b))
    control = _CONTROL + [f"<SPECIAL_{i}>" for i in range(len(_CONTROL), _NUM_CONTROL)]
    write_json(out / "tekken.json", {
        "config": {"pattern": _PATTERN, "num_vocab_tokens": len(vocab), "default_vocab_size": _NUM_CONTROL + len(vocab),
                   "default_num_special_tokens": _NUM_CONTROL, "version": "v7"},
        "vocab": [{"rank": i, "token_bytes": base64.b64encode(b).decode(), "token_str": b.decode("utf-8", "replace")}
                  for i, b in enumerate(vocab)],
        "special_tokens": [{"rank": i, "token_str": s, "is_control": True} for i, s in enumerate(control)],
        "audio": {"sampling_rate": SAMPLE_RATE, "frame_rate": 12.5, "chunk_length_s": float(window_seconds),
                  "audio_encoding_config": {"num_mel_bins": 128, "hop_length": 160, "window_size": 400}},
    })


@functools.cache
def tokenizer_class():
    """``MistralCommonBackend`` reading control tokens written in text (``[INST]``, ``[AUDIO]``, ``</s>``) as those
    tokens, as the other families' tokenizers read theirs (Mistral's own reads them as plain text)."""
    from transformers import MistralCommonBackend

    class MistralTextControlTokens(MistralCommonBackend):
        def _text_to_ids(self, text: str, add_special_tokens: bool) -> list[int]:
            tekken = self.tokenizer.instruct_tokenizer.tokenizer
            controls = {tekken.id_to_piece(i): i for i in tekken.special_ids}
            pattern = "(" + "|".join(re.escape(t) for t in sorted(controls, key=len, reverse=True)) + ")"
            ids = [tekken.bos_id] if add_special_tokens else []
            for i, part in enumerate(re.split(pattern, text)):
                ids += [controls[part]] if i % 2 else tekken.encode(part, bos=False, eos=False) if part else []
            return ids

    return MistralTextControlTokens


@functools.cache
def processor_class():
    """``VoxtralProcessor`` taking chat-template text with one ``[AUDIO]`` per clip (see the module docstring)."""
    from transformers import VoxtralProcessor

    class ChatTextProcessor(VoxtralProcessor):
        def to_dict(self) -> dict:
            # Saved as the hub's processor (transformers' AutoProcessor loads it; the family wraps it again).
            return {**super().to_dict(), "processor_class": VoxtralProcessor.__name__}

        def apply_chat_template(self, conversation, chat_template=None, add_generation_prompt: bool = False,
                                tokenize: bool = False, **kwargs):
            """Mistral's instruct text of each conversation, each clip as one ``[AUDIO]`` (``tokenize=False``
            only; the generation prompt is implied: the text ends with ``[/INST]``)."""
            if tokenize or chat_template is not None:
                raise ValueError("Voxtral's chat format is mistral_common's: tokenize=False and no chat_template")
            batched = isinstance(conversation[0], (list, tuple))
            texts = [self._instruct_text(c) for c in (conversation if batched else [conversation])]
            return texts if batched else texts[0]

        def _instruct_text(self, messages: list[dict]) -> str:
            from mistral_common.protocol.instruct.request import ChatCompletionRequest
            from mistral_common.tokens.tokenizers.base import SpecialTokenPolicy

            silence = {"type": "input_audio", "input_audio": {"data": _silent_wav_base64(), "format": "wav"}}
            openai = [dict(m, content=m["content"] if isinstance(m["content"], str) else
                           [silence if c.get("type") == "audio" else c for c in m["content"]]) for m in messages]
            mistral = self.tokenizer.tokenizer
            tokens = mistral.encode_chat_completion(ChatCompletionRequest.from_openai(openai)).tokens
            text = mistral.decode(tokens, special_token_policy=SpecialTokenPolicy.KEEP)
            return re.sub(f"(?:{re.escape(AUDIO_TOKEN)})+", AUDIO_TOKEN, text)

        def __call__(self, text, audio=None, sampling_rate: int = SAMPLE_RATE, text_kwargs: dict | None = None,
                     return_tensors: str = "pt", **kwargs):
            """Token ids (each ``[AUDIO]`` expanded to its clip's count, by mistral_common) and the clips' mel
            features, one row per 30 s chunk; left or right padded as the tokenizer is."""
            from transformers import BatchFeature

            texts = [text] if isinstance(text, str) else list(text)
            clips = list(audio or [])
            encoder = self.tokenizer.tokenizer.instruct_tokenizer.audio_encoder
            counts = iter([encoder.audio_config.num_audio_tokens(len(encoder.pad(c, sampling_rate))) for c in clips])
            pieces = [t.split(AUDIO_TOKEN) for t in texts]
            if sum(len(p) - 1 for p in pieces) != len(clips):
                raise ValueError(f"{sum(len(p) - 1 for p in pieces)} {AUDIO_TOKEN} placeholders for {len(clips)} clips")
            expanded = [p[0] + "".join(AUDIO_TOKEN * next(counts) + rest for rest in p[1:]) for p in pieces]
            data = dict(self.tokenizer(expanded, add_special_tokens=False, padding=True, return_tensors="pt"))
            if clips:
                window = self.feature_extractor.chunk_length
                data["input_features"] = self._retrieve_input_features(
                    clips, window * 100, sampling_rate=sampling_rate, padding=True, truncation=False,
                    pad_to_multiple_of=window * sampling_rate, return_tensors="pt")
            return BatchFeature(data=data, tensor_type=return_tensors)

    return ChatTextProcessor


def _silent_wav_base64() -> str:
    """A 0.1 s silent 16 kHz wav (stands in for a clip where only the chat text is rendered)."""
    import base64
    import io

    import numpy as np
    import soundfile as sf

    buffer = io.BytesIO()
    sf.write(buffer, np.zeros(SAMPLE_RATE // 10, dtype=np.float32), SAMPLE_RATE, format="WAV")
    return base64.b64encode(buffer.getvalue()).decode()


FAMILY = Voxtral()
