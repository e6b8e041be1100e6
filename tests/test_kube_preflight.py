"""Preflight of the Kubernetes backend: the emulator over real HTTP and a real Prometheus."""

from __future__ import annotations

import time

import pytest

from hpa_experiments.backends.kube.backend import KubeBackend, KubeSettings
from hpa_experiments.backends.kube.preflight import VLLM_METRICS, detect_metric_names, preflight
from hpa_experiments.backends.kube.prom import PromSettings
from hpa_experiments.backends.kube.retry import RetryPolicy
from tests.support import kube_emulator
from tests.support.kube_emulator import DEPLOYMENTS, HPAS, NAMESPACES, KubeEmulator
from tests.support.prometheus import free_port

kube_cluster = kube_emulator.kube_cluster  # the shared fixture

FAST_RETRY = RetryPolicy(max_attempts=2, max_elapsed=2.0, base_delay=0.01, max_delay=0.05)
GOOD_QUERIES = {
    "ttft_ms": "sum(rate(vllm:time_to_first_token_seconds_sum[1m])) "
    "/ sum(rate(vllm:time_to_first_token_seconds_count[1m])) * 1000",
    "waiting": "sum(vllm:num_requests_waiting)",
}


def make_backend(cluster: KubeEmulator, prom_url: str | None, **prom: object) -> KubeBackend:
    return KubeBackend(
        KubeSettings(kubeconfig=str(cluster.kubeconfig)),
        PromSettings(url=prom_url, **prom) if prom_url else None,
        namespace="bench",
        deployment="vllm",
        hpa_name="vllm-hpa",
        run_id="r1",
        retry=FAST_RETRY,
    )


def push_vllm_names(prometheus, separator: str, bases: list[str]) -> None:
    now = time.time()
    prometheus.push(
        [({"__name__": f"vllm{separator}{base}", "pod": "p1"}, [(now - 5, 1.0), (now, 2.0)]) for base in bases]
    )


def test_a_healthy_setup_passes_and_reports_colon_names(kube_cluster, prometheus):
    push_vllm_names(
        prometheus,
        ":",
        [
            "time_to_first_token_seconds_sum",
            "time_to_first_token_seconds_count",
            "inter_token_latency_seconds_bucket",
            "request_success_total",
            "num_requests_running",
            "num_requests_waiting",
            "kv_cache_usage_perc",
            "generation_tokens_total",
        ],
    )
    report = preflight(make_backend(kube_cluster, prometheus.url), queries=GOOD_QUERIES)
    assert report.ok, report.problems
    assert report.server_version == "v1.31.4-emulated"
    assert report.metric_names.style == "colon"
    assert report.metric_names.missing == ()
    assert report.metric_names.names == {
        "ttft": "vllm:time_to_first_token_seconds",
        "itl": "vllm:inter_token_latency_seconds",
        "request_success": "vllm:request_success_total",
        "running": "vllm:num_requests_running",
        "waiting": "vllm:num_requests_waiting",
        "kv_cache": "vllm:kv_cache_usage_perc",
        "generation_tokens": "vllm:generation_tokens_total",
    }
    assert report.warnings == []


def test_every_problem_is_listed_at_once(kube_cluster):
    kube_cluster.remove(DEPLOYMENTS, "bench", "vllm")
    kube_cluster.remove(HPAS, "bench", "vllm-hpa")
    report = preflight(make_backend(kube_cluster, f"http://127.0.0.1:{free_port()}"), queries=GOOD_QUERIES)
    assert not report.ok
    assert len(report.problems) == 3, report.problems
    assert report.problems[0] == "Deployment bench/vllm not found"
    assert report.problems[1] == "HPA bench/vllm-hpa not found"
    assert report.problems[2].startswith("Prometheus is not usable: Prometheus at http://127.0.0.1:")
    assert "connection problem" in report.problems[2]


def test_a_missing_namespace_and_a_bad_query_are_both_reported(kube_cluster, prometheus):
    kube_cluster.remove(NAMESPACES, None, "bench")
    queries = {**GOOD_QUERIES, "itl_ms": "sum(rate(vllm:inter_token_latency_seconds_sum[1m])"}
    report = preflight(make_backend(kube_cluster, prometheus.url), queries=queries)
    assert report.problems[0] == "namespace 'bench' does not exist"
    assert len(report.problems) == 3, report.problems
    assert report.problems[1].startswith("query itl_ms is rejected by Prometheus:")
    assert "parse error" in report.problems[1]
    assert "has no vLLM metrics at all" in report.problems[2]


def test_an_hpa_that_scales_something_else_is_a_problem(kube_cluster):
    kube_cluster.patch(HPAS, "bench", "vllm-hpa", {"spec": {"scaleTargetRef": {"name": "other"}}})
    report = preflight(make_backend(kube_cluster, None))
    assert report.problems == ["HPA bench/vllm-hpa scales Deployment/other, not Deployment/vllm"]


def test_an_hpa_the_run_will_apply_need_not_exist(kube_cluster):
    kube_cluster.remove(HPAS, "bench", "vllm-hpa")
    assert preflight(make_backend(kube_cluster, None), will_apply_hpa=True).ok
    assert preflight(make_backend(kube_cluster, None)).problems == ["HPA bench/vllm-hpa not found"]


def test_an_unreachable_cluster_is_one_problem_and_prometheus_is_still_checked(tmp_path, prometheus):
    cluster = KubeEmulator(tmp_path).start()
    cluster.stop()
    report = preflight(make_backend(cluster, prometheus.url), queries={"bad": "sum("})
    assert len(report.problems) == 3, report.problems
    assert report.problems[0].startswith(f"Kubernetes API {cluster.url} (context emulator) is not reachable:")
    assert report.problems[1].startswith("query bad is rejected by Prometheus")


def test_a_forbidden_namespace_read_is_not_a_problem_when_the_objects_are_readable(kube_cluster):
    kube_cluster.fail_next(5, 403, method="GET", path=r"^/api/v1/namespaces/bench$")
    assert preflight(make_backend(kube_cluster, None)).ok


def test_forbidden_reads_are_reported(kube_cluster):
    kube_cluster.fail_next(5, 403, method="GET", path="/deployments/")
    [problem] = preflight(make_backend(kube_cluster, None)).problems
    assert problem.startswith("read Deployment bench/vllm: forbidden (HTTP 403)")


def test_a_missing_token_and_queries_without_prometheus_are_problems(kube_cluster, monkeypatch):
    monkeypatch.delenv("NO_SUCH_TOKEN", raising=False)
    report = preflight(make_backend(kube_cluster, "http://127.0.0.1:9", token_env="NO_SUCH_TOKEN"))
    assert report.problems == [
        "Prometheus is not usable: Prometheus token: environment variable NO_SUCH_TOKEN is unset or empty"
    ]
    report = preflight(make_backend(kube_cluster, None), queries=GOOD_QUERIES)
    assert report.problems == ["queries are configured but no Prometheus URL is"]


def test_underscore_names_are_detected_on_a_real_server(kube_cluster, prometheus):
    push_vllm_names(
        prometheus,
        "_",
        ["time_to_first_token_seconds_sum", "time_per_output_token_seconds_count", "num_requests_waiting"],
    )
    report = preflight(make_backend(kube_cluster, prometheus.url))
    names = report.metric_names
    assert names.style == "underscore"
    assert names.names["ttft"] == "vllm_time_to_first_token_seconds"
    assert names.names["itl"] == "vllm_time_per_output_token_seconds"  # the ITL fallback
    assert names.names["waiting"] == "vllm_num_requests_waiting"
    assert set(names.missing) == {"request_success", "running", "kv_cache", "generation_tokens"}
    assert report.ok, report.problems


def test_itl_falls_back_to_time_per_output_token_on_a_real_server(kube_cluster, prometheus):
    push_vllm_names(prometheus, ":", ["time_per_output_token_seconds_sum", "gpu_cache_usage_perc"])
    names = preflight(make_backend(kube_cluster, prometheus.url)).metric_names
    assert names.names["itl"] == "vllm:time_per_output_token_seconds"
    assert names.names["kv_cache"] == "vllm:gpu_cache_usage_perc"


def test_no_vllm_metrics_is_a_problem_with_colon_defaults(kube_cluster, prometheus):
    """Without any vLLM series every latency and queue column would stay empty: refused, not warned."""
    report = preflight(make_backend(kube_cluster, prometheus.url))
    assert report.metric_names.style == "unknown"
    assert report.metric_names.names["ttft"] == "vllm:time_to_first_token_seconds"
    assert report.problems == [
        f"Prometheus at {prometheus.url} has no vLLM metrics at all (vllm:* or vllm_*): every latency and queue "
        "column would stay empty. Fix: check that Prometheus scrapes the model server (its targets page; "
        "manifests/monitoring/prometheus.yaml)"
    ]


COLON_ITL, UNDERSCORE_ITL = "vllm:inter_token_latency_seconds", "vllm_inter_token_latency_seconds"


@pytest.mark.parametrize(
    ("available", "style", "itl"),
    [
        ({COLON_ITL + "_sum", "vllm:time_per_output_token_seconds_sum"}, "colon", COLON_ITL),
        ({UNDERSCORE_ITL + "_bucket"}, "underscore", UNDERSCORE_ITL),
        ({"vllm:num_requests_waiting", "vllm_time_per_output_token_seconds_count"}, "colon",
         "vllm_time_per_output_token_seconds"),
        ({"up", "process_cpu_seconds_total"}, "unknown", COLON_ITL),
    ],
)  # fmt: skip
def test_detect_metric_names(available, style, itl):
    names = detect_metric_names(available)
    assert names.style == style
    assert names.names["itl"] == itl
    assert set(names.names) == set(VLLM_METRICS)
