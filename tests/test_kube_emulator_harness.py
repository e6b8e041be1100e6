"""The test harness itself (tests/support/kube_emulator.py): what HpaExpEmulator adds to stock kmock,
checked with the official client over real HTTP, so the backend tests can rely on it."""

from __future__ import annotations

import pytest
from kubernetes import client, config, watch

from tests.support import kube_emulator
from tests.support.kube_emulator import JOBS, KubeEmulator, match_labels

kube_cluster = kube_emulator.kube_cluster  # the shared fixture
NS = "bench"


def job(name: str, **labels: str) -> dict:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": labels},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "x"}]}}},
    }


@pytest.fixture
def batch(kube_cluster: KubeEmulator) -> client.BatchV1Api:
    return client.BatchV1Api(config.new_client_from_config(config_file=str(kube_cluster.kubeconfig)))


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("run=r1", True),
        ("run==r1", True),
        ("run!=r1", False),
        ("run in (r0, r1)", True),
        ("run notin (r0,r1)", False),
        ("tier", True),
        ("!tier", False),
        ("!missing", True),
        ("run=r1,tier=web", True),
        ("run=r1,tier=db", False),
        ("", True),
    ],
)
def test_label_selectors(selector, expected):
    assert match_labels({"run": "r1", "tier": "web"}, selector) is expected


def test_created_objects_get_server_side_metadata(batch):
    created = batch.create_namespaced_job(NS, job("j1"))
    assert created.metadata.namespace == NS
    assert created.metadata.uid and created.metadata.resource_version and created.metadata.creation_timestamp


def test_list_honours_label_selectors(batch):
    batch.create_namespaced_job(NS, job("a", run="r1"))
    batch.create_namespaced_job(NS, job("b", run="r2"))
    names = [j.metadata.name for j in batch.list_namespaced_job(NS, label_selector="run in (r2)").items]
    assert names == ["b"]


def test_put_and_delete_collection(kube_cluster, batch):
    batch.create_namespaced_job(NS, job("a", run="r1"))
    batch.create_namespaced_job(NS, job("b", run="r1"))
    batch.create_namespaced_job(NS, job("c", run="r2"))
    replaced = batch.replace_namespaced_job("a", NS, job("a", run="r1", extra="yes"))
    assert replaced.metadata.labels["extra"] == "yes"
    with pytest.raises(client.ApiException) as missing:
        batch.replace_namespaced_job("zz", NS, job("zz"))
    assert missing.value.status == 404
    batch.delete_collection_namespaced_job(NS, label_selector="run=r1")
    assert kube_cluster.names(JOBS, NS) == ["c"]


def test_watch_ends_after_its_timeout_and_filters_by_label(kube_cluster, batch):
    batch.create_namespaced_job(NS, job("mine", run="r1"))
    batch.create_namespaced_job(NS, job("theirs", run="r2"))
    events = [
        (e["type"], e["object"].metadata.name)
        for e in watch.Watch().stream(batch.list_namespaced_job, NS, label_selector="run=r1", timeout_seconds=1)
    ]
    assert events == [("ADDED", "mine")]


@pytest.mark.slow
def test_namespace_reads_and_server_version(kube_cluster):
    api = config.new_client_from_config(config_file=str(kube_cluster.kubeconfig))
    assert client.CoreV1Api(api).read_namespace(NS).metadata.name == NS
    with pytest.raises(client.ApiException) as missing:
        client.CoreV1Api(api).read_namespace("absent")
    assert missing.value.status == 404
    assert client.VersionApi(api).get_code().git_version == "v1.31.4-emulated"


def test_faults_hit_only_matching_requests_and_only_as_often_as_asked(kube_cluster, batch):
    fault = kube_cluster.fail_next(2, 503, retry_after=7, method="POST")
    assert batch.list_namespaced_job(NS).items == []  # a GET does not consume the fault
    for _ in range(2):
        with pytest.raises(client.ApiException) as caught:
            batch.create_namespaced_job(NS, job("x"))
        assert caught.value.status == 503 and caught.value.headers["Retry-After"] == "7"
    batch.create_namespaced_job(NS, job("x"))
    assert fault.remaining == 0 and kube_cluster.names(JOBS, NS) == ["x"]


def test_the_request_log_stays_complete_while_kmocks_own_log_is_trimmed(kube_cluster, batch):
    before = len(kube_cluster.requests)
    for _ in range(120):
        batch.list_namespaced_job(NS)
    assert len(kube_cluster.requests) == before + 120
    kept = kube_cluster.call(lambda: len(list(kube_cluster.handler)))
    assert kept <= kube_cluster.handler.kept_kmock_requests + 1
