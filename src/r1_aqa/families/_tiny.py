"""What the tiny offline models of every family share: a locally trained tokenizer, the Whisper feature extractor,
the text and audio sizes, the generation config, and saving under the hub's names."""

from __future__ import annotations

import string
from pathlib import Path

from ..prompts import TEMPLATES

# Sizes every tiny model uses: head_dim 32 (vLLM's CPU attention needs 32/64/80/...), untied LM head.
TEXT = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=2,
    num_key_value_heads=1,
    max_position_embeddings=4096,
    rms_norm_eps=1e-6,
    tie_word_embeddings=False,
)
AUDIO = dict(d_model=64, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=128, num_mel_bins=128)


def audio_sizes(window_seconds: int) -> dict:
    """The tiny Whisper-style encoder's sizes for a window (encoder positions: 2 mel frames each)."""
    return dict(AUDIO, max_source_positions=window_seconds * 50)


def tokenizer_corpus() -> list[str]:
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


def build_tokenizer(specials: list[str], chat_template: str, named_tokens: dict | None = None):
    """A byte-level BPE tokenizer (a few hundred tokens) trained here; ``specials[0]`` is the pad token, the rest
    (and ``named_tokens``, attributes the processor reads) are special tokens."""
    import json

    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer

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
    bpe.train_from_iterator(tokenizer_corpus(), trainer=trainer)
    state = json.loads(bpe.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in state["merges"]]
    tok = Qwen2Tokenizer(
        vocab=state["vocab"],
        merges=merges,
        unk_token=None,
        eos_token="<|im_end|>",  # chat turns end with <|im_end|>, as in the Qwen instruct tokenizers
        pad_token=specials[0],
        extra_special_tokens={},
        **(named_tokens or {}),
    )
    tok.add_special_tokens({"additional_special_tokens": specials[1:]})
    tok.add_tokens([specials[0]], special_tokens=True)
    tok.chat_template = chat_template
    tok.padding_side = "left"
    return tok


def feature_extractor(window_seconds: int = 30):
    from transformers import WhisperFeatureExtractor

    # The standard Whisper window is 30 s (3000 mel frames of 10 ms), as vLLM assumes; 128 mel bins.
    return WhisperFeatureExtractor(
        feature_size=128, sampling_rate=16_000, hop_length=160, chunk_length=window_seconds, n_fft=400,
        padding_value=0.0,
    )


def round_vocab(n: int, multiple: int = 64) -> int:
    return (n + multiple - 1) // multiple * multiple


def token_ids(tok, *tokens: str) -> dict[str, int]:
    return {t: tok.convert_tokens_to_ids(t) for t in tokens}


def set_generation_config(model, tok) -> None:
    """Greedy, 64 new tokens, ending at ``<|endoftext|>`` or ``<|im_end|>``."""
    from transformers import GenerationConfig

    pad, end = tok.convert_tokens_to_ids("<|endoftext|>"), tok.convert_tokens_to_ids("<|im_end|>")
    model.generation_config = GenerationConfig(bos_token_id=pad, eos_token_id=[pad, end], pad_token_id=pad,
                                               do_sample=False, max_new_tokens=64)


def qwen2_text_config(tok) -> dict:
    """The tiny Qwen2 LM's config for a tokenizer (what Qwen2-Audio and Audio Flamingo 3 put behind their encoder)."""
    ids = token_ids(tok, "<|endoftext|>", "<|im_end|>")
    return dict(TEXT, model_type="qwen2", vocab_size=round_vocab(len(tok)), bos_token_id=ids["<|endoftext|>"],
                eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"])


def random_model(cls, config, tok, seed: int):
    """``cls(config)`` with the weights of ``seed``, in eval mode, with the tiny generation config."""
    import torch

    torch.manual_seed(seed)
    model = cls(config).eval()
    set_generation_config(model, tok)
    return model


def save_with_checkpoint_names(model, out: Path, family) -> None:
    """Save with the hub's parameter names (vLLM reads those; transformers maps them back on load)."""
    from safetensors.torch import save_file

    state = {family.checkpoint_name(k): v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    model.config.architectures = [type(model).__name__]
    model.config.save_pretrained(out)
    model.generation_config.save_pretrained(out)


def build_encoder_lm(family, out: Path, seed: int, window_seconds: int, classes: tuple, encoder_type: str,
                     token_field: str, **processor_kwargs) -> None:
    """The tiny model of a family that puts a Whisper-style encoder (``encoder_type``) before the tiny Qwen2 LM, saved
    with its processor. ``classes``: its (config, model, processor) classes; ``token_field``: the config field that
    holds the id of the family's audio token; ``processor_kwargs``: what the processor takes besides the feature
    extractor and the tokenizer."""
    config_class, model_class, processor_class = classes
    tok = family.tiny_tokenizer()
    config = config_class(audio_config=dict(audio_sizes(window_seconds), model_type=encoder_type),
                          text_config=qwen2_text_config(tok),
                          **{token_field: tok.convert_tokens_to_ids(family.audio_token)})
    save_with_checkpoint_names(random_model(model_class, config, tok, seed), out, family)
    processor_class(feature_extractor=feature_extractor(window_seconds), tokenizer=tok,
                    **processor_kwargs).save_pretrained(out)
