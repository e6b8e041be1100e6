"""The HPA replica calculator (replica_calculator.go): one metric's replica count from its samples.

Rules from /work/shared/reference/sim-model.md §1.2. All metric arithmetic is in integer milli-units,
as in k8s.io/kubernetes pkg/controller/podautoscaler/metrics/utilization.go.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from hpa_experiments.hpa_reasons import TOLERANCE, UNREADY_PODS


@dataclass(frozen=True)
class PodView:
    """A pod selected by the scale target's selector, as the controller's pod lister sees it."""

    name: str
    phase: str  # "Pending" | "Running" | "Failed"
    ready: bool
    deleting: bool = False
    created_at: float = 0.0  # informational: start-time readiness rules apply only to CPU metrics


@dataclass(frozen=True)
class Tolerances:
    """Tolerances.isWithin: no scaling while 1 - scale_down <= ratio <= 1 + scale_up (§1.2, §1.7)."""

    scale_down: float
    scale_up: float

    def is_within(self, usage_ratio: float) -> bool:
        return (1.0 - self.scale_down) <= usage_ratio <= (1.0 + self.scale_up)


def adapter_milli(value: float) -> int:
    """prometheus-adapter's `resource.NewMilliQuantity(int64(value*1000.0))` (truncation toward zero)."""
    return int(value * 1000.0)


def _go_int_divide(numerator: int, denominator: int) -> int:
    """Go integer division (truncates toward zero, unlike Python's //)."""
    quotient = abs(numerator) // abs(denominator)
    return quotient if (numerator >= 0) == (denominator > 0) else -quotient


def metric_usage_ratio(metrics_milli: Mapping[str, int], target_milli: int) -> tuple[float, int]:
    """GetMetricUsageRatio: (average / target, average) with the average an integer division."""
    current_usage = _go_int_divide(sum(metrics_milli.values()), len(metrics_milli))
    return float(current_usage) / float(target_milli), current_usage


def group_pods(pods: list[PodView], metrics_milli: Mapping[str, int]) -> tuple[int, set[str], set[str], set[str]]:
    """groupPods for a non-CPU metric: (ready count, unready, missing, ignored).

    Deleting or Failed pods are ignored, Pending pods are unready, pods without a sample are missing;
    readiness checks apply only to CPU, so a Running-but-not-Ready pod with a sample counts as ready.
    """
    ready_count, unready, missing, ignored = 0, set(), set(), set()
    for pod in pods:
        if pod.deleting or pod.phase == "Failed":
            ignored.add(pod.name)
        elif pod.phase == "Pending":
            unready.add(pod.name)
        elif pod.name not in metrics_milli:
            missing.add(pod.name)
        else:
            ready_count += 1
    return ready_count, unready, missing, ignored


def plain_metric_replicas(
    metrics_milli: dict[str, int],
    pods: list[PodView],
    current_replicas: int,
    target_milli: int,
    tolerances: Tolerances,
) -> tuple[int, int, str | None]:
    """calcPlainMetricReplicas (§1.2 Pods metric): (replica count, average usage in milli-units, held).

    Missing pods count at the target on a scale-down and at 0 on a scale-up; Pending pods count at 0
    on a scale-up. If that brings the ratio within tolerance or flips the direction, keep the current size.
    `held` says what kept the count at the current size when the bare ratio would have moved it:
    hpa_reasons.TOLERANCE or hpa_reasons.UNREADY_PODS (None otherwise).
    """
    if not pods:
        raise ValueError("no pods returned by selector while calculating replica count")
    ready_count, unready, missing, ignored = group_pods(pods, metrics_milli)
    metrics = {pod: value for pod, value in metrics_milli.items() if pod not in ignored and pod not in unready}
    if not metrics:
        raise ValueError("did not receive metrics for targeted pods (pods might be unready)")

    usage_ratio, usage = metric_usage_ratio(metrics, target_milli)
    bare = math.ceil(usage_ratio * float(ready_count))  # what the ratio alone says
    within = tolerances.is_within(usage_ratio)
    scale_up_with_unready = bool(unready) and usage_ratio > 1.0
    if not scale_up_with_unready and not missing:
        if within:
            return current_replicas, usage, TOLERANCE if bare != current_replicas else None
        return bare, usage, None

    missing_value = target_milli if usage_ratio < 1.0 else 0
    metrics.update(dict.fromkeys(missing, missing_value))
    if scale_up_with_unready:
        metrics.update(dict.fromkeys(unready, 0))
    new_usage_ratio, _ = metric_usage_ratio(metrics, target_milli)
    direction_flips = (usage_ratio < 1.0 < new_usage_ratio) or (usage_ratio > 1.0 > new_usage_ratio)
    held = None if bare == current_replicas else (TOLERANCE if within else UNREADY_PODS)
    if tolerances.is_within(new_usage_ratio) or direction_flips:
        return current_replicas, usage, held
    new_replicas = math.ceil(new_usage_ratio * float(len(metrics)))
    if (new_usage_ratio < 1.0 and new_replicas > current_replicas) or (
        new_usage_ratio > 1.0 and new_replicas < current_replicas
    ):
        return current_replicas, usage, held
    return new_replicas, usage, None


def ready_pods_count(pods: list[PodView]) -> int:
    """getReadyPodsCount: pods that are Running and Ready (Object/External metrics use this count)."""
    if not pods:
        raise ValueError("unable to calculate ready pods: no pods returned by selector while calculating replica count")
    return sum(1 for pod in pods if pod.phase == "Running" and pod.ready)


def usage_ratio_replica_count(
    current_replicas: int, usage_ratio: float, tolerances: Tolerances, pods: list[PodView]
) -> int:
    """getUsageRatioReplicaCount (Object/External `Value` targets): ratio x ready pods, or
    ceil(ratio) when scaling from zero."""
    if current_replicas == 0:
        return math.ceil(usage_ratio)
    if tolerances.is_within(usage_ratio):
        return current_replicas
    return math.ceil(usage_ratio * float(ready_pods_count(pods)))


def per_pod_metric_replicas(
    total_milli: int, status_replicas: int, target_average_milli: int, tolerances: Tolerances
) -> tuple[int, int]:
    """GetObjectPerPodMetricReplicas / GetExternalPerPodMetricReplicas (`AverageValue` targets):
    ceil(total / target) when outside tolerance; the reported usage is ceil(total / statusReplicas).

    With statusReplicas = 0 (undefined in Go: a division by zero) the total itself is reported.
    """
    if status_replicas == 0:
        return math.ceil(float(total_milli) / float(target_average_milli)), total_milli
    replicas = status_replicas
    usage_ratio = float(total_milli) / (float(target_average_milli) * float(replicas))
    if not tolerances.is_within(usage_ratio):
        replicas = math.ceil(float(total_milli) / float(target_average_milli))
    return replicas, math.ceil(float(total_milli) / float(status_replicas))
