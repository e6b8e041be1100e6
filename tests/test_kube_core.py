"""CoreReads: the namespace and pod reads without the official client's (heavy) CoreV1Api."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from kubernetes.client.exceptions import ApiException

from hpa_experiments.backends.kube.backend import KubeBackend, KubeSettings, connect
from hpa_experiments.backends.kube.core import CoreReads
from tests.support.kube_emulator import KubeEmulator

REPO = Path(__file__).resolve().parents[1]
NS = "bench"


def core(cluster: KubeEmulator) -> CoreReads:
    api_client, _ = connect(KubeSettings(kubeconfig=str(cluster.kubeconfig)))
    return CoreReads(api_client)


def body(response) -> dict:
    try:
        return json.loads(response.data)
    finally:
        response.release_conn()


def test_read_namespace_returns_the_raw_answer(kube_cluster: KubeEmulator) -> None:
    found = body(core(kube_cluster).read_namespace(NS, _preload_content=False, _request_timeout=5))
    assert found["metadata"]["name"] == NS
    assert found["kind"] == "Namespace"


def test_absent_namespace_raises_404_like_the_generated_client(kube_cluster: KubeEmulator) -> None:
    with pytest.raises(ApiException) as raised:
        core(kube_cluster).read_namespace("absent")
    assert raised.value.status == 404


def test_server_error_raises_with_its_status(kube_cluster: KubeEmulator) -> None:
    kube_cluster.fail_next(1, 503, path=r"/pods$")
    with pytest.raises(ApiException) as raised:
        core(kube_cluster).list_namespaced_pod(NS, label_selector="job-name in (a)")
    assert raised.value.status == 503


def test_list_pods_sends_the_label_selector(kube_cluster: KubeEmulator) -> None:
    kube_cluster.add_job_pod(NS, "job-a")
    kube_cluster.add_job_pod(NS, "job-b")
    kube_cluster.add_job_pod(NS, "job-c")
    listing = body(core(kube_cluster).list_namespaced_pod(NS, label_selector="job-name in (job-a,job-c)"))
    jobs = sorted(p["metadata"]["labels"]["job-name"] for p in listing["items"])
    assert jobs == ["job-a", "job-c"]
    (request,) = kube_cluster.requests_to("GET", rf"/api/v1/namespaces/{NS}/pods$")
    assert request.params["labelSelector"] == "job-name in (job-a,job-c)"


def test_backend_pod_and_namespace_reads_go_through_core_reads(kube_cluster: KubeEmulator) -> None:
    backend = KubeBackend(
        KubeSettings(kubeconfig=str(kube_cluster.kubeconfig)),
        None,
        namespace=NS,
        deployment="vllm",
        hpa_name="vllm-hpa",
        run_id="r1",
    )
    try:
        assert isinstance(backend.core, CoreReads)
        assert backend.call_json("read namespace", backend.core.read_namespace, "absent", tolerate=(404,)) is None
        kube_cluster.add_job_pod(NS, "load-r1")
        assert backend._pods_of(NS, ["load-r1"])["load-r1"][0]["metadata"]["labels"]["job-name"] == "load-r1"
    finally:
        backend.close()


@pytest.mark.slow
def test_the_kubernetes_backend_does_not_load_core_v1_api(kube_cluster: KubeEmulator) -> None:
    """Loading CoreV1Api costs ~90 MB at peak; the run has no use for it."""
    probe = (
        "import sys\n"
        "from hpa_experiments.backends.kube.backend import KubeBackend, KubeSettings\n"
        f"b = KubeBackend(KubeSettings(kubeconfig={str(kube_cluster.kubeconfig)!r}), None, namespace='bench',"
        " deployment='vllm', hpa_name='vllm-hpa', run_id='r1')\n"
        "b.scaling_snapshot(); b.job_states()\n"
        "print('kubernetes.client.api.core_v1_api' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
