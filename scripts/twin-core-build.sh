#!/usr/bin/env bash
# Build the twin's optional compiled core (mypyc) into ~/.cache/hpa-exp/twin-core/<key>/, keyed by
# the Python version and a hash of the sources; nothing is written into the source tree, and a
# build whose key no longer matches the sources is never loaded.  Seconds when already current.
#
#   scripts/twin-core-build.sh            build unless current (about 1-2 min on 2 cores)
#   scripts/twin-core-build.sh --check    exit 0 if a current build exists
#   scripts/twin-core-build.sh --force    rebuild
#
# The modules compiled: hpa_experiments/backends/sim/twin_core.py (COMPILED).  HPA_EXP_TWIN_CORE_CACHE
# overrides the cache folder; HPA_EXP_TWIN_CORE=python makes a run ignore the build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || { echo "twin-core-build: $PY not found (install first: scripts/test.sh or python3 -m venv .venv)" >&2; exit 2; }
exec "$PY" -m hpa_experiments.backends.sim.twin_core_build "$@"
