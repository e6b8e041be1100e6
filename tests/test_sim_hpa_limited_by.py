"""The twin's HPA controller says exactly what held the desired count (HpaStatus.limited_by).

Worked cases on the controller directly (helpers of tests/test_sim_hpa.py); each comment gives
the arithmetic.  Syncs are every 15 s from t = 15 s after creation.
"""

from __future__ import annotations

from hpa_experiments.backends.sim.hpa import HpaController, PodView
from tests.test_sim_hpa import UNHINDERED, WAITING, FakeAdapter, hpa, running, uniform


def sync(controller: HpaController, k: int, replicas: int, pods: list[PodView], adapter: FakeAdapter):
    return controller.reconcile(15.0 * k, replicas, pods, adapter)


def test_capped_by_max_replicas():
    # 2 pods at 100 waiting, target 20: ratio 5 -> ceil(5 x 2) = 10; the rate allows max(2 + 4, 2 x 2)
    # = 6, maxReplicas 4 is lower still: TooManyReplicas
    controller = HpaController(hpa(max_replicas=4, behavior=UNHINDERED), created_at=0.0)
    status = sync(controller, 1, 2, running(2), uniform(WAITING, running(2), 100.0))
    assert (status.desired_replicas, status.limited_by) == (4, "maxReplicas")


def test_limited_by_the_scale_up_policy():
    # 1 pod at 200 waiting: ratio 10 -> 10 proposed; default policies allow max(1 + 4, 1 x 2) = 5
    controller = HpaController(hpa(behavior=UNHINDERED), created_at=0.0)
    status = sync(controller, 1, 1, running(1), uniform(WAITING, running(1), 200.0))
    assert (status.desired_replicas, status.limited_by) == (5, "scaleUp policy")


def test_held_by_the_scale_down_window():
    # No behavior: the legacy path keeps the highest recommendation of the last 300 s.  First sync
    # at 4 pods records 4 (recordInitialRecommendation), then 4 pods at 2 waiting propose
    # ceil(0.1 x 4) = 1, but the window holds 4.
    controller = HpaController(hpa(), created_at=0.0)
    status = sync(controller, 1, 4, running(4), uniform(WAITING, running(4), 2.0))
    assert (status.desired_replicas, status.limited_by) == (4, "scaleDown stabilization")


def test_held_within_the_tolerance():
    # 4 pods at 21 waiting: ratio 1.05 within 1 +/- 0.1 -> stays 4 (the bare ratio says ceil(4.2) = 5)
    controller = HpaController(hpa(behavior=UNHINDERED), created_at=0.0)
    status = sync(controller, 1, 4, running(4), uniform(WAITING, running(4), 21.0))
    assert (status.desired_replicas, status.limited_by) == (4, "tolerance")


def test_held_while_new_pods_are_not_ready():
    # 10 pods, 1 serving at 152 waiting: with the 9 others at 0 the average is 15.2, ratio 0.76:
    # the direction flips, so the controller keeps 10 (the serving pod alone says ceil(7.6 x 1) = 8).
    pods = running(1) + [PodView(f"p{i}", "Running", False) for i in range(1, 10)]
    controller = HpaController(hpa(behavior=UNHINDERED), created_at=0.0)
    status = sync(controller, 1, 10, pods, FakeAdapter({WAITING: {"p0": 152.0}}))
    assert (status.desired_replicas, status.limited_by) == (10, "unready pods")


def test_nothing_held_and_metrics_unavailable():
    # 2 pods at 30: ratio 1.5 -> ceil(3.0) = 3, within every limit
    controller = HpaController(hpa(behavior=UNHINDERED), created_at=0.0)
    status = sync(controller, 1, 2, running(2), uniform(WAITING, running(2), 30.0))
    assert (status.desired_replicas, status.limited_by) == (3, "none")
    status = sync(controller, 2, 3, running(3), FakeAdapter(failing=frozenset({WAITING})))
    assert (status.desired_replicas, status.limited_by) == (3, "metrics unavailable")
    assert status.condition("ScalingActive")["reason"] == "FailedGetPodsMetric"
