#!/usr/bin/env bash
# One-command acceptance run on a machine lent one GPU (no network; Python with torch, transformers, accelerate and
# peft; nothing else). Run `bash scripts/device_wheelhouse.sh` first on a machine with PyPI: its .device_wheels/
# travels with the checkout and is installed here offline. Then, each step in its own process with its own time
# limit (a failing step is reported and the rest still runs), within ~12 minutes:
#   tests   the trainer tests on the tiny models, on CUDA (no vLLM, no multi-process)
#   model   a random Qwen2-Audio of the real 7B dimensions, built on the GPU in bf16 (no download)
#   grpo    3 GRPO steps with the faithful recipe's per-GPU settings (8 completions, 256 new tokens, gradient
#           checkpointing, beta 0.04 with its reference model): time per step and rollout, peak memory
#   dryrun  the 1-GPU dry-run recipe (LoRA), 2 steps
#   moe     2 GRPO steps of a Qwen3-Omni-30B-A3B-shaped thinker (4 of its 48 MoE layers, the full audio encoder)
#           with its recipe's per-GPU settings: time per step and rollout, peak memory
#   moe-vllm  the same with colocated vLLM rollouts (needs vllm; the trainer proves the expert sync before step 1)
#   moe-lora  the same with the 8-GPU LoRA recipe (adapters on attention and on the fused experts)
#   eval    eval throughput of the hf engine on the 7B-shaped model
# and writes OUT/acceptance.md (one table) and OUT/acceptance.json (OUT: $OUT, else acceptance_out/).
#   bash bench/gpu_acceptance.sh             # on the GPU machine
#   bash bench/gpu_acceptance.sh --dry-run   # anywhere: the same steps on CPU with the tiny model, in a few minutes
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
DRY=0
case "${1:-}" in
  --dry-run) DRY=1 ;;
  "") ;;
  *) echo "usage: bash bench/gpu_acceptance.sh [--dry-run]" >&2; exit 2 ;;
esac
OUT=${OUT:-acceptance_out}
PY=${PYTHON:-python3}
mkdir -p "$OUT" && rm -f "$OUT/steps.tsv"
export PYTHONPATH="$PWD/src:$PWD/tests${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export WANDB_MODE=disabled OMP_NUM_THREADS=${OMP_NUM_THREADS:-4}

missing=$("$PY" - <<'PYEOF'
import importlib.util
names = {"trl": "trl", "datasets": "datasets", "pyarrow": "pyarrow", "pandas": "pandas", "soundfile": "soundfile",
         "soxr": "soxr", "pytest": "pytest"}
print(" ".join(sorted(p for m, p in names.items() if importlib.util.find_spec(m) is None)))
PYEOF
)
if [[ -n "$missing" ]]; then
  if [[ -d .device_wheels ]]; then
    echo "installing offline from .device_wheels: $missing"
    "$PY" -m pip install --disable-pip-version-check -q --no-index --find-links .device_wheels \
      trl datasets pyarrow pandas soundfile soxr pytest || echo "offline install failed (wheels for Python $(cat .device_wheels/PYTHON_VERSION 2>/dev/null); this is $("$PY" -V))" >&2
  else
    echo "missing $missing and no .device_wheels/ (run scripts/device_wheelhouse.sh where PyPI is reachable)" >&2
  fi
fi

# step NAME LIMIT_S COMMAND...: run with a time limit, record exit code and seconds, keep the log
step() {
  local name=$1 limit=$2; shift 2
  local start=$SECONDS
  echo "== $name (limit ${limit}s)"
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  local code=$?
  printf '%s\t%s\t%s\n' "$name" "$code" "$((SECONDS - start))" >> "$OUT/steps.tsv"
  tail -n 3 "$OUT/$name.log"
  return 0
}

RECIPES=examples/r1_aqa/recipes/qwen2_audio_7b
MOE=examples/r1_aqa/recipes/qwen3_omni_30b_a3b
moe_vllm=(--use_vllm true --vllm_mode colocate --vllm_max_model_length 2048)
if (( DRY )); then
  tiny=(--tiny)
  step env 60 "$PY" bench/gpu_acceptance.py env "$OUT"
  step tests 300 "$PY" -m pytest -q -p no:cacheprovider tests/test_trainer.py -k "cli_train or recipes" \
    -o cache_dir="$OUT/.pytest_cache"
  step model 120 "$PY" bench/gpu_acceptance.py model "$OUT" "${tiny[@]}"
  step grpo 300 "$PY" bench/gpu_acceptance.py grpo "$OUT" "$RECIPES/grpo_r1_aqa.yaml" grpo "${tiny[@]}" \
    --max_steps 2 --gradient_accumulation_steps 1
  step dryrun 300 "$PY" bench/gpu_acceptance.py grpo "$OUT" "$RECIPES/grpo_dry_run_1gpu.yaml" dryrun "${tiny[@]}" \
    --max_steps 1 --gradient_accumulation_steps 1
  step moe-model 120 "$PY" bench/gpu_acceptance.py moe-model "$OUT" "${tiny[@]}"
  step moe 300 "$PY" bench/gpu_acceptance.py grpo "$OUT" "$MOE/grpo_r1_aqa.yaml" \
    moe "${tiny[@]}" --model_name_or_path "$OUT/moe-tiny" --max_steps 1
  step moe-vllm 300 "$PY" bench/gpu_acceptance.py grpo "$OUT" "$MOE/grpo_r1_aqa.yaml" moe-vllm "${tiny[@]}" \
    --model_name_or_path "$OUT/moe-tiny" --max_steps 2 "${moe_vllm[@]}"
  step moe-lora 300 "$PY" bench/gpu_acceptance.py grpo "$OUT" "$MOE/grpo_lora_8gpu.yaml" moe-lora "${tiny[@]}" \
    --model_name_or_path "$OUT/moe-tiny" --max_steps 1 --gradient_accumulation_steps 1
  step eval 120 "$PY" bench/gpu_acceptance.py eval "$OUT" "${tiny[@]}"
else
  step env 60 "$PY" bench/gpu_acceptance.py env "$OUT"
  R1_AQA_TEST_DEVICE=cuda step tests 110 "$PY" -m pytest -q -p no:cacheprovider tests/test_trainer.py tests/test_omni.py \
    -m "not vllm and not distributed"
  step model 90 "$PY" bench/gpu_acceptance.py model "$OUT"
  # per GPU: one prompt's 8 completions per micro-step, accumulation 1 (the recipe's 2 is for 8 GPUs)
  step grpo 170 "$PY" bench/gpu_acceptance.py grpo "$OUT" "$RECIPES/grpo_r1_aqa.yaml" grpo \
    --max_steps 3 --gradient_accumulation_steps 1
  step dryrun 110 "$PY" bench/gpu_acceptance.py grpo "$OUT" "$RECIPES/grpo_dry_run_1gpu.yaml" dryrun \
    --max_steps 2 --gradient_accumulation_steps 1
  step eval 80 "$PY" bench/gpu_acceptance.py eval "$OUT"
  step moe-model 60 "$PY" bench/gpu_acceptance.py moe-model "$OUT"
  step moe 150 "$PY" bench/gpu_acceptance.py grpo "$OUT" "$MOE/grpo_r1_aqa.yaml" \
    moe --model_name_or_path "$OUT/moe-shape" --max_steps 2
  step moe-vllm 150 "$PY" bench/gpu_acceptance.py grpo "$OUT" "$MOE/grpo_r1_aqa.yaml" moe-vllm \
    --model_name_or_path "$OUT/moe-shape" --max_steps 2 "${moe_vllm[@]}" --vllm_gpu_memory_utilization 0.3
  step moe-lora 150 "$PY" bench/gpu_acceptance.py grpo "$OUT" "$MOE/grpo_lora_8gpu.yaml" moe-lora \
    --model_name_or_path "$OUT/moe-shape" --max_steps 2 --gradient_accumulation_steps 1
fi
grep -E "passed|failed|error" "$OUT/tests.log" | tail -n 1 > "$OUT/tests.txt"
"$PY" bench/gpu_acceptance.py report "$OUT"
