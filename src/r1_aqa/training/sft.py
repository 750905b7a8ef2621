"""``r1-aqa sft``: supervised fine-tuning of an audio LM on a prepared parquet, with TRL's ``SFTTrainer``.

    r1-aqa sft --config examples/r1_aqa/recipes/tiny_sft.yaml --model_name_or_path MODEL \\
        --dataset_path train.parquet --output_dir OUT [--reasoning_column thinking] [--any_SFTConfig_flag VALUE ...]

Every argument after ``sft`` goes to TRL's ``TrlParser((AudioSFTScriptArguments, AudioSFTConfig, ModelConfig))``,
as for ``train``; the data comes from ``stages.build_dataset``, so both stages read a parquet the same way. The
target of a row is its ``solution`` (``<answer>OPTION</answer>``), or
``<think>REASONING</think><answer>OPTION</answer>`` with ``reasoning_column`` set; the loss covers the assistant
turn only (the target and ``<|im_end|>``): the prompt, the audio placeholder tokens and the padding carry label -100.

``SFTTrainer`` carries the audio with a collator of ours (``AudioSFTCollator``, with ``skip_prepare_dataset``): it
decodes each clip, lets the processor expand the audio placeholder and build the features, and appends the target
tokens. Two things differ from stock ``SFTTrainer``: the collator is always ours (TRL's vision collator knows images,
not audio), and the Qwen2.5-Omni thinker has no separate backbone for TRL's fused LM head (its ``base_model`` is the
model itself), so for it the loss is the model's own cross-entropy on the labels (``Trainer.compute_loss``) and the
token-accuracy/entropy metrics are not logged. Checkpoints are saved under the hub's weight names with the
processor, so ``train``, ``eval`` and vLLM load them.
"""

from __future__ import annotations

import functools
from typing import Sequence

from ..prompts import END_OF_TURN
from .stages import PASS_THROUGH, add_arguments  # noqa: F401  (the command-line shape every stage shares)
from .stages import build_dataset, check_inputs, parse_stage_args, peft_config, run_stage, run_training, stage_argv

HELP = (
    "Supervised fine-tuning of an audio LM on a prepared parquet (TRL's SFTTrainer): --config RECIPE.yaml plus any "
    "SFTConfig/ModelConfig/script flag (--model_name_or_path, --dataset_path, --output_dir, --max_steps, "
    "--reasoning_column, ...)."
)


def sft_target(solution: str, reasoning: str | None = None) -> str:
    """The assistant text a row is trained on: the solution, after ``<think>REASONING</think>`` when given."""
    return solution if reasoning is None else f"<think>{reasoning.strip()}</think>{solution}"


def sft_dataset(path: str, template: str, reasoning_column: str | None = None, max_rows: int | None = None,
                tokenizer=None, max_length: int | None = None, columns: Sequence[str] = (),
                end_of_turn: str = END_OF_TURN):
    """``stages.build_dataset`` (carrying ``columns``) plus a ``target`` column; with a tokenizer and ``max_length``,
    a target that alone (with the family's ``end_of_turn``) exceeds the limit is an error naming its row id."""
    columns = (*columns, reasoning_column) if reasoning_column else tuple(columns)
    dataset = build_dataset(path, template, max_rows, columns)
    reasoning = dataset[reasoning_column] if reasoning_column else [None] * len(dataset)
    targets = [sft_target(s, r) for s, r in zip(dataset["solution"], reasoning)]
    if tokenizer is not None and max_length is not None:
        ids = dataset["id"] if "id" in dataset.column_names else [f"row {i}" for i in range(len(dataset))]
        encoded = tokenizer([t + end_of_turn for t in targets], add_special_tokens=False)["input_ids"]
        long = [f"{i} ({len(x)} tokens)" for i, x in zip(ids, encoded) if len(x) > max_length]
        if long:
            raise ValueError(f"{path}: {len(long)} SFT target(s) longer than max_length {max_length}: "
                             + ", ".join(long[:20]))
    return dataset.add_column("target", targets)


def parse_sft_args(argv: list[str]):
    """Parse ``argv`` (with ``--config``) into ``(AudioSFTScriptArguments, AudioSFTConfig, ModelConfig)``."""
    from .configs import AudioSFTScriptArguments
    from .trl_configs import AudioSFTConfig

    return parse_stage_args(argv, AudioSFTScriptArguments, AudioSFTConfig, "r1-aqa sft")


def run(args) -> int:
    from .configs import AudioSFTScriptArguments, AudioTrainingOptions

    check_inputs(args, ("trl.trainer.sft_config", "SFTConfig"), (AudioSFTScriptArguments, AudioTrainingOptions))
    return run_stage("sft", lambda: sft(*parse_sft_args(stage_argv(args))))


def sft(script_args, training_args, model_args):
    """Supervised training on each row's target (``stages.run_training``); saves the model and processor to
    ``output_dir`` and returns the trainer."""
    from ..families.loading import family_of, load_processor
    from .sft_trainer import AudioSFTTrainer

    @functools.cache  # loaded once the arguments are checked (the first dataset read)
    def processor():
        return load_processor(model_args.model_name_or_path)

    def read(path: str, max_rows: int | None, columns: tuple[str, ...]):
        return sft_dataset(path, script_args.template, script_args.reasoning_column, max_rows, processor().tokenizer,
                           training_args.max_length, columns, family_of(model_args.model_name_or_path).end_of_turn)

    def make_trainer(model, train_dataset, eval_dataset, callbacks: list):
        return AudioSFTTrainer(model, args=training_args, train_dataset=train_dataset, eval_dataset=eval_dataset,
                               processing_class=processor(), peft_config=peft_config(model_args),
                               callbacks=callbacks)

    return run_training(script_args, training_args, model_args, read, make_trainer)
