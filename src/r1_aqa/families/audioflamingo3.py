"""Audio Flamingo 3 (``nvidia/audio-flamingo-3-hf``): a Whisper encoder ending in a 2x average pool, a two-layer
projector, Qwen2 LM; ``<sound>``, 25 tokens per second of audio (in 30 s windows).

transformers 5.17 loads the hub's names (``audio_tower.``, ``multi_modal_projector.``, ``language_model.model.``,
``language_model.lm_head.``: Qwen2-Audio's, which vLLM's loader reads) but its ``save_pretrained`` writes the
language model under ``language_model.model.model.*``, which vLLM rejects: ``save_layout`` rewrites every saved name
to the hub's.
"""

from __future__ import annotations

from pathlib import Path

from ..audio import QWEN2_AUDIO_MAX_SECONDS
from . import Family, rename_weights
from ._tiny import build_encoder_lm, build_tokenizer
from .qwen2_audio import FAMILY as QWEN2_AUDIO
from .qwen2_audio import whisper_tokens

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<sound>"]

# Audio Flamingo 3's chat format (Qwen2 chat markup): an audio item renders as "<sound>" where it stands.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'audio' or 'audio' in content or 'audio_url' in content %}<sound>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


class AudioFlamingo3(Family):
    name = "audioflamingo3"
    title = "Audio Flamingo 3"
    hub_id = "nvidia/audio-flamingo-3-hf"
    model_types = ("audioflamingo3",)
    audio_token = "<sound>"
    feature_keys = ("input_features", "input_features_mask")
    checkpoint_prefixes = QWEN2_AUDIO.checkpoint_prefixes
    # The processor splits longer clips into 30 s windows, one feature row each; a batch needs one row per clip.
    max_audio_seconds = QWEN2_AUDIO_MAX_SECONDS

    def model_class(self):
        from transformers import AudioFlamingo3ForConditionalGeneration

        return AudioFlamingo3ForConditionalGeneration

    def audio_tokens(self, num_samples: int, window_seconds: float = 30) -> int:
        return whisper_tokens(num_samples, window_seconds)

    def encode_audio(self, model, tower, features: dict) -> None:
        tower(features["input_features"], input_features_mask=features["input_features_mask"])

    def save_layout(self, directory, source_config: dict, names: list[str]) -> None:
        rename_saved_weights(directory, {self.checkpoint_name(n) for n in names})

    def tiny_tokenizer(self):
        return build_tokenizer(SPECIALS, CHAT_TEMPLATE)

    def build_tiny(self, out: Path, seed: int, window_seconds: int, layout: str) -> None:
        from transformers import AudioFlamingo3Config, AudioFlamingo3ForConditionalGeneration, \
            AudioFlamingo3Processor

        build_encoder_lm(self, out, seed, window_seconds,
                         (AudioFlamingo3Config, AudioFlamingo3ForConditionalGeneration, AudioFlamingo3Processor),
                         "audioflamingo3_encoder", "audio_token_id", chat_template=CHAT_TEMPLATE,
                         audio_token=self.audio_token)


def rename_saved_weights(directory, expected: set[str]) -> None:
    """Rewrite the weight names ``save_pretrained`` wrote in ``directory`` (each safetensors file and the shard
    index) to the ``expected`` checkpoint names, atomically per file.

    A saved name not expected must become one by dropping one ``model.`` segment (``language_model.model.model.x`` ->
    ``language_model.model.x``); any other is an error naming the tensor.
    """
    from safetensors import safe_open

    directory = Path(directory)
    names = set()
    for file in directory.glob("model*.safetensors"):  # the HF format (not a Mistral-format copy)
        with safe_open(str(file), "pt") as f:
            names |= set(f.keys())
    if names - expected:
        rename_weights(directory, lambda name: _hub_name(name, expected, directory))


def _hub_name(name: str, expected: set[str], directory: Path) -> str:
    if name in expected:
        return name
    parts = name.split(".")
    found = {".".join(parts[:i] + parts[i + 1 :]) for i, p in enumerate(parts) if p == "model"} & expected
    if len(found) != 1:
        raise ValueError(f"{directory}: saved tensor {name!r} has no checkpoint name of the model")
    return found.pop()


FAMILY = AudioFlamingo3()
