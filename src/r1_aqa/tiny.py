"""Offline tiny models: random weights from a small config, a locally trained tokenizer, the family's processor.

Same classes and code paths as Qwen2-Audio-7B-Instruct / the Qwen2.5-Omni thinker, small enough for CPU tests,
the demo and CI, and loadable by vLLM (head_dim 32, the standard 30 s Whisper window, the hub's weight names).
"""

from __future__ import annotations

import json
import os
import string
from pathlib import Path

from .prompts import TEMPLATES

FAMILIES = ("qwen2-audio", "qwen2.5-omni")
LAYOUTS = ("thinker", "full")

_QWEN2_AUDIO_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>"]
_OMNI_SPECIALS = _QWEN2_AUDIO_SPECIALS + ["<|IMAGE|>", "<|VIDEO|>", "<|vision_bos|>", "<|vision_eos|>"]
# Qwen2_5OmniProcessor reads these from its tokenizer (the hub tokenizer_config.json names them the same way).
_OMNI_NAMED_TOKENS = {
    "audio_token": "<|AUDIO|>",
    "audio_bos_token": "<|audio_bos|>",
    "audio_eos_token": "<|audio_eos|>",
    "image_token": "<|IMAGE|>",
    "video_token": "<|VIDEO|>",
    "vision_bos_token": "<|vision_bos|>",
    "vision_eos_token": "<|vision_eos|>",
}

# Qwen2-Audio-Instruct's chat format: audio items render as "Audio N: <|audio_bos|><|AUDIO|><|audio_eos|>\n".
QWEN2_AUDIO_CHAT_TEMPLATE = (
    "{% set audio_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'audio' or 'audio' in content or 'audio_url' in content %}"
    "{% set audio_count.value = audio_count.value + 1 %}Audio {{ audio_count.value }}: <|audio_bos|><|AUDIO|><|audio_eos|>\n"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Qwen2.5-Omni's chat format for audio and text (the thinker's input): audio renders inline as
# "<|audio_bos|><|AUDIO|><|audio_eos|>".
OMNI_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\n"
    "You are Qwen, a virtual human developed by the Qwen Team, Alibaba Group, capable of perceiving auditory and "
    "visual inputs, as well as generating text and speech.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'audio' or 'audio' in content or 'audio_url' in content %}<|audio_bos|><|AUDIO|><|audio_eos|>"
    "{% elif content['type'] == 'image' or 'image' in content %}<|vision_bos|><|IMAGE|><|vision_eos|>"
    "{% elif content['type'] == 'video' or 'video' in content %}<|vision_bos|><|VIDEO|><|vision_eos|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _corpus() -> list[str]:
    """Training text for the tiny BPE: printable ASCII, the templates, answer tags and common answer words."""
    words = (
        "yes no one two three four five six seven eight nine ten low high middle very loud quiet fast slow "
        "sound music speech audio video man woman child dog cat bird car water rain wind bell piano guitar drum "
        "violin voice noise beep tone pitch count left right silence none other what which how many is the a of "
        "in on to and or it this that question answer choose option options following final output thinking process "
        "please select provided choices"
    ).split()
    tags = ["<answer>", "</answer>", "<think>", "</think>", "<answer> </answer>", "<think> </think>"]
    lines = [string.printable] + list(TEMPLATES.values())
    lines += [" ".join(words)] * 20 + [f"<answer>{w}</answer>" for w in words] * 5 + tags * 20
    return lines


def build_tokenizer(family: str = "qwen2-audio"):
    """A byte-level BPE tokenizer (a few hundred tokens) trained here, with the family's special tokens."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer

    specials = _OMNI_SPECIALS if family == "qwen2.5-omni" else _QWEN2_AUDIO_SPECIALS
    pre = pre_tokenizers.Sequence(
        [
            # Qwen2's pre-tokenization: contractions, letters, single digits, punctuation runs, whitespace.
            pre_tokenizers.Split(
                Regex(
                    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
                ),
                behavior="isolated",
            ),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre
    trainer = trainers.BpeTrainer(
        vocab_size=512, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False, min_frequency=2
    )
    bpe.train_from_iterator(_corpus(), trainer=trainer)
    state = json.loads(bpe.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in state["merges"]]
    tok = Qwen2Tokenizer(
        vocab=state["vocab"],
        merges=merges,
        unk_token=None,
        eos_token="<|im_end|>",  # chat turns end with <|im_end|>, as in the Qwen instruct tokenizers
        pad_token="<|endoftext|>",
        extra_special_tokens={},
        **(_OMNI_NAMED_TOKENS if family == "qwen2.5-omni" else {}),
    )
    tok.add_special_tokens({"additional_special_tokens": specials[1:]})
    tok.add_tokens(["<|endoftext|>"], special_tokens=True)
    tok.chat_template = OMNI_CHAT_TEMPLATE if family == "qwen2.5-omni" else QWEN2_AUDIO_CHAT_TEMPLATE
    tok.padding_side = "left"
    return tok


def _feature_extractor(window_seconds: int = 30):
    from transformers import WhisperFeatureExtractor

    # The standard Whisper window is 30 s (3000 mel frames of 10 ms), as vLLM assumes; 128 mel bins.
    return WhisperFeatureExtractor(
        feature_size=128, sampling_rate=16_000, hop_length=160, chunk_length=window_seconds, n_fft=400,
        padding_value=0.0,
    )


def _round_vocab(n: int, multiple: int = 64) -> int:
    return (n + multiple - 1) // multiple * multiple


def build_tiny_model(
    out_dir: str | os.PathLike, family: str = "qwen2-audio", seed: int = 0, window_seconds: int = 30,
    layout: str = "thinker",
) -> Path:
    """Write a complete tiny model directory (config, safetensors, processor, generation config) to ``out_dir``.

    Deterministic for a seed. Loads with ``AutoProcessor.from_pretrained`` and the model class's
    ``from_pretrained`` with ``HF_HUB_OFFLINE=1``, and with vLLM. ``window_seconds`` < 30 shrinks the audio
    encoder's window (much faster on CPU, what the demo uses; vLLM needs the standard 30 s). For Qwen2.5-Omni,
    ``layout="full"`` writes the hub's layout (what users download and vLLM loads): the same thinker as
    ``"thinker"`` for a seed, plus a tiny talker and token2wav, weights under ``thinker.``/``talker.``/``token2wav.``.
    """
    if layout not in LAYOUTS or (layout == "full" and family != "qwen2.5-omni"):
        raise ValueError(f"layout {layout!r}: choose one of {LAYOUTS} ('full' is the Qwen2.5-Omni hub layout)")
    import torch
    from transformers import GenerationConfig

    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; choose one of {FAMILIES}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok = build_tokenizer(family)
    fe = _feature_extractor(window_seconds)
    vocab = _round_vocab(len(tok))
    ids = {t: tok.convert_tokens_to_ids(t) for t in ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|AUDIO|>")}
    text = dict(
        vocab_size=vocab,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,  # head_dim 32: vLLM's CPU attention needs 32/64/80/...
        num_key_value_heads=1,
        max_position_embeddings=4096,
        rms_norm_eps=1e-6,
        tie_word_embeddings=False,
    )
    audio = dict(
        d_model=64,
        encoder_layers=2,
        encoder_attention_heads=2,
        encoder_ffn_dim=128,
        num_mel_bins=128,
        max_source_positions=window_seconds * 50,  # encoder positions: 2 mel frames each
    )
    torch.manual_seed(seed)
    if family == "qwen2-audio":
        model, processor = _build_qwen2_audio(tok, fe, text, audio, ids)
    else:
        model, processor = _build_omni_thinker(tok, fe, text, audio, ids)
    model.generation_config = GenerationConfig(
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=[ids["<|endoftext|>"], ids["<|im_end|>"]],
        pad_token_id=ids["<|endoftext|>"],
        do_sample=False,
        max_new_tokens=64,
    )
    if layout == "full":
        _save_full_omni(_full_omni(model), out)
    else:
        _save_with_checkpoint_names(model, out, family)
    processor.save_pretrained(out)
    return out


def _build_qwen2_audio(tok, fe, text: dict, audio: dict, ids: dict):
    from transformers import Qwen2AudioConfig, Qwen2AudioForConditionalGeneration, Qwen2AudioProcessor

    config = Qwen2AudioConfig(
        audio_config=dict(audio, model_type="qwen2_audio_encoder"),
        text_config=dict(
            text,
            model_type="qwen2",
            bos_token_id=ids["<|endoftext|>"],
            eos_token_id=ids["<|im_end|>"],
            pad_token_id=ids["<|endoftext|>"],
        ),
        audio_token_index=ids["<|AUDIO|>"],
    )
    model = Qwen2AudioForConditionalGeneration(config).eval()
    processor = Qwen2AudioProcessor(feature_extractor=fe, tokenizer=tok, chat_template=QWEN2_AUDIO_CHAT_TEMPLATE)
    return model, processor


# The vision tower's patching and the image/video processors' settings must agree (transformers' defaults).
_OMNI_VISION_PATCHES = {"patch_size": 14, "temporal_patch_size": 2, "spatial_merge_size": 2}
_OMNI_PROCESSOR_PATCHES = {"patch_size": 14, "temporal_patch_size": 2, "merge_size": 2}


def _build_omni_thinker(tok, fe, text: dict, audio: dict, ids: dict):
    from transformers import (
        Qwen2_5OmniThinkerConfig,
        Qwen2_5OmniThinkerForConditionalGeneration,
        Qwen2VLImageProcessorPil,
    )

    from .models import Qwen2_5OmniAudioProcessor

    config = Qwen2_5OmniThinkerConfig(
        audio_config=dict(audio, output_dim=text["hidden_size"], n_window=100),
        vision_config=dict(
            depth=1, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=text["hidden_size"],
            fullatt_block_indexes=[0], **_OMNI_VISION_PATCHES,
        ),
        text_config=dict(
            text,
            # multimodal RoPE over (time, height, width); sections sum to head_dim / 2.
            rope_parameters={"rope_type": "default", "mrope_section": [4, 6, 6], "rope_theta": 1_000_000.0},
        ),
        audio_token_index=ids["<|AUDIO|>"],
        image_token_index=tok.convert_tokens_to_ids("<|IMAGE|>"),
        video_token_index=tok.convert_tokens_to_ids("<|VIDEO|>"),
        audio_start_token_id=tok.convert_tokens_to_ids("<|audio_bos|>"),
        audio_end_token_id=tok.convert_tokens_to_ids("<|audio_eos|>"),
        vision_start_token_id=tok.convert_tokens_to_ids("<|vision_bos|>"),
        vision_end_token_id=tok.convert_tokens_to_ids("<|vision_eos|>"),
    )
    model = Qwen2_5OmniThinkerForConditionalGeneration(config).eval()
    processor = Qwen2_5OmniAudioProcessor(feature_extractor=fe, tokenizer=tok, chat_template=OMNI_CHAT_TEMPLATE)
    # What Qwen2_5OmniProcessor saves for its image and video processors (the video one needs torchvision to build).
    processor.vision_settings = {
        "image_processor": Qwen2VLImageProcessorPil(**_OMNI_PROCESSOR_PATCHES).to_dict(),
        "video_processor": dict(_OMNI_PROCESSOR_PATCHES, video_processor_type="Qwen2VLVideoProcessor"),
    }
    return model, processor


def _save_with_checkpoint_names(model, out: Path, family: str) -> None:
    """Save with the hub's parameter names (vLLM reads those; transformers maps them back on load)."""
    from safetensors.torch import save_file

    from .models import checkpoint_name

    state = {checkpoint_name(k, family): v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    model.config.architectures = [type(model).__name__]
    model.config.save_pretrained(out)
    model.generation_config.save_pretrained(out)


def _full_omni(thinker):
    """The full Qwen2.5-Omni model around ``thinker``: a tiny talker and token2wav (random), the thinker's weights."""
    import torch
    from transformers import Qwen2_5OmniConfig, Qwen2_5OmniForConditionalGeneration

    tc = thinker.config
    vocab = tc.text_config.vocab_size
    token_ids = {k: getattr(tc, k) for k in (
        "audio_token_index", "image_token_index", "video_token_index", "audio_start_token_id", "audio_end_token_id",
        "vision_start_token_id", "vision_end_token_id")}
    spare = iter(range(vocab - 1, 0, -1))  # the rounded vocabulary's unused ids stand in for the TTS tokens
    tts = {k: next(spare) for k in (
        "tts_text_start_token_id", "tts_text_end_token_id", "tts_text_pad_token_id", "tts_codec_start_token_id",
        "tts_codec_end_token_id", "tts_codec_pad_token_id", "tts_codec_mask_token_id")}
    talker = dict(
        vocab_size=vocab, embedding_size=tc.text_config.hidden_size, hidden_size=64, intermediate_size=128,
        num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1, head_dim=32,
        rope_parameters=dict(tc.text_config.rope_parameters), **token_ids, **tts,
    )
    dit = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, head_dim=32, ff_mult=2, emb_dim=32,
               look_ahead_layers=[1], look_backward_layers=[0], num_embeds=vocab, enc_emb_dim=32, enc_dim=32,
               enc_channels=[32, 32, 32, 32, 96], enc_attention_channels=16, enc_se_channels=16)
    bigvgan = dict(upsample_initial_channel=32, resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1, 3, 5]],
                   upsample_rates=[2, 2], upsample_kernel_sizes=[4, 4])
    config = Qwen2_5OmniConfig(thinker_config=tc.to_dict(), talker_config=talker,
                               token2wav_config=dict(dit_config=dit, bigvgan_config=bigvgan))
    model = Qwen2_5OmniForConditionalGeneration(config).eval()
    with torch.no_grad():
        model.thinker.load_state_dict(thinker.state_dict())
    model.generation_config = thinker.generation_config
    return model


def _save_full_omni(model, out: Path) -> None:
    """Save as the hub does: its parameter names are the full model's, its architecture ``Qwen2_5OmniModel``."""
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    model.config.architectures = ["Qwen2_5OmniModel"]
    model.config.thinker_config.architectures = ["Qwen2_5OmniThinkerForConditionalGeneration"]
    # Without a dtype, vLLM runs the full layout in bf16 on CPU (its Omni default), the thinker-only one in float32.
    model.config.dtype = model.config.thinker_config.dtype = "float32"
    model.config.save_pretrained(out)
    model.generation_config.save_pretrained(out)


HELP = "Build an offline tiny random-weight model (Qwen2-Audio or the Qwen2.5-Omni thinker) for tests and the demo."


def add_arguments(parser) -> None:
    parser.add_argument("out_dir", help="directory to write the model to")
    parser.add_argument("--family", choices=FAMILIES, default="qwen2-audio")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--layout", choices=LAYOUTS, default="thinker",
                        help="qwen2.5-omni only: 'full' writes the hub's layout (thinker + talker + token2wav), which "
                        "vLLM needs; 'thinker' the thinker alone")
    parser.add_argument("--window-seconds", type=int, default=2,
                        help="audio encoder window; < 30 is faster on CPU but not loadable by vLLM")


def run(args) -> None:
    out = build_tiny_model(args.out_dir, family=args.family, seed=args.seed, window_seconds=args.window_seconds,
                           layout=args.layout)
    print(f"wrote tiny {args.family} model ({args.layout} layout) to {out}")
