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
from hpa_experiments.backends.kube import claim
from hpa_experiments.backends.kube import preflight_autoscalers as autoscalers
from hpa_experiments.backends.kube.backend import API_CALLS, RUN_LABEL, KubeBackend
from hpa_experiments.backends.kube.preflight_metrics_api import MetricsApiCheck, label_selector
from hpa_experiments.backends.kube.preflight_rbac import check_permissions, needed_calls
from hpa_experiments.backends.kube.preflight_series import SeriesCheck
from hpa_experiments.backends.kube.prom import PromClient
from hpa_experiments.backends.kube.reach import server_name
from hpa_experiments.backends.kube.retry import PermanentFailure, RetryPolicy
from hpa_experiments.column_queries import MetricNames as QueryNames
from hpa_experiments.column_queries import deployment_pods_regex, gpu_selector
from hpa_experiments.config import EnergyConfig
from hpa_experiments.errors import BackendError

# metrics.csv columns built from a run's metric names (column_queries.run_queries), or fixed queries
Queries = Mapping[str, str] | Callable[[QueryNames], Mapping[str, str]]

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
# vLLM metrics a server may create only with its first request (llm-d-inference-sim does so)
TRAFFIC_BORN = ("ttft", "itl", "request_success", "generation_tokens")
# DCGM columns: checked by _check_gpu_power (energy is optional); output tokens feed only J/token
GPU_COLUMNS = ("gpu_power_w", "gpu_utilization_pct", "gpu_count")
OPTIONAL_COLUMNS = ("generation_tokens_per_s",)


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


def _check_kubernetes(
    backend: KubeBackend,
    report: PreflightReport,
    will_apply_hpa: bool,
    hpa_manifest: Mapping[str, Any] | None,
    owned: OwnedObjects,
) -> None:
    ns, deployment, hpa_name = backend.namespace, backend.deployment, backend.hpa_name
    try:
        report.server_version = backend.server_version(retry=PREFLIGHT_RETRY)
    except BackendError as exc:
        report.problems.append(f"{server_name(backend.api_client, backend.context)} is not reachable: {exc}")
        return
    _check_rbac(backend, report, will_apply_hpa)
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
    deployment_obj = _check_read(report, f"Deployment {ns}/{deployment}", backend.read_deployment)
    hpa = None
    if hpa_name and not will_apply_hpa:
        hpa = _check_read(report, f"HPA {ns}/{hpa_name}", backend.read_hpa)
        if hpa is not None:
            target = hpa.get("spec", {}).get("scaleTargetRef", {})
            if target.get("kind") != "Deployment" or target.get("name") != deployment:
                report.problems.append(
                    f"HPA {ns}/{hpa_name} scales {target.get('kind')}/{target.get('name')}, not Deployment/{deployment}"
                )
                hpa = None
            else:
                report.problems += autoscalers.condition_problems(hpa, ns)
    _check_autoscalers(backend, report)
    _check_existing(backend, report, owned)
    spec = (hpa_manifest or {}).get("spec") if will_apply_hpa else (hpa or {}).get("spec")
    if spec and deployment_obj is not None:
        pods = label_selector((deployment_obj.get("spec") or {}).get("selector"))
        check = MetricsApiCheck(_getter(backend), ns, pods, hpa_name or "?")
        try:
            check.run(spec)
        except BackendError as exc:
            report.problems.append(f"cannot ask the metrics APIs: {exc}")
        report.problems += check.problems
        report.warnings += check.warnings
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


@dataclass(frozen=True)
class OwnedObjects:
    """The objects the run will apply (None: it applies none of that kind) and --take-over."""

    hpa: Mapping[str, Any] | None = None
    scaled_object: Mapping[str, Any] | None = None
    take_over: bool = False


def _check_existing(backend: KubeBackend, report: PreflightReport, owned: OwnedObjects) -> None:
    """An object the run would apply that exists already: refused unless identical or --take-over."""
    for kind, manifest in ((backend.hpa_kind, owned.hpa), (backend.scaled_object_kind, owned.scaled_object)):
        if manifest is not None:
            problems, warnings = claim.preflight_findings(kind, manifest, owned.take_over)
            report.problems += problems
            report.warnings += warnings


def _getter(backend: KubeBackend) -> Callable[[str, list[tuple[str, str]]], tuple[int, dict[str, Any]]]:
    def get(path: str, query: list[tuple[str, str]]) -> tuple[int, dict[str, Any]]:
        return backend.request_json(
            "GET", f"GET {path}", path, query=query, answers=(403, 404, 503), retry=PREFLIGHT_RETRY
        )

    return get


def _check_rbac(backend: KubeBackend, report: PreflightReport, will_apply_hpa: bool) -> None:
    def post(path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return backend.request_json("POST", f"POST {path}", path, body=body, answers=(403, 404), retry=PREFLIGHT_RETRY)

    try:
        problems, warnings = check_permissions(post, backend.namespace, needed_calls(API_CALLS, will_apply_hpa))
    except BackendError as exc:
        report.warnings.append(f"permissions not checked: {exc}")
        return
    report.problems += problems
    report.warnings += warnings


def _check_autoscalers(backend: KubeBackend, report: PreflightReport) -> None:
    """Every HPA and KEDA ScaledObject of the Deployment; more than one acting on it is a problem."""
    ns = backend.namespace
    try:
        listing = backend.call_json(
            f"list HPAs in {ns}",
            backend.autoscaling.list_namespaced_horizontal_pod_autoscaler,
            ns,
            retry=PREFLIGHT_RETRY,
        )
    except BackendError as exc:
        report.problems.append(f"{exc} (needed to find other autoscalers of the Deployment)")
        return
    path = f"/apis/{autoscalers.KEDA_GROUP_VERSION}/namespaces/{ns}/scaledobjects"
    try:
        status, keda = backend.request_json(
            "GET", f"list ScaledObjects in {ns}", path, answers=(403, 404), retry=PREFLIGHT_RETRY
        )
    except BackendError as exc:
        status, keda = 0, {}
        report.warnings.append(f"KEDA ScaledObjects not checked: {exc}")
    if status == 403:
        report.warnings.append(f"KEDA ScaledObjects not checked: listing them in {ns} is forbidden (403)")
    if status == 404 and backend.keda is not None:
        report.problems.append(
            f"the run's autoscaler is a KEDA ScaledObject ({backend.keda.spec.name}), but this cluster has no "
            f"ScaledObject resource ({path} answers 404: the CRD scaledobjects.keda.sh is not installed, so KEDA "
            "is not either). Fix: install KEDA (`hpa-exp cluster up --autoscaler keda`, or KEDA's release "
            "manifests or Helm chart), or use an HPA (autoscaler: kind: hpa)"
        )
    scaled = keda.get("items") or [] if status == 200 else []  # 404: KEDA is not installed
    acting = autoscalers.acting_on((listing or {}).get("items") or [], scaled, backend.deployment)
    problems, warnings = autoscalers.competing_problems(acting, ns, backend.deployment, backend.hpa_name or None)
    report.problems += problems
    report.warnings += warnings


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
    backend: KubeBackend,
    report: PreflightReport,
    queries: Queries,
    energy: EnergyConfig | None,
    optional_columns: Collection[str],
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
    try:
        available = prom.metric_names()
    except QueryError as exc:
        report.problems.append(f"cannot list metric names: {exc}")
        return
    report.metric_names = detect_metric_names(available)
    built = dict(queries(QueryNames(**report.metric_names.names)) if callable(queries) else queries)
    parsed = {}
    for label, promql in built.items():
        try:
            problem = prom.parse_problem(promql)
        except QueryError as exc:
            report.problems.append(f"query {label}: {exc}")
            continue
        if problem is not None:
            report.problems.append(f"query {label} is rejected by Prometheus: {problem}")
        else:
            parsed[label] = promql
    if energy is not None:
        _check_gpu_power(backend, prom, report, energy, available)
    if report.metric_names.style == "unknown":
        report.problems.append(
            f"Prometheus at {prom.url} has no vLLM metrics at all (vllm:* or vllm_*): every latency and queue "
            "column would stay empty. Fix: check that Prometheus scrapes the model server (its targets page; "
            "manifests/monitoring/prometheus.yaml)"
        )
        return
    born = {report.metric_names.names[logical] for logical in TRAFFIC_BORN}
    series = SeriesCheck(prom, available, {b + s for b in born for s in _SERIES_SUFFIXES}, optional_columns)
    series.run({column: q for column, q in parsed.items() if column not in GPU_COLUMNS})
    report.problems += series.problems
    report.warnings += series.warnings


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
        report.warnings.append(
            f"no DCGM power series for pods {pods}: the query failed ({exc}); energy may not be measured"
        )
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
    queries: Queries | None = None,
    will_apply_hpa: bool = False,
    energy: EnergyConfig | None = None,
    hpa_manifest: Mapping[str, Any] | None = None,
    optional_columns: Collection[str] = OPTIONAL_COLUMNS,
    owned: OwnedObjects | None = None,
) -> PreflightReport:
    """Check everything a run relies on, before anything is applied; list every problem.  Never raises.

    Kubernetes: the permissions of this user for every request of the run, the namespace,
    Deployment and HPA, other autoscalers of the Deployment, the HPA's conditions and whether
    the metrics APIs serve its metrics.  Prometheus: reachable, each query accepted and the
    series each column reads present for the query's exact selector.

    `queries` maps a column to PromQL, or is a function of the detected metric names that returns
    that mapping (`lambda names: column_queries.run_queries(config, names)`).  With `will_apply_hpa` the HPA
    need not exist yet and `hpa_manifest` is the one whose metrics are checked.  `owned`: the objects
    the run will apply; one that exists already is a problem unless identical or taken over.  A backend without
    an HPA name (HPA disabled) skips the HPA checks.  Missing series of `optional_columns` and
    DCGM power series (with `energy`) are warnings, not problems.
    """
    report = PreflightReport()
    _check_kubernetes(backend, report, will_apply_hpa, hpa_manifest, owned or OwnedObjects())
    _check_prometheus(backend, report, queries or {}, energy, optional_columns)
    return report
