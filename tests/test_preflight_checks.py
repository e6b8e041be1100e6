"""Each preflight check triggered on purpose, with its exact message.

Kubernetes: kmock's emulator over real HTTP (tests/support/kube_emulator.py) with the access
review and metrics APIs of tests/support/kube_apis.py: the real control plane of the test bed
is not ready yet, and the emulator lets each fault be staged alone (a refused verb, an
unregistered metrics API, a KEDA CRD).  The checks use only real API paths (SelfSubjectAccessReview,
discovery of custom.metrics.k8s.io, `pods/*/<metric>?labelSelector=`), so they run unchanged
against kube-apiserver + prometheus-adapter.  Prometheus: the real server, fed by remote-write.
"""

from __future__ import annotations

import time

import pytest

from hpa_experiments.backends.kube.backend import KubeBackend, KubeSettings
from hpa_experiments.backends.kube.preflight import OwnedObjects, preflight
from hpa_experiments.backends.kube.prom import PromSettings
from hpa_experiments.backends.kube.retry import RetryPolicy
from hpa_experiments.column_queries import standard_queries
from hpa_experiments.manifests import load_hpa_manifest
from tests.support import kube_emulator
from tests.support.kube_emulator import HPAS, KubeEmulator
from tests.test_manifests import MANIFESTS

kube_cluster = kube_emulator.kube_cluster

FAST_RETRY = RetryPolicy(max_attempts=2, max_elapsed=2.0, base_delay=0.01, max_delay=0.05)
NS = "bench"
COMBINED = load_hpa_manifest(MANIFESTS / "hpa-vllm-combined.yaml")


def make_backend(cluster: KubeEmulator, prom_url: str | None = None, hpa: str = "vllm-hpa") -> KubeBackend:
    return KubeBackend(
        KubeSettings(kubeconfig=str(cluster.kubeconfig)),
        PromSettings(url=prom_url) if prom_url else None,
        namespace=NS,
        deployment="vllm",
        hpa_name=hpa,
        run_id="r1",
        retry=FAST_RETRY,
    )


def applying_combined(cluster: KubeEmulator) -> list[str]:
    """Problems of a run that applies the shipped combined HPA (no Prometheus)."""
    backend = make_backend(cluster, hpa="vllm-hpa-combined")
    return preflight(backend, will_apply_hpa=True, hpa_manifest=COMBINED).problems


# --- other autoscalers of the Deployment -------------------------------------------------------


def test_a_second_hpa_on_the_deployment_is_named_with_its_fix(kube_cluster):
    """Issue 13, defect 1: `cluster up` applied one HPA, the config applies another."""
    kube_cluster.add_hpa(NS, "vllm-hpa-queue", deployment="vllm")
    problems = applying_combined(kube_cluster)
    assert problems == [
        f"HPA {name} also scales Deployment bench/vllm, besides the run's HPA vllm-hpa-combined: with two "
        "autoscalers on one Deployment Kubernetes disables both (AmbiguousSelector) and nothing scales. "
        f"Fix: kubectl -n bench delete hpa {name}{kit}, or make it the run's HPA (hpa.name: {name}, hpa.apply: false)"
        for name, kit in (("vllm-hpa", ""), ("vllm-hpa-queue", " (`hpa-exp cluster up --hpa ...` applies such an HPA)"))
    ]


def test_the_hpa_the_run_replaces_is_not_a_competitor(kube_cluster):
    kube_cluster.remove(HPAS, NS, "vllm-hpa")
    kube_cluster.add_hpa(NS, "vllm-hpa-combined", deployment="vllm")
    kube_cluster.add_hpa(NS, "other-app-hpa", deployment="other")  # another Deployment: irrelevant
    backend = make_backend(kube_cluster, hpa="vllm-hpa-combined")
    report = preflight(backend, will_apply_hpa=True, hpa_manifest=COMBINED)
    assert report.problems == [] and report.warnings == []


def test_the_hpa_the_run_would_apply_existing_and_different_is_refused_with_the_diff(kube_cluster):
    """Emulator: the preflight's decision only (the test bed checks it with a real server's defaults)."""
    kube_cluster.remove(HPAS, NS, "vllm-hpa")
    kube_cluster.add_hpa(NS, "vllm-hpa-combined", deployment="vllm")
    backend = make_backend(kube_cluster, hpa="vllm-hpa-combined")
    owned = OwnedObjects(hpa=COMBINED)
    [problem] = preflight(backend, will_apply_hpa=True, hpa_manifest=COMBINED, owned=owned).problems
    assert problem.startswith(
        "HPA bench/vllm-hpa-combined already exists and differs from the manifest; a run changes no object it did "
        "not create. Delete it, make the manifest equal to it, or pass --take-over"
    )
    assert "--- HPA bench/vllm-hpa-combined (live spec)\n    +++ manifest\n" in problem
    taking = OwnedObjects(hpa=COMBINED, take_over=True)
    report = preflight(backend, will_apply_hpa=True, hpa_manifest=COMBINED, owned=taking)
    assert report.problems == []
    assert any(
        w.startswith("HPA bench/vllm-hpa-combined exists and differs from the manifest: --take-over")
        for w in report.warnings
    )


def test_a_keda_scaled_object_counts_once_with_the_hpa_it_made(kube_cluster):
    kube_cluster.install_keda()
    kube_cluster.remove(HPAS, NS, "vllm-hpa")
    kube_cluster.add_scaled_object(NS, "vllm-so", deployment="vllm")  # and its keda-hpa-vllm-so
    problems = applying_combined(kube_cluster)
    assert len(problems) == 1, problems
    assert problems[0].startswith(
        "ScaledObject vllm-so also scales Deployment bench/vllm, besides the run's HPA vllm-hpa-combined"
    )
    assert "Fix: kubectl -n bench delete scaledobject vllm-so" in problems[0]


def test_without_keda_installed_there_is_nothing_to_report(kube_cluster):
    kube_cluster.remove(HPAS, NS, "vllm-hpa")
    report = preflight(make_backend(kube_cluster, hpa="vllm-hpa-combined"), will_apply_hpa=True, hpa_manifest=COMBINED)
    assert report.problems == [] and not any("KEDA" in w for w in report.warnings)


# --- conditions of an existing HPA ---------------------------------------------------------------


def test_an_hpa_that_cannot_act_is_named_with_reason_and_fix(kube_cluster):
    kube_cluster.patch(
        HPAS,
        NS,
        "vllm-hpa",
        {
            "status": {
                "conditions": [
                    {"type": "AbleToScale", "status": "True", "reason": "SucceededGetScale", "message": "ok"},
                    {
                        "type": "ScalingActive",
                        "status": "False",
                        "reason": "AmbiguousSelector",
                        "message": "pods by selector app=vllm are controlled by multiple HPAs: "
                        "[bench/vllm-hpa bench/x]",
                    },
                ]
            }
        },
    )
    assert preflight(make_backend(kube_cluster)).problems == [
        "HPA bench/vllm-hpa cannot act: ScalingActive=False (AmbiguousSelector): pods by selector app=vllm are "
        "controlled by multiple HPAs: [bench/vllm-hpa bench/x]. Fix: delete the other HPAs of the Deployment "
        "(kubectl get hpa shows them)"
    ]


# --- the metrics APIs ------------------------------------------------------------------------


def test_a_metric_the_adapter_does_not_serve_is_named_with_what_it_serves(kube_cluster):
    """Issue 13, defect 3: the adapter maps only one KV-cache name, the server exports the other."""
    kube_cluster.apis.pod_metrics[NS].pop("kv_cache_usage_perc")
    kube_cluster.apis.serve_pod_metric(NS, "num_requests_running", {"vllm-0": "3"})
    kube_cluster.remove(HPAS, NS, "vllm-hpa")
    assert applying_combined(kube_cluster) == [
        "HPA bench/vllm-hpa-combined uses metric kv_cache_usage_perc, which the custom.metrics.k8s.io API does "
        "not serve (it serves for pods: num_requests_running, num_requests_waiting): the HPA will not scale. "
        "Fix: add a rule for it to the adapter (manifests/monitoring/adapter-rules.yaml, also embedded in "
        "prometheus-adapter.yaml) or change the HPA's metric name"
    ]


def test_a_served_metric_without_values_for_the_deployments_pods(kube_cluster):
    kube_cluster.apis.serve_pod_metric(NS, "num_requests_waiting", {"someone-else-0": "1"})
    problems = preflight(make_backend(kube_cluster)).problems
    assert problems == [
        "HPA bench/vllm-hpa uses metric num_requests_waiting: the custom.metrics.k8s.io API serves it but has no "
        "value for the pods of selector app=vllm (the HPA would report <unknown>). Fix: check that Prometheus "
        "has the series with the namespace/pod labels the adapter rules map (manifests/monitoring/adapter-rules.yaml)"
    ]


@pytest.mark.parametrize(
    ("fault", "state"),
    [
        ("unregistered", "is not registered (HTTP 404 for /apis/custom.metrics.k8s.io)"),
        ("down", "is registered but does not answer (503: its server is down or unreachable)"),
        ("metric down", "is registered but does not answer (503: its server is down or unreachable)"),
    ],
)
def test_a_missing_or_broken_custom_metrics_api(kube_cluster, fault, state):
    """ "metric down" is what kube-aggregator does: it lists the group itself, the adapter answers 503."""
    if fault == "unregistered":
        kube_cluster.apis.registered.discard("custom.metrics.k8s.io")
    elif fault == "down":
        kube_cluster.apis.broken.add("custom.metrics.k8s.io")
    else:
        kube_cluster.apis.broken_metrics = True
    [problem] = preflight(make_backend(kube_cluster)).problems
    assert problem.startswith(
        f"the custom metrics API (custom.metrics.k8s.io) {state}: HPA bench/vllm-hpa gets no metric values and "
        "will not scale. Fix: install or repair prometheus-adapter (manifests/monitoring/prometheus-adapter.yaml); "
        "check `kubectl get apiservices | grep custom.metrics.k8s.io`"
    ), problem


def test_an_external_metric_is_asked_of_the_external_metrics_api(kube_cluster):
    kube_cluster.remove(HPAS, NS, "vllm-hpa")
    manifest = {
        **COMBINED,
        "spec": {
            **COMBINED["spec"],
            "metrics": [
                {
                    "type": "External",
                    "external": {"metric": {"name": "queue_depth"}, "target": {"type": "Value", "value": "5"}},
                }
            ],
        },
    }
    kube_cluster.apis.external_metrics[NS] = {"s0-prometheus": "1"}
    backend = make_backend(kube_cluster, hpa="vllm-hpa-combined")
    [problem] = preflight(backend, will_apply_hpa=True, hpa_manifest=manifest).problems
    assert problem.startswith(
        "HPA bench/vllm-hpa-combined uses metric queue_depth, which the "
        "external.metrics.k8s.io API does not serve (it serves: s0-prometheus)"
    )
    kube_cluster.apis.external_metrics[NS]["queue_depth"] = "3"
    assert preflight(backend, will_apply_hpa=True, hpa_manifest=manifest).problems == []


# --- permissions -----------------------------------------------------------------------------


def test_a_refused_verb_is_named_with_the_role_that_grants_it(kube_cluster):
    kube_cluster.apis.refused.add(("batch", "jobs", "create"))
    kube_cluster.apis.refused.add(("keda.sh", "scaledobjects", "list"))  # optional: a warning
    report = preflight(make_backend(kube_cluster))
    assert report.problems == [
        "user system:serviceaccount:bench:tester may not create batch/jobs in namespace bench, needed to start a "
        "load-generator Job. Fix: apply the Role in manifests/rbac/hpa-exp-runner.yaml (rule apiGroups "
        '["batch"], resources ["jobs"], verb create) in namespace bench and bind it to user '
        "system:serviceaccount:bench:tester"
    ]
    assert (
        "user system:serviceaccount:bench:tester may not list keda.sh/scaledobjects in namespace bench, "
        "needed to preflight: KEDA ScaledObjects on the Deployment; that check is skipped"
    ) in report.warnings


def test_hpa_writes_are_needed_only_when_the_run_applies_the_hpa(kube_cluster):
    kube_cluster.apis.refused.add(("autoscaling", "horizontalpodautoscalers", "create"))
    assert preflight(make_backend(kube_cluster)).problems == []
    kube_cluster.remove(HPAS, NS, "vllm-hpa")
    [problem] = applying_combined(kube_cluster)
    assert "may not create autoscaling/horizontalpodautoscalers in namespace bench" in problem


# --- series for the exact selector -------------------------------------------------------------


def push(prometheus, names: list[str], **labels: str) -> None:
    now = time.time()
    prometheus.push([({"__name__": n, **labels}, [(now - 5, 1.0), (now, 2.0)]) for n in names])


GAUGES = ["vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc"]
HISTOGRAMS = [
    f"vllm:{h}_seconds_{s}" for h in ("time_to_first_token", "inter_token_latency") for s in ("sum", "count", "bucket")
] + ["vllm:request_success_total"]


def test_series_under_other_labels_are_named(kube_cluster, prometheus):
    """Issue 13, defect 2: Prometheus has vLLM series, but none with the configured model_name."""
    push(prometheus, GAUGES + HISTOGRAMS, model_name="meta-llama/Llama-3.1-8B", namespace=NS, pod="vllm-0", le="1")
    report = preflight(
        make_backend(kube_cluster, prometheus.url),
        queries=lambda names: standard_queries(names, "llama-8b", NS, "1m", [0.9]),
    )
    [problem] = report.problems
    assert problem.startswith(
        "column(s) ttft_ms, itl_ms, request_rate_per_min, prom_requests_running, prom_requests_waiting, "
        "prom_kv_cache_usage_avg, prom_kv_cache_usage_max, ttft_p90_ms, itl_p90_ms: no series of "
        "vllm:time_to_first_token_seconds_sum, vllm:time_to_first_token_seconds_count, "
    )
    assert problem.endswith(
        'match {model_name="llama-8b",namespace="bench"} (model_name="llama-8b" matches none of the values '
        'Prometheus has). Prometheus has these metrics with model_name="meta-llama/Llama-3.1-8B"; '
        'namespace="bench"; pod="vllm-0". Fix: set model_name in the config to the served model name'
    )


def test_series_that_appear_with_traffic_are_a_warning_but_missing_gauges_a_problem(kube_cluster, prometheus):
    """llm-d-inference-sim creates its histograms only with the first request; gauges exist from the start."""
    push(prometheus, ["vllm:num_requests_waiting"], model_name="m", namespace=NS, pod="vllm-0")
    report = preflight(
        make_backend(kube_cluster, prometheus.url), queries=lambda names: standard_queries(names, "m", NS, "1m", [])
    )
    assert report.problems == [
        "column(s) prom_requests_running, prom_kv_cache_usage_avg, prom_kv_cache_usage_max need "
        "vllm:num_requests_running, vllm:kv_cache_usage_perc, which Prometheus does not have at all. Fix: check "
        "that the model server is scraped (Prometheus targets page; manifests/monitoring/prometheus.yaml) and "
        "exports these names"
    ]
    [warning] = [w for w in report.warnings if w.startswith("Prometheus has no")]
    assert warning.startswith("Prometheus has no vllm:time_to_first_token_seconds_sum, ")
    assert "(column(s) ttft_ms, itl_ms, request_rate_per_min); a vLLM server may create such series" in warning


def test_a_healthy_prometheus_passes_the_series_check(kube_cluster, prometheus):
    push(
        prometheus,
        GAUGES + HISTOGRAMS + ["vllm:generation_tokens_total"],
        model_name="m",
        namespace=NS,
        pod="vllm-0",
        le="1",
    )
    report = preflight(
        make_backend(kube_cluster, prometheus.url),
        queries=lambda names: standard_queries(names, "m", NS, "1m", [0.5, 0.99]),
    )
    assert report.problems == [] and report.warnings == []
