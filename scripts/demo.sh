#!/usr/bin/env bash
# Install hpa-exp into .venv and run the shipped high-load experiment on the digital twin.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip uv
.venv/bin/uv pip install -q --python .venv/bin/python -e .
.venv/bin/hpa-exp run experiment-configs/high-load-hpa.yaml --backend sim --plain
