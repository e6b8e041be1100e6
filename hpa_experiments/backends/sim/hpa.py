"""The Kubernetes HorizontalPodAutoscaler controller, exact, for one HPA on the twin's virtual clock.

A rendition of `reconcileAutoscaler` / `computeReplicasForMetrics` (horizontal.go) and the replica
calculator (replica_calculator.go) of kubernetes pkg/controller/podautoscaler. The rules cited in
docstrings are from /work/shared/reference/sim-model.md §1. Normalization (stabilization, rate
limits) lives in hpa_behavior.py, manifest parsing and validation in hpa_experiments/hpa_spec.py.

Metric values are handled as the real pipeline does: prometheus-adapter turns a sample into
`int64(value * 1000.0)` milli-units (§2.1), targets are read with `Quantity.MilliValue()` (rounded
up), and averages use integer division.

Resource and ContainerResource (CPU/memory) metrics are not modelled: such a metric fails with
ScalingActive=False, reason InvalidMetricSourceType, and counts as a failed metric under the
partial-failure rule (§1.3). An HPA without metrics gets the API default (CPU 80 %) and so never scales.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from hpa_experiments.backends.base import HpaMetricReading
from hpa_experiments.backends.sim.hpa_behavior import (
    Behavior,
    ScalingHistory,
    behavior_from_spec,
    normalize_legacy,
    normalize_with_behavior,
)
from hpa_experiments.backends.sim.hpa_replicas import (
    PodView,
    Tolerances,
    adapter_milli,
    per_pod_metric_replicas,
    plain_metric_replicas,
    usage_ratio_replica_count,
)
from hpa_experiments.hpa_reasons import (
    LIMITING_REASONS,
    MAX_REPLICAS,
    METRICS_UNAVAILABLE,
    MIN_REPLICAS,
    NOT_LIMITED,
    SCALING_DISABLED,
    STABILIZED_REASONS,
)
from hpa_experiments.hpa_spec import (
    DEFAULT_DOWNSCALE_STABILIZATION,
    MetricSpec,
    parse_hpa_spec,
    scale_down_stabilization_seconds,
    validate_hpa_manifest,
)

__all__ = [
    "HpaController",
    "HpaStatus",
    "MetricsSource",
    "MetricsUnavailable",
    "PodView",
    "Tolerances",
    "scale_down_stabilization_seconds",
    "validate_hpa_manifest",
]

DEFAULT_SYNC_PERIOD = 15.0
DEFAULT_TOLERANCE = 0.1


class MetricsUnavailable(Exception):
    """Raised by a MetricsSource when the metrics API request itself fails (adapter or Prometheus down)."""


class MetricsSource(Protocol):
    """What prometheus-adapter answers at sync time (raw sample values, before milli quantization)."""

    def pods_metric(self, metric_name: str, pods: list[str]) -> dict[str, float]:
        """Pod name -> value; pods without a value are "missing"."""
        ...

    def object_metric(self, metric_name: str, described_object: dict[str, Any]) -> float | None: ...

    def external_metric(self, metric_name: str, selector: dict[str, Any] | None) -> list[float] | None: ...


@dataclass(frozen=True)
class HpaStatus:
    """HPA status after one reconcile; `desired_replicas` is the size the scale target must have.

    When every metric fails (or a failure blocks a scale-down) the real status keeps its previous
    desiredReplicas; here it is the current size, which is what that value is once the HPA has scaled.
    """

    current_replicas: int
    desired_replicas: int
    current_metrics: tuple[HpaMetricReading, ...]
    conditions: tuple[dict[str, str], ...]
    last_scale_time: float | None
    rescaled: bool
    reason: str  # the rescale reason, e.g. "pods metric num_requests_waiting above target"; "" if none
    error: str | None = None  # the metrics error of this reconcile, if any
    limited_by: str = NOT_LIMITED  # what held desired where it is (hpa_reasons values), known exactly here

    def condition(self, condition_type: str) -> dict[str, str] | None:
        return next((c for c in self.conditions if c["type"] == condition_type), None)


class MetricFailure(Exception):
    """A metric whose replica count could not be computed; carries its ScalingActive reason."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class MetricProposal:
    replicas: int
    usage_milli: int  # what the status reports as the current value
    label: str  # e.g. "pods metric num_requests_waiting"
    held: str | None = None  # hpa_reasons.TOLERANCE / UNREADY_PODS when that kept it at the current size


def tolerances_for_hpa(behavior: Behavior | None, flag: float) -> Tolerances:
    """tolerancesForHpa (§1.7): behavior.<direction>.tolerance where set, else the controller flag."""
    if behavior is None:
        return Tolerances(flag, flag)
    down, up = behavior.scale_down.tolerance, behavior.scale_up.tolerance
    return Tolerances(scale_down=flag if down is None else down, scale_up=flag if up is None else up)


def _selector_text(selector: Mapping[str, Any] | None) -> str:
    """Roughly Go's %+v of a *metav1.LabelSelector, as it appears in external metric names."""
    if selector is None:
        return "nil"
    labels = ",".join(f"{k}: {v}" for k, v in sorted((selector.get("matchLabels") or {}).items()))
    return f"&LabelSelector{{MatchLabels:map[string]string{{{labels},}},}}"


class HpaController:
    """The HPA controller's state and reconcile loop for one HorizontalPodAutoscaler.

    The caller calls `reconcile` at `next_sync_at`: the controller enqueues a new HPA with the resync
    delay (enqueueHPA: "Requests are always added to queue with resyncPeriod delay"), so the first sync
    is one period after creation, then every `sync_period` seconds (§1.1).
    """

    def __init__(
        self,
        manifest: Mapping[str, Any],
        *,
        created_at: float,
        tolerance: float = DEFAULT_TOLERANCE,
        downscale_stabilization: float = DEFAULT_DOWNSCALE_STABILIZATION,
        sync_period: float = DEFAULT_SYNC_PERIOD,
    ):
        self.spec = parse_hpa_spec(manifest)
        self.behavior = behavior_from_spec(self.spec.behavior, downscale_stabilization=downscale_stabilization)
        self.downscale_stabilization = downscale_stabilization
        self.sync_period = sync_period
        self.created_at = created_at
        self.next_sync_at = created_at + sync_period
        self.tolerances = tolerances_for_hpa(self.behavior, tolerance)
        self.history = ScalingHistory()
        self.last_scale_time: float | None = None
        self._conditions: list[dict[str, str]] = []

    def _set_condition(self, condition_type: str, status: str, reason: str, message: str) -> None:
        """setCondition: replaces the condition of that type, keeping the others from earlier syncs."""
        condition = {"type": condition_type, "status": status, "reason": reason, "message": message}
        for i, existing in enumerate(self._conditions):
            if existing["type"] == condition_type:
                self._conditions[i] = condition
                return
        self._conditions.append(condition)

    def _status(
        self,
        current: int,
        desired: int,
        readings: tuple[HpaMetricReading, ...],
        *,
        rescaled: bool,
        reason: str = "",
        error: str | None = None,
        limited_by: str = NOT_LIMITED,
    ) -> HpaStatus:
        return HpaStatus(
            current,
            desired,
            readings,
            tuple(dict(c) for c in self._conditions),
            self.last_scale_time,
            rescaled,
            reason,
            error,
            limited_by,
        )

    def reconcile(
        self,
        now: float,
        spec_replicas: int,
        pods: list[PodView],
        metrics: MetricsSource,
        *,
        status_replicas: int | None = None,
    ) -> HpaStatus:
        """reconcileAutoscaler (§1.4). `status_replicas` is the scale's status.replicas (used by
        AverageValue Object/External targets); by default the pods that are neither deleting nor Failed."""
        self.next_sync_at = now + self.sync_period
        self._set_condition(
            "AbleToScale",
            "True",
            "SucceededGetScale",
            "the HPA controller was able to get the target's current scale",
        )
        current = spec_replicas
        self.history.record_initial_recommendation(now, current)
        min_replicas, max_replicas = self.spec.min_replicas, self.spec.max_replicas
        readings: tuple[HpaMetricReading, ...] = ()
        reason, error = "", None

        if current == 0 and min_replicas != 0:
            self._set_condition(
                "ScalingActive",
                "False",
                "ScalingDisabled",
                "scaling is disabled since the replica count of the target is zero",
            )
            return self._status(current, current, readings, rescaled=False, limited_by=SCALING_DISABLED)
        if current > max_replicas:
            desired, limited_by = max_replicas, MAX_REPLICAS
            reason = "Current number of replicas above Spec.MaxReplicas"
        elif current < min_replicas:
            desired, limited_by = min_replicas, MIN_REPLICAS
            reason = "Current number of replicas below Spec.MinReplicas"
        else:
            if status_replicas is None:
                status_replicas = sum(1 for pod in pods if not pod.deleting and pod.phase != "Failed")
            proposal, label, readings, error, held = self.compute_replicas_for_metrics(
                current, status_replicas, pods, metrics
            )
            if proposal is None:
                return self._status(
                    current, current, readings, rescaled=False, error=error, limited_by=METRICS_UNAVAILABLE
                )
            if proposal > current:
                reason = f"{label} above target"
            elif proposal < current:
                reason = "All metrics below target"
            desired, limited_by = self._normalize(now, current, proposal, min_replicas, max_replicas)
            if limited_by == NOT_LIMITED and held:
                limited_by = held

        rescaled = desired != current
        if rescaled:
            self._set_condition(
                "AbleToScale",
                "True",
                "SucceededRescale",
                f"the HPA controller was able to update the target scale to {desired}",
            )
            self.history.store_scale_event(self.behavior, now, current, desired)
            self.last_scale_time = now
        return self._status(
            current, desired, readings, rescaled=rescaled, reason=reason, error=error, limited_by=limited_by
        )

    def _normalize(
        self, now: float, current: int, desired: int, min_replicas: int, max_replicas: int
    ) -> tuple[int, str]:
        """normalizeDesiredReplicas / ...WithBehaviors, setting AbleToScale and ScalingLimited (§1.5).

        Returns the replicas and what held them: a limit (ScalingLimited), else a stabilization window."""
        if self.behavior is None:
            result = normalize_legacy(
                self.history, now, current, desired, min_replicas, max_replicas, self.downscale_stabilization
            )
        else:
            result = normalize_with_behavior(
                self.history, self.behavior, now, current, desired, min_replicas, max_replicas
            )
        self._set_condition("AbleToScale", "True", result.able_reason, result.able_message)
        self._set_condition(
            "ScalingLimited", "True" if result.limited else "False", result.limit_reason, result.limit_message
        )
        if result.limited:
            return result.replicas, LIMITING_REASONS[result.limit_reason]
        if result.stabilized != desired:
            return result.replicas, STABILIZED_REASONS[result.able_reason]
        return result.replicas, NOT_LIMITED

    def compute_replicas_for_metrics(
        self, spec_replicas: int, status_replicas: int, pods: list[PodView], metrics: MetricsSource
    ) -> tuple[int | None, str, tuple[HpaMetricReading, ...], str | None, str | None]:
        """computeReplicasForMetrics (§1.3): the max over metrics that computed; None (no scaling) if
        all failed or some failed and the max would scale down.
        Returns (replicas, label, readings, error, held: what held the winning metric's count)."""
        replicas, label, held = 0, "", None
        readings: list[HpaMetricReading] = []
        failures: list[MetricFailure] = []
        for metric in self.spec.metrics:
            try:
                proposal = self.compute_replicas_for_metric(metric, spec_replicas, status_replicas, pods, metrics)
            except MetricFailure as failure:
                failures.append(failure)
                readings.append(self._reading(metric, None))
                continue
            readings.append(self._reading(metric, proposal.usage_milli))
            if replicas == 0 or proposal.replicas > replicas:
                replicas, label, held = proposal.replicas, proposal.label, proposal.held

        error = None
        if failures:
            error = (
                f"invalid metrics ({len(failures)} invalid out of {len(self.spec.metrics)}), "
                f"first error is: {failures[0]}"
            )
        if len(failures) >= len(self.spec.metrics) or (failures and replicas < spec_replicas):
            first = failures[0]
            self._set_condition(
                "ScalingActive",
                "False",
                first.reason,
                f"the HPA was unable to compute the replica count: {first}",
            )
            return None, "", tuple(readings), error, None
        self._set_condition(
            "ScalingActive",
            "True",
            "ValidMetricFound",
            f"the HPA was able to successfully calculate a replica count from {label}",
        )
        return replicas, label, tuple(readings), error, held

    @staticmethod
    def _reading(metric: MetricSpec, usage_milli: int | None) -> HpaMetricReading:
        return HpaMetricReading(
            name=metric.name,
            source_type=metric.source_type,
            target_type=metric.target_type,
            target=None if metric.target_milli is None else metric.target_milli / 1000,
            current=None if usage_milli is None else usage_milli / 1000,
        )

    def compute_replicas_for_metric(
        self,
        metric: MetricSpec,
        spec_replicas: int,
        status_replicas: int,
        pods: list[PodView],
        metrics: MetricsSource,
    ) -> MetricProposal:
        """computeReplicasForMetric: dispatch on the metric source type; raises MetricFailure."""
        if metric.source_type == "Pods":
            return self._pods_metric(metric, spec_replicas, pods, metrics)
        if metric.source_type == "Object":
            return self._object_metric(metric, spec_replicas, status_replicas, pods, metrics)
        if metric.source_type == "External":
            return self._external_metric(metric, spec_replicas, status_replicas, pods, metrics)
        raise MetricFailure(
            "InvalidMetricSourceType",
            f"the digital twin does not model {metric.source_type} metrics ({metric.name}); "
            "use a Pods, Object or External metric",
        )

    def _pods_metric(
        self, metric: MetricSpec, spec_replicas: int, pods: list[PodView], source: MetricsSource
    ) -> MetricProposal:
        """computeStatusForPodsMetric -> GetMetricReplicas -> calcPlainMetricReplicas."""
        assert metric.target_milli is not None  # validated: Pods metrics have target.averageValue
        try:
            try:
                raw = source.pods_metric(metric.name, [pod.name for pod in pods])
            except MetricsUnavailable as error:
                raise ValueError(f"unable to fetch metrics from custom metrics API: {error}") from error
            samples = {pod: adapter_milli(v) for pod, v in raw.items() if math.isfinite(v)}
            if not samples:
                raise ValueError("no metrics returned from custom metrics API")
        except ValueError as error:
            raise MetricFailure("FailedGetPodsMetric", f"unable to get metric {metric.name}: {error}") from error
        try:
            replicas, usage, held = plain_metric_replicas(
                samples, pods, spec_replicas, metric.target_milli, self.tolerances
            )
        except ValueError as error:
            raise MetricFailure("FailedGetPodsMetric", str(error)) from error
        return MetricProposal(replicas, usage, f"pods metric {metric.name}", held)

    def _object_metric(
        self,
        metric: MetricSpec,
        spec_replicas: int,
        status_replicas: int,
        pods: list[PodView],
        source: MetricsSource,
    ) -> MetricProposal:
        """computeStatusForObjectMetric: Value -> ratio x ready pods; AverageValue -> per pod."""
        described = metric.described_object or {}
        label = f"{described.get('kind')} metric {metric.name}"
        if metric.target_milli is None or metric.target_type not in ("Value", "AverageValue"):
            raise MetricFailure(
                "FailedGetObjectMetric",
                "invalid object metric source: neither a value target nor an average value target was set",
            )
        try:
            value = source.object_metric(metric.name, dict(described))
        except MetricsUnavailable as error:
            value, reason = None, str(error)
        else:
            reason = "no metric value returned"
        if value is None or not math.isfinite(value):
            raise MetricFailure(
                "FailedGetObjectMetric",
                f"unable to get metric {metric.name}: {described.get('kind')} "
                f"{self.spec.namespace}/{described.get('name')}: {reason}",
            )
        return self._value_or_average(
            metric, adapter_milli(value), spec_replicas, status_replicas, pods, label, "FailedGetObjectMetric"
        )

    def _external_metric(
        self,
        metric: MetricSpec,
        spec_replicas: int,
        status_replicas: int,
        pods: list[PodView],
        source: MetricsSource,
    ) -> MetricProposal:
        """computeStatusForExternalMetric: sum of all series; AverageValue (checked first) -> per pod,
        Value -> ratio x ready pods."""
        assert metric.target_milli is not None  # validated: exactly one of value / averageValue
        label = f"external metric {metric.name}({_selector_text(metric.selector)})"
        try:
            values = source.external_metric(metric.name, metric.selector)
        except MetricsUnavailable as error:
            values, reason = None, str(error)
        else:
            reason = "no metrics returned from external metrics API"
        if not values or not all(math.isfinite(v) for v in values):
            raise MetricFailure(
                "FailedGetExternalMetric",
                f"unable to get external metric {self.spec.namespace}/"
                f"{metric.name}/{_selector_text(metric.selector)}: {reason}",
            )
        total = sum(adapter_milli(v) for v in values)
        return self._value_or_average(
            metric, total, spec_replicas, status_replicas, pods, label, "FailedGetExternalMetric"
        )

    def _value_or_average(
        self,
        metric: MetricSpec,
        usage: int,
        spec_replicas: int,
        status_replicas: int,
        pods: list[PodView],
        label: str,
        failure_reason: str,
    ) -> MetricProposal:
        """Object and External metrics alike: an AverageValue target is per pod of the scale's
        status replicas; a Value target scales the ready pods by the usage ratio."""
        assert metric.target_milli is not None
        if metric.target_type == "AverageValue":
            replicas, per_pod = per_pod_metric_replicas(usage, status_replicas, metric.target_milli, self.tolerances)
            return MetricProposal(replicas, per_pod, label)
        try:
            replicas = usage_ratio_replica_count(
                spec_replicas, float(usage) / float(metric.target_milli), self.tolerances, pods
            )
        except ValueError as error:
            raise MetricFailure(failure_reason, str(error)) from error
        return MetricProposal(replicas, usage, label)
