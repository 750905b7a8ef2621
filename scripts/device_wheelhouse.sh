#!/usr/bin/env bash
# Download, on a machine with PyPI, the wheels a lent GPU machine lacks for bench/gpu_acceptance.sh, into the ignored
# folder .device_wheels/ (it travels with the checkout; that machine has no network). That machine brings Python with
# torch, transformers, accelerate and peft; this adds TRL, datasets and what they need beyond those (pyarrow, pandas,
# ...), soundfile/soxr for audio, pytest. Versions are pinned to what the tests run with here, pyarrow to the oldest
# TRL accepts (the largest wheel by far). Fails if the folder would exceed the budget (60 MiB: checkouts carry 64).
#   bash scripts/device_wheelhouse.sh [--python 3.11] [--platform manylinux_2_28_x86_64]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYVER=$(python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
PLATFORM=manylinux_2_28_x86_64
while [[ $# -gt 0 ]]; do
  case "$1" in
    --python) PYVER=$2; shift 2 ;;
    --platform) PLATFORM=$2; shift 2 ;;
    *) echo "unknown argument $1 (use --python X.Y, --platform TAG)" >&2; exit 2 ;;
  esac
done
DEST=.device_wheels
LIMIT_MIB=60
WHEELS=(
  "trl==1.16.0" "datasets==4.8.5" "pyarrow==21.0.0" "pandas==2.3.3" "dill==0.4.0" "multiprocess==0.70.18"
  "xxhash==3.6.0" "fsspec==2025.10.0" "python-dateutil==2.9.0.post0" "six==1.17.0" "tzdata==2025.2" "pytz==2025.2"
  "soundfile==0.13.1" "soxr==1.0.0" "cffi==2.0.0" "pycparser==2.23" "pytest==8.4.2" "iniconfig==2.1.0"
  "pluggy==1.6.0" "pygments==2.19.2"
)
tmp=$(mktemp -d "$DEST.XXXX")
trap 'rm -rf "$tmp"' EXIT
# Older manylinux tags too: each package's newest wheel for this Python on any compatible glibc.
python3 -m pip download --disable-pip-version-check -q --no-deps --only-binary=:all: --implementation cp \
  --python-version "$PYVER" --platform "$PLATFORM" --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d "$tmp" "${WHEELS[@]}"
total=$(du -cb "$tmp"/*.whl | tail -1 | cut -f1)
ls -l "$tmp" | awk 'NR > 1 {printf "%10.1f MiB  %s\n", $5 / 1048576, $9}' | sort -n
printf 'total %.1f MiB for Python %s (%s)\n' "$(echo "$total / 1048576" | bc -l)" "$PYVER" "$PLATFORM"
if (( total > LIMIT_MIB * 1048576 )); then
  echo "more than $LIMIT_MIB MiB: the checkout's carried paths would not fit; drop a package or pin smaller wheels" >&2
  exit 1
fi
rm -rf "$DEST" && mv "$tmp" "$DEST"
echo "$PYVER" > "$DEST/PYTHON_VERSION"
echo "wrote $DEST (carry it to the device machine)"
