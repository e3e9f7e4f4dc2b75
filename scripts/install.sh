#!/usr/bin/env bash
# One-step set-up: keeps an existing torch (e.g. a CUDA build you chose), otherwise
# installs the CPU build, then the package with its test extras in editable mode.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if ! "$PY" -c "import torch" >/dev/null 2>&1; then
    "$PY" -m pip install -q "torch==${SCALECRAFTER_TORCH_VERSION:-2.13.0}"
fi
"$PY" -m pip install -q -e ".[test]"
