"""r1-aqa: GRPO post-training of large audio language models for audio question answering, on TRL."""

__version__ = "0.1.0"
