"""Preflight of the Kubernetes backend: find every problem before anything is applied.

`preflight` never raises; it returns all problems found (the runner turns a non-empty list into
PreflightError, exit code 3) and the vLLM metric names the Prometheus server actually has, so
queries can be built for the server's naming style:

* colon style `vllm:time_to_first_token_seconds` (what vLLM emits), or
* underscore style `vllm_time_to_first_token_seconds` (a Prometheus 2.x server scraping a
  prometheus_client >= 0.23 exporter stores colons as underscores), and
* ITL as `inter_token_latency_seconds`, else the older `time_per_output_token_seconds`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from hpa_experiments.backends.base import QueryError
from hpa_experiments.backends.kube import RUN_LABEL, KubeBackend
from hpa_experiments.backends.prom import PromClient
from hpa_experiments.config import EnergyConfig
from hpa_experiments.errors import BackendError
from hpa_experiments.promql import deployment_pods_regex, gpu_selector
from hpa_experiments.retry import PermanentFailure, RetryPolicy

PREFLIGHT_RETRY = RetryPolicy(max_attempts=2, max_elapsed=5.0, base_delay=0.3, max_delay=1.0)

# logical name (the fields of promql.MetricNames) -> vLLM base names, preferred first, without "vllm:"
VLLM_METRICS: dict[str, tuple[str, ...]] = {
    "ttft": ("time_to_first_token_seconds",),
    "itl": ("inter_token_latency_seconds", "time_per_output_token_seconds"),
    "request_success": ("request_success_total",),
    "running": ("num_requests_running",),
    "waiting": ("num_requests_waiting",),
    "kv_cache": ("kv_cache_usage_perc", "gpu_cache_usage_perc"),
    "generation_tokens": ("generation_tokens_total",),
}
_SERIES_SUFFIXES = ("", "_sum", "_count", "_bucket", "_total", "_created")


@dataclass(frozen=True)
class MetricNames:
    """Which vLLM metric names the Prometheus server has.

    `names` maps a logical name (see VLLM_METRICS) to the metric name to use in PromQL, without
    histogram suffixes, e.g. {"ttft": "vllm:time_to_first_token_seconds"}; the keys are the
    fields of `promql.MetricNames`, so `promql.MetricNames(**names)` works.  Logical names the
    server does not have get the colon-style default and are listed in `missing`.
    """

    style: str  # "colon" | "underscore" | "unknown" (no vLLM metric found)
    names: dict[str, str]
    missing: tuple[str, ...] = ()


@dataclass
class PreflightReport:
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    metric_names: MetricNames | None = None
    server_version: str | None = None

    @property
    def ok(self) -> bool:
        return not self.problems


def detect_metric_names(available: Collection[str]) -> MetricNames:
    """Choose, for each logical vLLM metric, the name present in `available` (all `__name__` values)."""
    present = set(available)

    def has(base: str) -> bool:
        return any(base + suffix in present for suffix in _SERIES_SUFFIXES)

    counts = {sep: sum(has(f"vllm{sep}{base}") for bases in VLLM_METRICS.values() for base in bases) for sep in ":_"}
    if not any(counts.values()):
        style, preferred = "unknown", ":"
    else:
        preferred = ":" if counts[":"] >= counts["_"] else "_"
        style = "colon" if preferred == ":" else "underscore"
    names: dict[str, str] = {}
    missing: list[str] = []
    for logical, bases in VLLM_METRICS.items():
        other = "_" if preferred == ":" else ":"
        candidates = [f"vllm{sep}{base}" for base in bases for sep in (preferred, other)]
        found = next((c for c in candidates if has(c)), None)
        if found is None:
            missing.append(logical)
            found = f"vllm:{bases[0]}"
        names[logical] = found
    return MetricNames(style, names, tuple(missing))


def _check_kubernetes(backend: KubeBackend, report: PreflightReport, will_apply_hpa: bool) -> None:
    ns, deployment, hpa_name = backend.namespace, backend.deployment, backend.hpa_name
    try:
        report.server_version = backend.server_version(retry=PREFLIGHT_RETRY)
    except BackendError as exc:
        report.problems.append(f"Kubernetes API ({backend.context}) is not reachable: {exc}")
        return
    try:
        found = backend.call_json(
            f"read namespace {ns}", backend.core.read_namespace, ns, tolerate=(404,), retry=PREFLIGHT_RETRY
        )
        if found is None:
            report.problems.append(f"namespace {ns!r} does not exist")
            return
    except PermanentFailure as exc:
        if exc.status != 403:
            report.problems.append(str(exc))
        # 403: a namespaced Role cannot always read the namespace; the reads below still tell.
    except BackendError as exc:
        report.problems.append(str(exc))
    _check_read(report, f"Deployment {ns}/{deployment}", backend.read_deployment)
    if hpa_name and not will_apply_hpa:
        hpa = _check_read(report, f"HPA {ns}/{hpa_name}", backend.read_hpa)
        if hpa is not None:
            target = hpa.get("spec", {}).get("scaleTargetRef", {})
            if target.get("kind") != "Deployment" or target.get("name") != deployment:
                report.problems.append(
                    f"HPA {ns}/{hpa_name} scales {target.get('kind')}/{target.get('name')}, not Deployment/{deployment}"
                )
    try:
        backend.call_json(
            f"list Jobs in {ns}",
            backend.batch.list_namespaced_job,
            ns,
            label_selector=f"{RUN_LABEL}={backend.run_id}",
            retry=PREFLIGHT_RETRY,
        )
    except BackendError as exc:
        report.problems.append(str(exc))


def _check_read(report: PreflightReport, what: str, read: Callable[[], dict[str, Any] | None]) -> dict[str, Any] | None:
    try:
        found = read()
    except BackendError as exc:
        report.problems.append(str(exc))
        return None
    if found is None:
        report.problems.append(f"{what} not found")
    return found


def _check_prometheus(
    backend: KubeBackend, report: PreflightReport, queries: Mapping[str, str], energy: EnergyConfig | None
) -> None:
    prom = backend.prom
    if prom is None:
        if queries:
            report.problems.append("queries are configured but no Prometheus URL is")
        return
    try:
        prom.check_reachable(retry=PREFLIGHT_RETRY)
    except QueryError as exc:
        report.problems.append(f"Prometheus is not usable: {exc}")
        return
    for label, promql in queries.items():
        try:
            problem = prom.parse_problem(promql)
        except QueryError as exc:
            report.problems.append(f"query {label}: {exc}")
            continue
        if problem is not None:
            report.problems.append(f"query {label} is rejected by Prometheus: {problem}")
    try:
        available = prom.metric_names()
    except QueryError as exc:
        report.problems.append(f"cannot list metric names: {exc}")
        return
    report.metric_names = detect_metric_names(available)
    if energy is not None:
        _check_gpu_power(backend, prom, report, energy, available)
    if report.metric_names.style == "unknown":
        report.warnings.append(f"Prometheus at {prom.url} has no vLLM metrics (vllm:* or vllm_*) yet")
    elif report.metric_names.missing:
        report.warnings.append(
            "Prometheus has no series for: " + ", ".join(report.metric_names.missing) + " (defaults used)"
        )


def _check_gpu_power(
    backend: KubeBackend, prom: PromClient, report: PreflightReport, energy: EnergyConfig, available: Collection[str]
) -> None:
    """Energy is optional: without DCGM power series for the Deployment's pods a warning, not a problem."""
    pods = f"{backend.namespace}/{deployment_pods_regex(backend.deployment)}"
    if energy.power_metric not in available:
        report.warnings.append(
            f"no DCGM power series for pods {pods}: Prometheus has no {energy.power_metric} at all "
            "(is dcgm-exporter scraped?); energy will not be measured"
        )
        return
    series = energy.power_metric + gpu_selector(energy, backend.namespace, backend.deployment)
    try:
        found = prom.query(f"count({series})")
    except QueryError as exc:
        report.warnings.append(f"no DCGM power series for pods {pods}: the query failed ({exc}); "
                               "energy may not be measured")
        return
    if not found:
        report.warnings.append(
            f"no DCGM power series for pods {pods} ({series}): energy will not be measured "
            "(behind some ServiceMonitors the labels are exported_namespace/exported_pod: "
            "set energy.namespace_label and energy.pod_label)"
        )


def preflight(
    backend: KubeBackend,
    *,
    queries: Mapping[str, str] | None = None,
    will_apply_hpa: bool = False,
    energy: EnergyConfig | None = None,
) -> PreflightReport:
    """Check the cluster, the namespace, Deployment and HPA, Prometheus and the queries. Never raises.

    `queries` maps a label (e.g. "ttft") to PromQL; each is sent once so the server parses it.
    With `will_apply_hpa` the HPA need not exist yet (the run applies it); only the namespace is checked.
    A backend without an HPA name (HPA disabled) skips the HPA checks.  With `energy`, a warning
    when Prometheus has no GPU power series for the Deployment's pods.
    """
    report = PreflightReport()
    _check_kubernetes(backend, report, will_apply_hpa)
    _check_prometheus(backend, report, dict(queries or {}), energy)
    return report
