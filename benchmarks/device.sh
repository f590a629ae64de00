#!/usr/bin/env bash
# The GPU benchmark for a lent device (issue 25), at most 8 minutes; results in $OUT/device.{md,json}.
# The device has python3 with torch and lightning but no network: infomax runs from this checkout
# (PYTHONPATH), and CIFAR-10 travels through the device tool's carry:
#   mkdir -p device_data && cp ../shared/data/cifar10-jpeg.tar.gz device_data/     # here, once (git-ignored)
#   run(command="bash benchmarks/device.sh", carry=["device_data"], timeout_s=600)  # the device tool
# Anywhere without a GPU: bash benchmarks/device.sh --dry-run (every part for one step on CPU).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/device}
if python3 -c "import torch, lightning, safetensors, yaml, tqdm" 2>/dev/null; then
  PY=python3
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
  ./run --version >/dev/null  # a machine without them: ./run sets up .venv (needs the package registries)
  PY=.venv/bin/python
fi
exec timeout 480 "$PY" benchmarks/device.py --out "$OUT" --data-root device_data "$@"
