#!/usr/bin/env bash
# The README's demo table: `r1-aqa demo` once per seed and thread count, one run at a time (run it on an idle
# machine: the seconds are a target), then one markdown row per run. Exits 1 if any run missed a target.
#   bash bench/demo_seeds.sh [OUT]                  # seeds 0-9, each with OMP_NUM_THREADS=1 and 2 (20 runs)
#   RUNS="0:1 1:1" bash bench/demo_seeds.sh OUT     # SEED:THREADS pairs
#   bash bench/demo_seeds.sh OUT --quick            # flags after OUT go to every demo run
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-demo_seeds}
mkdir -p "$out"
failed=0
rows=()
for run in ${RUNS:-$(for s in 0 1 2 3 4 5 6 7 8 9; do printf '%s:1 %s:2 ' "$s" "$s"; done)}; do
    seed=${run%%:*}; threads=${run##*:}; dir=$out/seed${seed}_omp${threads}
    echo "demo seed $seed, OMP_NUM_THREADS=$threads -> $dir (log: $dir.log)" >&2
    OMP_NUM_THREADS=$threads .venv/bin/r1-aqa demo --seed "$seed" --out "$dir" "${@:2}" > "$dir.log" 2>&1 || failed=1
    rows+=("$(.venv/bin/python - "$dir" "$seed" "$threads" <<'PY'
import json, sys
d, seed, threads = sys.argv[1:]
try:
    s = json.load(open(f"{d}/summary.json"))
except OSError:
    print(f"| {seed} | {threads} | (no summary: see {d}.log) | | | | | | |")
    sys.exit()
rows = [json.loads(line) for line in open(f"{d}/model/grpo/metrics.jsonl")]
share = [r["frac_reward_zero_std"] for r in rows if "frac_reward_zero_std" in r]
met = "-" if s["targets_met"] is None else "yes" if all(s["targets_met"].values()) else "no"  # None: a smoke run
nosig = f"{share[-1]:.2f}" if share else "-"
print(f"| {seed} | {threads} | {s['accuracy_before']:.3f} | {s['accuracy_after']:.3f} | {s['accuracy_silence']:.3f} "
      f"| {s['seconds']:.0f} | {s['grpo_steps']} | {nosig} | {met} |")
PY
)")
done
echo "| seed | OMP_NUM_THREADS | before GRPO | after GRPO | after, silent audio | seconds | GRPO steps | groups without signal at the end | targets met |"
echo "|---:|---:|---:|---:|---:|---:|---:|---:|---|"
printf '%s\n' "${rows[@]}"
exit $failed
