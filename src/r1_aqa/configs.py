"""Script arguments of ``r1-aqa train``, parsed by TRL's ``TrlParser`` next to ``GRPOConfig`` and ``ModelConfig``.

Every field can be set in a recipe YAML (``--config``) and overridden on the command line.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import ScriptArguments


@dataclass
class AudioGRPOScriptArguments(ScriptArguments):
    """Data, prompt and reward settings of an R1-AQA GRPO run (TRL's ``ScriptArguments`` plus the audio ones)."""

    dataset_path: str | None = field(
        default=None,
        metadata={"help": "Prepared training parquet (columns question, choices, solution, audio = absolute path)."},
    )
    eval_dataset_path: str | None = field(default=None, metadata={"help": "Optional prepared eval parquet."})
    template: str = field(default="default", metadata={"help": "Prompt template: default, think or new."})
    max_audio_seconds: float | None = field(
        default=30.0,
        metadata={"help": "Cut clips to their first this many seconds (Qwen2-Audio's encoder sees 30 s); "
                  "the share cut is logged as audio/cut_at_cap_ratio."},
    )
    reward_funcs: list[str] | None = field(
        default=None,
        metadata={"help": "Reward names from r1_aqa.rewards (summed); default: accuracy + format "
                  "(+ think_format instead of format for the think template)."},
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Keep only the first N training rows."})
    overwrite_output_dir: bool = field(
        default=False,
        metadata={"help": "Remove the checkpoint-* directories an earlier run left in output_dir, then train; without "
                  "it (or --resume_from_checkpoint) such a directory is refused."},
    )
