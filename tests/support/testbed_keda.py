"""KEDA on the test bed: its CRDs, the operator and the metrics server as local processes.

Built by scripts/testbed-build.sh from github.com/kedacore/keda/v2 (testbed/keda/go.mod), which
also copies the module's CRDs (config/crd/bases in the module zip, from GOMODCACHE) beside the
binaries, under keda-data/crd.  As the release manifests run them, minus what a local process
does not need:

- keda-operator: all namespaces, leader election off, its metrics-service gRPC server on
  127.0.0.1 with mutual TLS from the test bed's CA (one certificate, server and client, in
  `pki/keda/{ca.crt,tls.crt,tls.key}`; KEDA's own cert rotation is off: it would write a
  Secret and patch the APIService for in-cluster Service names);
- keda-adapter: registered as v1beta1.external.metrics.k8s.io through an APIService and an
  ExternalName Service to 127.0.0.1 (as prometheus-adapter is for custom.metrics.k8s.io), asks
  the operator over that gRPC connection;
- no admission webhooks: they only validate ScaledObjects (e.g. two on one Deployment); the
  runner's preflight and the config checks already refuse those, and nothing here depends on it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tests.support.testbed_proc import Proc, _leaf, free_port, http_ok, wait_until

if TYPE_CHECKING:
    from tests.support.testbed import Testbed

BINARIES = ("keda-operator", "keda-adapter")
CRD_DIR = "keda-data/crd"
NAMESPACE = "keda"
EXTERNAL_API = "v1beta1.external.metrics.k8s.io"
SANS = (
    "DNS:localhost,DNS:keda-operator.keda.svc,DNS:keda-operator.keda.svc.cluster.local,"
    "DNS:keda-metrics-apiserver.keda.svc,IP:127.0.0.1"
)


def make_certs(bed: Testbed) -> None:
    """One certificate for both ends of the gRPC link (mutual TLS) and the adapter's serving port."""
    _leaf(bed.pki, "keda", "ca", "/CN=keda", "serverAuth,clientAuth", SANS)
    certs = bed.pki / "keda"
    certs.mkdir(exist_ok=True)
    for src, dst in (("ca.crt", "ca.crt"), ("keda.crt", "tls.crt"), ("keda.key", "tls.key")):
        (certs / dst).write_bytes((bed.pki / src).read_bytes())


def install_crds(bed: Testbed) -> None:
    crds = sorted((bed.bin / CRD_DIR).glob("*.yaml"))
    if not crds:
        raise RuntimeError(f"no KEDA CRDs in {bed.bin / CRD_DIR}: run scripts/testbed-build.sh")
    for path in crds:
        bed.apply_file(path)

    def established() -> bool:
        crd = bed.request("GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/scaledobjects.keda.sh").json()
        conditions = crd.get("status", {}).get("conditions", [])
        return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)

    wait_until("the ScaledObject CRD established", established, 30)


def start(bed: Testbed) -> None:
    """CRDs, operator, metrics server and its APIService; returns when the APIService is Available."""
    make_certs(bed)
    bed.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}])
    install_crds(bed)
    ports = {name: free_port() for name in ("grpc", "probe", "op-metrics", "api", "ad-metrics")}
    bed.ports.update({f"keda-{k}": v for k, v in ports.items()})
    certs, kc = bed.pki / "keda", bed.kubeconfig
    env = {
        "KUBECONFIG": str(kc),
        "WATCH_NAMESPACE": "",
        "POD_NAMESPACE": NAMESPACE,
        "KEDA_CLUSTER_OBJECT_NAMESPACE": NAMESPACE,
    }
    operator = bed._spawn(
        "keda-operator",
        [
            bed.bin / "keda-operator",
            "--leader-elect=false",
            f"--metrics-bind-address=127.0.0.1:{ports['op-metrics']}",
            f"--health-probe-bind-address=127.0.0.1:{ports['probe']}",
            f"--metrics-service-bind-address=127.0.0.1:{ports['grpc']}",
            f"--cert-dir={certs}",
            "--enable-cert-rotation=false",
            "--zap-log-level=info",
            "--zap-encoder=console",
        ],
        env,
    )
    wait_until("keda-operator /readyz", http_ok(f"http://127.0.0.1:{ports['probe']}/readyz"), 90, [operator])
    adapter = bed._spawn(
        "keda-adapter",
        [
            bed.bin / "keda-adapter",
            f"--lister-kubeconfig={kc}",
            f"--authentication-kubeconfig={kc}",
            f"--authorization-kubeconfig={kc}",
            "--bind-address=127.0.0.1",
            f"--secure-port={ports['api']}",
            f"--tls-cert-file={certs / 'tls.crt'}",
            f"--tls-private-key-file={certs / 'tls.key'}",
            f"--cert-dir={certs}",  # the gRPC client's certificate and CA
            f"--metrics-service-address=127.0.0.1:{ports['grpc']}",
            f"--port={ports['ad-metrics']}",
            "--v=2",
        ],
        env,
    )
    register(bed, ports["api"], [operator, adapter])


def register(bed: Testbed, port: int, procs: list[Proc]) -> None:
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "keda-metrics-apiserver", "namespace": NAMESPACE},
        "spec": {"type": "ExternalName", "externalName": "127.0.0.1"},
    }
    api_service = {
        "apiVersion": "apiregistration.k8s.io/v1",
        "kind": "APIService",
        "metadata": {"name": EXTERNAL_API},
        "spec": {
            "group": "external.metrics.k8s.io",
            "version": "v1beta1",
            "insecureSkipTLSVerify": True,
            "groupPriorityMinimum": 100,
            "versionPriority": 100,
            "service": {"name": "keda-metrics-apiserver", "namespace": NAMESPACE, "port": port},
        },
    }
    bed.apply([service, api_service])

    def available() -> bool:
        found = bed.request("GET", f"/apis/apiregistration.k8s.io/v1/apiservices/{EXTERNAL_API}").json()
        conditions = found.get("status", {}).get("conditions", [])
        return any(c["type"] == "Available" and c["status"] == "True" for c in conditions)

    wait_until(f"the external metrics APIService ({EXTERNAL_API}, keda-adapter) Available", available, 90, procs)
