"""``r1-aqa train``: GRPO post-training of an audio LM on a prepared parquet (TRL's parser, a recipe YAML, overrides).

    r1-aqa train --config examples/r1_aqa/recipes/tiny_grpo.yaml --model_name_or_path MODEL \\
        --dataset_path train.parquet --output_dir OUT [--any_GRPOConfig_or_ModelConfig_flag VALUE ...]

Every argument after ``train`` goes to TRL's ``TrlParser((AudioGRPOScriptArguments, AudioGRPOConfig, ModelConfig))``
(``AudioGRPOConfig``: TRL's ``GRPOConfig`` with the audio options); ``--config`` loads a recipe whose values the
command line overrides.
"""

from __future__ import annotations

from .stages import PASS_THROUGH, add_arguments  # noqa: F401  (the command-line shape every stage shares)
from .stages import build_dataset, check_inputs, parse_stage_args, peft_config, run_stage, run_training, stage_argv

HELP = (
    "GRPO-train an audio LM (R1-AQA recipe on TRL): --config RECIPE.yaml plus any GRPOConfig/ModelConfig/script "
    "flag (--model_name_or_path, --dataset_path, --output_dir, --max_steps, --resume_from_checkpoint, ...)."
)


def parse_trl_args(argv: list[str]):
    """Parse ``argv`` (with ``--config``) into ``(AudioGRPOScriptArguments, AudioGRPOConfig, ModelConfig)``."""
    from .configs import AudioGRPOScriptArguments
    from .trl_configs import AudioGRPOConfig

    return parse_stage_args(argv, AudioGRPOScriptArguments, AudioGRPOConfig, "r1-aqa train")


def run(args) -> int:
    from .configs import AudioGRPOOptions, AudioGRPOScriptArguments

    values = check_inputs(args, ("trl.trainer.grpo_config", "GRPOConfig"), (AudioGRPOScriptArguments, AudioGRPOOptions))
    check_judge_flags(values)
    return run_stage("train", lambda: train(*parse_trl_args(stage_argv(args))))


def train(script_args, training_args, model_args):
    """GRPO with the run's rewards (``stages.run_training``): the stop once solved and the judge's timing as
    callbacks; returns the trainer."""
    from . import rewards
    from .trainer import AudioGRPOTrainer

    names = script_args.reward_funcs or rewards.default_rewards(script_args.template)

    def read(path: str, max_rows: int | None, columns: tuple[str, ...]):
        judged = judged_columns(path, names)  # the judged rewards' columns (the eval set's rewards too)
        return build_dataset(path, script_args.template, max_rows, tuple(dict.fromkeys((*columns, *judged))))

    def make_trainer(model, train_dataset, eval_dataset, callbacks: list):
        from .callbacks import JudgeTiming, SolvedStop
        from ..families.loading import load_processor

        judge = load_judge(script_args, training_args, names)
        if training_args.stop_at_accuracy is not None:
            callbacks.append(SolvedStop(training_args.stop_at_accuracy, training_args.stop_after_logs))
        if judge is not None:
            callbacks.append(JudgeTiming(judge))
        return AudioGRPOTrainer(
            model=model, reward_funcs=[rewards.resolve_reward(n, judge) for n in names], args=training_args,
            train_dataset=train_dataset, eval_dataset=eval_dataset,
            processing_class=load_processor(model_args.model_name_or_path), peft_config=peft_config(model_args),
            callbacks=callbacks,
        )

    return run_training(script_args, training_args, model_args, read, make_trainer)


def check_judge_flags(values: dict) -> None:
    """Judged rewards need ``judge_model``: refused before TRL loads (the recipe's and command line's values)."""
    from .rewards import JUDGED_REWARDS

    names = values.get("reward_funcs") or []
    judged = [n for n in ([names] if isinstance(names, str) else names) if n in JUDGED_REWARDS]
    if judged and not values.get("judge_model"):
        raise ValueError(f"reward(s) {judged} are graded by a judge: give --judge_model DIR_OR_URL")


def load_judge(script_args, training_args, reward_names: list[str]):
    """The judge of the run's judged rewards (``None`` when it has none); its cache defaults to
    ``OUTPUT_DIR/judge_cache.sqlite``. Nothing loads before the first reward call."""
    from pathlib import Path

    from ..judge.core import CACHE_NAME, Judge
    from .rewards import JUDGED_REWARDS

    if not any(n in JUDGED_REWARDS for n in reward_names):
        return None
    check_judge_flags({"reward_funcs": reward_names, "judge_model": script_args.judge_model})
    cache = script_args.judge_cache or Path(training_args.output_dir) / CACHE_NAME
    return Judge(script_args.judge_model, cache, embed_model=script_args.judge_embed_model or script_args.judge_model,
                 sampling={"max_new_tokens": script_args.judge_max_new_tokens})


def judged_columns(dataset_path: str, reward_names: list[str]) -> list[str]:
    """The parquet columns the judged rewards read (``reference`` only where present: the solution's answer stands
    in); a missing ``rubric`` column for the rubric reward raises ``ValueError``."""
    import pyarrow.parquet as pq

    from .rewards import JUDGED_REWARDS

    wanted = [c for n in reward_names for c in JUDGED_REWARDS.get(n, ())]
    if not wanted:
        return []
    present = set(pq.read_schema(dataset_path).names)
    if "rubric" in wanted and "rubric" not in present:
        raise ValueError(f"{dataset_path}: the rubric reward needs a 'rubric' column (one list of lines per item; "
                         "`r1-aqa prepare open` writes it)")
    return [c for c in dict.fromkeys(wanted) if c in present]
