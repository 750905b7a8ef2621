#!/usr/bin/env bash
# R1-AQA GRPO on Qwen2-Audio-7B-Instruct with accelerate + DeepSpeed (ZeRO-1 by default).
#
# One node, 8 GPUs:
#   DATA=data/avqa/train.parquet bash examples/r1_aqa/run_grpo_r1_aqa_qwen2_audio_7b.sh
# Two nodes (run on each node, NODE_RANK 0 and 1, MASTER_ADDR = node 0's address):
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=10.0.0.1 MASTER_PORT=29500 bash examples/r1_aqa/run_grpo_r1_aqa_qwen2_audio_7b.sh
# Any further argument goes to `r1-aqa train` (TRL flags), e.g. --max_steps 10 --report_to wandb.
#
# The global batch stays R1-AQA's 16 prompts x 8 completions per optimizer step whatever the GPU count:
# gradient_accumulation_steps = TOTAL_COMPLETIONS / (PER_DEVICE x GPUs).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
MODEL="${MODEL:-Qwen/Qwen2-Audio-7B-Instruct}"
DATA="${DATA:-data/avqa/train.parquet}"
OUT="${OUT:-runs/r1_aqa_qwen2_audio_7b}"
RECIPE="${RECIPE:-$HERE/recipes/qwen2_audio_7b/grpo_r1_aqa.yaml}"
ACCELERATE_CONFIG="${ACCELERATE_CONFIG:-$HERE/accelerate/zero1.yaml}"
GPUS_PER_NODE="${GPUS_PER_NODE:-8}"
NNODES="${NNODES:-1}"
NODE_RANK="${NODE_RANK:-0}"
MASTER_ADDR="${MASTER_ADDR:-127.0.0.1}"
MASTER_PORT="${MASTER_PORT:-29500}"
PER_DEVICE="${PER_DEVICE:-8}"                    # completions per GPU per micro-step
TOTAL_COMPLETIONS="${TOTAL_COMPLETIONS:-128}"    # per optimizer step: 16 prompts x 8 completions

WORLD=$((NNODES * GPUS_PER_NODE))
if (( TOTAL_COMPLETIONS % (PER_DEVICE * WORLD) != 0 )); then
  echo "TOTAL_COMPLETIONS=$TOTAL_COMPLETIONS is not a multiple of PER_DEVICE x GPUs = $((PER_DEVICE * WORLD))" >&2
  exit 2
fi
GRAD_ACC=$((TOTAL_COMPLETIONS / (PER_DEVICE * WORLD)))

accelerate launch \
  --config_file "$ACCELERATE_CONFIG" \
  --num_machines "$NNODES" --machine_rank "$NODE_RANK" \
  --main_process_ip "$MASTER_ADDR" --main_process_port "$MASTER_PORT" \
  --num_processes "$WORLD" \
  -m r1_aqa.cli train \
  --config "$RECIPE" \
  --model_name_or_path "$MODEL" --dataset_path "$DATA" --output_dir "$OUT" \
  --per_device_train_batch_size "$PER_DEVICE" --gradient_accumulation_steps "$GRAD_ACC" \
  "$@"
