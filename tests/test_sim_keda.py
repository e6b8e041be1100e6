"""The twin's KEDA (backends/sim/keda.py) against worked timelines checked by hand.

Every expected time below is worked out in the comment next to it from the rules in docs/keda.md:
the scale loop checks at creation and every pollingInterval; active = value > activationThreshold;
lastActiveTime is stored in whole seconds; scale to zero (or idle) once lastActiveTime +
cooldownPeriod is strictly before the poll (never active: creation + initialCooldownPeriod).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest

from hpa_experiments.backends.base import InstantSample
from hpa_experiments.backends.sim.hpa import HpaController, MetricsUnavailable, PodView
from hpa_experiments.backends.sim.keda import KedaOperator, TriggerError, evaluate_trigger
from hpa_experiments.backends.sim.promql_engine import PromQLError
from hpa_experiments.scaledobject import keda_hpa_manifest, parse_scaled_object

Value = Callable[[float], "float | list[float] | Exception"]


class FakeEngine:
    """PromQL engine stand-in: `values[query](t)` is the value (a list: several series; an exception: failure)."""

    def __init__(self, values: dict[str, Value]):
        self.values = values
        self.calls: list[tuple[str, float]] = []

    def instant(self, query: str, t: float) -> list[InstantSample]:
        self.calls.append((query, t))
        value = self.values[query](t)
        if isinstance(value, Exception):
            raise value
        values = value if isinstance(value, list) else [value]
        return [InstantSample({"i": str(i)}, v) for i, v in enumerate(values)]


def scaled_object(**spec: Any) -> dict[str, Any]:
    triggers = spec.pop("triggers", None) or [
        {
            "type": "prometheus",
            "metadata": {
                "serverAddress": "http://p:9090",
                "query": "q",
                "threshold": "5",
                "activationThreshold": spec.pop("activation", "0"),
            },
        }
    ]
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": "so", "namespace": "ns"},
        "spec": {"scaleTargetRef": {"name": "vllm"}, "triggers": triggers, **spec},
    }


def operator(value: Value, created_at: float = 0.5, **spec: Any) -> tuple[KedaOperator, FakeEngine]:
    engine = FakeEngine({"q": value})
    return KedaOperator(parse_scaled_object(scaled_object(**spec)), engine, created_at=created_at), engine  # type: ignore[arg-type]


def run_polls(op: KedaOperator, until: float, replicas: int) -> list[tuple[float, int]]:
    """Poll at every next_poll_at up to `until`, applying KEDA's own scaling; (time, new replicas) of each scale."""
    scales = []
    while op.next_poll_at <= until:
        t = op.next_poll_at
        target = op.poll(t, replicas)
        if target is not None:
            replicas = target
            scales.append((t, target))
    return scales


def test_polls_at_creation_then_every_polling_interval() -> None:
    op, engine = operator(lambda t: 0.0, created_at=0.5, pollingInterval=30, minReplicaCount=1)
    run_polls(op, 100, replicas=1)
    assert [t for _, t in engine.calls] == [0.5, 30.5, 60.5, 90.5]  # default 30 s would be the same; set here
    op, engine = operator(lambda t: 0.0, created_at=0.5, minReplicaCount=1)
    run_polls(op, 100, replicas=1)
    assert [t for _, t in engine.calls] == [0.5, 30.5, 60.5, 90.5]  # pollingInterval defaults to 30 s


def test_activation_from_zero_at_the_first_poll_after_the_value_exceeds_the_activation_threshold() -> None:
    # Load appears at t=100.  Polls at 90.5 (value 0: inactive) and 120.5 (value 3 > 0: active) -> KEDA
    # scales 0 -> 1 at 120.5, 20.5 s after the load (the wait is up to one pollingInterval).
    op, _ = operator(lambda t: 3.0 if t >= 100 else 0.0, initialCooldownPeriod=10_000)
    assert run_polls(op, 200, replicas=0) == [(120.5, 1)]
    assert op.conditions["Active"].status == "True"
    # activationThreshold 5: a value of 3 never activates; 6 from t=200 activates at the poll at 210.5.
    op, _ = operator(lambda t: 6.0 if t >= 200 else 3.0, activation="5", initialCooldownPeriod=10_000)
    assert run_polls(op, 300, replicas=0) == [(210.5, 1)]
    # equal to the threshold is not above it: never active
    op, _ = operator(lambda t: 5.0, activation="5", initialCooldownPeriod=10_000)
    assert run_polls(op, 300, replicas=0) == []


def test_scale_from_zero_goes_to_min_replica_count_when_it_is_above_zero() -> None:
    # minReplicaCount 2 with idleReplicaCount 0: idle at 0, and active -> straight to 2 (not 1)
    op, _ = operator(lambda t: 1.0 if t >= 50 else 0.0, minReplicaCount=2, idleReplicaCount=0)
    assert run_polls(op, 70, replicas=0) == [(60.5, 2)]


def test_cooldown_counts_from_the_last_active_poll_in_whole_seconds() -> None:
    # Active until t=100: the last active poll is 90.5 -> lastActiveTime 90 (whole seconds).  cooldownPeriod
    # 300: zero at the first poll with 90 + 300 < t: 360.5 no, 390.5 yes -> 300.5 s after the last active poll.
    op, _ = operator(lambda t: 3.0 if t < 100 else 0.0, cooldownPeriod=300)
    assert run_polls(op, 500, replicas=2) == [(390.5, 0)]
    assert op.last_active_time == 90.0
    # Polls on whole seconds (created at 0): lastActiveTime 90, and 90 + 300 < 390 is false -> zero at 420.
    op, _ = operator(lambda t: 3.0 if t < 100 else 0.0, created_at=0.0, cooldownPeriod=300)
    assert run_polls(op, 500, replicas=2) == [(420.0, 0)]
    # cooldownPeriod defaults to 300 s
    op, _ = operator(lambda t: 3.0 if t < 100 else 0.0)
    assert run_polls(op, 500, replicas=2) == [(390.5, 0)]


def test_never_active_scales_to_zero_after_the_initial_cooldown() -> None:
    # initialCooldownPeriod 0 (default): creation 0.5 + 0 < 0.5 is false at the first poll; 30.5 -> zero.
    op, _ = operator(lambda t: 0.0)
    assert run_polls(op, 100, replicas=1) == [(30.5, 0)]
    # initialCooldownPeriod 60: 60.5 < 60.5 false; 90.5 -> zero.
    op, _ = operator(lambda t: 0.0, initialCooldownPeriod=60)
    assert run_polls(op, 100, replicas=1) == [(90.5, 0)]


def test_above_zero_and_within_min_max_the_hpa_decides() -> None:
    # minReplicaCount 1: KEDA never scales to zero; inactive or active, 3 replicas are the HPA's business
    op, _ = operator(lambda t: 0.0 if t < 200 else 9.0, minReplicaCount=1)
    assert run_polls(op, 400, replicas=3) == []
    # a target at 0 (scaled outside KEDA) below minReplicaCount 1 while inactive is brought back to 1
    op, _ = operator(lambda t: 0.0, minReplicaCount=1)
    assert run_polls(op, 10, replicas=0) == [(0.5, 1)]


def test_idle_replica_count_and_cooldown_with_min_above_zero() -> None:
    # minReplicaCount 2, idleReplicaCount 0: inactive from t=0 (never active), initial cooldown 0 -> 0 at 30.5
    op, _ = operator(lambda t: 0.0, minReplicaCount=2, idleReplicaCount=0)
    assert run_polls(op, 40, replicas=2) == [(30.5, 0)]


def test_prometheus_scaler_null_values_and_several_series() -> None:
    trigger = parse_scaled_object(scaled_object()).triggers[0]
    assert evaluate_trigger(FakeEngine({"q": lambda t: []}), trigger, 0) == 0.0  # type: ignore[arg-type]
    assert evaluate_trigger(FakeEngine({"q": lambda t: math.inf}), trigger, 0) == 0.0  # type: ignore[arg-type]
    with pytest.raises(TriggerError, match="multiple elements"):
        evaluate_trigger(FakeEngine({"q": lambda t: [1.0, 2.0]}), trigger, 0)  # type: ignore[arg-type]
    with pytest.raises(TriggerError, match="query failed"):
        evaluate_trigger(FakeEngine({"q": lambda t: PromQLError("down")}), trigger, 0)  # type: ignore[arg-type]
    strict = parse_scaled_object(
        scaled_object(
            triggers=[
                {
                    "type": "prometheus",
                    "metadata": {"serverAddress": "s", "query": "q", "threshold": "5", "ignoreNullValues": "false"},
                }
            ]
        )
    ).triggers[0]
    with pytest.raises(TriggerError, match="empty"):
        evaluate_trigger(FakeEngine({"q": lambda t: []}), strict, 0)  # type: ignore[arg-type]


def test_errors_never_scale_to_zero() -> None:
    # A failing query without fallback: Ready False, no scaling even long after any cooldown.
    op, _ = operator(lambda t: PromQLError("prometheus down"), cooldownPeriod=0)
    assert run_polls(op, 400, replicas=2) == []
    assert op.conditions["Ready"].status == "False"
    # With a fallback (replicas 3): no scale to zero either (the HPA is sent to 3 instead).
    op, _ = operator(lambda t: PromQLError("down"), cooldownPeriod=0, fallback={"failureThreshold": 2, "replicas": 3})
    assert run_polls(op, 400, replicas=2) == []


def test_fallback_after_more_than_failure_threshold_failures() -> None:
    failing = {"on": True}
    op, _ = operator(
        lambda t: PromQLError("down") if failing["on"] else 7.0, fallback={"failureThreshold": 2, "replicas": 3}
    )
    # failures 1 and 2 are passed on to the HPA; the 3rd (> 2) answers 3 x threshold 5 = 15
    for t in (15.0, 30.0):
        with pytest.raises(MetricsUnavailable):
            op.external_value("s0-prometheus", t)
    assert op.conditions["Fallback"].status == "False"
    assert op.external_value("s0-prometheus", 45.0) == 15.0
    assert op.conditions["Fallback"].status == "True"
    failing["on"] = False  # one success resets the count and ends the fallback
    assert op.external_value("s0-prometheus", 60.0) == 7.0
    assert op.conditions["Fallback"].status == "False" and op.failures["s0-prometheus"] == 0


def test_kedas_hpa_scales_on_the_external_metric_with_average_value_threshold() -> None:
    # KEDA's HPA: External s0-prometheus, target AverageValue 5, minReplicas max(0, 1) = 1, no behavior.
    so = parse_scaled_object(scaled_object(maxReplicaCount=10))
    manifest = keda_hpa_manifest(so)
    assert manifest["metadata"]["name"] == "keda-hpa-so" and manifest["spec"]["minReplicas"] == 1
    metric = manifest["spec"]["metrics"][0]["external"]
    selector = {"matchLabels": {"scaledobject.keda.sh/name": "so"}}
    assert metric["metric"] == {"name": "s0-prometheus", "selector": selector}
    assert metric["target"] == {"type": "AverageValue", "averageValue": "5000m"}
    engine = FakeEngine({"q": lambda t: 37.0})
    op = KedaOperator(so, engine, created_at=0.0)  # type: ignore[arg-type]
    hpa = HpaController(manifest, created_at=0.0)
    pods = [PodView("vllm-0", "Running", True), PodView("vllm-1", "Running", True)]
    status = hpa.reconcile(15.0, 2, pods, op.metrics_server(15.0))
    # sum 37 over 2 replicas = 18.5 per pod (status shows 18.5); ratio 37 / (5 x 2) = 3.7 -> ceil(37 / 5) = 8,
    # limited without `behavior` by the controller's legacy rule max(2 x current, 4) = 4.
    assert status.current_metrics[0].current == 18.5 and status.current_metrics[0].target == 5.0
    assert status.desired_replicas == 4
    assert engine.calls == [("q", 15.0)]  # evaluated when the HPA asks, not from the last poll
    # With advanced.horizontalPodAutoscalerConfig.behavior (up 4 pods per 15 s only): 2 + 4 = 6.
    up = {"stabilizationWindowSeconds": 0, "policies": [{"type": "Pods", "value": 4, "periodSeconds": 15}]}
    behavior = {"scaleUp": up}
    so = parse_scaled_object(scaled_object(advanced={"horizontalPodAutoscalerConfig": {"behavior": behavior}}))
    hpa = HpaController(keda_hpa_manifest(so), created_at=0.0)
    status = hpa.reconcile(15.0, 2, pods, KedaOperator(so, engine, created_at=0.0).metrics_server(15.0))  # type: ignore[arg-type]
    assert status.desired_replicas == 6


def test_use_cached_metrics_answers_the_hpa_with_the_last_poll() -> None:
    so = parse_scaled_object(
        scaled_object(
            triggers=[
                {
                    "type": "prometheus",
                    "useCachedMetrics": True,
                    "metadata": {"serverAddress": "s", "query": "q", "threshold": "5"},
                }
            ]
        )
    )
    op = KedaOperator(so, FakeEngine({"q": lambda t: t}), created_at=0.0)  # type: ignore[arg-type]
    op.poll(0.0, 1)
    op.poll(30.0, 1)
    assert op.external_value("s0-prometheus", 44.0) == 30.0  # the 30 s poll's value, not the value at 44 s
