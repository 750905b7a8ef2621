"""The arguments of ``r1-aqa train`` and ``r1-aqa sft`` beside TRL's: the script arguments (data, prompt, rewards)
and the audio training options, which ``r1_aqa.training.trl_configs`` adds to TRL's configs (``AudioGRPOConfig``,
``AudioSFTConfig``) so each checkpoint's ``training_args.bin`` records them. TRL's ``TrlParser`` reads them next to
``ModelConfig``; every field can be set in a recipe YAML (``--config``) and overridden on the command line.

Nothing here imports torch: the checks before a stage loads read these fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import ScriptArguments


@dataclass
class AudioScriptArguments(ScriptArguments):
    """Data and prompt settings every audio training stage shares (TRL's ``ScriptArguments`` plus the data ones)."""

    dataset_path: str | None = field(
        default=None,
        metadata={"help": "Prepared training parquet (columns question, choices, solution, audio = absolute path)."},
    )
    eval_dataset_path: str | None = field(default=None, metadata={"help": "Optional prepared eval parquet."})
    template: str = field(default="default", metadata={"help": "Prompt template: default, think or new."})
    skip_bad_audio: bool = field(
        default=False,
        metadata={"help": "Every clip is decoded (up to max_audio_seconds) before the first step; a clip that does "
                  "not load stops the run with a list of them all, or with this set, its rows are dropped and "
                  "counted. Either way OUTPUT_DIR/train.bad_audio.json lists them."},
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Keep only the first N training rows."})
    overwrite_output_dir: bool = field(
        default=False,
        metadata={"help": "Remove the checkpoint-* directories an earlier run left in output_dir, then train; without "
                  "it (or --resume_from_checkpoint) such a directory is refused."},
    )


@dataclass
class AudioTrainingOptions:
    """The audio options every training stage shares (fields of ``AudioGRPOConfig`` and ``AudioSFTConfig``)."""

    max_audio_seconds: float | None = field(
        default=30.0,
        metadata={"help": "Cut clips to their first this many seconds (Qwen2-Audio's encoder sees 30 s); "
                  "the share cut is logged as audio/cut_at_cap_ratio by GRPO."},
    )
    max_nonfinite_steps: int = field(
        default=3,
        metadata={"help": "A step whose gradients hold NaN/inf is skipped (counted as train/nonfinite_skipped); this "
                  "many in a row stop the run naming the step (0: no guard; not available under DeepSpeed)."},
    )
    shuffle_choices: bool = field(
        default=False,
        metadata={"help": "Show the options of each training item in a new order every time it is sampled (every "
                  "epoch; the solution stays the answer text, so rewards do not change). R1-AQA did not."},
    )


@dataclass
class AudioGRPOOptions(AudioTrainingOptions):
    """The audio options of a GRPO run (fields of ``AudioGRPOConfig``; a plain ``GRPOConfig`` gets these defaults)."""

    freeze_audio_tower: bool = field(
        default=False,
        metadata={"help": "Train without the audio encoder: each distinct clip is encoded once per generation batch "
                  "and reused by generation and every log-prob pass (R1-AQA trains it; see the recipes)."},
    )
    freeze_audio_projector: bool = field(
        default=False,
        metadata={"help": "Do not train the layer mapping encoder outputs to the LM width (Qwen2-Audio's "
                  "multi_modal_projector; the Omni thinker's audio_tower.proj)."},
    )
    share_clip_encodings: bool = field(
        default=True,
        metadata={"help": "Encode each distinct clip once per forward and give every row of its group the result "
                  "(false: every row's clip through the encoder, the model's own path; for comparison)."},
    )
    share_prompt: bool = field(
        default=True,
        metadata={"help": "Run each prompt once per group in the log-prob passes (policy, old policy, reference): "
                  "one packed row per group, every completion attending to the shared prompt; equal to the "
                  "unshared passes up to rounding. Where that cannot be exact (an attention without custom 4D "
                  "masks, sliding-window layers) the run says why and runs each row in full. false: always in full."},
    )
    dynamic_sampling: bool = field(
        default=False,
        metadata={"help": "DAPO's dynamic sampling: groups whose rewards are all equal (no signal) are dropped from "
                  "the update and replaced by fresh prompts' groups, up to dynamic_sampling_max_extra; logs "
                  "dynamic_sampling/extra_rollouts and dynamic_sampling/no_signal_share (R1-AQA did not)."},
    )
    dynamic_sampling_max_extra: float = field(
        default=1.0,
        metadata={"help": "Cap on dynamic sampling's extra rollouts per generation, as a multiple of the generation "
                  "batch (1.0: at most as many again); when it runs out, the batch keeps some no-signal groups."},
    )
    min_signal_share: float = field(
        default=0.5,
        metadata={"help": "A step whose share of groups with signal (completions not all scored alike) is below this "
                  "moves proportionally less: learning rate x share / min_signal_share; a step without signal does "
                  "not move (Adam would scale a trickle of signal up to a full step). 0: TRL's steps. Logged as "
                  "signal/share and signal/lr_scale."},
    )
    stop_at_accuracy: float | None = field(
        default=None,
        metadata={"help": "Stop GRPO once the task is solved: the accuracy reward's mean reaches this in "
                  "stop_after_logs logs in a row (the run saves and ends as at max_steps); unset: run to max_steps."},
    )
    stop_after_logs: int = field(
        default=3, metadata={"help": "How many logs in a row must reach stop_at_accuracy (logging_steps apart)."},
    )


@dataclass
class AudioGRPOScriptArguments(AudioScriptArguments):
    """Data, prompt and reward settings of an R1-AQA GRPO run (its audio options: ``AudioGRPOOptions``)."""

    reward_funcs: list[str] | None = field(
        default=None,
        metadata={"help": "Reward names from r1_aqa.training.rewards, or module.function import paths of your own "
                  "(weighted by reward_weights, else summed); default: "
                  "accuracy + format (+ think_format instead of format for the think template). judge, rubric "
                  "and embed_match are graded by --judge_model."},
    )
    judge_model: str | None = field(
        default=None,
        metadata={"help": "The judge of the judge/rubric/embed_match rewards: a text LM directory or hub id (run "
                  "here by transformers, greedy; vllm:DIR on a vLLM engine), or an OpenAI-compatible endpoint "
                  "http(s)://HOST:PORT/v1[#MODEL] (e.g. `vllm serve`)."},
    )
    judge_embed_model: str | None = field(
        default=None, metadata={"help": "The embedder of embed_match (same kinds as judge_model); unset: judge_model."})
    judge_cache: str | None = field(
        default=None,
        metadata={"help": "The judge's reply cache (SQLite; keyed by the exact judge input, so a resumed run asks "
                  "nothing twice); unset: OUTPUT_DIR/judge_cache.sqlite."},
    )
    judge_max_new_tokens: int = field(default=64, metadata={"help": "Tokens per judge reply, at most."})


@dataclass
class AudioSFTScriptArguments(AudioScriptArguments):
    """Data and target settings of a supervised run (``r1-aqa sft``)."""

    reasoning_column: str | None = field(
        default=None,
        metadata={"help": "Parquet column with a reasoning text (e.g. MMAR-style `thinking`): the target becomes "
                  "<think>REASONING</think><answer>OPTION</answer>; unset: <answer>OPTION</answer>."},
    )
