"""The shipped Prometheus scrape config and prometheus-adapter rules, run for real.

One real Prometheus scrapes two exporters that stand in for two model-server pods (vLLM
metric names, served by prometheus_client).  The scrape job is the one from
manifests/monitoring/prometheus.yaml, with only its Kubernetes pod discovery swapped for
static targets that carry the same `__meta_kubernetes_*` labels, so the manifest's own
relabelling (keep, pod, namespace, vllm_ -> vllm:) is what runs.  A second job, identical
but without the metric relabel rule, shows what Prometheus 2.x stores without it.

The adapter's metricsQuery is filled in as the adapter does (<<.LabelMatchers>> =
pod=~"a|b",namespace="ns", <<.GroupBy>> = pod) and must return one value per pod.
"""

from __future__ import annotations

import copy
import importlib.metadata
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry, Gauge, start_http_server

from tests.support.prometheus import PrometheusServer, free_port
from tests.test_manifests import (
    ADAPTER_METRICS,
    HPA_FILES,
    MANIFESTS,
    NAMESPACE,
    SERVED_MODEL,
    adapter_rules,
    exposed_name,
    find,
    series_name,
)

pytestmark = pytest.mark.prometheus

# Per pod and engine: the values each stand-in pod exports.  Pod a runs two engines, so
# the adapter's per-pod aggregation (sum of counts, mean of the KV fraction) shows.
EXPORTED = {
    "vllm-a": {
        "0": {"num_requests_waiting": 3, "num_requests_running": 5, "kv_cache_usage_perc": 0.2},
        "1": {"num_requests_waiting": 1, "num_requests_running": 4, "kv_cache_usage_perc": 0.4},
    },
    "vllm-b": {
        "0": {"num_requests_waiting": 7, "num_requests_running": 2, "kv_cache_usage_perc": 0.75},
    },
}
EXPECTED_PER_POD = {
    "num_requests_waiting": {"vllm-a": 4.0, "vllm-b": 7.0},
    "num_requests_running": {"vllm-a": 9.0, "vllm-b": 2.0},
    "kv_cache_usage_perc": {"vllm-a": 0.3, "vllm-b": 0.75},
}
WITH_RULE = "model-servers"
WITHOUT_RULE = "model-servers-without-relabel"


def _exporter(engines: dict[str, dict[str, float]]) -> tuple[int, Any]:
    registry = CollectorRegistry()
    gauges = {
        metric: Gauge(f"vllm:{metric}", metric, ["model_name", "engine"], registry=registry)
        for metric in ADAPTER_METRICS
    }
    for engine, values in engines.items():
        for metric, value in values.items():
            gauges[metric].labels(SERVED_MODEL, engine).set(value)
    port = free_port()
    server, _thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    return port, server


def _static_target(port: int, pod: str, app_name: str = "vllm") -> dict[str, Any]:
    """A target with the labels Kubernetes pod discovery would attach."""
    return {
        "targets": [f"127.0.0.1:{port}"],
        "labels": {
            "__meta_kubernetes_namespace": NAMESPACE,
            "__meta_kubernetes_pod_name": pod,
            "__meta_kubernetes_pod_label_app_kubernetes_io_name": app_name,
            "__meta_kubernetes_pod_container_port_name": "http",
            "__meta_kubernetes_pod_phase": "Running",
        },
    }


def _manifest_scrape_job(static_configs: list[dict[str, Any]]) -> dict[str, Any]:
    configmap = find(MANIFESTS / "monitoring" / "prometheus.yaml", "ConfigMap", "prometheus-config")
    (job,) = yaml.safe_load(configmap["data"]["prometheus.yml"])["scrape_configs"]
    job = copy.deepcopy(job)
    assert job.pop("kubernetes_sd_configs"), "the manifest should discover pods"
    job.update(static_configs=static_configs, scrape_interval="1s", scrape_timeout="1s")
    return job


@pytest.fixture(scope="module")
def prometheus_scraping_pods(tmp_path_factory) -> Iterator[PrometheusServer]:
    exporters = {pod: _exporter(engines) for pod, engines in EXPORTED.items()}
    targets = [_static_target(port, pod) for pod, (port, _) in exporters.items()]
    # a pod that is not a model server (same endpoint): the keep rule must drop it
    targets.append(_static_target(exporters["vllm-a"][0], "loadgen-x", app_name="vllm-bench"))
    with_rule = _manifest_scrape_job(targets)
    without_rule = dict(copy.deepcopy(with_rule), job_name=WITHOUT_RULE)
    del without_rule["metric_relabel_configs"]
    server = PrometheusServer(tmp_path_factory.mktemp("prom-adapter"), [with_rule, without_rule], "1s")
    server.start()
    try:
        server.wait_for(f'count(vllm:num_requests_waiting{{job="{WITH_RULE}"}}) == 3')
        server.wait_for(f'count({{__name__=~"vllm.num_requests_waiting",job="{WITHOUT_RULE}"}}) == 3')
        yield server
    finally:
        server.stop()
        for _, http_server in exporters.values():
            http_server.shutdown()


def _label_matchers(pods: list[str]) -> str:
    return f'pod=~"{"|".join(pods)}",namespace="{NAMESPACE}"'


def adapter_query(rule: dict[str, Any], pods: list[str]) -> str:
    """metricsQuery with the template filled in as prometheus-adapter does."""
    return rule["metricsQuery"].replace("<<.LabelMatchers>>", _label_matchers(pods)).replace("<<.GroupBy>>", "pod")


def per_pod(result: list[dict[str, Any]]) -> dict[str, float]:
    values = {}
    for sample in result:
        assert set(sample["metric"]) == {"pod"}, "the adapter needs exactly one value per pod"
        values[sample["metric"]["pod"]] = float(sample["value"][1])
    return values


def rule_for(metric: str, series: str | None = None) -> dict[str, Any]:
    """The rule serving `metric` from the series `series` (default: vllm:<metric>, today's name)."""
    series = series or f"vllm:{metric}"
    (rule,) = [r for r in adapter_rules() if exposed_name(r, series_name(r)) == metric and series_name(r) == series]
    return rule


def _client_escapes_names() -> bool:
    """prometheus_client >= 0.23 escapes names for Prometheus 2.x's OpenMetrics request."""
    major, minor = importlib.metadata.version("prometheus-client").split(".")[:2]
    return (int(major), int(minor)) >= (0, 23)


@pytest.mark.slow
def test_relabel_rule_turns_escaped_names_back_into_vllm_colon_names(prometheus_scraping_pods):
    server = prometheus_scraping_pods
    escapes = _client_escapes_names()
    for metric in sorted(ADAPTER_METRICS):
        colon, underscore = f"vllm:{metric}", f"vllm_{metric}"
        assert len(server.query(f'{colon}{{job="{WITH_RULE}"}}')) == 3
        assert server.query(f'{underscore}{{job="{WITH_RULE}"}}') == []
        without = {name: len(server.query(f'{name}{{job="{WITHOUT_RULE}"}}')) for name in (colon, underscore)}
        assert without == ({colon: 0, underscore: 3} if escapes else {colon: 3, underscore: 0})


def test_scrape_job_keeps_model_server_pods_with_pod_and_namespace_labels(prometheus_scraping_pods):
    result = prometheus_scraping_pods.query(f'vllm:num_requests_waiting{{job="{WITH_RULE}"}}')
    assert {(s["metric"]["namespace"], s["metric"]["pod"]) for s in result} == {
        (NAMESPACE, "vllm-a"),
        (NAMESPACE, "vllm-b"),
    }


@pytest.mark.parametrize("metric", sorted(ADAPTER_METRICS))
def test_adapter_series_query_finds_each_pod(prometheus_scraping_pods, metric):
    rule = rule_for(metric)
    result = prometheus_scraping_pods.query(rule["seriesQuery"])
    assert {s["metric"]["pod"] for s in result} == {"vllm-a", "vllm-b"}
    assert all(s["metric"]["__name__"] == series_name(rule) for s in result)


@pytest.mark.parametrize("metric", sorted(ADAPTER_METRICS))
def test_adapter_metrics_query_returns_one_value_per_requested_pod(prometheus_scraping_pods, metric):
    rule = rule_for(metric)
    both = per_pod(prometheus_scraping_pods.query(adapter_query(rule, ["vllm-a", "vllm-b"])))
    assert both == pytest.approx(EXPECTED_PER_POD[metric])
    only_b = per_pod(prometheus_scraping_pods.query(adapter_query(rule, ["vllm-b"])))
    assert only_b == pytest.approx({"vllm-b": EXPECTED_PER_POD[metric]["vllm-b"]})


@pytest.mark.parametrize("path", HPA_FILES, ids=[p.name for p in HPA_FILES])
def test_hpa_metrics_resolve_to_per_pod_values(prometheus_scraping_pods, path):
    hpa = find(path, "HorizontalPodAutoscaler")
    pods_metrics = [m["pods"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods"]
    assert pods_metrics
    for metric in pods_metrics:
        name = metric["metric"]["name"]
        values = per_pod(prometheus_scraping_pods.query(adapter_query(rule_for(name), ["vllm-a", "vllm-b"])))
        assert values == pytest.approx(EXPECTED_PER_POD[name]), name


@pytest.fixture(scope="module")
def prometheus_scraping_an_old_server(tmp_path_factory) -> Iterator[PrometheusServer]:
    """One pod of a server with the old KV-cache name only (vLLM < 0.10): vllm:gpu_cache_usage_perc."""
    registry = CollectorRegistry()
    Gauge("vllm:gpu_cache_usage_perc", "kv", ["model_name"], registry=registry).labels(SERVED_MODEL).set(0.65)
    Gauge("vllm:num_requests_waiting", "w", ["model_name"], registry=registry).labels(SERVED_MODEL).set(2)
    port = free_port()
    http_server, _thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    server = PrometheusServer(
        tmp_path_factory.mktemp("prom-old"), [_manifest_scrape_job([_static_target(port, "vllm-old")])], "1s"
    )
    server.start()
    try:
        server.wait_for("count(vllm:gpu_cache_usage_perc) == 1")
        yield server
    finally:
        server.stop()
        http_server.shutdown()


@pytest.mark.slow
def test_the_old_kv_cache_name_is_served_as_kv_cache_usage_perc(prometheus_scraping_an_old_server):
    """Issue 13, defect 3: the KV and combined HPAs ask for kv_cache_usage_perc; a server exporting only
    vllm:gpu_cache_usage_perc must still give them a value per pod."""
    server = prometheus_scraping_an_old_server
    old = rule_for("kv_cache_usage_perc", series="vllm:gpu_cache_usage_perc")
    assert {s["metric"]["pod"] for s in server.query(old["seriesQuery"])} == {"vllm-old"}
    assert per_pod(server.query(adapter_query(old, ["vllm-old"]))) == pytest.approx({"vllm-old": 0.65})
    new = rule_for("kv_cache_usage_perc")  # today's name: nothing here, so the adapter keeps the old rule
    assert server.query(new["seriesQuery"]) == []
    names = [series_name(r) for r in adapter_rules() if exposed_name(r, series_name(r)) == "kv_cache_usage_perc"]
    assert names == ["vllm:gpu_cache_usage_perc", "vllm:kv_cache_usage_perc"]  # later wins where both exist
