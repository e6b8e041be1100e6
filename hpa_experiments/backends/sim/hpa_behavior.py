"""Replica normalization of the HPA controller: stabilization windows and scale rate limits.

A rendition of `normalizeDesiredReplicas` (legacy path, `spec.behavior` absent) and
`normalizeDesiredReplicasWithBehaviors` (behavior path) from kubernetes
pkg/controller/podautoscaler/horizontal.go, with the API defaults of
pkg/apis/autoscaling/v2/defaults.go. Facts: /work/shared/reference/sim-model.md §1.4-§1.5.

Timing convention. The real controller compares wall-clock timestamps (`After(cutoff)` /
`Before(cutoff)`). Its work queue re-adds a key one sync period after the previous reconcile
*finished*, so the real gap between two reconciles is always slightly more than a whole number of
periods. On the twin's exact virtual clock a sample taken exactly one window (or policy period)
ago is therefore treated as outside the window, as it would be in a real cluster.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from hpa_experiments.quantity import parse_quantity

SCALE_UP_LIMIT_FACTOR = 2.0
SCALE_UP_LIMIT_MINIMUM = 4.0
_CLOCK_EPSILON = 1e-3  # seconds; absorbs float noise in epoch-sized virtual timestamps
_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1  # the Go code's starting values when folding proposals


@dataclass(frozen=True)
class ScalingPolicy:
    type: str  # "Pods" | "Percent"
    value: int
    period_seconds: int


@dataclass(frozen=True)
class ScalingRules:
    """One direction of `spec.behavior` after API defaulting (HPAScalingRules)."""

    stabilization_window_seconds: float
    select_policy: str
    policies: tuple[ScalingPolicy, ...]
    tolerance: float | None = None  # behavior.<direction>.tolerance (KEP-4951); None = controller flag

    @property
    def longest_policy_period(self) -> int:
        return max((policy.period_seconds for policy in self.policies), default=0)


@dataclass(frozen=True)
class Behavior:
    scale_up: ScalingRules
    scale_down: ScalingRules


def _default_scale_up_rules() -> ScalingRules:
    """defaultHPAScaleUpRules: window 0, Max of {Pods 4 / 15 s, Percent 100 / 15 s}."""
    return ScalingRules(0.0, "Max", (ScalingPolicy("Pods", 4, 15), ScalingPolicy("Percent", 100, 15)))


def _default_scale_down_rules(downscale_stabilization: float) -> ScalingRules:
    """defaultHPAScaleDownRules: Max of {Percent 100 / 15 s}; an unset window comes from the
    controller flag (`maybeInitScaleDownStabilizationWindow`, 300 s by default)."""
    return ScalingRules(downscale_stabilization, "Max", (ScalingPolicy("Percent", 100, 15),))


def _rules_from_spec(spec: dict[str, Any] | None, defaults: ScalingRules) -> ScalingRules:
    """copyHPAScalingRules: each field the user set replaces the default; a user `policies`
    list replaces the default list entirely."""
    if spec is None:
        return defaults
    policies = defaults.policies
    if spec.get("policies") is not None:
        policies = tuple(
            ScalingPolicy(str(p["type"]), int(p["value"]), int(p["periodSeconds"])) for p in spec["policies"]
        )
    window = spec.get("stabilizationWindowSeconds")
    tolerance = spec.get("tolerance")
    return ScalingRules(
        stabilization_window_seconds=defaults.stabilization_window_seconds if window is None else float(window),
        select_policy=str(spec.get("selectPolicy") or defaults.select_policy),
        policies=policies,
        tolerance=None if tolerance is None else parse_quantity(tolerance),
    )


def behavior_from_spec(spec_behavior: dict[str, Any] | None, *, downscale_stabilization: float) -> Behavior | None:
    """`spec.behavior` with defaults filled in, or None for the legacy path.

    API defaulting fills behavior only when the user set it (SetDefaults_HorizontalPodAutoscalerBehavior),
    so a manifest without `behavior` stays on the legacy path.
    """
    if spec_behavior is None:
        return None
    return Behavior(
        scale_up=_rules_from_spec(spec_behavior.get("scaleUp"), _default_scale_up_rules()),
        scale_down=_rules_from_spec(spec_behavior.get("scaleDown"), _default_scale_down_rules(downscale_stabilization)),
    )


def _is_within(now: float, at: float, window: float) -> bool:
    """True if a sample taken at `at` is strictly inside the trailing `window` seconds (see module doc)."""
    return now - at < window - _CLOCK_EPSILON


@dataclass(frozen=True)
class TimedRecommendation:
    at: float
    replicas: int


@dataclass(frozen=True)
class ScaleEvent:
    at: float
    replica_change: int  # always positive; the direction is the log it is kept in


@dataclass(frozen=True)
class Normalized:
    """Outcome of normalization, with the reasons for the AbleToScale and ScalingLimited conditions."""

    replicas: int
    stabilized: int
    able_reason: str
    able_message: str
    limit_reason: str
    limit_message: str

    @property
    def limited(self) -> bool:
        return self.replicas != self.stabilized


_READY_FOR_NEW_SCALE = ("ReadyForNewScale", "recommended size matches current size")
_SCALE_DOWN_STABILIZED = (
    "ScaleDownStabilized",
    "recent recommendations were higher than current one, applying the highest recent recommendation",
)
_SCALE_UP_STABILIZED = (
    "ScaleUpStabilized",
    "recent recommendations were lower than current one, applying the lowest recent recommendation",
)
_WITHIN_RANGE = ("DesiredWithinRange", "the desired count is within the acceptable range")
_SCALE_UP_LIMIT = (
    "ScaleUpLimit",
    "the desired replica count is increasing faster than the maximum scale rate",
)
_TOO_MANY = ("TooManyReplicas", "the desired replica count is more than the maximum replica count")
_SCALE_DOWN_LIMIT = (
    "ScaleDownLimit",
    "the desired replica count is decreasing faster than the maximum scale rate",
)
_TOO_FEW = ("TooFewReplicas", "the desired replica count is less than the minimum replica count")


@dataclass
class ScalingHistory:
    """The controller's per-HPA memory: recommendations and (behavior path only) scale events."""

    recommendations: list[TimedRecommendation] = field(default_factory=list)
    scale_up_events: list[ScaleEvent] = field(default_factory=list)
    scale_down_events: list[ScaleEvent] = field(default_factory=list)

    def record_initial_recommendation(self, now: float, current_replicas: int) -> None:
        """recordInitialRecommendation: the first reconcile stores the current size, so no scale-down
        below it can happen within one downscale stabilization window."""
        if not self.recommendations:
            self.recommendations.append(TimedRecommendation(now, current_replicas))

    def store_scale_event(self, behavior: Behavior | None, now: float, previous: int, new: int) -> None:
        """storeScaleEvent: kept per direction, only when behavior is set; events older than the
        longest policy period of their direction can never count again and are dropped."""
        if behavior is None or new == previous:
            return
        if new > previous:
            keep_for = behavior.scale_up.longest_policy_period
            self.scale_up_events = [e for e in self.scale_up_events if _is_within(now, e.at, keep_for)]
            self.scale_up_events.append(ScaleEvent(now, new - previous))
        else:
            keep_for = behavior.scale_down.longest_policy_period
            self.scale_down_events = [e for e in self.scale_down_events if _is_within(now, e.at, keep_for)]
            self.scale_down_events.append(ScaleEvent(now, previous - new))

    def replicas_changed_in_period(self, now: float, period_seconds: float) -> tuple[int, int]:
        """getReplicasChangePerPeriod for both directions: (added, removed) within the trailing period."""
        added = sum(e.replica_change for e in self.scale_up_events if _is_within(now, e.at, period_seconds))
        removed = sum(e.replica_change for e in self.scale_down_events if _is_within(now, e.at, period_seconds))
        return added, removed


def normalize_legacy(
    history: ScalingHistory,
    now: float,
    current: int,
    desired: int,
    min_replicas: int,
    max_replicas: int,
    downscale_stabilization: float,
) -> Normalized:
    """normalizeDesiredReplicas (behavior == nil): max-stabilization over the downscale window, then
    clamp to [minReplicas, min(maxReplicas, max(2 x current, 4))] (convertDesiredReplicasWithRules)."""
    recent = [r for r in history.recommendations if _is_within(now, r.at, downscale_stabilization)]
    stabilized = max([desired, *(r.replicas for r in recent)])
    history.recommendations = [*recent, TimedRecommendation(now, desired)]
    able = _READY_FOR_NEW_SCALE if stabilized == desired else _SCALE_DOWN_STABILIZED

    scale_up_limit = int(max(SCALE_UP_LIMIT_FACTOR * current, SCALE_UP_LIMIT_MINIMUM))
    if max_replicas > scale_up_limit:
        maximum_allowed, limit = scale_up_limit, _SCALE_UP_LIMIT
    else:
        maximum_allowed, limit = max_replicas, _TOO_MANY
    if stabilized < min_replicas:
        replicas, limit = min_replicas, _TOO_FEW
    elif stabilized > maximum_allowed:
        replicas = maximum_allowed
    else:
        replicas, limit = stabilized, _WITHIN_RANGE
    return Normalized(replicas, stabilized, *able, *limit)


def stabilize_with_behavior(
    history: ScalingHistory, behavior: Behavior, now: float, current: int, desired: int
) -> tuple[int, tuple[str, str]]:
    """stabilizeRecommendationWithBehaviors: the lowest recommendation of the scale-up window and the
    highest of the scale-down window bound the result, starting from the current size. Stores the
    unstabilized recommendation."""
    up_window = behavior.scale_up.stabilization_window_seconds
    down_window = behavior.scale_down.stabilization_window_seconds
    up_recommendation = min(
        [desired, *(r.replicas for r in history.recommendations if _is_within(now, r.at, up_window))]
    )
    down_recommendation = max(
        [desired, *(r.replicas for r in history.recommendations if _is_within(now, r.at, down_window))]
    )
    recommendation = min(max(current, up_recommendation), down_recommendation)
    longest_window = max(up_window, down_window)
    history.recommendations = [
        *(r for r in history.recommendations if _is_within(now, r.at, longest_window)),
        TimedRecommendation(now, desired),
    ]
    return recommendation, (_SCALE_UP_STABILIZED if desired >= current else _SCALE_DOWN_STABILIZED)


def scale_up_limit(history: ScalingHistory, rules: ScalingRules, now: float, current: int) -> int:
    """calculateScaleUpLimitWithScalingRules: per policy, the size at the start of its period plus
    Pods value or times (1 + Percent/100) rounded up; Max takes the largest, Min the smallest."""
    if rules.select_policy == "Disabled":
        return current
    proposals = []
    for policy in rules.policies:
        added, removed = history.replicas_changed_in_period(now, policy.period_seconds)
        period_start = current - added + removed
        if policy.type == "Pods":
            proposals.append(period_start + policy.value)
        else:
            proposals.append(math.ceil(float(period_start) * (1 + float(policy.value) / 100)))
    if rules.select_policy == "Min":
        return min(proposals, default=_INT32_MAX)
    return max(proposals, default=_INT32_MIN)


def scale_down_limit(history: ScalingHistory, rules: ScalingRules, now: float, current: int) -> int:
    """calculateScaleDownLimitWithBehaviors: per policy, the size at the start of its period minus
    Pods value or times (1 - Percent/100) truncated; Max (largest change) takes the smallest, Min
    the largest."""
    if rules.select_policy == "Disabled":
        return current
    proposals = []
    for policy in rules.policies:
        added, removed = history.replicas_changed_in_period(now, policy.period_seconds)
        period_start = current - added + removed
        if policy.type == "Pods":
            proposals.append(period_start - policy.value)
        else:
            proposals.append(int(float(period_start) * (1 - float(policy.value) / 100)))
    if rules.select_policy == "Min":
        return max(proposals, default=_INT32_MIN)
    return min(proposals, default=_INT32_MAX)


def normalize_with_behavior(
    history: ScalingHistory,
    behavior: Behavior,
    now: float,
    current: int,
    desired: int,
    min_replicas: int,
    max_replicas: int,
) -> Normalized:
    """normalizeDesiredReplicasWithBehaviors: stabilize, then apply the rate limits of the scaling
    direction and clamp to [minReplicas, maxReplicas] (convertDesiredReplicasWithBehaviorRate)."""
    stabilized, stabilized_reason = stabilize_with_behavior(history, behavior, now, current, desired)
    able = _READY_FOR_NEW_SCALE if stabilized == desired else stabilized_reason

    replicas, limit = stabilized, _WITHIN_RANGE
    if stabilized > current:
        up_limit = max(scale_up_limit(history, behavior.scale_up, now, current), current)
        maximum_allowed, bound = (up_limit, _SCALE_UP_LIMIT) if max_replicas > up_limit else (max_replicas, _TOO_MANY)
        if stabilized > maximum_allowed:
            replicas, limit = maximum_allowed, bound
    elif stabilized < current:
        down_limit = min(scale_down_limit(history, behavior.scale_down, now, current), current)
        minimum_allowed, bound = (
            (down_limit, _SCALE_DOWN_LIMIT) if min_replicas < down_limit else (min_replicas, _TOO_FEW)
        )
        if stabilized < minimum_allowed:
            replicas, limit = minimum_allowed, bound
    return Normalized(replicas, stabilized, *able, *limit)
