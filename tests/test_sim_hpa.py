"""The twin's HPA controller against worked cases derived from the controller rules.

Every expected number below is worked out by hand in the comment next to it, from the rules in
sim-model.md §1 (replica_calculator.go / horizontal.go). Syncs happen every 15 s from t=15 (an HPA
created at t=0 is first synced one period later).
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from hpa_experiments.backends.sim.hpa import (
    HpaController,
    HpaStatus,
    MetricsUnavailable,
    PodView,
    scale_down_stabilization_seconds,
    validate_hpa_manifest,
)
from hpa_experiments.backends.sim.hpa_replicas import adapter_milli, group_pods

REPO = Path(__file__).resolve().parent.parent
EPOCH_LIKE = 1_767_225_600.0 - 7.3  # a creation time like the twin's virtual clock uses

# The reference HPA of the original H100 runs (reference-runs/hpa-vllm-combined.yaml).
REFERENCE_HPA = yaml.safe_load(
    """
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: vllm-hpa-combined, namespace: llm-d-inference-scheduler}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: decode}
  minReplicas: 1
  maxReplicas: 10
  behavior:
    scaleUp:
      stabilizationWindowSeconds: 0
      policies:
      - {type: Percent, value: 100, periodSeconds: 15}
      - {type: Pods, value: 4, periodSeconds: 15}
      selectPolicy: Max
    scaleDown:
      stabilizationWindowSeconds: 0
      policies:
      - {type: Pods, value: 1, periodSeconds: 15}
      selectPolicy: Min
  metrics:
  - type: Pods
    pods:
      metric: {name: num_requests_waiting}
      target: {type: AverageValue, averageValue: "20"}
  - type: Pods
    pods:
      metric: {name: kv_cache_usage_perc}
      target: {type: AverageValue, averageValue: "500m"}
"""
)
WAITING, KV = "num_requests_waiting", "kv_cache_usage_perc"
# Behavior that never holds back: no windows, default rate policies (up: max(+4, x2), down: -100 %).
UNHINDERED = {"scaleUp": {"stabilizationWindowSeconds": 0}, "scaleDown": {"stabilizationWindowSeconds": 0}}


def pods_metric(name: str, average_value: Any) -> dict[str, Any]:
    return {
        "type": "Pods",
        "pods": {"metric": {"name": name}, "target": {"type": "AverageValue", "averageValue": average_value}},
    }


def hpa(
    metrics: list[dict[str, Any]] | None = None,
    *,
    behavior: dict[str, Any] | None = None,
    min_replicas: int = 1,
    max_replicas: int = 10,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "vllm"},
        "minReplicas": min_replicas,
        "maxReplicas": max_replicas,
        "metrics": metrics if metrics is not None else [pods_metric(WAITING, "20")],
    }
    if behavior is not None:
        spec["behavior"] = behavior
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "h", "namespace": "ns"},
        "spec": spec,
    }


def running(n: int, start: int = 0) -> list[PodView]:
    return [PodView(f"p{i}", "Running", True) for i in range(start, start + n)]


def pending(n: int, start: int) -> list[PodView]:
    return [PodView(f"p{i}", "Pending", False) for i in range(start, start + n)]


class FakeAdapter:
    """A MetricsSource answering from fixed per-pod values (pods absent from a map are missing)."""

    def __init__(
        self,
        pods: dict[str, dict[str, float]] | None = None,
        *,
        objects: dict[str, float] | None = None,
        external: dict[str, list[float]] | None = None,
        failing: frozenset[str] = frozenset(),
    ):
        self.pods, self.objects, self.external, self.failing = pods or {}, objects or {}, external or {}, failing

    def pods_metric(self, metric_name: str, pods: list[str]) -> dict[str, float]:
        if metric_name in self.failing:
            raise MetricsUnavailable("the server is currently unable to handle the request")
        values = self.pods.get(metric_name, {})
        return {pod: values[pod] for pod in pods if pod in values}

    def object_metric(self, metric_name: str, described_object: dict[str, Any]) -> float | None:
        return self.objects.get(metric_name)

    def external_metric(self, metric_name: str, selector: dict[str, Any] | None) -> list[float] | None:
        return self.external.get(metric_name)


def uniform(metric: str, pods: list[PodView], value: float) -> FakeAdapter:
    return FakeAdapter({metric: {pod.name: value for pod in pods if pod.phase == "Running"}})


def condition(status: HpaStatus, condition_type: str) -> tuple[str, str]:
    found = status.condition(condition_type)
    assert found is not None, f"no {condition_type} condition in {status.conditions}"
    return found["status"], found["reason"]


class Cluster:
    """Drives a controller like the twin does: sync every 15 s, apply desired_replicas, all pods Running."""

    def __init__(self, manifest: dict[str, Any], replicas: int, *, created_at: float = 0.0, **options: Any):
        self.controller = HpaController(manifest, created_at=created_at, **options)
        self.replicas = replicas

    def sync(self, per_pod: dict[str, float]) -> HpaStatus:
        """One sync with every pod reporting the given value of each metric."""
        pods = running(self.replicas)
        adapter = FakeAdapter({metric: {p.name: v for p in pods} for metric, v in per_pod.items()})
        status = self.controller.reconcile(self.controller.next_sync_at, self.replicas, pods, adapter)
        self.replicas = status.desired_replicas
        return status


# --- replica calculator: Pods metrics --------------------------------------------------------------------


def test_plain_ratio_is_rounded_up() -> None:
    # 3 pods at 30, 25, 20 against 20: average 25000m / 20000m = 1.25; ceil(1.25 * 3) = ceil(3.75) = 4.
    pods = running(3)
    adapter = FakeAdapter({WAITING: {"p0": 30, "p1": 25, "p2": 20}})
    status = HpaController(hpa(), created_at=0).reconcile(15, 3, pods, adapter)
    assert status.desired_replicas == 4
    assert status.rescaled
    assert status.reason == "pods metric num_requests_waiting above target"
    assert status.current_metrics[0].current == 25.0
    assert status.current_metrics[0].target == 20.0
    assert condition(status, "ScalingActive") == ("True", "ValidMetricFound")
    assert condition(status, "AbleToScale") == ("True", "SucceededRescale")


@pytest.mark.parametrize(
    ("value", "desired"),
    [
        (21.9, 3),  # ratio 1.095 <= 1.1: within tolerance, keep 3
        (22.0, 3),  # ratio exactly 1.1: the band is inclusive, keep 3
        (22.001, 4),  # ratio 1.10005: ceil(1.10005 * 3) = ceil(3.30015) = 4
        (18.0, 3),  # ratio 0.9 >= 0.9: keep 3
        (17.9, 3),  # ratio 0.895 -> ceil(2.685) = 3 (a change too small to matter)
        (13.0, 2),  # ratio 0.65 -> ceil(1.95) = 2
    ],
)
def test_tolerance_band(value: float, desired: int) -> None:
    cluster = Cluster(hpa(behavior=UNHINDERED), replicas=3)
    status = cluster.sync({WAITING: value})
    assert status.desired_replicas == desired
    assert status.rescaled == (desired != 3)


def test_scale_up_with_a_pending_pod_is_held_when_counting_it_at_zero_is_within_tolerance() -> None:
    # Running p0, p1 at 30 (ratio 1.5 > 1) and Pending p2 counted at 0: 60000m / 3 = 20000m, ratio 1.0:
    # within tolerance -> keep 3. Without the pending pod the HPA would go to ceil(1.5 * 2) = 3 from 2.
    pods = [*running(2), *pending(1, 2)]
    status = HpaController(hpa(), created_at=0).reconcile(15, 3, pods, uniform(WAITING, pods, 30))
    assert status.desired_replicas == 3
    assert not status.rescaled
    assert status.current_metrics[0].current == 30.0  # the status reports the ready pods' average


def test_scale_up_with_a_pending_pod_goes_ahead_when_load_is_high_enough() -> None:
    # p0, p1 at 40 (ratio 2.0), Pending p2 at 0: 80000m / 3 = 26666m (integer division), ratio 1.3333;
    # ceil(1.3333 * 3) = ceil(3.9999) = 4.
    pods = [*running(2), *pending(1, 2)]
    status = HpaController(hpa(), created_at=0).reconcile(15, 3, pods, uniform(WAITING, pods, 40))
    assert status.desired_replicas == 4


def test_scale_up_result_below_current_keeps_current() -> None:
    # spec 10 but only p0, p1 (40 each) and Pending p2 exist: new ratio 1.3333 > 1 but ceil(3.9999) = 4 < 10:
    # the scale-up would shrink the target, so the controller keeps 10.
    pods = [*running(2), *pending(1, 2)]
    status = HpaController(hpa(), created_at=0).reconcile(15, 10, pods, uniform(WAITING, pods, 40))
    assert status.desired_replicas == 10


def test_missing_pods_on_scale_down_count_at_target() -> None:
    # p0..p2 at 5, p3 has no sample. Ratio 0.25 < 1, so p3 counts at 20000m: 35000m / 4 = 8750m,
    # ratio 0.4375, ceil(0.4375 * 4) = ceil(1.75) = 2 (ignoring p3 would give ceil(0.25 * 3) = 1).
    pods = running(4)
    adapter = FakeAdapter({WAITING: {"p0": 5, "p1": 5, "p2": 5}})
    status = HpaController(hpa(behavior=UNHINDERED), created_at=0).reconcile(15, 4, pods, adapter)
    assert status.desired_replicas == 2
    assert status.reason == "All metrics below target"
    assert status.current_metrics[0].current == 5.0


@pytest.mark.parametrize(
    ("value", "desired"),
    [
        (32, 3),  # ratio 1.6; p2 at 0: 64000m / 3 = 21333m, ratio 1.06665: within tolerance -> hold at 3
        (40, 4),  # ratio 2.0; p2 at 0: 80000m / 3 = 26666m, ratio 1.3333 -> ceil(3.9999) = 4
    ],
)
def test_missing_pods_on_scale_up_count_at_zero(value: float, desired: int) -> None:
    pods = running(3)
    adapter = FakeAdapter({WAITING: {"p0": value, "p1": value}})
    status = HpaController(hpa(), created_at=0).reconcile(15, 3, pods, adapter)
    assert status.desired_replicas == desired


def test_direction_flip_keeps_current() -> None:
    # p0 at 30 (ratio 1.5: scale up) and three missing pods at 0: 30000m / 4 = 7500m, ratio 0.375 < 1.
    # The direction flips, so keep 4 (a naive recount would scale down to ceil(0.375 * 4) = 2).
    pods = running(4)
    adapter = FakeAdapter({WAITING: {"p0": 30}})
    status = HpaController(hpa(behavior=UNHINDERED), created_at=0).reconcile(15, 4, pods, adapter)
    assert status.desired_replicas == 4
    assert not status.rescaled


def test_deleting_and_failed_pods_are_ignored_and_pending_pods_are_unready() -> None:
    pods = [
        PodView("a", "Running", True),
        PodView("b", "Running", False),
        PodView("c", "Pending", False),
        PodView("d", "Running", True, deleting=True),
        PodView("e", "Failed", False),
        PodView("f", "Running", True),
    ]
    ready, unready, missing, ignored = group_pods(pods, {"a": 1000, "b": 1000, "d": 99000})
    assert (ready, unready, missing, ignored) == (2, {"c"}, {"f"}, {"d", "e"})
    # The deleting pod's 99 never enters the average: a=b=1 against target 1 -> ratio 1.0 with f missing
    # at target (scale-down branch is not taken: ratio == 1) -> within tolerance, keep 5.
    adapter = FakeAdapter({WAITING: {"a": 1, "b": 1, "d": 99}})
    status = HpaController(hpa([pods_metric(WAITING, "1")]), created_at=0).reconcile(15, 5, pods, adapter)
    assert status.desired_replicas == 5
    assert status.current_metrics[0].current == 1.0


# --- milli-unit arithmetic -------------------------------------------------------------------------------


def test_integer_milli_average_differs_from_float_average() -> None:
    # 22.0 and 22.001 -> 22000m + 22001m = 44001m; 44001 // 2 = 22000m; ratio 22000/20000 = 1.1: within
    # tolerance, keep 2. In floats the average is 22.0005, ratio 1.100025 > 1.1, which would scale to 3.
    pods = running(2)
    adapter = FakeAdapter({WAITING: {"p0": 22.0, "p1": 22.001}})
    assert (22.0 + 22.001) / 2 / 20 > 1.1
    status = HpaController(hpa(), created_at=0).reconcile(15, 2, pods, adapter)
    assert status.desired_replicas == 2
    assert status.current_metrics[0].current == 22.0


def test_adapter_truncates_sample_values_to_milli_units() -> None:
    # int64(1.005 * 1000.0) = int64(1004.9999999999999) = 1004, not 1005.
    assert adapter_milli(1.005) == 1004
    assert adapter_milli(0.5505) == 550
    assert adapter_milli(-0.0015) == -1
    # kv at 0.5505 on 2 pods against 500m: 550m / 500m = 1.1 exactly -> within tolerance, keep 2.
    pods = running(2)
    status = HpaController(hpa([pods_metric(KV, "500m")]), created_at=0).reconcile(
        15, 2, pods, uniform(KV, pods, 0.5505)
    )
    assert status.desired_replicas == 2
    assert status.current_metrics[0].current == 0.55


# --- multiple metrics and failures -----------------------------------------------------------------------


def test_two_metrics_the_larger_proposal_wins() -> None:
    # waiting 30 vs 20: ceil(1.5 * 2) = 3; kv 0.9 vs 0.5: 900m/500m = 1.8, ceil(3.6) = 4 -> 4.
    pods = running(2)
    adapter = FakeAdapter({WAITING: {"p0": 30, "p1": 30}, KV: {"p0": 0.9, "p1": 0.9}})
    status = HpaController(REFERENCE_HPA, created_at=0).reconcile(15, 2, pods, adapter)
    assert status.desired_replicas == 4
    assert status.reason == "pods metric kv_cache_usage_perc above target"
    assert [(m.name, m.current, m.target) for m in status.current_metrics] == [(WAITING, 30.0, 20.0), (KV, 0.9, 0.5)]


def test_a_failing_metric_does_not_block_scale_up() -> None:
    # kv has no samples at all; waiting 60 on 2 pods: ceil(3.0 * 2) = 6; the reference policies allow
    # max(2 + 4, ceil(2 * 2)) = 6.
    pods = running(2)
    adapter = FakeAdapter({WAITING: {"p0": 60, "p1": 60}})
    status = HpaController(REFERENCE_HPA, created_at=0).reconcile(15, 2, pods, adapter)
    assert status.desired_replicas == 6
    assert condition(status, "ScalingActive") == ("True", "ValidMetricFound")
    assert status.current_metrics[1].current is None
    assert status.error is not None and status.error.startswith("invalid metrics (1 invalid out of 2)")


def test_a_failing_metric_blocks_scale_down() -> None:
    # waiting 1 on 4 pods would give ceil(0.05 * 4) = 1 < 4, but kv failed: no scaling this sync.
    pods = running(4)
    adapter = FakeAdapter({WAITING: {p.name: 1 for p in pods}}, failing=frozenset({KV}))
    status = HpaController(REFERENCE_HPA, created_at=0).reconcile(15, 4, pods, adapter)
    assert status.desired_replicas == 4
    assert not status.rescaled
    assert status.current_metrics[0].current == 1.0
    found = status.condition("ScalingActive")
    assert found is not None and (found["status"], found["reason"]) == ("False", "FailedGetPodsMetric")
    assert "unable to get metric kv_cache_usage_perc" in found["message"]


def test_all_metrics_failing_means_no_scaling() -> None:
    pods = [*pending(2, 0)]  # only Pending pods: their samples are dropped -> no metrics left
    adapter = FakeAdapter({WAITING: {"p0": 50, "p1": 50}})
    status = HpaController(hpa(), created_at=0).reconcile(15, 2, pods, adapter)
    assert (status.desired_replicas, status.rescaled) == (2, False)
    found = status.condition("ScalingActive")
    assert found is not None and found["reason"] == "FailedGetPodsMetric"
    assert "did not receive metrics for targeted pods" in found["message"]


def test_resource_metrics_are_reported_as_not_modelled() -> None:
    cpu = {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}}}
    pods = running(2)
    status = HpaController(hpa([cpu]), created_at=0).reconcile(15, 2, pods, FakeAdapter())
    found = status.condition("ScalingActive")
    assert found is not None and (found["status"], found["reason"]) == ("False", "InvalidMetricSourceType")
    assert "does not model Resource metrics" in found["message"]
    assert (status.current_metrics[0].name, status.current_metrics[0].target) == ("cpu", 60.0)
    assert status.current_metrics[0].current is None
    assert status.desired_replicas == 2
    # With a working Pods metric next to it, scale-up still happens: ceil(2.0 * 2) = 4.
    status = HpaController(hpa([cpu, pods_metric(WAITING, "20")]), created_at=0).reconcile(
        15, 2, pods, uniform(WAITING, pods, 40)
    )
    assert status.desired_replicas == 4


def test_object_and_external_metrics() -> None:
    pods = [*running(3), *pending(1, 3)]
    # Object Value: 250 / 100 = 2.5 x 3 Running-and-Ready pods = ceil(7.5) = 8 (legacy cap max(2 x 4, 4) = 8).
    obj = {
        "type": "Object",
        "object": {
            "metric": {"name": "queue"},
            "describedObject": {"apiVersion": "v1", "kind": "Service", "name": "vllm"},
            "target": {"type": "Value", "value": "100"},
        },
    }
    status = HpaController(hpa([obj]), created_at=0).reconcile(15, 4, pods, FakeAdapter(objects={"queue": 250}))
    assert (status.desired_replicas, status.reason) == (8, "Service metric queue above target")
    assert status.current_metrics[0].current == 250.0
    # External AverageValue: 90 against 20 per pod with 4 status replicas: ratio 90 / 80 = 1.125 ->
    # ceil(90 / 20) = 5; the status reports ceil(90000m / 4) = 22500m.
    ext = {
        "type": "External",
        "external": {"metric": {"name": "backlog"}, "target": {"type": "AverageValue", "averageValue": "20"}},
    }
    status = HpaController(hpa([ext]), created_at=0).reconcile(15, 4, pods, FakeAdapter(external={"backlog": [40, 50]}))
    assert status.desired_replicas == 5
    assert status.current_metrics[0].current == 22.5
    assert status.reason == "external metric backlog(nil) above target"
    # Missing external metric: FailedGetExternalMetric, no scaling.
    status = HpaController(hpa([ext]), created_at=0).reconcile(15, 4, pods, FakeAdapter())
    assert (status.desired_replicas, condition(status, "ScalingActive")) == (4, ("False", "FailedGetExternalMetric"))


# --- legacy path (no spec.behavior) ---------------------------------------------------------------------


@pytest.mark.parametrize("created_at", [0.0, EPOCH_LIKE])
def test_legacy_initial_recommendation_holds_scale_down_for_five_minutes(created_at: float) -> None:
    # First sync at t=15 records 4 (the size at creation). Load is low (desired 1) from then on; the 4 from
    # t=15 leaves the 300 s window at t=315, the first sync where the maximum is 1. The same holds on an
    # epoch-sized clock with a fractional phase (float noise must not move the window edge).
    cluster = Cluster(hpa(), replicas=4, created_at=created_at)
    sizes = [cluster.sync({WAITING: 1}) for _ in range(21)]
    assert [s.desired_replicas for s in sizes] == [4] * 20 + [1]
    assert sizes[-1].last_scale_time == created_at + 315
    assert condition(sizes[-1], "AbleToScale") == ("True", "SucceededRescale")


def test_legacy_scale_down_is_stabilized_to_the_highest_recent_recommendation() -> None:
    cluster = Cluster(hpa(), replicas=4)
    first = cluster.sync({WAITING: 1})  # t=15: recommendations {4 (initial), 1} -> 4
    assert first.desired_replicas == 4
    assert condition(first, "AbleToScale") == ("True", "ScaleDownStabilized")
    for _ in range(6):  # t=30..105
        cluster.sync({WAITING: 1})
    spike = cluster.sync({WAITING: 25})  # t=120: ratio 1.25, ceil(5.0) = 5
    assert spike.desired_replicas == 5
    desired = {}
    for _ in range(20):  # t=135..420: low load again
        status = cluster.sync({WAITING: 1})
        desired[cluster.controller.next_sync_at - 15] = status.desired_replicas
    # The 5 recommended at t=120 holds until it is a full window old at t=420.
    assert {d for t, d in desired.items() if t < 420} == {5}
    assert desired[420] == 1


def test_legacy_scale_up_is_capped_at_twice_current_or_four() -> None:
    cluster = Cluster(hpa(max_replicas=10), replicas=1)
    steps = []
    for _ in range(4):
        status = cluster.sync({WAITING: 400})  # ratio 20: far above every cap
        steps.append((status.desired_replicas, condition(status, "ScalingLimited")))
    # max(2 x 1, 4) = 4; max(2 x 4, 4) = 8; min(16, maxReplicas 10) = 10; then stay at 10.
    assert steps == [
        (4, ("True", "ScaleUpLimit")),
        (8, ("True", "ScaleUpLimit")),
        (10, ("True", "TooManyReplicas")),
        (10, ("True", "TooManyReplicas")),
    ]


# --- behavior path -----------------------------------------------------------------------------------------


def test_reference_hpa_goes_1_5_10_under_heavy_load() -> None:
    controller = HpaController(REFERENCE_HPA, created_at=0)
    assert controller.next_sync_at == 15
    # t=15: 1 pod, 500 waiting: ratio 25 -> 25; policies: Percent ceil(1 x 2) = 2, Pods 1 + 4 = 5, Max -> 5.
    pods = running(1)
    first = controller.reconcile(15, 1, pods, FakeAdapter({WAITING: {"p0": 500}, KV: {"p0": 1.0}}))
    assert first.desired_replicas == 5
    assert condition(first, "ScalingLimited") == ("True", "ScaleUpLimit")
    # t=30: 4 new pods Pending (counted at 0): 500000m / 5 = 100000m, ratio 5, ceil(5 x 5) = 25. The +4
    # of t=15 is one full period old, so the period starts at 5: Percent 10, Pods 9, Max -> 10 = maxReplicas.
    pods = [*running(1), *pending(4, 1)]
    second = controller.reconcile(30, 5, pods, FakeAdapter({WAITING: {"p0": 500}, KV: {"p0": 1.0}}))
    assert second.desired_replicas == 10
    assert condition(second, "ScalingLimited") == ("True", "TooManyReplicas")
    assert second.last_scale_time == 30


def test_reference_hpa_scales_down_one_pod_per_period() -> None:
    cluster = Cluster(REFERENCE_HPA, replicas=5)
    sizes = [cluster.sync({WAITING: 0, KV: 0}).desired_replicas for _ in range(5)]
    # Both metrics propose ceil(0) = 0; Pods 1 per 15 s (no window) -> 4, 3, 2, 1, then minReplicas holds.
    assert sizes == [4, 3, 2, 1, 1]
    last = cluster.sync({WAITING: 0, KV: 0})
    assert condition(last, "ScalingLimited") == ("True", "TooFewReplicas")


@pytest.mark.parametrize("created_at", [0.0, EPOCH_LIKE])
def test_scale_up_events_count_within_a_sliding_period(created_at: float) -> None:
    behavior = {"scaleUp": {"policies": [{"type": "Pods", "value": 2, "periodSeconds": 60}]}}
    cluster = Cluster(hpa(behavior=behavior), replicas=2, created_at=created_at)
    sizes = [cluster.sync({WAITING: 400}).desired_replicas for _ in range(5)]  # t=15, 30, 45, 60, 75
    # t=15: 2 + 2 = 4. t=30..60: the +2 of t=15 is inside the 60 s period: start 2, limit 4.
    # t=75: it is a full period old: start 4, limit 6.
    assert sizes == [4, 4, 4, 4, 6]


@pytest.mark.parametrize(
    ("select_policy", "sizes"),
    [
        # From 10: Pods 10 - 1 = 9, Percent int(10 x 0.5) = 5. Min (smallest change) -> 9, Max -> 5.
        ("Min", [9, 8, 7]),
        ("Max", [5, 2, 1]),  # 5 -> int(2.5) = 2 -> int(1.0) = 1 (Pods would give 1 as well)
        ("Disabled", [10, 10, 10]),
    ],
)
def test_scale_down_select_policy(select_policy: str, sizes: list[int]) -> None:
    behavior = {
        "scaleDown": {
            "stabilizationWindowSeconds": 0,
            "selectPolicy": select_policy,
            "policies": [
                {"type": "Pods", "value": 1, "periodSeconds": 15},
                {"type": "Percent", "value": 50, "periodSeconds": 15},
            ],
        }
    }
    cluster = Cluster(hpa(behavior=behavior), replicas=10)
    statuses = [cluster.sync({WAITING: 0}) for _ in range(3)]
    assert [s.desired_replicas for s in statuses] == sizes
    if select_policy == "Disabled":
        assert condition(statuses[-1], "ScalingLimited") == ("True", "ScaleDownLimit")


def test_percent_rounding_ceil_up_truncate_down() -> None:
    up = {"scaleUp": {"policies": [{"type": "Percent", "value": 50, "periodSeconds": 15}]}}
    cluster = Cluster(hpa(behavior=up), replicas=3)
    assert cluster.sync({WAITING: 400}).desired_replicas == 5  # ceil(3 x 1.5) = ceil(4.5) = 5
    down = {
        "scaleDown": {
            "stabilizationWindowSeconds": 0,
            "policies": [{"type": "Percent", "value": 30, "periodSeconds": 15}],
        }
    }
    cluster = Cluster(hpa(behavior=down), replicas=5)
    assert cluster.sync({WAITING: 0}).desired_replicas == 3  # int(5 x 0.7) = int(3.5) = 3


def test_scale_up_disabled() -> None:
    cluster = Cluster(hpa(behavior={"scaleUp": {"selectPolicy": "Disabled"}}), replicas=2)
    status = cluster.sync({WAITING: 400})
    assert (status.desired_replicas, status.rescaled) == (2, False)
    assert condition(status, "ScalingLimited") == ("True", "ScaleUpLimit")


def test_scale_up_stabilization_window_uses_the_lowest_recent_recommendation() -> None:
    cluster = Cluster(hpa(behavior={"scaleUp": {"stabilizationWindowSeconds": 60}}), replicas=2)
    statuses = [cluster.sync({WAITING: 60}) for _ in range(5)]  # desired ceil(3 x 2) = 6 each time
    # The initial 2 (t=15) is in the window until t=75: min(6, 2) = 2 holds the size; at t=75 all recent
    # recommendations are 6: Pods 2 + 4 = 6 vs Percent 4, Max -> 6.
    assert [s.desired_replicas for s in statuses] == [2, 2, 2, 2, 6]
    assert condition(statuses[0], "AbleToScale") == ("True", "ScaleUpStabilized")


def test_scale_down_stabilization_window_uses_the_highest_recent_recommendation() -> None:
    cluster = Cluster(hpa(behavior={"scaleDown": {"stabilizationWindowSeconds": 60}}), replicas=4)
    statuses = [cluster.sync({WAITING: 1}) for _ in range(5)]
    assert [s.desired_replicas for s in statuses] == [4, 4, 4, 4, 1]  # the initial 4 leaves at t=75
    assert condition(statuses[0], "AbleToScale") == ("True", "ScaleDownStabilized")


def test_unset_scale_down_window_takes_the_controller_default() -> None:
    manifest = hpa(behavior={"scaleUp": {"stabilizationWindowSeconds": 0}})
    assert scale_down_stabilization_seconds(manifest) == 300
    cluster = Cluster(manifest, replicas=3)
    sizes = [cluster.sync({WAITING: 1}).desired_replicas for _ in range(21)]  # t=15..315
    assert sizes == [3] * 20 + [1]
    cluster = Cluster(manifest, replicas=3, downscale_stabilization=30)
    assert [cluster.sync({WAITING: 1}).desired_replicas for _ in range(3)] == [3, 3, 1]


def test_scale_down_stabilization_seconds_helper() -> None:
    assert scale_down_stabilization_seconds(REFERENCE_HPA) == 0
    assert scale_down_stabilization_seconds(hpa()) == 300
    assert scale_down_stabilization_seconds(hpa(behavior={"scaleDown": {"stabilizationWindowSeconds": 45}})) == 45


def test_clamping_to_min_and_max() -> None:
    cluster = Cluster(hpa(behavior=UNHINDERED, max_replicas=10), replicas=8)
    status = cluster.sync({WAITING: 80})  # ceil(4 x 8) = 32; rate limit max(8 + 4, 16) = 16; max 10
    assert status.desired_replicas == 10
    assert condition(status, "ScalingLimited") == ("True", "TooManyReplicas")
    cluster = Cluster(hpa(behavior=UNHINDERED, min_replicas=2), replicas=3)
    status = cluster.sync({WAITING: 1})  # ceil(0.05 x 3) = 1 < minReplicas 2
    assert status.desired_replicas == 2
    assert condition(status, "ScalingLimited") == ("True", "TooFewReplicas")


def test_current_replicas_outside_min_max_is_corrected_without_metrics() -> None:
    failing = FakeAdapter(failing=frozenset({WAITING}))
    above = HpaController(hpa(max_replicas=10), created_at=0).reconcile(15, 12, running(12), failing)
    assert (above.desired_replicas, above.reason) == (10, "Current number of replicas above Spec.MaxReplicas")
    assert above.current_metrics == ()
    below = HpaController(hpa(min_replicas=2), created_at=0).reconcile(15, 1, running(1), failing)
    assert (below.desired_replicas, below.reason) == (2, "Current number of replicas below Spec.MinReplicas")


def test_zero_replicas_disables_scaling() -> None:
    status = HpaController(hpa(), created_at=0).reconcile(15, 0, [], FakeAdapter())
    assert (status.desired_replicas, status.rescaled) == (0, False)
    assert condition(status, "ScalingActive") == ("False", "ScalingDisabled")


def test_last_scale_time_is_set_only_on_rescale() -> None:
    cluster = Cluster(hpa(behavior=UNHINDERED), replicas=2)
    quiet = cluster.sync({WAITING: 20})  # t=15: ratio 1, no change
    assert quiet.last_scale_time is None
    assert cluster.sync({WAITING: 40}).last_scale_time == 30  # ceil(2 x 2) = 4
    assert cluster.sync({WAITING: 20}).last_scale_time == 30  # t=45: no change
    assert cluster.sync({WAITING: 40}).last_scale_time == 60  # t=60: 4 -> 8


# --- tolerance ---------------------------------------------------------------------------------------------


def test_configurable_tolerance_per_direction() -> None:
    behavior = {
        "scaleUp": {"stabilizationWindowSeconds": 0, "tolerance": "0.05"},
        "scaleDown": {"stabilizationWindowSeconds": 0, "tolerance": "500m"},
    }
    up = Cluster(hpa(behavior=behavior, max_replicas=20), replicas=10)
    assert up.sync({WAITING: 21.6}).desired_replicas == 11  # ratio 1.08 > 1.05: ceil(10.8) = 11
    down = Cluster(hpa(behavior=behavior), replicas=10)
    assert down.sync({WAITING: 12}).desired_replicas == 10  # ratio 0.6 >= 1 - 0.5: within tolerance
    default = Cluster(hpa(behavior=UNHINDERED, max_replicas=20), replicas=10)
    assert default.sync({WAITING: 21.6}).desired_replicas == 10  # 1.08 is within the default 10 %


def test_controller_tolerance_flag() -> None:
    cluster = Cluster(hpa(behavior=UNHINDERED, max_replicas=20), replicas=10, tolerance=0.2)
    assert cluster.sync({WAITING: 23.8}).desired_replicas == 10  # ratio 1.19 <= 1.2
    assert cluster.sync({WAITING: 24.2}).desired_replicas == 13  # ratio 1.21: ceil(12.1) = 13


# --- manifest validation ------------------------------------------------------------------------------------


def test_reference_and_shipped_manifests_are_valid() -> None:
    assert validate_hpa_manifest(REFERENCE_HPA) == []
    shipped = sorted((REPO / "manifests").glob("hpa-*.yaml"))
    for path in shipped:
        assert validate_hpa_manifest(yaml.safe_load(path.read_text())) == [], path


def test_validation_names_the_field_path() -> None:
    manifest = copy.deepcopy(REFERENCE_HPA)
    manifest["apiVersion"] = "autoscaling/v1"
    del manifest["spec"]["metrics"][1]["pods"]["target"]["averageValue"]
    manifest["spec"]["minReplicas"] = 12
    manifest["spec"]["behavior"]["scaleDown"]["policies"][0]["periodSeconds"] = 0
    manifest["spec"]["behavior"]["scaleUp"]["selectPolicy"] = "Fastest"
    manifest["spec"]["metrics"][0]["pods"]["target"]["averageValue"] = "20 requests"
    problems = validate_hpa_manifest(manifest)
    assert "apiVersion must be autoscaling/v2, got 'autoscaling/v1'" in problems
    assert "spec.metrics[1].pods.target.averageValue is required for a Pods metric" in problems
    assert "spec.minReplicas (12) must be less than or equal to spec.maxReplicas (10)" in problems
    assert any(p.startswith("spec.behavior.scaleDown.policies[0].periodSeconds") for p in problems)
    assert any(p.startswith("spec.behavior.scaleUp.selectPolicy") for p in problems)
    assert any(p.startswith("spec.metrics[0].pods.target.averageValue: invalid quantity") for p in problems)
    assert len(problems) == 6
    with pytest.raises(ValueError, match=r"spec\.metrics\[1\]\.pods\.target\.averageValue is required"):
        HpaController(manifest, created_at=0)


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda m: m.pop("kind"), "kind must be HorizontalPodAutoscaler, got None"),
        (
            lambda m: m["spec"].pop("scaleTargetRef"),
            "spec.scaleTargetRef.kind and spec.scaleTargetRef.name are required",
        ),
        (
            lambda m: m["spec"].pop("maxReplicas"),
            "spec.maxReplicas is required and must be an integer of at least 1, got None",
        ),
        (
            lambda m: m["spec"]["behavior"]["scaleUp"].update(policies=[]),
            "spec.behavior.scaleUp.policies must specify at least one policy",
        ),
        (
            lambda m: m["spec"]["metrics"][0]["pods"]["target"].update(type="Value"),
            "spec.metrics[0].pods.target.type must be AverageValue for a Pods metric, got 'Value'",
        ),
        (
            lambda m: m["spec"]["metrics"][0].update(type="Pod"),
            "spec.metrics[0].type must be one of Pods, Object, External, Resource, ContainerResource, got 'Pod'",
        ),
        (
            lambda m: m["spec"]["behavior"]["scaleDown"].update(stabilizationWindowSeconds=4000),
            "spec.behavior.scaleDown.stabilizationWindowSeconds must be an integer from 0 to 3600, got 4000",
        ),
        (
            lambda m: m["spec"]["metrics"][1]["pods"]["metric"].pop("name"),
            "spec.metrics[1].pods.metric.name is required",
        ),
        (
            lambda m: m["spec"]["metrics"].append(
                {
                    "type": "External",
                    "external": {"metric": {"name": "q"}, "target": {"type": "Value", "value": 1, "averageValue": 1}},
                }
            ),
            "spec.metrics[2].external.target must set exactly one of value and averageValue",
        ),
        (
            lambda m: m["spec"]["behavior"]["scaleDown"].update(tolerance="-0.1"),
            "spec.behavior.scaleDown.tolerance must not be negative, got '-0.1'",
        ),
    ],
)
def test_validation_problems(mutate: Any, expected: str) -> None:
    manifest = copy.deepcopy(REFERENCE_HPA)
    mutate(manifest)
    assert expected in validate_hpa_manifest(manifest)


# --- invariants over arbitrary load sequences ---------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(min_value=0, max_value=2000, allow_nan=False), min_size=1, max_size=30))
def test_reference_hpa_respects_bounds_and_rate_limits(loads: list[float]) -> None:
    cluster = Cluster(REFERENCE_HPA, replicas=1)
    last_rescale = None
    for load in loads:
        before, now = cluster.replicas, cluster.controller.next_sync_at
        status = cluster.sync({WAITING: load, KV: 0.1})
        after = status.desired_replicas
        assert 1 <= after <= 10
        assert after <= max(before + 4, 2 * before)  # Max of Pods 4 and Percent 100 per 15 s
        assert after >= before - 1  # Pods 1 per 15 s, selectPolicy Min
        assert status.rescaled == (after != before)
        last_rescale = now if status.rescaled else last_rescale
        assert status.last_scale_time == last_rescale


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=1, max_value=50), st.integers(min_value=0, max_value=200_000))
def test_without_pending_or_missing_pods_the_result_is_the_plain_formula(replicas: int, milli: int) -> None:
    pods = running(replicas)
    adapter = FakeAdapter({WAITING: {p.name: milli / 1000 for p in pods}})
    status = HpaController(hpa(behavior=UNHINDERED, max_replicas=1000), created_at=0).reconcile(
        15, replicas, pods, adapter
    )
    ratio = adapter_milli(milli / 1000) / 20000
    expected = replicas if 0.9 <= ratio <= 1.1 else max(1, math.ceil(ratio * replicas))
    expected = min(expected, max(replicas + 4, 2 * replicas))  # default scale-up policies
    assert status.desired_replicas == expected
