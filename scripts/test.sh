#!/usr/bin/env bash
# Install hpa-exp with its test extras into .venv (and, as root, the Debian packages the tests
# drive: prometheus, chromium, tmux), then run ruff, mypy and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for tool in prometheus chromium tmux; do command -v "$tool" >/dev/null 2>&1 || need+=("$tool"); done
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  else
    echo "note: ${need[*]} missing (apt-get install ${need[*]}); tests that need them are skipped outside CI" >&2
  fi
fi

python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip uv
.venv/bin/uv pip install -q --python .venv/bin/python -e ".[test,notebooks]"
.venv/bin/ruff check hpa_experiments tests benchmarks
.venv/bin/mypy hpa_experiments
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
