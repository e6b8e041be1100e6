#!/usr/bin/env bash
# Install hpa-exp with its test extras into .venv (and, as root, the Debian packages the tests
# drive: prometheus, chromium, tmux, openssl), build the test bed's binaries (a real Kubernetes
# control plane, from pinned Go modules, cached outside the repo: scripts/testbed-build.sh) and the
# twin's compiled core (scripts/twin-core-build.sh, also cached outside the repo), then run ruff,
# mypy and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for tool in prometheus chromium tmux openssl; do command -v "$tool" >/dev/null 2>&1 || need+=("$tool"); done
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
# pinned versions (tools included) from the lock; regenerate it after changing dependencies with
#   uv pip compile pyproject.toml --extra test --extra notebooks --python-version 3.11 -o requirements/ci.lock
.venv/bin/uv pip install -q --python .venv/bin/python -r requirements/ci.lock
.venv/bin/uv pip install -q --python .venv/bin/python --no-deps -e .
.venv/bin/ruff check hpa_experiments tests benchmarks
.venv/bin/ruff format --check hpa_experiments tests benchmarks
.venv/bin/mypy hpa_experiments
# the test bed's binaries: ~25 min cold on 2 cores, seconds when the cache is complete; a failed
# build stops here, naming the module (the testbed tests would fail without it anyway)
bash scripts/testbed-build.sh
# the twin's compiled core (mypyc; ~70 s cold on an idle 2-core machine, <1 s when current): the
# runs of the suite then use it, and tests/test_twin_core.py compares it with pure Python (it fails
# without the build in CI, so a failed build is reported here and the tests still run)
bash scripts/twin-core-build.sh || echo "twin-core-build failed: tests/test_twin_core.py will fail" >&2
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
