#!/usr/bin/env bash
# Create .venv (if missing) and install pivotune into it.
# Where no NVIDIA GPU is visible, the CPU build of torch goes in first, so the
# loose `torch` requirement of the package is already met and pip does not pull
# a multi-GB CUDA build. GPU users: see README, "Installing on a GPU machine".
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${VENV:-.venv}
STAMP="$VENV/.pivotune-installed"
if [ -f "$STAMP" ] && [ "$STAMP" -nt pyproject.toml ]; then
  exit 0
fi
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP="$VENV/bin/python -m pip"
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    echo "bootstrap: GPU found; installing the default (CUDA) torch build" >&2
    $PIP install -q "torch>=2.4"
  else
    echo "bootstrap: no GPU found; installing the CPU build of torch" >&2
    # PIVOTUNE_TORCH_INDEX: a CPU wheel index for machines whose pip would
    # otherwise resolve torch to a CUDA build (see README).
    if [ -n "${PIVOTUNE_TORCH_INDEX:-}" ]; then
      $PIP install -q --index-url "$PIVOTUNE_TORCH_INDEX" torch
    else
      $PIP install -q "torch==${PIVOTUNE_TORCH_VERSION:-2.13.0}"
    fi
  fi
fi
$PIP install -q -e ".[dev]"
touch "$STAMP"
