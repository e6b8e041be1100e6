"""Why the HPA's desired replica count is what it is: pure computation from recorded values.

The same code serves every backend, live (the monitor, from one HPA snapshot) and after the fact
(analysis of a run directory, including imported runs of the original system):

- `condition_cells`: the AbleToScale / ScalingActive / ScalingLimited conditions as metrics.csv cells.
- `metric_proposal`: one metric's value against its target (the ratio) and the replica count that
  metric alone proposes, as the controller's replica calculator computes it (calcPlainMetricReplicas
  for a Pods metric; see /work/shared/reference/sim-model.md §1.2): ceil(ratio x pods with metrics)
  unless the ratio is within the tolerance, in milli-units as the controller counts.
- `infer_limit`: which limit held the desired count where it is, from the conditions' reasons
  (ScalingLimited TooManyReplicas -> maxReplicas, ...) plus the recomputed proposals.  The twin's
  controller knows this exactly and records its own answer; Kubernetes says it only through the
  conditions, and an imported run of the original system recorded no conditions at all, so there
  only what the recomputation proves (tolerance, or nothing held) is said; the rest is unknown (None).

Pods counted in `replicas` but not ready are taken as pods without metrics (vLLM serves /metrics only
once it has loaded the model): the controller counts them at 0 on a scale-up and at the target on a
scale-down.  A Pending pod is ignored on a scale-down instead, so there the recomputed proposal can
differ from the controller's by those pods.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

DEFAULT_TOLERANCE = 0.1  # the kube-controller-manager flag --horizontal-pod-autoscaler-tolerance

CONDITION_TYPES = ("AbleToScale", "ScalingActive", "ScalingLimited")
CONDITION_COLUMNS = {
    "AbleToScale": "able_to_scale",
    "ScalingActive": "scaling_active",
    "ScalingLimited": "scaling_limited",
}
LIMITED_BY_COLUMN = "limited_by"
LAST_SCALE_COLUMN = "hpa_last_scale_s"

# Values of the limited_by column ("none": nothing held it, desired is what the metrics propose;
# an empty cell: unknown).
MAX_REPLICAS = "maxReplicas"
MIN_REPLICAS = "minReplicas"
SCALE_UP_POLICY = "scaleUp policy"
SCALE_DOWN_POLICY = "scaleDown policy"
SCALE_UP_WINDOW = "scaleUp stabilization"
SCALE_DOWN_WINDOW = "scaleDown stabilization"
TOLERANCE = "tolerance"
UNREADY_PODS = "unready pods"
METRICS_UNAVAILABLE = "metrics unavailable"
SCALING_DISABLED = "scaling disabled"
NOT_LIMITED = "none"

LIMITING_REASONS = {
    "TooManyReplicas": MAX_REPLICAS,
    "TooFewReplicas": MIN_REPLICAS,
    "ScaleUpLimit": SCALE_UP_POLICY,
    "ScaleDownLimit": SCALE_DOWN_POLICY,
}
STABILIZED_REASONS = {"ScaleUpStabilized": SCALE_UP_WINDOW, "ScaleDownStabilized": SCALE_DOWN_WINDOW}


def target_column(column: str) -> str:
    """The metrics.csv column of a metric's HPA target (the original system's name for the KV cache)."""
    return "kv_cache_usage_target" if column == "kv_cache_usage_perc" else f"{column}_target"


def condition_columns() -> list[str]:
    """metrics.csv columns of the conditions: status ("True"/"False"/"Unknown") and reason of each."""
    return [c for name in CONDITION_COLUMNS.values() for c in (name, f"{name}_reason")]


def why_columns(metric_columns: Iterable[str]) -> list[str]:
    """All columns this module fills, for the HPA metrics recorded under `metric_columns`."""
    ratios = [c for column in metric_columns for c in (f"{column}_ratio", f"{column}_proposed")]
    return [*condition_columns(), LAST_SCALE_COLUMN, *ratios, LIMITED_BY_COLUMN]


def text_columns() -> tuple[str, ...]:
    """The columns of this module that hold text, not numbers (for readers of metrics.csv)."""
    return (*condition_columns(), LIMITED_BY_COLUMN)


def condition_cells(conditions: Iterable[Mapping[str, str]]) -> dict[str, str | None]:
    """{able_to_scale: "True", able_to_scale_reason: "ReadyForNewScale", ...}; None for an absent one."""
    by_type = {c.get("type"): c for c in conditions}
    cells: dict[str, str | None] = {}
    for condition_type, column in CONDITION_COLUMNS.items():
        found = by_type.get(condition_type)
        cells[column] = None if found is None else found.get("status")
        cells[f"{column}_reason"] = None if found is None else found.get("reason")
    return cells


def condition_changes(before: Mapping[str, str | None], after: Mapping[str, str | None]) -> list[tuple[str, str]]:
    """(condition type, event text) for every condition whose status or reason changed between two
    rows of condition cells; nothing for a condition absent from `after` (no value is not a change)."""
    changes = []
    for condition_type, column in CONDITION_COLUMNS.items():
        new = (after.get(column), after.get(f"{column}_reason"))
        old = (before.get(column), before.get(f"{column}_reason"))
        if new[0] is None or new == old:
            continue
        was = "absent" if old[0] is None else f"{old[0]}/{old[1]}"
        changes.append((condition_type, f"{condition_type}: {was} -> {new[0]}/{new[1]}"))
    return changes


@dataclass(frozen=True)
class Tolerances:
    """No scaling while 1 - scale_down <= ratio <= 1 + scale_up (the controller's isWithin)."""

    scale_down: float = DEFAULT_TOLERANCE
    scale_up: float = DEFAULT_TOLERANCE

    def is_within(self, ratio: float) -> bool:
        return (1.0 - self.scale_down) <= ratio <= (1.0 + self.scale_up)


def tolerances_of(hpa_manifest: Mapping[str, object] | None, default: float = DEFAULT_TOLERANCE) -> Tolerances:
    """spec.behavior.<direction>.tolerance where set (KEP-4951), else the controller default."""
    spec = hpa_manifest.get("spec") if isinstance(hpa_manifest, Mapping) else None
    behavior = spec.get("behavior") if isinstance(spec, Mapping) else None

    def one(direction: str) -> float:
        rules = behavior.get(direction) if isinstance(behavior, Mapping) else None
        value = rules.get("tolerance") if isinstance(rules, Mapping) else None
        try:
            return default if value is None else float(str(value))
        except ValueError:
            return default

    return Tolerances(scale_down=one("scaleDown"), scale_up=one("scaleUp"))


@dataclass(frozen=True)
class Proposal:
    """One metric against its target, and the replica count it alone proposes."""

    column: str  # metrics.csv column of the metric, e.g. "num_requests_waiting"
    ratio: float | None  # value / target; None without a value or target
    proposed: int | None  # None when it cannot be computed (no value, no pod with metrics)
    held: str | None = None  # TOLERANCE or UNREADY_PODS when that kept the proposal at `replicas`


def _milli(value: float) -> int:
    return round(value * 1000)


def _ceil(x: float) -> int:
    return math.ceil(x)


def metric_proposal(
    column: str,
    value: float | None,
    target: float | None,
    replicas: int | None,
    ready: int | None,
    tolerances: Tolerances = Tolerances(),
    source_type: str = "Pods",
    target_type: str = "AverageValue",
) -> Proposal:
    """The controller's replica count for one metric, from the recorded value, target and pod counts.

    `value` is what the HPA status reports (for a Pods metric the average over the pods with metrics,
    already integer-divided in milli-units), `replicas` the scale's current size, `ready` the ready
    pods (the pods with metrics; `replicas` when unknown).
    """
    if value is None or target is None or target <= 0 or replicas is None:
        return Proposal(column, None, None)
    usage, goal = _milli(value), _milli(target)
    ratio = usage / goal
    with_metrics = replicas if ready is None else min(ready, replicas)
    if source_type in ("Object", "External"):
        if target_type == "AverageValue":  # per pod of status replicas: ceil(total / target)
            total = usage * max(replicas, 1)
            return _gate(column, ratio, replicas, _ceil(total / goal), tolerances)
        if replicas == 0:
            return Proposal(column, ratio, _ceil(ratio))
        return _gate(column, ratio, replicas, _ceil(ratio * with_metrics), tolerances)
    if with_metrics <= 0:  # "did not receive metrics for targeted pods": the metric fails
        return Proposal(column, ratio, None)
    without = replicas - with_metrics
    if without == 0:
        return _gate(column, ratio, replicas, _ceil(ratio * with_metrics), tolerances)
    # Pods without metrics count at 0 on a scale-up, at the target on a scale-down; the average is
    # recomputed with them (integer division, as GetMetricUsageRatio) and the proposal is held at
    # the current size if that brings it within tolerance or flips the direction.
    missing_value = goal if ratio < 1.0 else 0
    new_ratio = ((usage * with_metrics + missing_value * without) // replicas) / goal
    flips = (ratio < 1.0 < new_ratio) or (ratio > 1.0 > new_ratio)
    bare = _ceil(ratio * with_metrics)  # what the ratio alone says; held is named only if it differs
    held = None if bare == replicas else (TOLERANCE if tolerances.is_within(ratio) else UNREADY_PODS)
    if tolerances.is_within(new_ratio) or flips:
        return Proposal(column, ratio, replicas, held)
    proposed = _ceil(new_ratio * replicas)
    if (new_ratio < 1.0 and proposed > replicas) or (new_ratio > 1.0 and proposed < replicas):
        return Proposal(column, ratio, replicas, held)
    return Proposal(column, ratio, proposed)


def _gate(column: str, ratio: float, replicas: int, proposed: int, tolerances: Tolerances) -> Proposal:
    """Within tolerance the proposal is the current size; `held` says so when that changed it."""
    if tolerances.is_within(ratio):
        return Proposal(column, ratio, replicas, TOLERANCE if proposed != replicas else None)
    return Proposal(column, ratio, proposed)


def combined_proposal(proposals: Sequence[Proposal]) -> Proposal | None:
    """The controller takes the largest proposal over the metrics that computed (the first on ties)."""
    best: Proposal | None = None
    for proposal in proposals:
        if proposal.proposed is not None and (best is None or proposal.proposed > best.proposed):  # type: ignore[operator]
            best = proposal
    return best


def infer_limit(
    *,
    replicas: int | None,
    desired: int | None,
    proposals: Sequence[Proposal],
    conditions: Mapping[str, str | None] | None,
    min_replicas: int | None = None,
    max_replicas: int | None = None,
) -> str | None:
    """limited_by from condition cells (`condition_cells`) and recomputed proposals; None = unknown.

    `conditions` None means the run recorded none (an imported run): only the recomputation speaks.
    """
    if replicas is None or desired is None:
        return None
    if max_replicas is not None and replicas > max_replicas:  # the controller clamps before any metric
        return MAX_REPLICAS
    if min_replicas is not None and replicas < min_replicas:
        return MIN_REPLICAS
    best = combined_proposal(proposals)
    if conditions is not None and conditions.get("scaling_active") is not None:
        if conditions.get("scaling_active") == "False":
            reason = conditions.get("scaling_active_reason")
            return SCALING_DISABLED if reason == "ScalingDisabled" else METRICS_UNAVAILABLE
        if conditions.get("scaling_limited") == "True":
            limit = LIMITING_REASONS.get(conditions.get("scaling_limited_reason") or "")
            if limit is not None:
                return limit
        stabilized = STABILIZED_REASONS.get(conditions.get("able_to_scale_reason") or "")
        if stabilized is not None:
            return stabilized
        if best is None or conditions.get("scaling_limited") is None:  # never normalized: nothing to go on
            return None
        if best.proposed != desired:  # nothing but a window moves desired away without saying so on a rescale
            return SCALE_DOWN_WINDOW if desired > best.proposed else SCALE_UP_WINDOW  # type: ignore[operator]
        return best.held or NOT_LIMITED
    # No conditions: only what the recomputation proves.
    if best is not None and best.proposed == desired:
        return best.held or NOT_LIMITED
    return None


@dataclass(frozen=True)
class MetricKind:
    """How the HPA spec sources a metric recorded in metrics.csv column `column`."""

    column: str
    source_type: str = "Pods"
    target_type: str = "AverageValue"


def why_cells(
    row: Mapping[str, object],
    metrics: Sequence[MetricKind],
    tolerances: Tolerances,
    conditions: Mapping[str, str | None] | None,
    *,
    min_replicas: int | None = None,
    max_replicas: int | None = None,
    limited_by: str | None = None,
) -> dict[str, object]:
    """The ratio and proposal of each metric and limited_by for one metrics.csv row.

    `limited_by` given (the twin's controller knows it) is recorded as is; otherwise it is inferred.
    """
    replicas, ready = _int(row.get("replicas")), _int(row.get("ready_replicas"))
    proposals = [
        metric_proposal(
            m.column,
            _float(row.get(m.column)),
            _float(row.get(target_column(m.column))),
            replicas,
            ready,
            tolerances,
            m.source_type,
            m.target_type,
        )
        for m in metrics
    ]
    cells: dict[str, object] = {}
    for proposal in proposals:
        cells[f"{proposal.column}_ratio"] = None if proposal.ratio is None else round(proposal.ratio, 6)
        cells[f"{proposal.column}_proposed"] = proposal.proposed
    if limited_by is None:
        limited_by = infer_limit(
            replicas=replicas,
            desired=_int(row.get("desired_replicas")),
            proposals=proposals,
            conditions=conditions,
            min_replicas=min_replicas,
            max_replicas=max_replicas,
        )
    cells[LIMITED_BY_COLUMN] = limited_by
    return cells


def _float(value: object) -> float | None:
    if value is None or isinstance(value, bool) or value == "":
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) or math.isinf(number) else number


def _int(value: object) -> int | None:
    number = _float(value)
    return None if number is None else int(number)


def pods_proposals(
    values: np.ndarray,
    targets: np.ndarray,
    replicas: np.ndarray,
    ready: np.ndarray,
    tolerances: Tolerances = Tolerances(),
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`metric_proposal` of a Pods metric over whole columns at once (NaN = no value): (ratio,
    proposed, held) with held "" where nothing held it.  For analysing long runs recorded without
    the why columns; equal to the scalar function case by case (tested)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        usage, goal = np.round(values * 1000), np.round(targets * 1000)
        valid = ~(np.isnan(usage) | np.isnan(goal) | np.isnan(replicas)) & (targets > 0)
        ratio = np.where(valid, usage / goal, np.nan)
        with_metrics = np.where(np.isnan(ready), replicas, np.minimum(ready, replicas))
        without = replicas - with_metrics
        within = (1.0 - tolerances.scale_down <= ratio) & (ratio <= 1.0 + tolerances.scale_up)
        bare = np.ceil(ratio * with_metrics)
        missing_value = np.where(ratio < 1.0, goal, 0.0)
        new_ratio = np.floor((usage * with_metrics + missing_value * without) / replicas) / goal
        new_within = (1.0 - tolerances.scale_down <= new_ratio) & (new_ratio <= 1.0 + tolerances.scale_up)
        flips = ((ratio < 1.0) & (new_ratio > 1.0)) | ((ratio > 1.0) & (new_ratio < 1.0))
        stepped = np.ceil(new_ratio * replicas)
        opposite = ((new_ratio < 1.0) & (stepped > replicas)) | ((new_ratio > 1.0) & (stepped < replicas))
        hold = np.where(without == 0, within, new_within | flips | opposite)
        proposed = np.where(hold, replicas, np.where(without == 0, bare, stepped))
        proposed = np.where(valid & (with_metrics > 0), proposed, np.nan)
        held_reason = np.where(within, TOLERANCE, UNREADY_PODS)
        held = np.where(hold & (bare != replicas) & ~np.isnan(proposed), held_reason, "")
    return ratio, proposed, held
