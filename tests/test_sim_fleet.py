"""Pods lifecycle, scale-down choice and routing of the simulated vLLM Deployment."""

from __future__ import annotations

import pytest

from hpa_experiments.backends.sim.fleet import LOADING, PENDING, READY, TERMINATING, Fleet
from hpa_experiments.backends.sim.loadgen import LoadGenerator
from hpa_experiments.backends.sim.serving import Request
from tests.test_sim_serving import pinned  # the model is tested on fixed, uncalibrated numbers

FAST_START = {
    "pod_pending_s": 5.0,
    "pod_load_mean_s": 30.0,
    "pod_load_spread_s": 0.0,
    "readiness_initial_delay_s": 10.0,
    "readiness_period_s": 5.0,
}


def _states(fleet: Fleet) -> dict[str, str]:
    return {p.name: p.state for p in fleet.pods}


def test_new_pod_goes_pending_loading_ready_with_the_profile_delays():
    fleet = Fleet(pinned({**FAST_START, "pod_load_mean_s": 27.0}), initial_replicas=1)
    fleet.scale_to(2, 100.0)
    new = fleet.pods[1]
    # container starts at 105; engine up at 132; probes at 115, 120, ..., first success at 135
    assert (new.running_t, new.ready_t) == (105.0, 135.0)
    fleet.advance_to(104.9)
    assert new.state == PENDING and new.engine is None
    fleet.advance_to(134.9)
    assert new.state == LOADING and new.engine is None and fleet.ready_replicas == 1
    assert [pod.name for pod, _ in fleet.scrape(134.9)] == ["vllm-0"]  # a loading pod has no metrics yet
    fleet.advance_to(135.0)
    assert new.state == READY and new.engine is not None and fleet.ready_replicas == 2
    scraped = dict((pod.name, samples) for pod, samples in fleet.scrape(135.0))
    assert (
        set(scraped) == {"vllm-0", "vllm-1"}
        and ("vllm:num_requests_waiting", new.engine.labels, 0.0) in scraped["vllm-1"]
    )
    assert [s for _, s in new.transitions] == [PENDING, LOADING, READY]


def test_startup_spread_is_seeded():
    profile = pinned({**FAST_START, "pod_load_spread_s": 10.0})

    def ready_times(seed: int) -> list[float]:
        fleet = Fleet(profile, seed=seed, initial_replicas=0)
        fleet.scale_to(5, 0.0)
        return [p.ready_t for p in fleet.pods]

    assert ready_times(1) == ready_times(1)
    assert ready_times(1) != ready_times(2)
    assert len(set(ready_times(1))) > 1


def test_scale_down_removes_not_ready_pods_first_then_the_newest():
    fleet = Fleet(pinned(FAST_START), initial_replicas=2)  # vllm-0, vllm-1 ready
    fleet.scale_to(4, 100.0)  # vllm-2, vllm-3
    fleet.advance_to(200.0)
    fleet.scale_to(5, 200.0)  # vllm-4 pending
    fleet.scale_to(3, 201.0)
    assert _states(fleet) == {"vllm-0": READY, "vllm-1": READY, "vllm-2": READY}
    fleet.scale_to(1, 202.0)
    assert _states(fleet) == {"vllm-0": READY}


def test_a_loading_pod_goes_before_a_newer_ready_one():
    profile = pinned({**FAST_START, "pod_load_spread_s": 20.0})
    for seed in range(50):  # find startup draws where the older pod becomes ready last
        fleet = Fleet(profile, seed=seed, initial_replicas=0)
        fleet.scale_to(1, 0.0)
        fleet.scale_to(2, 1.0)
        older, newer = fleet.pods
        if newer.ready_t < older.ready_t:
            break
    else:
        pytest.fail("no seed gave the needed order")
    fleet.advance_to(newer.ready_t)
    assert (older.state, newer.state) == (LOADING, READY)
    fleet.scale_to(1, newer.ready_t)
    assert fleet.pods == [newer]


def _job(profile, rate: float, stop_t: float = 1e9, **kw) -> LoadGenerator:
    return LoadGenerator("load", profile, rate=rate, start_t=0.0, stop_t=stop_t, seed=1, **kw)


def test_round_robin_spreads_requests_evenly():
    profile = pinned({"routing": "round_robin"})
    fleet = Fleet(profile, initial_replicas=3)
    fleet.add_job(_job(profile, rate=1000.0, num_prompts=30))
    fleet.advance_to(0.2)
    assert [p.engine.load for p in fleet.pods] == [10, 10, 10]


def test_least_loaded_avoids_the_busy_pod():
    profile = pinned()
    fleet = Fleet(profile, initial_replicas=3)
    busy = fleet.pods[0].engine
    for uid in range(20):
        busy.submit(Request(-1 - uid, 0.0, 200, 1024), 0.0)
    job = _job(profile, rate=1.0)
    fleet.add_job(job)
    fleet.advance_to(6.0)  # shorter than one answer: nothing completes
    assert busy.load == 20
    assert job.sent >= 5 and fleet.pods[1].engine.load + fleet.pods[2].engine.load == job.sent
    assert abs(fleet.pods[1].engine.load - fleet.pods[2].engine.load) <= 1


def test_requests_wait_at_the_gateway_until_a_pod_is_ready():
    profile = pinned(FAST_START)
    fleet = Fleet(profile, initial_replicas=0)
    fleet.scale_to(1, 0.0)
    job = _job(profile, rate=2.0)
    fleet.add_job(job)
    fleet.advance_to(34.0)
    assert fleet.pods[0].engine is None and len(job.in_flight) == job.sent > 50
    fleet.advance_to(fleet.pods[0].ready_t)
    assert fleet.pods[0].engine.load == job.sent


def test_scale_down_aborts_the_requests_of_the_removed_pod():
    profile = pinned()
    fleet = Fleet(profile, initial_replicas=2)
    job = _job(profile, rate=4.0)
    fleet.add_job(job)
    fleet.advance_to(10.0)
    on_removed = fleet.pods[1].engine.load
    assert on_removed > 0
    fleet.scale_to(1, 10.0)
    assert job.failed == on_removed == fleet.aborted_by_scale_down
    assert len(job.in_flight) == fleet.pods[0].engine.load


def test_drain_lets_requests_finish_within_the_grace_period():
    profile = pinned({"scale_down": "drain", "drain_grace_s": 60.0})
    fleet = Fleet(profile, initial_replicas=2)
    job = _job(profile, rate=1.0, num_prompts=6)  # 1024-token answers take about 7 s
    fleet.add_job(job)
    fleet.advance_to(5.5)
    leaving = fleet.pods[1]
    fleet.scale_to(1, 5.5)
    assert leaving.state == TERMINATING and fleet.replicas == 1 and fleet.ready_replicas == 1
    fleet.advance_to(100.0)
    assert job.completed == 6 and job.failed == 0
    assert leaving not in fleet.pods and leaving.transitions[-1][1] == "Gone"


def test_stopping_a_job_aborts_its_requests_on_the_engines():
    profile = pinned()
    fleet = Fleet(profile, initial_replicas=2)
    job = _job(profile, rate=5.0)
    fleet.add_job(job)
    fleet.advance_to(20.0)
    in_flight = len(job.in_flight)
    assert fleet.stop_job("load", 20.0) == in_flight > 0
    fleet.advance_to(21.0)
    assert sum(p.engine.load for p in fleet.pods) == 0
    assert sum(p.engine.successes.get("abort", 0) for p in fleet.pods) == in_flight


def test_client_concurrency_cap_bounds_the_requests_on_the_servers():
    profile = pinned()
    fleet = Fleet(profile, initial_replicas=2)
    job = _job(profile, rate=40.0, max_concurrency=64)  # far above what two replicas answer
    fleet.add_job(job)
    on_servers = []
    for second in range(1, 120):
        fleet.advance_to(float(second))
        on_servers.append(sum(p.engine.load for p in fleet.pods))
        assert len(job.in_flight) <= 64
    assert max(on_servers) == 64 and job.completed > 0


def test_drain_fails_what_is_left_after_the_grace_period():
    profile = pinned({"scale_down": "drain", "drain_grace_s": 2.0})
    fleet = Fleet(profile, initial_replicas=2)
    job = _job(profile, rate=1.0, num_prompts=6)
    fleet.add_job(job)
    fleet.advance_to(5.5)
    leaving = fleet.pods[1]
    on_it = leaving.engine.load
    assert on_it > 0
    fleet.scale_to(1, 5.5)
    fleet.advance_to(7.4)
    assert leaving.state == TERMINATING and job.failed == 0
    fleet.advance_to(7.6)
    assert leaving not in fleet.pods and job.failed == on_it == fleet.aborted_by_scale_down


def _scripted_run(force_one_event_at_a_time: bool) -> list:
    profile = pinned({"step_per_decode_seq_s": 0.1e-3, "natural_output_len_mean": 300.0, "scale_down": "drain"})
    fleet = Fleet(profile, seed=3, initial_replicas=3)
    for i, rate in enumerate([20.0, 45.0]):
        fleet.add_job(LoadGenerator(f"j{i}", profile, rate, start_t=i * 60.0, stop_t=i * 60.0 + 150.0, seed=i))
    if force_one_event_at_a_time:  # a client that is always at its cap (0) disables the shortcut
        fleet.add_job(LoadGenerator("blocked", profile, 1.0, start_t=0.0, max_concurrency=0))
    seen = []
    for t in range(5, 260, 5):
        if t == 50:
            fleet.scale_to(6, t)
        if t == 150:
            fleet.scale_to(2, t)
        for job in list(fleet.jobs.values()):
            if not job.stopped and t >= job.stop_t:
                fleet.stop_job(job.name, t)
        seen.append([(pod.name, samples) for pod, samples in fleet.scrape(float(t))])
    return seen


def test_engines_running_on_alone_between_sends_changes_nothing():
    assert _scripted_run(False) == _scripted_run(True)
