#!/usr/bin/env bash
# The test bed for a person: a real Kubernetes control plane, Prometheus and prometheus-adapter
# as local processes on 127.0.0.1 (tests/support/testbed.py), left running in the background.
#
#   scripts/testbed.sh up     start it (builds nothing: run scripts/testbed-build.sh first)
#   scripts/testbed.sh up --autoscaler keda   KEDA (operator, metrics server) instead of prometheus-adapter
#   scripts/testbed.sh env    print the exports that point hpa-exp at it:  eval "$(scripts/testbed.sh env)"
#   scripts/testbed.sh down   stop every process it started
#
# Then, e.g.:  hpa-exp run experiment-configs/high-load-hpa.yaml --backend kubernetes
# (the kit's model server: apply manifests/namespace.yaml and manifests/model-server/*.yaml with
# any client; the test bed runs one llm-d-inference-sim per model-server pod).
# State and logs: $HPA_EXP_TESTBED_DIR (default /tmp/hpa-exp-testbed).
set -euo pipefail
cd "$(dirname "$0")/.."
DIR="${HPA_EXP_TESTBED_DIR:-${TMPDIR:-/tmp}/hpa-exp-testbed}"
PY=python3
[ -x .venv/bin/python ] && PY=.venv/bin/python

running() { [ -f "$DIR/testbed.pid" ] && kill -0 "$(cat "$DIR/testbed.pid")" 2>/dev/null; }

case "${1:-}" in
  up)
    if running; then echo "testbed: already up (pid $(cat "$DIR/testbed.pid")); $0 env"; exit 0; fi
    shift
    rm -rf "$DIR" && mkdir -p "$DIR"
    setsid "$PY" -m tests.support.testbed up "$DIR" "$@" >"$DIR/testbed.out" 2>&1 </dev/null &
    echo $! >"$DIR/testbed.pid"
    for _ in $(seq 1 240); do
      if [ -f "$DIR/env" ]; then cat "$DIR/testbed.out"; echo "eval \"\$($0 env)\"   # logs: $DIR/logs"; exit 0; fi
      if ! running; then cat "$DIR/testbed.out" >&2; echo "testbed: failed to start (above)" >&2; exit 1; fi
      sleep 0.5
    done
    echo "testbed: not up after 120 s; see $DIR/testbed.out and $DIR/logs" >&2; exit 1 ;;
  down)
    if ! running; then echo "testbed: not running"; exit 0; fi
    pid=$(cat "$DIR/testbed.pid"); kill -TERM "$pid"
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || { echo "testbed: stopped"; rm -f "$DIR/testbed.pid"; exit 0; }; sleep 0.5; done
    echo "testbed: pid $pid still running after 30 s" >&2; exit 1 ;;
  env)
    running && [ -f "$DIR/env" ] || { echo "testbed: not running ($0 up)" >&2; exit 1; }
    cat "$DIR/env" ;;
  *)
    sed -n '2,13p' "$0" >&2; exit 2 ;;
esac
