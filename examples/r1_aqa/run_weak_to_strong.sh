#!/usr/bin/env bash
# Weak-to-strong (AudioMCQ, arXiv 2509.21060) in three stages, on one node:
#   1. filter: label every training item by audio contribution (answered with its audio and with silence);
#      weak = answered right without hearing, strong = the rest; write the two subsets
#   2. sft:    supervised fine-tuning on the weak subset
#   3. train:  GRPO on the strong subset, from the stage-2 model
#
#   MODEL=Qwen/Qwen2.5-Omni-7B DATA=data/avqa/train.parquet bash examples/r1_aqa/run_weak_to_strong.sh
#   MODEL=Qwen/Qwen2-Audio-7B-Instruct RECIPES=examples/r1_aqa/recipes/qwen2_audio_7b/weak_to_strong \
#     DATA=data/avqa/train.parquet bash examples/r1_aqa/run_weak_to_strong.sh
#
# Outputs under OUT: data/labelled.parquet (+ labelled.filter.{json,md,png}: counts, listening gap, examples),
# data/weak.parquet, data/strong.parquet, sft/, grpo/. A stage whose output exists is skipped, so a rerun continues
# (filter itself resumes a killed run). Extra flags per stage: FILTER_ARGS, SFT_ARGS, GRPO_ARGS (e.g. FILTER_ARGS=
# "--samples 4 --model OTHER_MODEL" to vote with more answers and a second model). LAUNCH runs the two training
# stages (default: accelerate with DeepSpeed ZeRO-2 on GPUS processes, as AudioMCQ; LAUNCH=python for one process).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
MODEL="${MODEL:-Qwen/Qwen2.5-Omni-7B}"
DATA="${DATA:-data/avqa/train.parquet}"
RECIPES="${RECIPES:-$HERE/recipes/qwen2_5_omni_7b/weak_to_strong}"
SFT_RECIPE="${SFT_RECIPE:-$RECIPES/sft_weak.yaml}"
GRPO_RECIPE="${GRPO_RECIPE:-$RECIPES/grpo_strong.yaml}"
OUT="${OUT:-runs/weak_to_strong}"
GPUS="${GPUS:-8}"
ENGINE="${ENGINE:-vllm}"
ACCELERATE_CONFIG="${ACCELERATE_CONFIG:-$HERE/accelerate/zero2.yaml}"
LAUNCH="${LAUNCH:-accelerate launch --config_file $ACCELERATE_CONFIG --num_processes $GPUS}"
read -r -a filter_args <<< "${FILTER_ARGS:-}"
read -r -a sft_args <<< "${SFT_ARGS:-}"
read -r -a grpo_args <<< "${GRPO_ARGS:-}"
read -r -a launch <<< "$LAUNCH"

mkdir -p "$OUT/data"
if [[ ! -f "$OUT/data/labelled.parquet" ]]; then
  echo "== [1/3] filter: audio contribution of every item of $DATA"
  python -m r1_aqa.cli filter --data "$DATA" --model "$MODEL" --output "$OUT/data/labelled.parquet" \
    --engine "$ENGINE" "${filter_args[@]}"
fi
for kind in weak strong; do
  python -m r1_aqa.cli filter --data "$OUT/data/labelled.parquet" --keep "$kind" --output "$OUT/data/$kind.parquet"
done

if [[ ! -f "$OUT/sft/config.json" ]]; then
  echo "== [2/3] sft on the weak subset"
  "${launch[@]}" -m r1_aqa.cli sft --config "$SFT_RECIPE" --model_name_or_path "$MODEL" \
    --dataset_path "$OUT/data/weak.parquet" --output_dir "$OUT/sft" "${sft_args[@]}"
fi

if [[ ! -f "$OUT/grpo/config.json" ]]; then
  echo "== [3/3] GRPO on the strong subset, from the SFT model"
  "${launch[@]}" -m r1_aqa.cli train --config "$GRPO_RECIPE" --model_name_or_path "$OUT/sft" \
    --dataset_path "$OUT/data/strong.parquet" --output_dir "$OUT/grpo" "${grpo_args[@]}"
fi
echo "weak-to-strong done: $OUT/grpo (labels and listening gap: $OUT/data/labelled.filter.md)"
