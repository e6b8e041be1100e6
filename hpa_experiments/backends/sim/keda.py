"""KEDA for one ScaledObject on the twin's virtual clock: the operator's scale loop and the
metrics server that answers the HPA KEDA created.

What is modelled (KEDA 2.x; the reasoning and worked timelines are in docs/keda.md):

- Scale loop (`KedaOperator.poll`): at the ScaledObject's creation and then every
  `pollingInterval`, every trigger's PromQL is evaluated by the twin's engine.  A trigger is
  active when its value > `activationThreshold`; the ScaledObject is active when any trigger is.
  Active at 0 replicas (or below `minReplicaCount` with `idleReplicaCount` set): KEDA itself
  scales to max(minReplicaCount, 1).  Active otherwise: `lastActiveTime` = now (kept in whole
  seconds, as the API server stores a metav1.Time).  Inactive with replicas above 0 (min 0) or
  above `idleReplicaCount`: once `lastActiveTime + cooldownPeriod` is before now (or, never
  active, `creation + initialCooldownPeriod`), KEDA scales to idleReplicaCount (or
  minReplicaCount).  Everything between 1 and maxReplicaCount is the HPA's.
- Metrics server (`KedaMetricsServer`): the HPA asks for External metric `s<i>-prometheus` at
  every sync; the trigger's query is evaluated then (or the last poll's value with
  `useCachedMetrics`).  Failures are counted per metric; after more than
  `fallback.failureThreshold` consecutive failures the answer is fallback.replicas x threshold,
  which an AverageValue target turns into fallback.replicas.
- Prometheus scaler: an empty result (or ±Inf/NaN) is 0 with `ignoreNullValues` (default), an
  error without; more than one series is an error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from hpa_experiments.backends.sim.hpa import MetricsUnavailable
from hpa_experiments.backends.sim.promql_engine import PromQLEngine, PromQLError
from hpa_experiments.scaledobject import PrometheusTrigger, ScaledObjectSpec

CONDITION_TYPES = ("Ready", "Active", "Fallback", "Paused")
READY_MESSAGE = "ScaledObject is defined correctly and is ready for scaling"


class TriggerError(Exception):
    """The scaler could not produce a value (query failed, several series, or null without ignoreNullValues)."""


def evaluate_trigger(engine: PromQLEngine, trigger: PrometheusTrigger, t: float) -> float:
    """The Prometheus scaler's value of `trigger` at `t`."""
    try:
        samples = engine.instant(trigger.query, t)
    except PromQLError as exc:
        raise TriggerError(f"prometheus query failed: {exc}") from exc
    if len(samples) > 1:
        raise TriggerError(f"prometheus query {trigger.query} returned multiple elements")
    value = samples[0].value if samples else math.nan
    if math.isfinite(value):
        return value
    if trigger.ignore_null_values:
        return 0.0
    raise TriggerError("prometheus metrics 'prometheus' target may be lost, the result is empty")


@dataclass
class Condition:
    status: str  # "True" | "False" | "Unknown"
    reason: str
    message: str


class KedaOperator:
    """The ScaledObject's state and KEDA's scale loop; call `poll` at `next_poll_at`."""

    def __init__(self, spec: ScaledObjectSpec, engine: PromQLEngine, *, created_at: float):
        self.spec = spec
        self.engine = engine
        self.created_at = created_at
        self.next_poll_at = created_at  # the scale loop checks at once, then every pollingInterval
        self.last_active_time: float | None = None
        self.cached: dict[str, float] = {}  # metric name -> value of the last poll
        self.failures: dict[str, int] = {}  # metric name -> consecutive failures (metrics server)
        self.conditions: dict[str, Condition] = {
            "Ready": Condition("True", "ScaledObjectReady", READY_MESSAGE),
            "Active": Condition("Unknown", "", ""),
            "Fallback": Condition("False", "NoFallbackFound", "No fallbacks are active on this scaled object"),
            "Paused": Condition("False", "ScaledObjectUnpaused", "pause annotation removed for ScaledObject"),
        }

    # -- scale loop ------------------------------------------------------------------

    def poll(self, t: float, replicas: int) -> int | None:
        """One check of the scale loop at `t` with the target at `replicas`; returns the replica count
        KEDA sets itself, or None (the HPA is in charge)."""
        spec = self.spec
        self.next_poll_at = t + spec.polling_interval
        active, error = False, False
        for trigger in spec.triggers:
            try:
                value = evaluate_trigger(self.engine, trigger, t)
            except TriggerError:
                error = True
                continue
            self.cached[trigger.metric_name] = value
            active = active or value > trigger.activation_threshold
        target = self._decide(t, replicas, active, error)
        status = "True" if active else "False"
        if self.conditions["Active"].status != status:
            self.conditions["Active"] = (
                Condition("True", "ScalerActive", "Scaling is performed because triggers are active")
                if active
                else Condition("False", "ScalerNotActive", "Scaling is not performed because triggers are not active")
            )
        return target if target is not None and target != replicas else None

    def _decide(self, t: float, replicas: int, active: bool, error: bool) -> int | None:
        """RequestScale of KEDA's scale executor (see the module docstring)."""
        spec = self.spec
        idle, minimum = spec.idle_replicas, spec.min_replicas
        if active:
            if (idle is not None and replicas < minimum) or replicas == 0:
                self._set_active_time(t)
                return minimum if minimum > 0 else 1
            if error:  # some triggers active, some failing: no lastActiveTime update
                self.conditions["Ready"] = Condition("Unknown", "PartialTriggerError", "Some triggers failed")
                return None
            self._set_active_time(t)
            self._ready()
            return None
        if error and spec.fallback is not None and spec.fallback.replicas != 0:
            return None  # the HPA will go to fallback.replicas; never scale to zero on errors
        if error:
            self.conditions["Ready"] = Condition("False", "KEDAScalerFailed", "Triggers failed and no fallback")
            return None
        self._ready()
        if (idle is not None and replicas > idle) or (replicas > 0 and minimum == 0):
            if self._cooled_down(t):
                return idle if idle is not None else minimum
            return None
        if replicas < minimum and idle is None:
            return minimum
        return None

    def _cooled_down(self, t: float) -> bool:
        if self.last_active_time is None:
            return self.created_at + self.spec.initial_cooldown_period < t
        return self.last_active_time + self.spec.cooldown_period < t

    def _set_active_time(self, t: float) -> None:
        self.last_active_time = float(math.floor(t))  # metav1.Time: whole seconds

    def _ready(self) -> None:
        if self.conditions["Ready"].status != "True":
            self.conditions["Ready"] = Condition("True", "ScaledObjectReady", READY_MESSAGE)

    # -- metrics server --------------------------------------------------------------

    def metrics_server(self, t: float) -> KedaMetricsServer:
        return KedaMetricsServer(self, t)

    def external_value(self, metric_name: str, t: float) -> float:
        """What KEDA's metrics server answers for `metric_name` at `t`; raises MetricsUnavailable."""
        trigger = self.spec.trigger_for_metric(metric_name)
        if trigger is None:
            raise MetricsUnavailable(f"no trigger of ScaledObject {self.spec.name} serves {metric_name}")
        try:
            if trigger.use_cached_metrics and metric_name in self.cached:
                value = self.cached[metric_name]
            else:
                value = evaluate_trigger(self.engine, trigger, t)
        except TriggerError as exc:
            failures = self.failures.get(metric_name, 0) + 1
            self.failures[metric_name] = failures
            fallback = self.spec.fallback
            self._set_fallback()
            if fallback is not None and failures > fallback.failure_threshold:
                return fallback.replicas * trigger.threshold_milli / 1000
            raise MetricsUnavailable(str(exc)) from exc
        self.failures[metric_name] = 0
        self._set_fallback()
        return value

    def _set_fallback(self) -> None:
        fallback = self.spec.fallback
        on = fallback is not None and any(n > fallback.failure_threshold for n in self.failures.values())
        status = "True" if on else "False"
        if self.conditions["Fallback"].status != status:
            self.conditions["Fallback"] = (
                Condition("True", "FallbackExists", "At least one trigger is falling back on this scaled object")
                if on
                else Condition("False", "NoFallbackFound", "No fallbacks are active on this scaled object")
            )

    def condition_rows(self) -> tuple[dict[str, str], ...]:
        return tuple(
            {"type": kind, "status": c.status, "reason": c.reason, "message": c.message}
            for kind, c in self.conditions.items()
        )

    def describe(self) -> dict[str, Any]:
        spec = self.spec
        return {
            "scaled_object": spec.name,
            "hpa": spec.hpa_name,
            "polling_interval_s": spec.polling_interval,
            "cooldown_period_s": spec.cooldown_period,
            "initial_cooldown_period_s": spec.initial_cooldown_period,
            "min_replica_count": spec.min_replicas,
            "max_replica_count": spec.max_replicas,
            "idle_replica_count": spec.idle_replicas,
            "first_poll_unix": self.created_at,
            "fallback": None
            if spec.fallback is None
            else {"failure_threshold": spec.fallback.failure_threshold, "replicas": spec.fallback.replicas},
            "triggers": [
                {
                    "metric": t.metric_name,
                    "name": t.label,
                    "query": t.query,
                    "threshold": t.threshold,
                    "activation_threshold": t.activation_threshold,
                    "metric_type": t.metric_type,
                }
                for t in spec.triggers
            ],
        }


class KedaMetricsServer:
    """KEDA's external metrics API as the twin's HPA sees it at one sync (a hpa.MetricsSource)."""

    def __init__(self, operator: KedaOperator, now: float):
        self.operator, self.now = operator, now

    def pods_metric(self, metric_name: str, pods: list[str]) -> dict[str, float]:
        return {}

    def object_metric(self, metric_name: str, described_object: dict[str, Any]) -> float | None:
        return None

    def external_metric(self, metric_name: str, selector: dict[str, Any] | None) -> list[float] | None:
        return [self.operator.external_value(metric_name, self.now)]
