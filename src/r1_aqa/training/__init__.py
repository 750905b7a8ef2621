"""Training: the ``train`` (GRPO) and ``sft`` commands and what they add to TRL for audio.

``stages.py`` is the template both commands run (recipe and TRL flags, datasets, checks, the policy, the run);
``trainer.py`` (``AudioGRPOTrainer``) and ``sft_trainer.py`` (``AudioSFTTrainer``) subclass TRL's trainers and use the
pieces beside them: the audio options (``configs.py``, torch-free; ``trl_configs.py``, TRL's configs with them), the
rewards, the encoder once per clip, each prompt once per group, dynamic sampling, the learning signal, option
shuffling, the clips checked before step 1 and the run's callbacks.
"""
