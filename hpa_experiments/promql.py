"""The PromQL behind metrics.csv's Prometheus columns, and which vLLM metric names a server has.

A Prometheus 2.x server scraping a recent `prometheus_client` stores `vllm:foo` as
`vllm_foo`; older vLLM versions call ITL `time_per_output_token_seconds`.  The names are
detected once per run (`detect_metric_names`) and the queries built from what exists.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from hpa_experiments.backends.base import InstantSample, QueryError
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

    def with_prefix(self, prefix: str) -> MetricNames:
        """The same names with 'vllm:' replaced by `prefix` ('vllm_' on escaping servers)."""
        return MetricNames(**{k: prefix + v.split(":", 1)[1] for k, v in self.__dict__.items()})


LEGACY_ITL = "time_per_output_token_seconds"


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


_LATENCY_HISTOGRAMS = "time_to_first_token_seconds|inter_token_latency_seconds|time_per_output_token_seconds"
_PROBE = f'{{__name__=~"vllm[:_]({_LATENCY_HISTOGRAMS})_count"}}'


def detect_metric_names(query: Callable[[str], list[InstantSample]]) -> tuple[MetricNames, list[str]]:
    """Which name style and ITL metric the server has; notes for the user.

    `query` runs an instant PromQL query.  When nothing vLLM-like exists yet, the standard
    `vllm:` names are kept and a note says so.
    """
    try:
        found = {s.labels.get("__name__", "") for s in query(f"group by (__name__) ({_PROBE})")}
    except QueryError as exc:
        return MetricNames(), [f"could not look up vLLM metric names: {exc}"]
    if not found:
        return MetricNames(), ["no vLLM latency metrics on the server yet; assuming 'vllm:' names"]
    prefix = "vllm:" if any(n.startswith("vllm:") for n in found) else "vllm_"
    names = MetricNames().with_prefix(prefix)
    notes = []
    if prefix == "vllm_":
        notes.append("the server stores vLLM metrics as 'vllm_*' (colon escaped); queries use those names")
    if f"{prefix}inter_token_latency_seconds_count" not in found and any(LEGACY_ITL in n for n in found):
        names = replace(names, itl=f"{prefix}{LEGACY_ITL}")
        notes.append(f"no inter_token_latency_seconds; ITL from the older {prefix}{LEGACY_ITL}")
    return names, notes
