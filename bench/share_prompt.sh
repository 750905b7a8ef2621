#!/usr/bin/env bash
# The README's share_prompt table: a GRPO step (HF rollouts, beta > 0, 8 completions of one prompt, answers forced to
# 8, 32 and 128 tokens) with share_prompt on and off, per tiny model and window; each row prints bench/train_step.py's
# table line. Usage: bash bench/share_prompt.sh [PYTHON]  (OMP_NUM_THREADS and --clock as you set them: CLOCK=cpu)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-.venv/bin/python}
CLOCK=${CLOCK:-wall}
run() {  # family window audio-seconds mode tokens
  "$PY" bench/train_step.py --family "$1" --window-seconds "$2" --audio-seconds "$3" --modes "$4" \
    --completion-tokens "$5" --steps "${STEPS:-3}" --clock "$CLOCK" 2>/dev/null \
    | awk -v f="$1" -v w="$2" -v t="$5" '/^\| hf /{print "| " f " | " w " s | " t " " $0}'
}
echo "| family | window | answer tokens | backend | encoding | share_prompt | LM tokens/step: log-prob passes | rollout | s/step | speed-up vs per_row | vs share_prompt off | ..."
for tokens in 8 32 128; do
  run qwen2-audio 30 30 per_clip,frozen "$tokens"
  run qwen2-audio 2 2 per_clip "$tokens"
  run qwen2.5-omni 30 30 per_clip "$tokens"
  run qwen3-omni 30 30 per_clip "$tokens"
done
