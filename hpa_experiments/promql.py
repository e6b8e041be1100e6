"""The PromQL behind metrics.csv's Prometheus columns.

A Prometheus 2.x server scraping a recent `prometheus_client` stores `vllm:foo` as
`vllm_foo`; older vLLM versions call ITL `time_per_output_token_seconds`.  The Kubernetes
preflight detects which names the server has (backends/kube_preflight.py) and the queries
are built from those.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from hpa_experiments.rundir import percentile_label


@dataclass(frozen=True)
class MetricNames:
    """The vLLM metric names as stored on the Prometheus server in use."""

    ttft: str = "vllm:time_to_first_token_seconds"
    itl: str = "vllm:inter_token_latency_seconds"
    request_success: str = "vllm:request_success_total"
    running: str = "vllm:num_requests_running"
    waiting: str = "vllm:num_requests_waiting"
    kv_cache: str = "vllm:kv_cache_usage_perc"



def selector(model_name: str, namespace: str) -> str:
    return f'{{model_name="{_quote(model_name)}",namespace="{_quote(namespace)}"}}'


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def standard_queries(
    names: MetricNames, model_name: str, namespace: str, window: str, percentiles: Iterable[float]
) -> dict[str, str]:
    """metrics.csv column -> PromQL. Latencies in ms; request rate as completions per minute."""
    sel = selector(model_name, namespace)

    def mean_ms(hist: str) -> str:
        return f"sum(rate({hist}_sum{sel}[{window}])) / sum(rate({hist}_count{sel}[{window}])) * 1000"

    def quantile_ms(hist: str, q: float) -> str:
        return f"histogram_quantile({q:g}, sum by (le) (rate({hist}_bucket{sel}[{window}]))) * 1000"

    queries = {
        "ttft_ms": mean_ms(names.ttft),
        "itl_ms": mean_ms(names.itl),
        "request_rate_per_min": f"sum(rate({names.request_success}{sel}[{window}])) * 60",
        "prom_requests_running": f"sum({names.running}{sel})",
        "prom_requests_waiting": f"sum({names.waiting}{sel})",
        "prom_kv_cache_usage_avg": f"avg({names.kv_cache}{sel})",
        "prom_kv_cache_usage_max": f"max({names.kv_cache}{sel})",
    }
    for q in percentiles:
        label = percentile_label(q)
        queries[f"ttft_{label}_ms"] = quantile_ms(names.ttft, q)
        queries[f"itl_{label}_ms"] = quantile_ms(names.itl, q)
    return queries
