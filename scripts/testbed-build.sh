#!/usr/bin/env bash
# Build the test bed's binaries (kube-apiserver, kube-controller-manager, kube-scheduler, etcd,
# kwok, prometheus-adapter, llm-d-inference-sim, keda-operator, keda-adapter) from pinned Go modules into a cache folder outside
# the repo, keyed by the versions, and reuse what is already there.
#
#   scripts/testbed-build.sh              build what is missing, print timings
#   scripts/testbed-build.sh --print-dir  print the cache folder and exit (nothing is built)
#
# HPA_EXP_TESTBED_BIN overrides the cache folder.  Versions: testbed/k8s/go.mod and
# testbed/{etcd,prometheus-adapter,inference-sim,keda}/go.mod: wrapper modules, because `go install
# pkg@version` is refused for them (k8s, etcd and keda: replace directives in their go.mod; adapter
# and simulator: the module proxy answers 403 for their version list, which `go install` reads).
# KEDA's CRDs are not generated: they are copied from the keda module (GOMODCACHE) to keda-data/crd.
# kwok installs plainly at KWOK_VERSION below.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

KWOK_VERSION=v0.8.0

export GOTOOLCHAIN=local CGO_ENABLED=0
# a non-interactive shell (CI) may not have read the profile that puts Go on PATH
command -v go >/dev/null 2>&1 || [ ! -x /usr/local/go/bin/go ] || export PATH="/usr/local/go/bin:$PATH"
command -v go >/dev/null 2>&1 || { echo "testbed-build: the go command is missing (Go >= 1.26 is needed)" >&2; exit 1; }

mod_version() { # wrapper-module-dir module -> the version its go.mod requires
  awk -v m="$2" '$1 == m && $2 ~ /^v/ {print $2; exit} $1 == "require" && $2 == m {print $3; exit}' "$ROOT/testbed/$1/go.mod"
}
K8S_VERSION=$(mod_version k8s k8s.io/kubernetes)
ETCD_VERSION=$(mod_version etcd go.etcd.io/etcd/server/v3)
ADAPTER_VERSION=$(mod_version prometheus-adapter sigs.k8s.io/prometheus-adapter)
SIM_VERSION=$(mod_version inference-sim github.com/llm-d/llm-d-inference-sim)
KEDA_VERSION=$(mod_version keda github.com/kedacore/keda/v2)
[ -n "$K8S_VERSION" ] && [ -n "$ETCD_VERSION" ] && [ -n "$ADAPTER_VERSION" ] && [ -n "$SIM_VERSION" ] && [ -n "$KEDA_VERSION" ] || { echo "testbed-build: cannot read the versions from testbed/*/go.mod" >&2; exit 1; }
GO_VERSION=$(go env GOVERSION)
KEY="k8s-${K8S_VERSION}_etcd-${ETCD_VERSION}_kwok-${KWOK_VERSION}_adapter-${ADAPTER_VERSION}_sim-${SIM_VERSION}_keda-${KEDA_VERSION}_${GO_VERSION}"
BIN="${HPA_EXP_TESTBED_BIN:-${XDG_CACHE_HOME:-$HOME/.cache}/hpa-exp-testbed/$KEY}"

if [ "${1:-}" = "--print-dir" ]; then echo "$BIN"; exit 0; fi

mkdir -p "$BIN/.logs"
TIMINGS="$BIN/.logs/timings.tsv"
START_ALL=$(date +%s)

# build NAME "BINARIES" MODULE@VERSION COMMAND...: skip when every binary is in the cache, else run
# COMMAND (which writes into $OUT) with its output in .logs/NAME.log, then move the binaries in.
build() {
  local name=$1 bins=$2 what=$3; shift 3
  local missing=0 b
  for b in $bins; do [ -x "$BIN/$b" ] || missing=1; done
  if [ $missing = 0 ]; then echo "testbed-build: $name ($what) cached"; return 0; fi
  OUT=$(mktemp -d "$BIN/.tmp-$name.XXXXXX")
  local log="$BIN/.logs/$name.log" t0 t1
  echo "testbed-build: building $name ($what) ... log: $log"
  t0=$(date +%s)
  if ! "$@" >"$log" 2>&1; then
    echo "testbed-build: FAILED building $name from $what; the last lines of $log:" >&2
    tail -n 30 "$log" >&2
    rm -rf "$OUT"
    exit 1
  fi
  for b in $bins; do
    [ -x "$OUT/$b" ] || { echo "testbed-build: FAILED: building $name from $what produced no $b" >&2; exit 1; }
    mv -f "$OUT/$b" "$BIN/$b"
  done
  rm -rf "$OUT"
  t1=$(date +%s)
  printf '%s\t%s\t%ss\n' "$name" "$what" "$((t1 - t0))" >>"$TIMINGS"
  echo "testbed-build: built $name in $((t1 - t0))s"
}

k8s_ldflags() {
  local minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
  local f="-s -w" p
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    f="$f -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
  done
  echo "$f"
}
build_k8s() {
  (cd "$ROOT/testbed/k8s" && go build -trimpath -buildvcs=false -ldflags "$(k8s_ldflags)" -o "$OUT/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-scheduler)
}
wrapper_build() { # wrapper-module-dir package binary-name
  (cd "$ROOT/testbed/$1" && go build -trimpath -buildvcs=false -ldflags "-s -w" -o "$OUT/$3" "$2")
}
go_install() { # PACKAGE@VERSION
  GOBIN="$OUT" GOFLAGS= go install -trimpath -ldflags "-s -w" "$1"
}
# kwok has no built-in stages: keep the module's stage files (fast node/pod life cycle) beside it,
# and its Logs CRD (the test bed serves Job pod logs through kwok's kubelet API).
kwok_data() {
  local dir
  dir=$(GOFLAGS= go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
  [ -d "$dir/kustomize/stage" ] || { echo "no kustomize/stage in $dir" >&2; return 1; }
  mkdir -p "$OUT/kwok-data/stage" "$OUT/kwok-data/crd" && cp -r "$dir/kustomize/stage/." "$OUT/kwok-data/stage/" \
    && cp "$dir/kustomize/crd/bases/kwok.x-k8s.io_logs.yaml" "$OUT/kwok-data/crd/" && chmod -R u+w "$OUT/kwok-data"
  touch "$OUT/kwok-data/.complete"
}

build etcd "etcd" "go.etcd.io/etcd/server/v3@$ETCD_VERSION" wrapper_build etcd go.etcd.io/etcd/server/v3 etcd
build kwok "kwok" "sigs.k8s.io/kwok@$KWOK_VERSION" go_install "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
if [ ! -f "$BIN/kwok-data/.complete" ]; then
  OUT=$(mktemp -d "$BIN/.tmp-kwok-data.XXXXXX")
  kwok_data || { echo "testbed-build: FAILED copying kwok's stages and CRD from sigs.k8s.io/kwok@$KWOK_VERSION" >&2; exit 1; }
  rm -rf "$BIN/kwok-data" && mv "$OUT/kwok-data" "$BIN/kwok-data" && rm -rf "$OUT"
fi
build prometheus-adapter "prometheus-adapter" "sigs.k8s.io/prometheus-adapter@$ADAPTER_VERSION" \
  wrapper_build prometheus-adapter sigs.k8s.io/prometheus-adapter/cmd/adapter prometheus-adapter
build llm-d-inference-sim "llm-d-inference-sim" "github.com/llm-d/llm-d-inference-sim@$SIM_VERSION" \
  wrapper_build inference-sim github.com/llm-d/llm-d-inference-sim/cmd/llm-d-inference-sim llm-d-inference-sim
# KEDA: a large module (every scaler's client library); GOMAXPROCS / -p bound the build on small hosts
# (HPA_EXP_TESTBED_BUILD_P, default 2).
build_keda() {
  (cd "$ROOT/testbed/keda" && GOMAXPROCS=${HPA_EXP_TESTBED_BUILD_P:-2} go build -p "${HPA_EXP_TESTBED_BUILD_P:-2}" \
    -trimpath -buildvcs=false -ldflags "-s -w" -o "$OUT/keda-operator" github.com/kedacore/keda/v2/cmd/operator \
    && cd "$ROOT/testbed/keda" && GOMAXPROCS=${HPA_EXP_TESTBED_BUILD_P:-2} go build -p "${HPA_EXP_TESTBED_BUILD_P:-2}" \
    -trimpath -buildvcs=false -ldflags "-s -w" -o "$OUT/keda-adapter" github.com/kedacore/keda/v2/cmd/adapter)
}
build keda "keda-operator keda-adapter" "github.com/kedacore/keda/v2@$KEDA_VERSION" build_keda
# KEDA's CRDs as released: config/crd/bases of the same module (already in GOMODCACHE after the build)
if [ ! -f "$BIN/keda-data/.complete" ]; then
  OUT=$(mktemp -d "$BIN/.tmp-keda-data.XXXXXX")
  dir=$(cd "$ROOT/testbed/keda" && GOFLAGS= go mod download -json "github.com/kedacore/keda/v2" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
  { [ -d "$dir/config/crd/bases" ] && mkdir -p "$OUT/keda-data/crd" && cp "$dir"/config/crd/bases/*.yaml "$OUT/keda-data/crd/" \
    && chmod -R u+w "$OUT/keda-data" && touch "$OUT/keda-data/.complete"; } \
    || { echo "testbed-build: FAILED copying KEDA's CRDs from github.com/kedacore/keda/v2@$KEDA_VERSION" >&2; exit 1; }
  rm -rf "$BIN/keda-data" && mv "$OUT/keda-data" "$BIN/keda-data" && rm -rf "$OUT"
fi
build kubernetes "kube-apiserver kube-controller-manager kube-scheduler" "k8s.io/kubernetes@$K8S_VERSION" build_k8s

echo "$KEY" >"$BIN/.complete"
echo "testbed-build: all binaries in $BIN ($(( $(date +%s) - START_ALL ))s)"
