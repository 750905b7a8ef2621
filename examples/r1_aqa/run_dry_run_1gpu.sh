#!/usr/bin/env bash
# One-GPU dry run of the 7B setup (LoRA; see recipes/qwen2_audio_7b/grpo_dry_run_1gpu.yaml for the expected memory).
#   DATA=data/avqa/train.parquet bash examples/r1_aqa/run_dry_run_1gpu.sh [--use_vllm true] [--max_steps 5 ...]
# Needs peft (pip install 'r1-aqa[peft]'). Arguments go to `r1-aqa train`. MODEL, DATA and OUT override the
# recipe's model_name_or_path, dataset_path and output_dir only when set.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
RECIPE="${RECIPE:-$HERE/recipes/qwen2_audio_7b/grpo_dry_run_1gpu.yaml}"
overrides=()
[[ -n "${MODEL:-}" ]] && overrides+=(--model_name_or_path "$MODEL")
[[ -n "${DATA:-}" ]] && overrides+=(--dataset_path "$DATA")
[[ -n "${OUT:-}" ]] && overrides+=(--output_dir "$OUT")

accelerate launch --num_processes 1 --num_machines 1 --mixed_precision bf16 \
  -m r1_aqa.cli train --config "$RECIPE" "${overrides[@]}" "$@"
