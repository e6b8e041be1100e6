"""The test bed: a real Kubernetes control plane and monitoring stack as local processes.

etcd, kube-apiserver (RBAC, front-proxy flags for the aggregator), kube-controller-manager
(HPA sync every 5 s), kube-scheduler, kwok (one fake node; pods become Running/Ready, deleted
pods go away), the Debian Prometheus (file_sd targets with `namespace`/`pod` labels, as the
kit's pod discovery gives them) and prometheus-adapter with the kit's rules
(manifests/monitoring/adapter-rules.yaml), registered as custom.metrics.k8s.io through an
APIService and an ExternalName Service to 127.0.0.1; or, with `autoscaler="keda"`, KEDA's operator
and metrics server instead of prometheus-adapter (tests/support/testbed_keda.py), the Service
stand-ins then holding requests while no pod is Ready.  `tests/support/testbed_pods.py` plays
the kubelet's part for the pods that matter: one llm-d-inference-sim per model-server pod,
a round-robin stand-in for each Service, and a load generator per `vllm bench serve` Job pod.

Binaries come from `scripts/testbed-build.sh` (a version-keyed cache outside the repo).  A
missing binary fails the tests that need the test bed, naming that script.

Use: the session fixtures `testbed` and `testbed_keda` (tests/conftest.py), or
`python -m tests.support.testbed up DIR [--autoscaler keda]` (what `scripts/testbed.sh` runs).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import requests
import yaml

from tests.support import testbed_keda
from tests.support.testbed_proc import Proc, free_port, http_ok, make_pki, wait_until

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = "scripts/testbed-build.sh"
BINARIES = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kwok",
    "prometheus-adapter",
    "llm-d-inference-sim",
)
NODE_NAME = "kwok-node-0"
ADAPTER_RULES = REPO / "manifests" / "monitoring" / "adapter-rules.yaml"
# kwok's own stage files (copied next to the binaries by the build script, under kwok-data/stage).
# No pod-complete stage: a Job pod ends when its load generator ends (tests/support/testbed_pods.py).
KWOK_STAGES = (
    "node/fast/node-initialize.yaml",
    "node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
    "pod/fast/pod-ready.yaml",
    "pod/fast/pod-delete.yaml",
)
HPA_SYNC_PERIOD = "5s"
AUTOSCALERS = ("prometheus-adapter", "keda")
# KEDA test bed: how long a Service stand-in holds a request while no pod is Ready (scale from zero)
GATEWAY_HOLD_S = 300.0


class TestbedMissing(RuntimeError):
    """The binaries are not built."""


def binary_dir() -> Path:
    """The cache folder of the binaries: $HPA_EXP_TESTBED_BIN, else what the build script prints."""
    explicit = os.environ.get("HPA_EXP_TESTBED_BIN")
    if explicit:
        return Path(explicit)
    done = subprocess.run(["bash", str(REPO / BUILD_SCRIPT), "--print-dir"], capture_output=True, text=True)
    if done.returncode != 0:
        raise TestbedMissing(f"{BUILD_SCRIPT} --print-dir failed: {done.stderr.strip()}")
    return Path(done.stdout.strip())


def check_binaries(bin_dir: Path, extra: Iterable[str] = ()) -> None:
    missing = [name for name in (*BINARIES, *extra) if not os.access(bin_dir / name, os.X_OK)]
    if not (bin_dir / "kwok-data" / ".complete").is_file():
        missing.append("kwok-data/")
    if shutil.which("prometheus") is None:
        raise TestbedMissing("the prometheus binary is missing (apt-get install prometheus)")
    if shutil.which("openssl") is None:
        raise TestbedMissing("the openssl binary is missing (apt-get install openssl)")
    if missing:
        raise TestbedMissing(
            f"test bed binaries missing in {bin_dir}: {', '.join(missing)}; run {BUILD_SCRIPT} "
            "(it builds them from the pinned Go modules, about 30 min cold; later runs reuse the cache)"
        )


class Testbed:
    """Start with `start()`, stop with `stop()`; `kubeconfig` and `prometheus_url` connect hpa-exp."""

    __test__ = False  # not a test class

    def __init__(self, workdir: Path, bin_dir: Path | None = None, autoscaler: str = "prometheus-adapter"):
        if autoscaler not in AUTOSCALERS:
            raise ValueError(f"autoscaler must be one of {AUTOSCALERS}, not {autoscaler!r}")
        self.autoscaler = autoscaler
        self.gateway_hold_s = GATEWAY_HOLD_S if autoscaler == "keda" else 0.0
        self.workdir = Path(workdir)
        self.bin = Path(bin_dir) if bin_dir else binary_dir()
        self.pki = self.workdir / "pki"
        self.logdir = self.workdir / "logs"
        self.kubeconfig = self.workdir / "admin.kubeconfig"
        self.ports: dict[str, int] = {}
        self.procs: list[Proc] = []
        self.pods: Any = None  # testbed_pods.PodSupervisor once started
        self._started = False

    # --- life cycle ------------------------------------------------------------------------

    def start(self) -> Testbed:
        keda = self.autoscaler == "keda"
        check_binaries(self.bin, testbed_keda.BINARIES if keda else ())
        t0 = time.monotonic()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.logdir.mkdir(exist_ok=True)
        self.ports = {name: free_port() for name in ("etcd", "peer", "api", "kcm", "sched", "kwok", "prom", "adapter")}
        make_pki(self.pki)
        self._write_kubeconfig()
        self._start_etcd()
        self._start_apiserver()
        self._start_controllers()
        self._start_kwok()
        self._start_prometheus()
        if keda:
            testbed_keda.start(self)
        else:
            self._start_adapter()
        from tests.support.testbed_pods import PodSupervisor

        self.pods = PodSupervisor(self)
        self.pods.start()
        self._started = True
        self.startup_seconds = time.monotonic() - t0
        return self

    def stop(self) -> None:
        if self.pods is not None:
            self.pods.stop()
        for proc in reversed(self.procs):
            proc.stop()
        self.procs.clear()

    @property
    def prometheus_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['prom']}"

    @property
    def api_url(self) -> str:
        return f"https://127.0.0.1:{self.ports['api']}"

    def env(self) -> dict[str, str]:
        """What a shell needs to point hpa-exp (and the kubernetes client) at the test bed."""
        return {"KUBECONFIG": str(self.kubeconfig), "HPA_EXP_PROMETHEUS_URL": self.prometheus_url}

    def logs(self, lines: int = 30) -> str:
        """The last lines of every process's log, for a failure report."""
        parts = [
            f"--- {p.name} ({'running' if p.alive() else f'exited {p.popen.returncode}'}) {p.log_path}\n{p.tail(lines)}"
            for p in self.procs
        ]
        if self.pods is not None:
            parts.append(self.pods.describe())
        return "\n".join(parts)

    # --- the API ---------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str = "application/json",
        params: Mapping[str, str] | None = None,
    ) -> requests.Response:
        """A raw admin request to the API server (paths like /api/v1/nodes)."""
        data = None if body is None else (body if isinstance(body, (str, bytes)) else json.dumps(body))
        return requests.request(
            method,
            self.api_url + path,
            data=data,
            params=params,
            headers={"Content-Type": content_type},
            timeout=30,
            cert=(str(self.pki / "admin.crt"), str(self.pki / "admin.key")),
            verify=str(self.pki / "ca.crt"),
        )

    def apply(
        self, docs: Iterable[Mapping[str, Any]], dry_run: bool = False, strict: bool = False
    ) -> list[requests.Response]:
        """Server-side apply each document (as `kubectl apply --server-side`); raise on the first error.

        `strict`: unknown or duplicate fields are errors (kubectl's default `--validate=strict`).
        """
        answers = []
        for doc in docs:
            path = self.object_path(doc)
            params = {"fieldManager": "testbed", "force": "true"}
            if dry_run:
                params["dryRun"] = "All"
            if strict:
                params["fieldValidation"] = "Strict"
            answer = self.request("PATCH", path, yaml.safe_dump(dict(doc)), "application/apply-patch+yaml", params)
            if answer.status_code >= 300:
                raise RuntimeError(
                    f"apply {doc.get('kind')} {doc.get('metadata', {}).get('name')}: {answer.status_code} {answer.text}"
                )
            answers.append(answer)
        return answers

    def apply_file(self, path: Path, dry_run: bool = False, strict: bool = False) -> list[requests.Response]:
        with open(path) as f:
            return self.apply([d for d in yaml.safe_load_all(f) if d], dry_run=dry_run, strict=strict)

    def object_path(self, doc: Mapping[str, Any]) -> str:
        """REST path of a document, found through discovery (namespaced or not, plural name)."""
        api_version, kind = doc["apiVersion"], doc["kind"]
        base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
        resources = self.request("GET", base).json().get("resources", [])
        for res in resources:
            if res.get("kind") == kind and "/" not in res["name"]:
                meta = doc.get("metadata", {})
                if res.get("namespaced"):
                    return f"{base}/namespaces/{meta.get('namespace', 'default')}/{res['name']}/{meta['name']}"
                return f"{base}/{res['name']}/{meta['name']}"
        raise RuntimeError(f"the API server has no kind {kind} in {api_version}")

    # --- components ------------------------------------------------------------------------

    def _spawn(self, name: str, argv: list[object], env: Mapping[str, str] | None = None) -> Proc:
        proc = Proc(name, argv, self.logdir, env)
        self.procs.append(proc)
        return proc

    def _write_kubeconfig(self) -> None:
        pki = self.pki
        self.kubeconfig.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "current-context": "testbed",
                    "clusters": [
                        {
                            "name": "testbed",
                            "cluster": {
                                "server": f"https://127.0.0.1:{self.ports['api']}",
                                "certificate-authority": str(pki / "ca.crt"),
                            },
                        }
                    ],
                    "users": [
                        {
                            "name": "admin",
                            "user": {
                                "client-certificate": str(pki / "admin.crt"),
                                "client-key": str(pki / "admin.key"),
                            },
                        }
                    ],
                    "contexts": [{"name": "testbed", "context": {"cluster": "testbed", "user": "admin"}}],
                }
            )
        )

    def _start_etcd(self) -> None:
        p = self.ports
        proc = self._spawn(
            "etcd",
            [
                self.bin / "etcd",
                "--name=n0",
                f"--data-dir={self.workdir / 'etcd'}",
                "--unsafe-no-fsync",
                f"--listen-client-urls=http://127.0.0.1:{p['etcd']}",
                f"--advertise-client-urls=http://127.0.0.1:{p['etcd']}",
                f"--listen-peer-urls=http://127.0.0.1:{p['peer']}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{p['peer']}",
                f"--initial-cluster=n0=http://127.0.0.1:{p['peer']}",
                "--listen-metrics-urls=",
            ],
        )
        wait_until("etcd", http_ok(f"http://127.0.0.1:{p['etcd']}/health"), 60, [proc])

    def _start_apiserver(self) -> None:
        pki, p = self.pki, self.ports
        proc = self._spawn(
            "kube-apiserver",
            [
                self.bin / "kube-apiserver",
                f"--etcd-servers=http://127.0.0.1:{p['etcd']}",
                "--bind-address=127.0.0.1",
                f"--secure-port={p['api']}",
                "--advertise-address=127.0.0.1",
                "--endpoint-reconciler-type=none",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={pki / 'ca.crt'}",
                "--service-cluster-ip-range=10.96.0.0/16",
                "--allow-privileged=true",
                "--authorization-mode=Node,RBAC",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                f"--requestheader-client-ca-file={pki / 'front-proxy-ca.crt'}",
                "--requestheader-allowed-names=front-proxy-client",
                "--requestheader-username-headers=X-Remote-User",
                "--requestheader-group-headers=X-Remote-Group",
                "--requestheader-extra-headers-prefix=X-Remote-Extra-",
                f"--proxy-client-cert-file={pki / 'front-proxy-client.crt'}",
                f"--proxy-client-key-file={pki / 'front-proxy-client.key'}",
                # kwok serves the kubelet API (pod logs) with a certificate of this CA
                f"--kubelet-certificate-authority={pki / 'ca.crt'}",
                f"--kubelet-client-certificate={pki / 'admin.crt'}",
                f"--kubelet-client-key={pki / 'admin.key'}",
                "--kubelet-preferred-address-types=InternalIP",
                "--profiling=false",
            ],
        )
        wait_until("kube-apiserver /readyz", lambda: self.request("GET", "/readyz").status_code == 200, 120, [proc])

    def _start_controllers(self) -> None:
        pki, p, kc = self.pki, self.ports, self.kubeconfig
        common = [
            f"--kubeconfig={kc}",
            f"--authentication-kubeconfig={kc}",
            f"--authorization-kubeconfig={kc}",
            "--bind-address=127.0.0.1",
            "--leader-elect=false",
            "--profiling=false",
        ]
        kcm = self._spawn(
            "kube-controller-manager",
            [
                self.bin / "kube-controller-manager",
                *common,
                f"--secure-port={p['kcm']}",
                f"--root-ca-file={pki / 'ca.crt'}",
                f"--service-account-private-key-file={pki / 'sa.key'}",
                # as kubeadm: each controller acts with its own ServiceAccount, so RBAC applies to the HPA's reads
                "--use-service-account-credentials=true",
                f"--horizontal-pod-autoscaler-sync-period={HPA_SYNC_PERIOD}",
            ],
        )
        sched = self._spawn("kube-scheduler", [self.bin / "kube-scheduler", *common, f"--secure-port={p['sched']}"])
        # both serve /healthz with a self-signed certificate of their own
        wait_until(
            "kube-controller-manager /healthz",
            http_ok(f"https://127.0.0.1:{p['kcm']}/healthz", verify=False),
            60,
            [kcm],
        )
        wait_until(
            "kube-scheduler /healthz", http_ok(f"https://127.0.0.1:{p['sched']}/healthz", verify=False), 60, [sched]
        )

    def _start_kwok(self) -> None:
        stages = self.bin / "kwok-data" / "stage"
        text = "\n---\n".join((stages / rel).read_text() for rel in KWOK_STAGES)
        # Logs objects (one per Job pod, made by the pod supervisor) tell kwok's kubelet API which
        # file holds a container's log, so `pods/log` works through the API server.
        self.apply_file(self.bin / "kwok-data" / "crd" / "kwok.x-k8s.io_logs.yaml")
        wait_until("the kwok Logs CRD established", self._logs_crd_established, 30)
        config = self.workdir / "kwok.yaml"
        config.write_text(text)
        proc = self._spawn(
            "kwok",
            [
                self.bin / "kwok",
                f"--kubeconfig={self.kubeconfig}",
                f"--config={config}",
                "--manage-all-nodes=false",
                "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
                "--cidr=10.244.0.0/16",
                "--node-ip=127.0.0.1",
                "--node-lease-duration-seconds=40",
                f"--server-address=127.0.0.1:{self.ports['kwok']}",
                f"--node-port={self.ports['kwok']}",
                "--enable-crds=Logs",
                f"--tls-cert-file={self.pki / 'kwok.crt'}",
                f"--tls-private-key-file={self.pki / 'kwok.key'}",
            ],
        )
        self.apply(
            [
                {
                    "apiVersion": "v1",
                    "kind": "Node",
                    "metadata": {
                        "name": NODE_NAME,
                        "annotations": {"kwok.x-k8s.io/node": "fake"},
                        "labels": {"kubernetes.io/hostname": NODE_NAME, "kubernetes.io/os": "linux", "type": "kwok"},
                    },
                    "status": {
                        "allocatable": {"cpu": "64", "memory": "512Gi", "pods": "110", "nvidia.com/gpu": "8"},
                        "capacity": {"cpu": "64", "memory": "512Gi", "pods": "110", "nvidia.com/gpu": "8"},
                    },
                }
            ]
        )

        def node_ready() -> bool:
            node = self.request("GET", f"/api/v1/nodes/{NODE_NAME}").json()
            return any(
                c["type"] == "Ready" and c["status"] == "True" for c in node.get("status", {}).get("conditions", [])
            )

        wait_until(f"node {NODE_NAME} Ready (kwok)", node_ready, 60, [proc])

    def _logs_crd_established(self) -> bool:
        crd = self.request("GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/logs.kwok.x-k8s.io").json()
        return any(
            c["type"] == "Established" and c["status"] == "True" for c in crd.get("status", {}).get("conditions", [])
        )

    def _start_prometheus(self) -> None:
        targets = self.workdir / "prometheus-targets.json"
        targets.write_text("[]")
        config = self.workdir / "prometheus.yml"
        config.write_text(
            yaml.safe_dump(
                {
                    "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                    "scrape_configs": [
                        {
                            "job_name": "model-servers",
                            "scrape_interval": "1s",
                            "metrics_path": "/metrics",
                            "file_sd_configs": [{"files": [str(targets)], "refresh_interval": "1s"}],
                        }
                    ],
                }
            )
        )
        proc = self._spawn(
            "prometheus",
            [
                shutil.which("prometheus"),
                f"--config.file={config}",
                f"--storage.tsdb.path={self.workdir / 'prom'}",
                f"--web.listen-address=127.0.0.1:{self.ports['prom']}",
                "--storage.tsdb.retention.time=1d",
            ],
        )
        self.prometheus_targets = targets
        wait_until("prometheus /-/ready", http_ok(f"{self.prometheus_url}/-/ready"), 60, [proc])

    def _start_adapter(self) -> None:
        pki, port, kc = self.pki, self.ports["adapter"], self.kubeconfig
        proc = self._spawn(
            "prometheus-adapter",
            [
                self.bin / "prometheus-adapter",
                f"--lister-kubeconfig={kc}",
                f"--authentication-kubeconfig={kc}",
                f"--authorization-kubeconfig={kc}",
                "--bind-address=127.0.0.1",
                f"--secure-port={port}",
                f"--tls-cert-file={pki / 'adapter.crt'}",
                f"--tls-private-key-file={pki / 'adapter.key'}",
                f"--prometheus-url={self.prometheus_url}/",
                f"--config={ADAPTER_RULES}",
                "--metrics-relist-interval=5s",
                "--v=2",
            ],
        )
        service = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "prometheus-adapter", "namespace": "monitoring"},
            "spec": {"type": "ExternalName", "externalName": "127.0.0.1"},
        }
        api_services = [
            {
                "apiVersion": "apiregistration.k8s.io/v1",
                "kind": "APIService",
                "metadata": {"name": f"{version}.custom.metrics.k8s.io"},
                "spec": {
                    "group": "custom.metrics.k8s.io",
                    "version": version,
                    "insecureSkipTLSVerify": True,
                    "groupPriorityMinimum": 100,
                    "versionPriority": priority,
                    "service": {"name": "prometheus-adapter", "namespace": "monitoring", "port": port},
                },
            }
            for version, priority in (("v1beta1", 100), ("v1beta2", 200))
        ]
        self.apply(
            [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "monitoring"}}, service, *api_services]
        )

        def available() -> bool:
            for version in ("v1beta1", "v1beta2"):
                path = f"/apis/apiregistration.k8s.io/v1/apiservices/{version}.custom.metrics.k8s.io"
                found = self.request("GET", path)
                conditions = found.json().get("status", {}).get("conditions", [])
                if not any(c["type"] == "Available" and c["status"] == "True" for c in conditions):
                    return False
            return True

        wait_until("the custom metrics APIService (prometheus-adapter) Available", available, 90, [proc])


def main(argv: list[str] | None = None) -> int:
    """`up DIR`: start the test bed in DIR, write DIR/env, run until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m tests.support.testbed")
    parser.add_argument("command", choices=["up"])
    parser.add_argument("dir", type=Path)
    parser.add_argument("--autoscaler", choices=AUTOSCALERS, default="prometheus-adapter")
    args = parser.parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    bed = Testbed(args.dir.resolve(), autoscaler=args.autoscaler)
    try:
        bed.start()
    except Exception as exc:  # report it, stop what did start
        print(f"testbed: {type(exc).__name__}: {exc}", file=sys.stderr)
        if bed.procs:
            print(bed.logs(), file=sys.stderr)
        bed.stop()
        return 1
    env_file = args.dir / "env"
    env_file.write_text("".join(f"export {k}={v}\n" for k, v in bed.env().items()))
    print(f"testbed: up in {bed.startup_seconds:.0f} s; source {env_file}", flush=True)
    try:
        stop.wait()
    finally:
        bed.stop()
        env_file.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
