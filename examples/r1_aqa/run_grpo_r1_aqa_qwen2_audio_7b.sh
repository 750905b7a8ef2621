#!/usr/bin/env bash
# R1-AQA GRPO on Qwen2-Audio-7B-Instruct (or any recipe) with accelerate + DeepSpeed (ZeRO-1 by default).
#
# One node, 8 GPUs:
#   DATA=data/avqa/train.parquet bash examples/r1_aqa/run_grpo_r1_aqa_qwen2_audio_7b.sh
# Two nodes (run on each node, NODE_RANK 0 and 1, MASTER_ADDR = node 0's address):
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=10.0.0.1 MASTER_PORT=29500 bash examples/r1_aqa/run_grpo_r1_aqa_qwen2_audio_7b.sh
# Any further argument goes to `r1-aqa train` (TRL flags), e.g. --max_steps 10 --report_to wandb.
#
# MODEL, DATA and OUT override the recipe's model_name_or_path, dataset_path and output_dir only when set, so
# RECIPE=.../qwen2_5_omni_7b/grpo_r1_aqa.yaml trains Qwen2.5-Omni-7B into that recipe's own output directory.
# The global batch stays R1-AQA's 16 prompts x 8 completions per optimizer step whatever the GPU count:
# gradient_accumulation_steps = TOTAL_COMPLETIONS / (PER_DEVICE x GPUs). A --per_device_train_batch_size argument
# sets PER_DEVICE (the steps are recomputed); --gradient_accumulation_steps is refused: set TOTAL_COMPLETIONS.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
RECIPE="${RECIPE:-$HERE/recipes/qwen2_audio_7b/grpo_r1_aqa.yaml}"
ACCELERATE_CONFIG="${ACCELERATE_CONFIG:-$HERE/accelerate/zero1.yaml}"
GPUS_PER_NODE="${GPUS_PER_NODE:-8}"
NNODES="${NNODES:-1}"
NODE_RANK="${NODE_RANK:-0}"
MASTER_ADDR="${MASTER_ADDR:-127.0.0.1}"
MASTER_PORT="${MASTER_PORT:-29500}"
PER_DEVICE="${PER_DEVICE:-8}"                    # completions per GPU per micro-step
TOTAL_COMPLETIONS="${TOTAL_COMPLETIONS:-128}"    # per optimizer step: 16 prompts x 8 completions

args=()
while (( $# )); do
  case "$1" in
    --per_device_train_batch_size) PER_DEVICE="${2-}"; shift $(( $# > 1 ? 2 : 1 )) ;;
    --per_device_train_batch_size=*) PER_DEVICE="${1#*=}"; shift ;;
    --gradient_accumulation_steps|--gradient_accumulation_steps=*)
      echo "--gradient_accumulation_steps is TOTAL_COMPLETIONS / (PER_DEVICE x GPUs) here, so that the global batch" \
           "stays TOTAL_COMPLETIONS=$TOTAL_COMPLETIONS: set TOTAL_COMPLETIONS (and PER_DEVICE) instead" >&2
      exit 2 ;;
    *) args+=("$1"); shift ;;
  esac
done

for name in GPUS_PER_NODE NNODES PER_DEVICE TOTAL_COMPLETIONS; do
  if ! [[ "${!name}" =~ ^[1-9][0-9]*$ ]]; then
    echo "$name=${!name} must be a positive integer" >&2
    exit 2
  fi
done
if ! [[ "$NODE_RANK" =~ ^[0-9]+$ ]] || (( NODE_RANK >= NNODES )); then
  echo "NODE_RANK=$NODE_RANK must be an integer in [0, NNODES=$NNODES)" >&2
  exit 2
fi
for file in "$RECIPE" "$ACCELERATE_CONFIG"; do
  [[ -f "$file" ]] || { echo "$file: no such file (RECIPE / ACCELERATE_CONFIG)" >&2; exit 2; }
done
WORLD=$((NNODES * GPUS_PER_NODE))
if (( TOTAL_COMPLETIONS % (PER_DEVICE * WORLD) != 0 )); then
  echo "TOTAL_COMPLETIONS=$TOTAL_COMPLETIONS is not a multiple of PER_DEVICE x GPUs = $((PER_DEVICE * WORLD))" >&2
  exit 2
fi
GRAD_ACC=$((TOTAL_COMPLETIONS / (PER_DEVICE * WORLD)))

overrides=()
[[ -n "${MODEL:-}" ]] && overrides+=(--model_name_or_path "$MODEL")
[[ -n "${DATA:-}" ]] && overrides+=(--dataset_path "$DATA")
[[ -n "${OUT:-}" ]] && overrides+=(--output_dir "$OUT")

accelerate launch \
  --config_file "$ACCELERATE_CONFIG" \
  --num_machines "$NNODES" --machine_rank "$NODE_RANK" \
  --main_process_ip "$MASTER_ADDR" --main_process_port "$MASTER_PORT" \
  --num_processes "$WORLD" \
  -m r1_aqa.cli train \
  --config "$RECIPE" "${overrides[@]}" \
  --per_device_train_batch_size "$PER_DEVICE" --gradient_accumulation_steps "$GRAD_ACC" \
  "${args[@]}"
