"""hpa_reasons: the per-metric proposal and the limit that held desired, with worked cases.

The proposal is also checked against the twin's replica calculator (hpa_replicas, a rendition of
replica_calculator.go) on generated cases: recomputed from recorded values it must say what the
controller says, whenever the pods without metrics are started-but-not-serving pods.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hpa_experiments.backends.sim.hpa_replicas import PodView, plain_metric_replicas
from hpa_experiments.backends.sim.hpa_replicas import Tolerances as TwinTolerances
from hpa_experiments.hpa_reasons import (
    MAX_REPLICAS,
    METRICS_UNAVAILABLE,
    MIN_REPLICAS,
    NOT_LIMITED,
    SCALE_DOWN_POLICY,
    SCALE_DOWN_WINDOW,
    SCALE_UP_POLICY,
    TOLERANCE,
    UNREADY_PODS,
    MetricKind,
    Proposal,
    Tolerances,
    condition_cells,
    condition_changes,
    infer_limit,
    metric_proposal,
    pods_proposals,
    tolerances_of,
    why_cells,
)


def conditions(
    able: str = "ReadyForNewScale",
    active: tuple[str, str] = ("True", "ValidMetricFound"),
    limited: tuple[str, str] | None = ("False", "DesiredWithinRange"),
) -> dict[str, str | None]:
    found = [
        {"type": "AbleToScale", "status": "True", "reason": able},
        {"type": "ScalingActive", "status": active[0], "reason": active[1]},
    ]
    if limited is not None:
        found.append({"type": "ScalingLimited", "status": limited[0], "reason": limited[1]})
    return condition_cells(found)


def test_all_pods_ready_proposal_is_ceil_of_ratio_times_pods():
    # 4 ready pods, 33 waiting per pod, target 20: ratio 1.65 -> ceil(1.65 x 4) = ceil(6.6) = 7
    p = metric_proposal("num_requests_waiting", 33.0, 20.0, replicas=4, ready=4)
    assert p.ratio == 1.65 and p.proposed == 7 and p.held is None


def test_within_tolerance_keeps_the_current_size_and_says_so():
    # ratio 21/20 = 1.05 <= 1.1: the controller keeps 4 (the bare ratio would say ceil(4.2) = 5)
    p = metric_proposal("num_requests_waiting", 21.0, 20.0, replicas=4, ready=4)
    assert (p.proposed, p.held) == (4, TOLERANCE)
    # ratio 0.95 x 2 pods = 1.9 -> ceil 2 = current: within tolerance, but tolerance changed nothing
    p = metric_proposal("num_requests_waiting", 19.0, 20.0, replicas=2, ready=2)
    assert (p.proposed, p.held) == (2, None)
    # a configured tolerance of 0.02 up: 1.05 is outside it
    assert metric_proposal("num_requests_waiting", 21.0, 20.0, 4, 4, Tolerances(0.1, 0.02)).proposed == 5


def test_scale_up_with_pods_not_ready_counts_them_at_zero():
    # The twin's sync at 251.87 s of the high-load run: 6 pods, 1 serving with 331 waiting, target 20.
    # ratio 331/20 = 16.55; the 5 pods without metrics count 0: average 331000 milli // 6 = 55166,
    # new ratio 55166 / 20000 = 2.7583; ceil(2.7583 x 6) = ceil(16.55) = 17.
    p = metric_proposal("num_requests_waiting", 331.0, 20.0, replicas=6, ready=1)
    assert p.ratio == 16.55 and p.proposed == 17 and p.held is None


def test_scale_up_held_while_new_pods_are_not_ready():
    # 10 pods, 1 serving with 152 waiting, target 20: ratio 7.6 > 1, but with 9 pods at 0 the average
    # is 152000 // 10 = 15200 milli, ratio 0.76 < 1: the direction flips, the controller keeps 10.
    p = metric_proposal("num_requests_waiting", 152.0, 20.0, replicas=10, ready=1)
    assert (p.proposed, p.held) == (10, UNREADY_PODS)


def test_scale_down_counts_pods_without_metrics_at_the_target():
    # 10 pods, 2 serving at 0.0 waiting, target 20: the 8 others count at 20 -> average
    # (0 x 2 + 20000 x 8) // 10 = 16000 milli, ratio 0.8 (outside tolerance) -> ceil(0.8 x 10) = 8
    assert metric_proposal("num_requests_waiting", 0.0, 20.0, replicas=10, ready=2).proposed == 8


def test_object_and_external_targets():
    # Value target: ratio x ready pods; 150 / 100 = 1.5 x 3 ready = 4.5 -> 5
    assert metric_proposal("hpa_q", 150.0, 100.0, 4, 3, source_type="External", target_type="Value").proposed == 5
    # AverageValue: per pod of 4 replicas, total 4 x 30 = 120, target 20 per pod -> 6
    p = metric_proposal("hpa_q", 30.0, 20.0, 4, 4, source_type="External", target_type="AverageValue")
    assert p.proposed == 6


def test_missing_inputs_give_no_proposal():
    assert metric_proposal("q", None, 20.0, 3, 3) == Proposal("q", None, None)
    assert metric_proposal("q", 5.0, None, 3, 3).proposed is None
    assert metric_proposal("q", 5.0, 20.0, 3, 0).proposed is None  # no pod with metrics: the metric fails


@settings(max_examples=300, deadline=None)
@given(
    per_pod_milli=st.integers(0, 400_000),
    target_milli=st.integers(1, 50_000),
    ready=st.integers(1, 12),
    not_serving=st.integers(0, 12),
    tolerance=st.sampled_from([0.0, 0.05, 0.1, 0.3]),
)
def test_recomputed_proposal_equals_the_twin_controllers(per_pod_milli, target_milli, ready, not_serving, tolerance):
    """Same answer as calcPlainMetricReplicas when every not-ready pod is Running without metrics."""
    pods = [PodView(f"p{i}", "Running", True) for i in range(ready)]
    pods += [PodView(f"q{i}", "Running", False) for i in range(not_serving)]
    samples = {f"p{i}": per_pod_milli for i in range(ready)}
    replicas = ready + not_serving
    twin, usage, twin_held = plain_metric_replicas(
        samples, pods, replicas, target_milli, TwinTolerances(tolerance, tolerance)
    )
    ours = metric_proposal("m", usage / 1000, target_milli / 1000, replicas, ready, Tolerances(tolerance, tolerance))
    assert ours.proposed == twin
    assert ours.held == twin_held


def test_limit_from_conditions():
    p = [Proposal("q", 16.55, 17)]
    cases = {
        ("TooManyReplicas",): MAX_REPLICAS,
        ("TooFewReplicas",): MIN_REPLICAS,
        ("ScaleUpLimit",): SCALE_UP_POLICY,
        ("ScaleDownLimit",): SCALE_DOWN_POLICY,
    }
    for (reason,), expected in cases.items():
        found = infer_limit(replicas=6, desired=10, proposals=p, conditions=conditions(limited=("True", reason)))
        assert found == expected
    stabilized = conditions(able="ScaleDownStabilized")
    assert infer_limit(replicas=5, desired=5, proposals=[Proposal("q", 0.2, 1)], conditions=stabilized) == (
        SCALE_DOWN_WINDOW
    )
    failing = conditions(active=("False", "FailedGetPodsMetric"))
    assert infer_limit(replicas=3, desired=3, proposals=p, conditions=failing) == METRICS_UNAVAILABLE


def test_limit_inferred_from_the_recomputation():
    # A rescale hides the stabilization reason (AbleToScale says SucceededRescale), but desired 5 while
    # the metrics propose 2 and nothing is ScalingLimited: only a scale-down window keeps it higher.
    rescaled = conditions(able="SucceededRescale")
    assert infer_limit(replicas=6, desired=5, proposals=[Proposal("q", 0.3, 2)], conditions=rescaled) == (
        SCALE_DOWN_WINDOW
    )
    assert (
        infer_limit(replicas=4, desired=4, proposals=[Proposal("q", 1.05, 4, TOLERANCE)], conditions=conditions())
        == TOLERANCE
    )
    assert infer_limit(replicas=4, desired=7, proposals=[Proposal("q", 1.65, 7)], conditions=conditions()) == (
        NOT_LIMITED
    )
    # replicas above maxReplicas: the controller clamps before looking at any metric
    assert (
        infer_limit(replicas=12, desired=10, proposals=p_none(), conditions=conditions(), max_replicas=10)
        == MAX_REPLICAS
    )


def p_none() -> list[Proposal]:
    return [Proposal("q", None, None)]


def test_without_conditions_only_the_recomputation_speaks():
    # An imported run: 355 waiting / target 2 on 5 replicas proposes 888 but desired is 9: held by
    # something (maxReplicas? a rate policy?) that the run did not record -> unknown (None).
    assert infer_limit(replicas=5, desired=9, proposals=[Proposal("q", 177.5, 888)], conditions=None) is None
    assert infer_limit(replicas=1, desired=2, proposals=[Proposal("kv", 1.1, 2)], conditions=None) == NOT_LIMITED


def test_condition_changes_become_event_texts():
    before = conditions()
    after = conditions(limited=("True", "TooManyReplicas"))
    assert condition_changes(before, after) == [
        ("ScalingLimited", "ScalingLimited: False/DesiredWithinRange -> True/TooManyReplicas")
    ]
    assert condition_changes({}, conditions(limited=None))[0][1] == "AbleToScale: absent -> True/ReadyForNewScale"
    assert condition_changes(after, after) == []


def test_tolerances_from_the_manifest():
    manifest = {"spec": {"behavior": {"scaleUp": {"tolerance": "0.05"}, "scaleDown": {}}}}
    assert tolerances_of(manifest) == Tolerances(scale_down=0.1, scale_up=0.05)
    assert tolerances_of(None) == Tolerances()


def test_why_cells_of_one_row():
    row = {
        "replicas": 6,
        "desired_replicas": 10,
        "ready_replicas": 1,
        "num_requests_waiting": 331.0,
        "num_requests_waiting_target": 20.0,
        "kv_cache_usage_perc": 0.999,
        "kv_cache_usage_target": 0.5,
    }
    cells = why_cells(
        row,
        [MetricKind("num_requests_waiting"), MetricKind("kv_cache_usage_perc")],
        Tolerances(),
        conditions(limited=("True", "TooManyReplicas")),
    )
    # queue: 17 (see above); KV: ratio 0.999/0.5 = 1.998, average with 5 pods at 0: 999 // 6 = 166 milli,
    # ratio 0.332 < 1: the direction flips, so the KV metric holds at 6.
    assert cells == {
        "num_requests_waiting_ratio": 16.55,
        "num_requests_waiting_proposed": 17,
        "kv_cache_usage_perc_ratio": 1.998,
        "kv_cache_usage_perc_proposed": 6,
        "limited_by": MAX_REPLICAS,
    }
    assert (
        why_cells(row, [MetricKind("num_requests_waiting")], Tolerances(), None, limited_by=SCALE_UP_POLICY)[
            "limited_by"
        ]
        == SCALE_UP_POLICY
    )  # the twin's own answer wins


@pytest.mark.slow
@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.one_of(st.none(), st.integers(0, 400_000)),  # value, milli
            st.integers(1, 50_000),  # target, milli
            st.integers(0, 12),  # replicas
            st.one_of(st.none(), st.integers(0, 12)),  # ready
        ),
        min_size=1,
        max_size=20,
    ),
    st.sampled_from([0.0, 0.1, 0.3]),
)
def test_column_proposals_equal_the_row_by_row_ones(cases, tolerance):
    """pods_proposals (whole columns, for long runs recorded without the why columns) = metric_proposal."""
    tol = Tolerances(tolerance, tolerance)

    def col(i: int, scale: float = 1.0) -> np.ndarray:
        return np.array([np.nan if c[i] is None else c[i] / scale for c in cases], dtype=float)

    ratio, proposed, held = pods_proposals(col(0, 1000), col(1, 1000), col(2), col(3), tol)
    for k, (value, target, replicas, ready) in enumerate(cases):
        one = metric_proposal("m", None if value is None else value / 1000, target / 1000, replicas, ready, tol)
        assert (None if np.isnan(proposed[k]) else int(proposed[k])) == one.proposed
        assert (held[k] or None) == (one.held if one.proposed is not None else None)
        if one.ratio is not None:
            assert ratio[k] == one.ratio
