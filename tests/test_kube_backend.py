"""KubeBackend over real HTTP: the official client, through a kubeconfig, against kmock's emulator.

The tests play the controllers (Job status, Pod states, HPA status, Deployment readiness).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator

import pytest

from hpa_experiments.backends.base import JobLaunch, QueryError
from hpa_experiments.backends.kube.backend import (
    API_CALLS,
    JOB_LABEL,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    RUN_LABEL,
    KubeBackend,
    KubeSettings,
    WallClock,
    connect,
)
from hpa_experiments.backends.kube.retry import PermanentFailure, RetriesExhausted, RetryPolicy
from hpa_experiments.errors import EXIT_PREFLIGHT, BackendError, PreflightError
from tests.support import kube_emulator
from tests.support.kube_emulator import DEPLOYMENTS, HPAS, JOBS, KubeEmulator

kube_cluster = kube_emulator.kube_cluster  # the shared fixture

NS = "bench"
FAST_RETRY = RetryPolicy(max_attempts=5, max_elapsed=10.0, base_delay=0.01, max_delay=0.05)


def make_backend(cluster: KubeEmulator, run_id: str = "r1", warnings: list[str] | None = None, **kw) -> KubeBackend:
    return KubeBackend(
        KubeSettings(kubeconfig=str(cluster.kubeconfig)),
        kw.pop("prom", None),
        namespace=NS,
        deployment="vllm",
        hpa_name=kw.pop("hpa_name", "vllm-hpa"),
        run_id=run_id,
        retry=kw.pop("retry", FAST_RETRY),
        on_warning=(warnings.append if warnings is not None else None),
        **kw,
    )


def launch(job: str, run_id: str = "r1") -> JobLaunch:
    name = f"{job}-{run_id}"
    manifest = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": NS,
            "labels": {MANAGED_BY_LABEL: MANAGED_BY, RUN_LABEL: run_id, JOB_LABEL: job},
        },
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "load", "image": "vllm/vllm-openai:latest", "args": ["bench"]}],
                }
            },
        },
    }
    return JobLaunch(job_name=job, resource_name=name, manifest=manifest, rate=10.0, duration=60.0)


@pytest.fixture
def backend(kube_cluster: KubeEmulator) -> Iterator[KubeBackend]:
    b = make_backend(kube_cluster)
    yield b
    b.close()


# --- Jobs ------------------------------------------------------------------------------------------


def test_jobs_are_created_listed_by_run_label_and_deleted_in_the_background(kube_cluster, backend):
    other_run = make_backend(kube_cluster, run_id="r0")
    other_run.start_job(launch("baseline", run_id="r0"))
    backend.start_job(launch("baseline"))
    backend.start_job(launch("high-load"))
    kube_cluster.set_job_status(NS, "baseline-r1", active=1)

    assert kube_cluster.names(JOBS, NS) == ["baseline-r0", "baseline-r1", "high-load-r1"]
    states = backend.job_states()
    assert sorted(states) == ["baseline-r1", "high-load-r1"]  # the other run's Job is not ours
    assert states["baseline-r1"].exists and states["baseline-r1"].active == 1
    stored = kube_cluster.get(JOBS, NS, "baseline-r1")
    assert stored["metadata"]["labels"][RUN_LABEL] == "r1"

    backend.stop_job("baseline-r1")
    backend.stop_job("baseline-r1")  # idempotent: the 404 means already gone
    assert kube_cluster.names(JOBS, NS) == ["baseline-r0", "high-load-r1"]
    deletes = kube_cluster.requests_to("DELETE", r"/apis/batch/v1/namespaces/bench/jobs/baseline-r1$")
    assert len(deletes) == 2
    assert all(r.params.get("propagationPolicy") == "Background" for r in deletes)
    lists = kube_cluster.requests_to("GET", r"/apis/batch/v1/namespaces/bench/jobs$")
    assert lists[-1].params["labelSelector"] == "hpa-exp/run=r1"

    states = backend.job_states()
    assert not states["baseline-r1"].exists  # we started it, it is gone
    assert backend.leftover_jobs() == ["high-load-r1"]


def test_a_second_start_of_the_same_job_adopts_it_instead_of_duplicating(kube_cluster):
    warnings: list[str] = []
    backend = make_backend(kube_cluster, warnings=warnings)
    backend.start_job(launch("high-load"))
    backend.start_job(launch("high-load"))
    creates = kube_cluster.requests_to("POST", r"/jobs$")
    assert len(creates) == 2
    assert kube_cluster.names(JOBS, NS) == ["high-load-r1"]
    history = kube_cluster.call(lambda: len(kube_cluster.handler.objects[JOBS, NS, "high-load-r1"].history))
    assert history == 1  # created once, never replaced
    assert any("adopted" in w for w in warnings)


def test_a_name_taken_by_someone_elses_job_is_a_clear_error(kube_cluster, backend):
    foreign = launch("high-load").manifest
    foreign["metadata"]["labels"] = {"app": "not-hpa-exp"}
    kube_cluster.put(JOBS, NS, foreign)
    with pytest.raises(BackendError, match=r"bench/high-load-r1: a Job with that name already exists and was not"):
        backend.start_job(launch("high-load"))
    assert kube_cluster.get(JOBS, NS, "high-load-r1")["metadata"]["labels"] == {"app": "not-hpa-exp"}
    assert backend.job_states() == {}  # not ours: never reported, so never cleaned up by this run


def test_a_manifest_without_this_runs_label_is_refused(kube_cluster, backend):
    job = launch("high-load", run_id="other")
    job = JobLaunch("high-load", "high-load-other", job.manifest, 1.0, 1.0)
    with pytest.raises(BackendError, match="label hpa-exp/run must be 'r1'"):
        backend.start_job(job)
    assert kube_cluster.names(JOBS, NS) == []


def test_job_failure_reasons_come_from_the_job_condition_and_from_stuck_pods(kube_cluster, backend):
    for job in ("failed", "imagepull", "crashloop", "healthy"):
        backend.start_job(launch(job))
    kube_cluster.set_job_status(
        NS,
        "failed-r1",
        failed=1,
        condition=("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit"),
    )
    kube_cluster.add_job_pod(NS, "imagepull-r1", waiting_reason="ImagePullBackOff")
    kube_cluster.add_pod(  # a new-style controller label only
        NS,
        "crashloop-r1-x1",
        labels={"batch.kubernetes.io/job-name": "crashloop-r1"},
        waiting_reason="CrashLoopBackOff",
    )
    kube_cluster.add_job_pod(NS, "healthy-r1")
    kube_cluster.set_job_status(NS, "healthy-r1", active=1)

    states = backend.job_states()
    assert states["failed-r1"].failure == "BackoffLimitExceeded: Job has reached the specified backoff limit"
    assert states["failed-r1"].failed == 1
    assert re.fullmatch(r"pod imagepull-r1-\w+ container main: ImagePullBackOff: .*", states["imagepull-r1"].failure)
    assert "CrashLoopBackOff" in states["crashloop-r1"].failure
    assert states["healthy-r1"].failure is None and states["healthy-r1"].active == 1


# --- HPA and Deployment ----------------------------------------------------------------------------


def test_hpa_quantities_are_parsed_exactly(kube_cluster, backend):
    snap = backend.scaling_snapshot()
    assert snap.hpa_found
    waiting, kv = snap.metrics
    assert (waiting.name, waiting.source_type, waiting.target_type) == ("num_requests_waiting", "Pods", "AverageValue")
    assert waiting.target == 20.0 and waiting.current == 60.25  # "20" and "60250m"
    assert kv.name == "kv_cache_usage_perc" and kv.target == 0.5 and kv.current == 0.312  # "500m", "312m"
    assert (snap.current_replicas, snap.desired_replicas, snap.min_replicas, snap.max_replicas) == (1, 1, 1, 8)
    assert snap.last_scale_time == "2026-11-23T04:00:00Z"
    assert {c["type"] for c in snap.conditions} == {"AbleToScale", "ScalingActive"}


def test_the_snapshot_follows_the_controllers(kube_cluster, backend):
    kube_cluster.set_hpa_status(
        NS,
        "vllm-hpa",
        current_replicas=2,
        desired_replicas=4,
        current_metrics=[
            {"type": "Pods", "pods": {"metric": {"name": "num_requests_waiting"}, "current": {"averageValue": "85"}}},
        ],
    )
    kube_cluster.set_deployment_replicas(NS, "vllm", replicas=4, ready_replicas=2)
    snap = backend.scaling_snapshot()
    assert (snap.current_replicas, snap.desired_replicas) == (2, 4)
    assert (snap.deployment_replicas, snap.ready_replicas) == (4, 2)
    assert [m.current for m in snap.metrics] == [85.0, None]  # KV has no current value now: None, not 0


def test_ready_replicas_omitted_by_the_api_mean_zero(kube_cluster, backend):
    kube_cluster.patch(DEPLOYMENTS, NS, "vllm", {"status": {"readyReplicas": None}})
    assert backend.scaling_snapshot().ready_replicas == 0


def test_object_external_and_resource_metrics(kube_cluster, backend):
    kube_cluster.patch(
        HPAS,
        NS,
        "vllm-hpa",
        {
            "spec": {
                "metrics": [
                    {
                        "type": "Resource",
                        "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}},
                    },
                    {
                        "type": "External",
                        "external": {"metric": {"name": "queue_depth"}, "target": {"type": "Value", "value": "1500m"}},
                    },
                    {
                        "type": "Object",
                        "object": {
                            "metric": {"name": "requests_per_second"},
                            "describedObject": {"apiVersion": "v1", "kind": "Service", "name": "vllm"},
                            "target": {"type": "Value", "value": "2k"},
                        },
                    },
                ]
            },
            "status": {
                "currentMetrics": [
                    {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 93}}},
                    {
                        "type": "External",
                        "external": {"metric": {"name": "queue_depth"}, "current": {"value": "2250m"}},
                    },
                    {
                        "type": "Object",
                        "object": {"metric": {"name": "requests_per_second"}, "current": {"value": "1.5k"}},
                    },
                ]
            },
        },
    )
    readings = {m.name: m for m in backend.scaling_snapshot().metrics}
    assert (readings["cpu"].target_type, readings["cpu"].target, readings["cpu"].current) == ("Utilization", 70, 93)
    assert (readings["queue_depth"].target, readings["queue_depth"].current) == (1.5, 2.25)
    assert (readings["requests_per_second"].target, readings["requests_per_second"].current) == (2000, 1500)


def test_a_missing_hpa_is_reported_not_invented(kube_cluster, backend):
    kube_cluster.remove(HPAS, NS, "vllm-hpa")
    snap = backend.scaling_snapshot()
    assert not snap.hpa_found
    assert snap.current_replicas is None and snap.metrics == ()
    assert snap.ready_replicas == 1


def test_a_run_without_an_hpa_reads_only_the_deployment(kube_cluster):
    from hpa_experiments.backends.kube.preflight import preflight

    backend = make_backend(kube_cluster, hpa_name="")
    snap = backend.scaling_snapshot()
    assert not snap.hpa_found and snap.ready_replicas == 1
    report = preflight(backend)
    assert report.ok
    assert kube_cluster.requests_to("GET", "horizontalpodautoscalers/") == []  # no HPA is read by name
    # the preflight lists HPAs only to say that one still scales the Deployment
    assert report.warnings == [
        "HPA vllm-hpa in bench scales Deployment/vllm though the config has no HPA (hpa.enabled: false): "
        "replicas may change during the run"
    ]


def test_apply_hpa_never_changes_an_existing_hpa_for_good(kube_cluster):
    """Emulator: the decisions (refuse, use as is, take over and restore) are the backend's; the
    emulator's dry-run PUT returns the body undefaulted, so "identical" is literal here (the test
    bed's tests/test_testbed_ownership.py checks it with a real API server's defaults)."""
    warnings: list[str] = []
    original = kube_cluster.get(HPAS, NS, "vllm-hpa")
    manifest = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "vllm-hpa"},
        "spec": {**original["spec"], "maxReplicas": 3},
    }
    backend = make_backend(kube_cluster, warnings=warnings)
    with pytest.raises(BackendError, match=r"(?s)already exists and differs.*-maxReplicas: 8\n.*\+maxReplicas: 3"):
        backend.apply_hpa(manifest)
    assert kube_cluster.get(HPAS, NS, "vllm-hpa")["spec"] == original["spec"]  # refused: unchanged
    assert backend.apply_hpa({**manifest, "spec": original["spec"]}) is False  # identical: used as is
    assert "identical to the manifest: used as is" in warnings[-1]
    assert kube_cluster.get(HPAS, NS, "vllm-hpa")["metadata"].get("labels") == original["metadata"].get("labels")
    backend.close()

    taker = make_backend(kube_cluster, warnings=warnings, take_over=True)
    assert taker.apply_hpa(manifest) is False  # taken over: not created, so not deleted
    live = kube_cluster.get(HPAS, NS, "vllm-hpa")
    assert live["spec"]["maxReplicas"] == 3
    assert live["metadata"]["labels"][RUN_LABEL] == "r1" and live["metadata"]["annotations"]["hpa-exp/run-id"] == "r1"
    assert taker.restore_taken_over() == ["HPA bench/vllm-hpa: original spec, labels and annotations restored"]
    back = kube_cluster.get(HPAS, NS, "vllm-hpa")
    assert (back["spec"], back["metadata"].get("labels"), back["metadata"].get("annotations")) == (
        original["spec"],
        original["metadata"].get("labels"),
        original["metadata"].get("annotations"),
    )
    kube_cluster.remove(HPAS, NS, "vllm-hpa")
    assert taker.apply_hpa(manifest) is True  # created, with the run's marks
    assert kube_cluster.get(HPAS, NS, "vllm-hpa")["metadata"]["labels"][RUN_LABEL] == "r1"
    taker.delete_hpa("vllm-hpa")
    taker.delete_hpa("vllm-hpa")
    assert kube_cluster.get(HPAS, NS, "vllm-hpa") is None
    taker.close()


# --- retries over real HTTP ------------------------------------------------------------------------


def test_intermittent_500s_are_retried_and_the_job_is_created_once(kube_cluster):
    warnings: list[str] = []
    backend = make_backend(kube_cluster, warnings=warnings)
    kube_cluster.fail_next(2, 500, method="POST", path="/jobs$")
    backend.start_job(launch("high-load"))
    assert len(kube_cluster.requests_to("POST", "/jobs$")) == 3
    assert kube_cluster.names(JOBS, NS) == ["high-load-r1"]
    assert len(warnings) == 2 and all("HTTP 500" in w for w in warnings)


def test_429_waits_for_retry_after(kube_cluster):
    warnings: list[str] = []
    backend = make_backend(kube_cluster, warnings=warnings)
    kube_cluster.fail_next(1, 429, retry_after=0.6, method="GET", path="horizontalpodautoscalers")
    started = time.monotonic()
    snap = backend.scaling_snapshot()
    assert time.monotonic() - started >= 0.6
    assert snap.hpa_found and snap.metrics[0].current == 60.25
    assert len(warnings) == 1 and "too many requests (HTTP 429)" in warnings[0] and "in 0.60 s" in warnings[0]


def test_429_on_create_then_success_creates_the_job_once(kube_cluster):
    backend = make_backend(kube_cluster)
    kube_cluster.fail_next(2, 429, retry_after=0.2, method="POST", path="/jobs$")
    started = time.monotonic()
    backend.start_job(launch("high-load"))
    assert time.monotonic() - started >= 0.4
    assert len(kube_cluster.requests_to("POST", "/jobs$")) == 3
    assert kube_cluster.names(JOBS, NS) == ["high-load-r1"]


def test_dropped_connections_are_retried_without_duplicating_the_job(kube_cluster):
    warnings: list[str] = []
    backend = make_backend(kube_cluster, warnings=warnings)
    kube_cluster.drop_next(1, method="POST", path="/jobs$")  # lost before the server acted
    kube_cluster.drop_next(1, method="POST", path="/jobs$", after_processing=True)  # acted, answer lost
    backend.start_job(launch("high-load"))
    assert len(kube_cluster.requests_to("POST", "/jobs$")) == 3  # dropped, dropped after create, 409
    assert kube_cluster.names(JOBS, NS) == ["high-load-r1"]
    history = kube_cluster.call(lambda: len(kube_cluster.handler.objects[JOBS, NS, "high-load-r1"].history))
    assert history == 1
    assert any("adopted" in w for w in warnings)
    assert sum("connection problem" in w for w in warnings) == 2


def test_dropped_reads_are_retried(kube_cluster, backend):
    kube_cluster.drop_next(2, method="GET", path="/deployments/vllm$")
    assert backend.scaling_snapshot().ready_replicas == 1


def test_forbidden_fails_fast_with_a_clear_message(kube_cluster, backend):
    kube_cluster.fail_next(5, 403, method="POST", path="/jobs$")
    with pytest.raises(PermanentFailure, match=r"^create Job bench/high-load-r1: forbidden \(HTTP 403\)"):
        backend.start_job(launch("high-load"))
    assert len(kube_cluster.requests_to("POST", "/jobs$")) == 1


def test_persistent_server_errors_give_up_within_the_policy(kube_cluster):
    backend = make_backend(kube_cluster, retry=RetryPolicy(max_attempts=3, base_delay=0.01))
    kube_cluster.fail_next(10, 503, path="/jobs$")
    with pytest.raises(RetriesExhausted, match=r"gave up after 3 attempt\(s\)"):
        backend.job_states()


@pytest.mark.slow
def test_a_tick_read_gives_up_within_its_budget_while_other_calls_keep_the_backend_policy(kube_cluster):
    """Emulator: the API answering 503 on every HPA read for as long as the test says."""
    backend = make_backend(kube_cluster, retry=RetryPolicy(max_attempts=None, max_elapsed=60.0, base_delay=0.01))
    outage = kube_cluster.fail_next(10**9, 503, path="horizontalpodautoscalers")
    began = time.monotonic()
    with backend.tick_reads(0.4), pytest.raises(RetriesExhausted, match=r"^read HPA bench/vllm-hpa: gave up"):
        backend.scaling_snapshot()
    assert time.monotonic() - began < 2.0  # 0.4 s budget (5x headroom), not the backend's 60 s
    done = threading.Event()

    def read_outside_the_context() -> None:
        backend.scaling_snapshot()
        done.set()

    threading.Thread(target=read_outside_the_context, daemon=True).start()
    assert not done.wait(1.0)  # the backend's own policy goes on retrying...
    outage.remaining = 0
    assert done.wait(10.0)  # ...until the API answers


# --- configuration, description, RBAC -------------------------------------------------------------


def test_describe_names_the_cluster_and_never_the_token(kube_cluster, backend):
    kube_cluster.write_kubeconfig(kube_cluster.kubeconfig, context="lab", token="s3cr3t-kube-token")
    backend = make_backend(kube_cluster)
    info = backend.describe()
    assert info["server_version"] == "v1.31.4-emulated"
    assert (info["context"], info["namespace"], info["backend"]) == ("lab", NS, "kubernetes")
    assert "s3cr3t-kube-token" not in repr(info) + repr(backend)


def test_kubeconfig_comes_from_the_environment_when_not_given(kube_cluster, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", str(kube_cluster.kubeconfig))
    api, context = connect(KubeSettings())
    assert context == "emulator"
    assert api.configuration.host == kube_cluster.url


def test_a_missing_kubeconfig_is_a_preflight_error(tmp_path, monkeypatch):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(PreflightError, match=r"kubeconfig \S*nope.yaml not found") as caught:
        connect(KubeSettings(kubeconfig=str(tmp_path / "nope.yaml")))
    assert caught.value.exit_code == EXIT_PREFLIGHT


def test_in_cluster_config_is_chosen_inside_a_pod_without_kubeconfig(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    assert KubeSettings().use_in_cluster()
    assert not KubeSettings(kubeconfig="/some/file").use_in_cluster()
    assert not KubeSettings(in_cluster=False).use_in_cluster()
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST")
    assert not KubeSettings().use_in_cluster()


def test_queries_without_prometheus_raise(backend):
    with pytest.raises(QueryError, match="not configured"):
        backend.query("up")


def test_wall_clock_sleeps_until_the_time():
    clock = WallClock()
    target = clock.now() + 0.3
    clock.sleep_until(target)
    assert clock.now() >= target
    assert not clock.virtual


def _rbac_triple(method: str, path: str, params: dict[str, str]) -> tuple[str, str, str] | None:
    if path.rstrip("/") == "/version":
        return None  # a non-resource URL, readable by every authenticated user
    if (
        re.fullmatch(r"/apis/[^/]+(/[^/]+)?/?", path)
        or path.startswith("/apis/authorization.k8s.io/")
        or (path.startswith("/apis/authentication.k8s.io/"))
    ):
        return None  # discovery, access and self reviews: open to every authenticated user (system:basic-user)
    if m := re.fullmatch(r"/apis/((?:custom|external)\.metrics\.k8s\.io)/[^/]+/namespaces/[^/]+/.+", path):
        return (m[1], "*", "get")  # metric reads; RBAC sees pods/<metric>, granted as "*"
    if m := re.fullmatch(r"/api/v1/namespaces/([^/]+)", path):
        return ("", "namespaces", "get")
    m = re.fullmatch(r"/(?:api/v1|apis/([^/]+)/[^/]+)/namespaces/[^/]+/([^/]+)(?:/([^/]+))?(?:/status)?", path)
    assert m, path
    group, resource, name = m[1] or "", m[2], m[3]
    verbs = {"POST": "create", "DELETE": "delete", "PATCH": "patch", "PUT": "update"}
    verb = verbs.get(method) or ("get" if name else "watch" if params.get("watch") else "list")
    return (group, resource, verb)


def test_every_request_the_backend_makes_is_listed_for_rbac(kube_cluster, backend):
    from hpa_experiments.backends.kube.preflight import preflight

    preflight(backend)
    backend.start_job(launch("a"))
    backend.start_job(launch("a"))
    backend.job_states()
    backend.scaling_snapshot()
    hpa = kube_cluster.get(HPAS, NS, "vllm-hpa")
    backend.claims.take_over = True  # a dry-run PUT to compare, a PUT to take over, one to restore
    backend.apply_hpa({"metadata": {"name": "vllm-hpa"}, "spec": {**hpa["spec"], "maxReplicas": 2}})
    backend.restore_taken_over()
    backend.delete_hpa("vllm-hpa")
    backend.stop_job("a-r1")
    backend.describe()
    used = {t for r in kube_cluster.requests if (t := _rbac_triple(r.method, r.path, r.params))}
    declared = {(c.api_group, c.resource, c.verb) for c in API_CALLS}
    assert used - declared == set()
    assert ("batch", "jobs", "create") in used and ("", "pods", "list") in used
    assert ("autoscaling", "horizontalpodautoscalers", "update") in used
