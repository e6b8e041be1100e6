"""The Fleet's engine indexes change nothing: same requests.csv, scrapes and pods as the plain scans.

The reference is tests/support/scan_fleet.py (the old O(replicas) event choice and least-loaded
routing).  Each scenario drives both fleets through the same scaling, Job stops and scrapes and
compares everything they produce, byte for byte: the per-request log (which engine, when, how each
request ended), every scrape's metric samples, and every pod's lifecycle.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import pytest

from hpa_experiments.backends.sim.fleet import Fleet
from hpa_experiments.backends.sim.loadgen import LoadGenerator
from hpa_experiments.backends.sim.request_log import RequestLog
from hpa_experiments.twin_profiles import Profile, load_profile
from tests.support.scan_fleet import PureFleet, ScanFleet

FAST_START = {
    "pod_pending_s": 2.0,
    "pod_load_mean_s": 15.0,
    "pod_load_spread_s": 5.0,
    "pod_image_cached_share": 0.5,  # both start paths (image cached or pulled)
    "readiness_initial_delay_s": 10.0,
    "readiness_period_s": 2.0,
}
Action = Callable[[Fleet, float], Any]


def play(
    fleet_cls: type[Fleet],
    profile: Profile,
    replicas: int,
    jobs: list[dict[str, Any]],
    actions: dict[float, Action],
    end: float,
    log: Path,
) -> tuple[bytes, list[Any]]:
    """Run one scenario; returns requests.csv and what was observed every 5 s."""
    fleet = fleet_cls(profile, seed=11, initial_replicas=replicas)
    fleet.request_log = RequestLog(log, 0.0)
    for spec in jobs:
        fleet.add_job(LoadGenerator(profile=profile, **spec))
    seen: list[Any] = []
    t = 0.0
    while t < end:
        t += 5.0
        if t in actions:
            actions[t](fleet, t)
        seen.append([(pod.name, families) for pod, families in fleet.scrape(t)])
        seen.append([(pod.name, list(pod.transitions)) for pod in fleet.pods])
    fleet.request_log.close(fleet.in_flight(), t)
    return log.read_bytes(), seen


SCENARIOS: dict[str, tuple[dict[str, Any], int, list[dict[str, Any]], dict[float, Action], float]] = {
    # load-aware routing, scale up and down with draining, one client held at its concurrency cap
    # (events then go one at a time), a Job deleted mid-run, a moment with no Ready pod
    "least-loaded-drain": (
        {"scale_down": "drain", "drain_grace_s": 4.0},
        6,
        [
            {"name": "steady", "rate": 25.0, "start_t": 0.0, "stop_t": 170.0, "seed": 1},
            {"name": "capped", "rate": 12.0, "start_t": 10.0, "stop_t": 230.0, "seed": 2, "max_concurrency": 15},
        ],
        {
            40.0: lambda f, t: f.scale_to(12, t),
            100.0: lambda f, t: f.scale_to(4, t),
            150.0: lambda f, t: f.stop_job("steady", t),
            180.0: lambda f, t: f.scale_to(0, t),
            190.0: lambda f, t: f.scale_to(3, t),
        },
        240.0,
    ),
    # round robin, scale-down aborts in-flight requests
    "round-robin-abort": (
        {"routing": "round_robin"},
        5,
        [{"name": "steady", "rate": 20.0, "start_t": 0.0, "stop_t": 150.0, "seed": 3}],
        {50.0: lambda f, t: f.scale_to(9, t), 110.0: lambda f, t: f.scale_to(2, t)},
        160.0,
    ),
    # many mostly idle replicas: most routing decisions are ties on (load, KV blocks)
    "idle-ties": (
        {},
        40,
        [{"name": "short", "rate": 6.0, "start_t": 0.0, "stop_t": 100.0, "seed": 4, "output_len": 8}],
        {60.0: lambda f, t: f.scale_to(25, t)},
        110.0,
    ),
}


@pytest.mark.parametrize("name", SCENARIOS)
def test_indexed_fleet_matches_the_plain_scans(name: str, tmp_path: Path) -> None:
    overrides, replicas, jobs, actions, end = SCENARIOS[name]
    profile = load_profile("llama-3.1-8b-h100", {**FAST_START, **overrides})
    old_log, old_seen = play(ScanFleet, profile, replicas, jobs, actions, end, tmp_path / "old.csv")
    new_log, new_seen = play(Fleet, profile, replicas, jobs, actions, end, tmp_path / "new.csv")
    assert old_log.count(b"\n") > 100  # the scenario did serve requests
    assert new_log == old_log
    assert new_seen == old_seen


class Watched(PureFleet):  # an interpreted Fleet: see scan_fleet.py
    """Counts routing decisions that are ties, and notes the most requests a Job had in flight."""

    ties: ClassVar[int] = 0
    peak_in_flight: ClassVar[dict[str, int]] = {}

    def _route(self, req: Any, t: float) -> None:
        keys = [(len(e.running) + len(e.waiting), e.used_blocks) for e in self._ready_engines]
        if keys and keys.count(min(keys)) > 1:
            Watched.ties += 1
        for job in self.jobs.values():
            Watched.peak_in_flight[job.name] = max(Watched.peak_in_flight.get(job.name, 0), len(job.in_flight))
        super()._route(req, t)


def outcomes(name: str, tmp_path: Path) -> str:
    overrides, replicas, jobs, actions, end = SCENARIOS[name]
    profile = load_profile("llama-3.1-8b-h100", {**FAST_START, **overrides})
    Watched.ties, Watched.peak_in_flight = 0, {}
    log, _ = play(Watched, profile, replicas, jobs, actions, end, tmp_path / f"{name}.csv")
    return log.decode()


def test_the_scenarios_reach_the_paths_they_are_meant_to(tmp_path: Path) -> None:
    """Guards the test above: the aborts, the capped client, and ties in routing happen."""
    text = outcomes("least-loaded-drain", tmp_path)
    assert "aborted_job_stopped" in text and "aborted_scale_down" in text
    assert Watched.peak_in_flight["capped"] == 15
    assert "aborted_scale_down" in outcomes("round-robin-abort", tmp_path)
    outcomes("idle-ties", tmp_path)
    assert Watched.ties > 100
