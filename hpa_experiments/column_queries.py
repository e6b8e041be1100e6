"""The PromQL behind metrics.csv's Prometheus columns.

A Prometheus 2.x server scraping a recent `prometheus_client` stores `vllm:foo` as
`vllm_foo`; older vLLM versions call ITL `time_per_output_token_seconds`.  The Kubernetes
preflight detects which names the server has (backends/kube/preflight.py) and the queries
are built from those.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hpa_experiments.rundir import percentile_label

if TYPE_CHECKING:
    from hpa_experiments.config import EnergyConfig, ExperimentConfig


@dataclass(frozen=True)
class MetricNames:
    """The vLLM metric names as stored on the Prometheus server in use."""

    ttft: str = "vllm:time_to_first_token_seconds"
    itl: str = "vllm:inter_token_latency_seconds"
    request_success: str = "vllm:request_success_total"
    running: str = "vllm:num_requests_running"
    waiting: str = "vllm:num_requests_waiting"
    kv_cache: str = "vllm:kv_cache_usage_perc"
    generation_tokens: str = "vllm:generation_tokens_total"


def selector(model_name: str, namespace: str, extra: str = "") -> str:
    """The labels of the model server's series; `extra` is `metrics.selector` (matchers, canonical)."""
    more = f",{extra}" if extra else ""
    return f'{{model_name="{_quote(model_name)}",namespace="{_quote(namespace)}"{more}}}'


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def standard_queries(
    names: MetricNames,
    model_name: str,
    namespace: str,
    window: str,
    percentiles: Iterable[float],
    extra_selector: str = "",
) -> dict[str, str]:
    """metrics.csv column -> PromQL. Latencies in ms; request rate as completions per minute."""
    sel = selector(model_name, namespace, extra_selector)

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


def deployment_pods_regex(deployment: str) -> str:
    """The names of a Deployment's pods: `<deployment>-<template hash>-<suffix>` on a cluster,
    `<deployment>-<n>` in the twin; not those of a Deployment whose name merely starts the same
    (`vllm-large-7d9f-abcde` is not a pod of `vllm`).  Names are DNS subdomains: only `.` needs escaping."""
    return deployment.replace(".", "\\.") + "-([a-z0-9]+-)?[a-z0-9]+"


def gpu_selector(energy: EnergyConfig, namespace: str, deployment: str) -> str:
    """DCGM series of the Deployment's pods, by the labels dcgm-exporter's Kubernetes mapping adds."""
    pods = deployment_pods_regex(deployment)
    return f'{{{energy.namespace_label}="{_quote(namespace)}",{energy.pod_label}=~"{_quote(pods)}"}}'


def energy_queries(
    names: MetricNames,
    energy: EnergyConfig,
    model_name: str,
    namespace: str,
    deployment: str,
    window: str,
    extra_selector: str = "",
) -> dict[str, str]:
    """metrics.csv column -> PromQL: GPU power (W, all GPUs), mean GPU utilization (%), GPUs seen,
    and output tokens per second (for joules per token).  `extra_selector` scopes the vLLM series only:
    DCGM series carry the exporter's labels, not the model server's."""
    gpus = gpu_selector(energy, namespace, deployment)
    tokens = selector(model_name, namespace, extra_selector)
    return {
        "gpu_power_w": f"sum({energy.power_metric}{gpus})",
        "gpu_utilization_pct": f"avg({energy.utilization_metric}{gpus})",
        "gpu_count": f"count({energy.power_metric}{gpus})",
        "generation_tokens_per_s": f"sum(rate({names.generation_tokens}{tokens}[{window}]))",
    }


def run_queries(config: ExperimentConfig, names: MetricNames) -> dict[str, str]:
    """Every PromQL column of a run's metrics.csv: the standard ones (scoped by `metrics.selector`),
    energy, then `metrics.prometheus` (the user's own queries, as written)."""
    metrics = config.metrics
    queries = standard_queries(
        names, config.model_name, config.namespace, metrics.rate_window, metrics.percentiles, metrics.selector
    )
    queries.update(
        energy_queries(
            names,
            config.energy,
            config.model_name,
            config.namespace,
            config.deployment,
            metrics.rate_window,
            metrics.selector,
        )
    )
    queries.update({f"query_{name}": q.query for name, q in metrics.prometheus.items()})
    return queries
