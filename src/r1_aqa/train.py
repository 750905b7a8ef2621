"""``r1-aqa train``: GRPO post-training of an audio LM on a prepared parquet (TRL's parser, a recipe YAML, overrides).

    r1-aqa train --config examples/r1_aqa/recipes/tiny_grpo.yaml --model_name_or_path MODEL \\
        --dataset_path train.parquet --output_dir OUT [--any_GRPOConfig_or_ModelConfig_flag VALUE ...]

Every argument after ``train`` goes to TRL's ``TrlParser((AudioGRPOScriptArguments, AudioGRPOConfig, ModelConfig))``
(``AudioGRPOConfig``: TRL's ``GRPOConfig`` with the audio options); ``--config`` loads a recipe whose values the
command line overrides.
"""

from __future__ import annotations

from .stages import PASS_THROUGH, add_arguments  # noqa: F401  (the command-line shape every stage shares)
from .stages import (build_dataset, check_inputs, check_stage_args, check_stage_audio, claim_output_dir, fit,
                     load_policy, parse_stage_args, peft_config, run_stage, shuffle_columns, stage_argv,
                     stage_callbacks)

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
    """Build the model, data and rewards, train (resuming if asked), and save the final model to ``output_dir``."""
    from . import rewards
    from .models import load_processor
    from .trainer import AudioGRPOTrainer

    resume = check_stage_args(script_args, training_args, model_args)
    names = script_args.reward_funcs or rewards.default_rewards(script_args.template)
    judge = load_judge(script_args, training_args, names)
    reward_funcs = [rewards.resolve_reward(n, judge) for n in names]
    # The data is read (and an empty set refused) before the model loads.
    columns = (*shuffle_columns(training_args), *judged_columns(script_args.dataset_path, names))
    train_dataset = build_dataset(script_args.dataset_path, script_args.template, script_args.max_train_samples,
                                  tuple(dict.fromkeys(columns)))
    eval_dataset = (
        build_dataset(script_args.eval_dataset_path, script_args.template) if script_args.eval_dataset_path else None
    )
    claim_output_dir(training_args.output_dir, resuming=bool(resume), overwrite=script_args.overwrite_output_dir)
    train_dataset, eval_dataset = check_stage_audio(script_args, training_args, train_dataset, eval_dataset)
    callbacks = stage_callbacks(script_args, training_args, train_dataset)
    if training_args.stop_at_accuracy is not None:
        from .callbacks import SolvedStop

        callbacks.append(SolvedStop(training_args.stop_at_accuracy, training_args.stop_after_logs))
    if judge is not None:
        from .callbacks import JudgeTiming

        callbacks.append(JudgeTiming(judge))
    model = load_policy(model_args)
    trainer = AudioGRPOTrainer(
        model=model,
        reward_funcs=reward_funcs,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=load_processor(model_args.model_name_or_path),
        peft_config=peft_config(model_args),
        callbacks=callbacks,
    )
    fit(trainer, script_args, resume)
    # Weights under the hub's names (Qwen2-Audio; Qwen2.5-Omni trained from its full checkpoint: the full layout)
    trainer.save_model(training_args.output_dir)
    return trainer


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

    from .judge.core import CACHE_NAME, Judge
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

    present = set(pq.read_schema(dataset_path).names)
    wanted = [c for n in reward_names for c in JUDGED_REWARDS.get(n, ())]
    if "rubric" in wanted and "rubric" not in present:
        raise ValueError(f"{dataset_path}: the rubric reward needs a 'rubric' column (one list of lines per item; "
                         "`r1-aqa prepare open` writes it)")
    return [c for c in dict.fromkeys(wanted) if c in present]
