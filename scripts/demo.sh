#!/usr/bin/env bash
# Install hpa-exp into .venv and run the shipped high-load experiment on the digital twin.
# The twin's compiled core is not built here: it needs mypy and a C compiler, takes over a minute
# to build, and pays off only for long or large runs (this one takes about a second in pure
# Python); scripts/twin-core-build.sh builds it when wanted.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip uv
.venv/bin/uv pip install -q --python .venv/bin/python -e .
.venv/bin/hpa-exp run experiment-configs/high-load-hpa.yaml --backend sim --plain
