"""The Qwen2.5-Omni thinker (``Qwen/Qwen2.5-Omni-7B``): its own audio encoder (ending in the projection to the LM
width), Qwen2 LM with multimodal RoPE; ``<|AUDIO|>``; thinker-only or the hub's full layout (see ``_omni``).

vLLM runs the thinker where torchvision is missing through ``OmniFamily.audio_only_vllm``.
"""

from __future__ import annotations

from pathlib import Path

from ._omni import OmniFamily, audio_only_processor_class
from ._tiny import TEXT, audio_sizes, build_tokenizer, feature_extractor, round_vocab, save_with_checkpoint_names, \
    random_model
from .qwen2_audio import SPECIALS as QWEN2_AUDIO_SPECIALS
from .qwen2_audio import whisper_tokens

SPECIALS = QWEN2_AUDIO_SPECIALS + ["<|IMAGE|>", "<|VIDEO|>", "<|vision_bos|>", "<|vision_eos|>"]
# Qwen2_5OmniProcessor reads these from its tokenizer (the hub tokenizer_config.json names them the same way).
NAMED_TOKENS = {
    "audio_token": "<|AUDIO|>",
    "audio_bos_token": "<|audio_bos|>",
    "audio_eos_token": "<|audio_eos|>",
    "image_token": "<|IMAGE|>",
    "video_token": "<|VIDEO|>",
    "vision_bos_token": "<|vision_bos|>",
    "vision_eos_token": "<|vision_eos|>",
}

# Qwen2.5-Omni's chat format for audio and text (the thinker's input): audio renders inline as
# "<|audio_bos|><|AUDIO|><|audio_eos|>".
CHAT_TEMPLATE = (
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

# The vision tower's patching and the image/video processors' settings must agree (transformers' defaults).
_VISION_PATCHES = {"patch_size": 14, "temporal_patch_size": 2, "spatial_merge_size": 2}
_PROCESSOR_PATCHES = {"patch_size": 14, "temporal_patch_size": 2, "merge_size": 2}


class Qwen25Omni(OmniFamily):
    name = "qwen2.5-omni"
    title = "Qwen2.5-Omni"
    hub_id = "Qwen/Qwen2.5-Omni-7B"
    full_model_type = "qwen2_5_omni"
    full_architecture = "Qwen2_5OmniModel"
    thinker_architecture = "Qwen2_5OmniThinkerForConditionalGeneration"
    processor_class = "Qwen2_5OmniProcessor"
    audio_token = "<|AUDIO|>"
    vllm_module = "qwen2_5_omni_thinker"
    vllm_processing_info = "Qwen2_5OmniThinkerProcessingInfo"
    vllm_architectures = ("Qwen2_5OmniModel", "Qwen2_5OmniForConditionalGeneration")

    def audio_tokens(self, num_samples: int, window_seconds: float = 30) -> int:
        return whisper_tokens(num_samples, window_seconds)

    def tiny_tokenizer(self):
        return build_tokenizer(SPECIALS, CHAT_TEMPLATE, NAMED_TOKENS)

    def build_tiny(self, out: Path, seed: int, window_seconds: int, layout: str) -> None:
        """``layout="full"`` writes the hub's layout: the same thinker as ``"thinker"`` for a seed, plus a tiny
        talker and token2wav, weights under ``thinker.``/``talker.``/``token2wav.``."""
        from transformers import Qwen2_5OmniThinkerConfig, Qwen2_5OmniThinkerForConditionalGeneration, \
            Qwen2VLImageProcessorPil

        tok = self.tiny_tokenizer()
        ids = {name: tok.convert_tokens_to_ids(token) for name, token in (
            ("audio_token_index", "<|AUDIO|>"), ("image_token_index", "<|IMAGE|>"),
            ("video_token_index", "<|VIDEO|>"), ("audio_start_token_id", "<|audio_bos|>"),
            ("audio_end_token_id", "<|audio_eos|>"), ("vision_start_token_id", "<|vision_bos|>"),
            ("vision_end_token_id", "<|vision_eos|>"))}
        config = Qwen2_5OmniThinkerConfig(
            audio_config=dict(audio_sizes(window_seconds), output_dim=TEXT["hidden_size"], n_window=100),
            vision_config=dict(depth=1, hidden_size=32, intermediate_size=64, num_heads=2,
                               out_hidden_size=TEXT["hidden_size"], fullatt_block_indexes=[0], **_VISION_PATCHES),
            text_config=dict(
                TEXT, vocab_size=round_vocab(len(tok)),
                # multimodal RoPE over (time, height, width); sections sum to head_dim / 2.
                rope_parameters={"rope_type": "default", "mrope_section": [4, 6, 6], "rope_theta": 1_000_000.0},
            ),
            **ids,
        )
        model = random_model(Qwen2_5OmniThinkerForConditionalGeneration, config, tok, seed)
        if layout == "full":
            _save_full(_full_model(model), out)
        else:
            save_with_checkpoint_names(model, out, self)
        processor = audio_only_processor_class("Qwen2_5OmniProcessor")(
            feature_extractor=feature_extractor(window_seconds), tokenizer=tok, chat_template=CHAT_TEMPLATE)
        # What Qwen2_5OmniProcessor saves for its image and video processors (the video one needs torchvision).
        processor.vision_settings = {
            "image_processor": Qwen2VLImageProcessorPil(**_PROCESSOR_PATCHES).to_dict(),
            "video_processor": dict(_PROCESSOR_PATCHES, video_processor_type="Qwen2VLVideoProcessor"),
        }
        processor.save_pretrained(out)


def _full_model(thinker):
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


def _save_full(model, out: Path) -> None:
    """Save as the hub does: its parameter names are the full model's, its architecture ``Qwen2_5OmniModel``."""
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    model.config.architectures = [FAMILY.full_architecture]
    model.config.thinker_config.architectures = [FAMILY.thinker_architecture]
    # Without a dtype, vLLM runs the full layout in bf16 on CPU (its Omni default), the thinker-only one in float32.
    model.config.dtype = model.config.thinker_config.dtype = "float32"
    model.config.save_pretrained(out)
    model.generation_config.save_pretrained(out)


FAMILY = Qwen25Omni()
