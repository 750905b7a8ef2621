"""TRL's trainer configs with the audio options (``.configs``): ``r1-aqa train`` parses ``AudioGRPOConfig``,
``r1-aqa sft`` ``AudioSFTConfig``, so the options travel with the trainer's arguments and each checkpoint's
``training_args.bin`` records how the run was trained (``torch.load(..., weights_only=False)``)."""

from __future__ import annotations

from dataclasses import dataclass

from trl import GRPOConfig, SFTConfig

from .configs import AudioGRPOOptions, AudioTrainingOptions


@dataclass
class AudioGRPOConfig(AudioGRPOOptions, GRPOConfig):
    """``GRPOConfig`` plus ``AudioGRPOOptions`` (clip cap, encoder modes, shared prompts, dynamic sampling, ...)."""


@dataclass
class AudioSFTConfig(AudioTrainingOptions, SFTConfig):
    """``SFTConfig`` plus ``AudioTrainingOptions`` (clip cap, non-finite guard, option shuffling)."""
