"""What the training stages (``train``, ``sft``) share: their command-line shape (a recipe plus TRL's flags), reading
a prepared parquet, the checks before the model loads, loading the policy, and running, interrupting and ending a run
(``run_training``: the one template both follow).

``train.py`` and ``sft.py`` each hold what differs (their datasets' reader and their trainer); the demo, ``bench/`` and
``train_colocate.py`` use these too.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Callable, Sequence

PASS_THROUGH = True  # flags a stage's parser does not declare go to TRL's parser (``args.extra_args``)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.allow_abbrev = False  # an abbreviated TRL flag must not be taken for --config
    parser.add_argument("--config", help="recipe YAML (TRL's --config: any script, trainer or ModelConfig field)")
    parser.add_argument("--trl-help", action="store_true", help="list every flag TRL's parser accepts and exit")


def parse_stage_args(argv: list[str], script_class, config_class, prog: str):
    """Parse ``argv`` (with ``--config``) into ``(script_class, config_class, ModelConfig)`` with TRL's parser."""
    from trl import ModelConfig, TrlParser

    parser = TrlParser((script_class, config_class, ModelConfig), prog=prog)
    parser.set_defaults(output_dir="")  # not TrainingArguments' ./trainer_output: an unset one is an error
    return parser.parse_args_and_config(argv)


def stage_argv(args) -> list[str]:
    """The argument list a pass-through stage (``train``, ``sft``) hands TRL's parser: ``--config`` first."""
    if args.trl_help:
        return ["--help"]
    argv = list(args.extra_args)
    return ["--config", args.config, *argv] if args.config else argv


def build_dataset(path: str, template: str, max_rows: int | None = None, columns: Sequence[str] = ()):
    """A prepared parquet as a TRL dataset: a conversational ``prompt`` (audio first), ``audio`` and ``solution``.

    ``id`` is kept when present; ``columns`` are further columns the stage needs, carried through as they are.
    """
    import pandas as pd
    from datasets import Dataset

    from ..checks import TRAINING_COLUMNS, check_parquet
    from ..prompts import build_messages, format_prompt

    check_parquet(path, [*TRAINING_COLUMNS, *columns])
    df = pd.read_parquet(path)
    if max_rows is not None:
        df = df.head(max_rows)
    if df.empty:
        raise ValueError(f"{path}: no rows to train on" + (f" (max_train_samples={max_rows})" if max_rows == 0 else ""))
    df = df.reset_index(drop=True)
    prompts = [build_messages(format_prompt(q, list(c), template)) for q, c in zip(df["question"], df["choices"])]
    data = {"prompt": prompts, "audio": df["audio"].astype(str).tolist(), "solution": df["solution"].tolist()}
    if "id" in df.columns:
        data["id"] = df["id"].astype(str).tolist()
    for name in columns:
        data[name] = df[name].tolist()
    return Dataset.from_dict(data)


def check_inputs(args, config_class: tuple[str, str], script_classes: tuple) -> dict:
    """The checks a training stage makes before TRL loads (``checks.check_stage_inputs``), then the one that needs
    torch: bf16 (the default of TRL's configs) asked for on a machine without a GPU. Returns the values the recipe and
    the command line set."""
    if args.trl_help:
        return {}
    from ..checks import check_stage_inputs, is_true

    values = check_stage_inputs(args.config, args.extra_args, config_class, script_classes)
    bf16_off = "bf16" in values and not is_true(values["bf16"])
    if bf16_off or is_true(values.get("fp16")) or is_true(values.get("use_cpu")):
        return values
    from transformers.utils import is_torch_bf16_gpu_available

    if not is_torch_bf16_gpu_available():
        source = f"--config {args.config} sets bf16: true" if "bf16" in values else "bf16 is TRL's default"
        raise ValueError(f"{source}, which needs a GPU, and this machine has none: this recipe is for GPUs. To run it "
                         "here anyway, add --bf16 false --use_cpu true (float32 on the CPU); the CPU recipes are "
                         "examples/r1_aqa/recipes/tiny_grpo.yaml and tiny_sft.yaml (tiny models)")
    return values


def run_stage(command: str, stage) -> int:
    """Run a training stage (a function returning its trainer) for the CLI: 0 after :func:`finish_run`, or the
    exit code of a run stopped early (a signal, after its checkpoint; too many non-finite steps) with the reason."""
    from .callbacks import TrainingInterrupted

    try:
        trainer = stage()
    except TrainingInterrupted as e:
        if e.trainer is None or e.trainer.accelerator.is_main_process:
            print(f"r1-aqa {command}: stopped: {e}", file=sys.stderr)
        if e.trainer is not None:
            e.trainer.accelerator.end_training()
        return e.exit_code
    finish_run(command, trainer)
    return 0


def run_training(script_args, training_args, model_args, read_dataset: Callable, make_trainer: Callable):
    """The run every training stage makes, in order: check the arguments, read the datasets (``read_dataset(path,
    max_rows, columns)``; the training set with the option-shuffling columns) and decode their clips before the model
    loads, claim ``output_dir``, load the policy, build the stage's trainer (``make_trainer(model, train_dataset,
    eval_dataset, callbacks)``), train (resuming if asked), save the final model. Returns the trainer."""
    resume = check_stage_args(script_args, training_args, model_args)
    train_dataset = read_dataset(script_args.dataset_path, script_args.max_train_samples,
                                 shuffle_columns(training_args))
    eval_dataset = read_dataset(script_args.eval_dataset_path, None, ()) if script_args.eval_dataset_path else None
    claim_output_dir(training_args.output_dir, resuming=bool(resume), overwrite=script_args.overwrite_output_dir)
    train_dataset, eval_dataset = check_stage_audio(script_args, training_args, train_dataset, eval_dataset)
    callbacks = stage_callbacks(script_args, training_args, train_dataset)
    trainer = make_trainer(load_policy(model_args), train_dataset, eval_dataset, callbacks)
    fit(trainer, script_args, resume)
    # Weights under the hub's names (Qwen2-Audio; Qwen2.5-Omni trained from its full checkpoint: the full layout)
    trainer.save_model(training_args.output_dir)
    return trainer


def fit(trainer, script_args, resume) -> None:
    """``trainer.train`` with the run callbacks (``callbacks.install``: preemption, non-finite guard, console,
    metrics.jsonl); raises ``TrainingInterrupted`` when a signal stopped it (after saving its checkpoint)."""
    from .callbacks import TrainingInterrupted, install

    preemption = install(trainer, trainer.args.max_nonfinite_steps, chance_accuracy(script_args.dataset_path))
    try:
        trainer.train(resume_from_checkpoint=resume)
        stopped = preemption.interrupted(trainer.args.output_dir, trainer.state.global_step)
        if stopped is not None:
            raise stopped
    except TrainingInterrupted as e:
        e.trainer = trainer
        raise


def chance_accuracy(path: str) -> float | None:
    """The accuracy of answering a random option, averaged over a prepared parquet's items (None: no options)."""
    import pandas as pd

    counts = [len(c) for c in pd.read_parquet(path, columns=["choices"])["choices"]]
    return round(sum(1 / n for n in counts) / len(counts), 4) if counts and min(counts) > 0 else None


def finish_run(command: str, trainer) -> None:
    """Say where a finished run's model and checkpoints are (main process only), then end the run on every process.

    The colocated vLLM engine (if any) is shut down first, while the process group its own groups hang on still
    exists (left to interpreter exit, its teardown raises "Invalid process group specified"); then trackers finish and
    the process group is torn down. A multi-process run then exits 0 at once (see below); a single process returns.
    """
    if trainer.accelerator.is_main_process:
        out = trainer.args.output_dir
        saved = sorted(Path(out).glob("checkpoint-*"))
        where = f", checkpoints in {out}/checkpoint-* ({len(saved)})" if saved else " (no checkpoints were saved)"
        print(f"r1-aqa {command}: {trainer.state.global_step} steps; the model is in {out}{where}", file=sys.stderr)
    llm = getattr(getattr(trainer, "vllm_generation", None), "llm", None)
    if llm is not None:
        llm.llm_engine.engine_core.shutdown()
    trainer.accelerator.end_training()
    if trainer.accelerator.num_processes > 1:
        # Everything is saved and the group is gone; a rank of a ZeRO-3 run on CPU still aborts now and then in C++
        # static teardown at interpreter exit ("terminate called without an active exception", SIGABRT), which
        # fails a launcher that checks exit codes. Leave without that teardown.
        import logging

        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def check_stage_args(script_args, training_args, model_args) -> bool | str | None:
    """The checks every training stage makes before reading anything; returns ``resume_from_checkpoint`` as
    ``Trainer.train`` takes it ("true"/"last": the latest checkpoint in output_dir)."""
    from ..checks import check_stage_values

    check_stage_values({"model_name_or_path": model_args.model_name_or_path, "dataset_path": script_args.dataset_path,
                        "output_dir": training_args.output_dir, "max_steps": training_args.max_steps,
                        "max_train_samples": script_args.max_train_samples,
                        "max_nonfinite_steps": training_args.max_nonfinite_steps,
                        "learning_rate": training_args.learning_rate,
                        "num_train_epochs": training_args.num_train_epochs})
    resume = training_args.resume_from_checkpoint
    if isinstance(resume, str) and resume.lower() in ("true", "last"):
        return True
    return resume


def check_stage_audio(script_args, training_args, train_dataset, eval_dataset=None) -> tuple:
    """Decode every clip of the stage's datasets once before the model loads (``clips.check_training_audio``): a bad
    one stops the run now, not when its batch comes up; ``skip_bad_audio`` drops its rows instead."""
    from .clips import check_training_audio

    def check(dataset, name: str):
        return check_training_audio(dataset, max_seconds=training_args.max_audio_seconds, name=name,
                                    skip_bad=script_args.skip_bad_audio, output_dir=training_args.output_dir)

    return check(train_dataset, "train"), None if eval_dataset is None else check(eval_dataset, "eval")


def load_policy(model_args):
    """The model to train, with its family's class, from a ``ModelConfig`` (dtype, attention, revision)."""
    import torch

    from ..families import family_of

    dtype = model_args.dtype if model_args.dtype in (None, "auto") else getattr(torch, model_args.dtype)
    path = model_args.model_name_or_path
    return family_of(path).model_class().from_pretrained(
        path, dtype=dtype or "auto", attn_implementation=model_args.attn_implementation,
        revision=model_args.model_revision,
    )


def shuffle_columns(training_args) -> tuple[str, ...]:
    """The columns ``build_dataset`` must carry for the stage's options (``question``/``choices`` to shuffle)."""
    from .shuffle import COLUMNS

    return COLUMNS if training_args.shuffle_choices else ()


def stage_callbacks(script_args, training_args, train_dataset) -> list:
    """Trainer callbacks the stage's options ask for; ``shuffle_choices`` sets its transform on ``train_dataset``."""
    if not training_args.shuffle_choices:
        return []
    from .shuffle import shuffle_choices

    return [shuffle_choices(train_dataset, script_args.template, training_args.seed)]


def peft_config(model_args):
    """TRL's PEFT config when ``use_peft`` is set, else ``None``."""
    if not model_args.use_peft:
        return None
    from trl import get_peft_config

    return get_peft_config(model_args)


def claim_output_dir(output_dir: str | os.PathLike, resuming: bool, overwrite: bool) -> None:
    """Refuse a directory that holds another run's checkpoints unless resuming; ``overwrite`` removes them first.

    A new run into such a directory would replace some checkpoints and keep others, and a later sweep would take
    them for one run. Every process checks; only the main one removes.
    """
    import shutil

    from accelerate import PartialState

    old = sorted(p for p in Path(output_dir).glob("checkpoint-*") if p.is_dir())
    if not old or resuming:
        return
    if not overwrite:
        raise ValueError(
            f"{output_dir} already holds {len(old)} checkpoint(s) of a run ({', '.join(p.name for p in old[:5])}"
            f"{', ...' if len(old) > 5 else ''}): continue it with --resume_from_checkpoint last, start over with "
            "--overwrite_output_dir (removes them), or choose another --output_dir")
    state = PartialState()
    if state.is_main_process:
        for path in old:
            shutil.rmtree(path)
        print(f"r1-aqa: --overwrite_output_dir: removed {len(old)} checkpoint(s) from {output_dir}",
              file=sys.stderr)
    state.wait_for_everyone()
