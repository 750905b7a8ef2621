"""AudioGRPOTrainer's own settings on the tiny Qwen2-Audio: ``max_audio_seconds`` reaches the rollouts and log-prob
passes, and TRL options whose rollouts would bypass the audio path are refused at construction."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import length_reward, make_parquet

from r1_aqa.training.rewards import accuracy_reward


def _trainer(tiny_model_dir, tmp_path, max_audio_seconds, rollout_func=None, **overrides):
    from r1_aqa.families.loading import load_model
    from r1_aqa.training.stages import build_dataset
    from r1_aqa.training.trainer import AudioGRPOTrainer
    from r1_aqa.training.trl_configs import AudioGRPOConfig

    settings = dict(output_dir=str(tmp_path / "out"), per_device_train_batch_size=4, num_generations=2,
                    max_completion_length=4, max_steps=1, logging_steps=1, save_strategy="no", report_to="none",
                    use_cpu=True, bf16=False, seed=0, dataloader_num_workers=0)
    extra = {"rollout_func": rollout_func} if rollout_func is not None else {}
    return AudioGRPOTrainer(
        model=load_model(tiny_model_dir, device="cpu").train(), reward_funcs=[accuracy_reward, length_reward],
        args=AudioGRPOConfig(**settings, **overrides, max_audio_seconds=max_audio_seconds),
        train_dataset=build_dataset(str(make_parquet(tmp_path)), "default"), **extra)


@pytest.mark.parametrize("cap", [None, 0.5])
def test_max_audio_seconds_cuts_every_clip(tiny_model_dir, tmp_path, cap):
    """Clips of 1.0 s and 1.5 s: uncut they give two audio lengths in the prompts; cut at 0.5 s, one shorter one."""
    trainer = _trainer(tiny_model_dir, tmp_path, cap)
    audio_id = trainer.audio_token_id
    lengths: set[int] = set()

    def hook(module, args, kwargs):
        if kwargs.get("input_ids") is not None:  # prompt forwards (generate's later steps feed one new token)
            lengths.update(n for n in (kwargs["input_ids"] == audio_id).sum(1).tolist() if n)

    def audio_tokens(seconds: float) -> int:  # what the processor expands one <|AUDIO|> to for a clip this long
        processor = trainer.processing_class
        ids = processor(text=["<|AUDIO|>"], audio=[np.zeros(int(seconds * 16_000), np.float32)],
                        sampling_rate=16_000)["input_ids"][0]
        return sum(int(t == audio_id) for t in ids)

    trainer.model.register_forward_pre_hook(hook, with_kwargs=True)
    trainer.train()
    ratio = next(h["audio/cut_at_cap_ratio"] for h in trainer.state.log_history if "audio/cut_at_cap_ratio" in h)
    if cap is None:  # the clips are 1.0 s and 1.5 s
        assert ratio == 0.0 and lengths == {audio_tokens(1.0), audio_tokens(1.5)}
    else:
        assert ratio == 1.0 and lengths == {audio_tokens(cap)}
    assert audio_tokens(0.5) < audio_tokens(1.0) < audio_tokens(1.5)


@pytest.mark.parametrize("option", ["use_transformers_continuous_batching", "rollout_func",
                                    "vllm_structured_outputs_regex", "generation_kwargs.structured_outputs"])
def test_options_the_audio_rollouts_cannot_honour_are_refused(tiny_model_dir, tmp_path, option):
    overrides = {"use_transformers_continuous_batching": {"use_transformers_continuous_batching": True},
                 "rollout_func": {},
                 "vllm_structured_outputs_regex": {"vllm_structured_outputs_regex": "<answer>.*</answer>"},
                 "generation_kwargs.structured_outputs": {"generation_kwargs": {"structured_outputs": {"regex": "x"}}},
                 }[option]
    rollout = (lambda prompts, trainer: {}) if option == "rollout_func" else None
    with pytest.raises(ValueError, match=f"AudioGRPOTrainer cannot honour {option}"):
        _trainer(tiny_model_dir, tmp_path, 30.0, rollout_func=rollout, **overrides)
