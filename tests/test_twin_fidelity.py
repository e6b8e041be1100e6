"""The twin's error on real data stays within the bounds of its fit (docs/twin-calibration.md).

One seed, no cluster: the latency points (tests/data/latency-points.csv, extracted from the real
latency-vs-load runs by benchmarks/twin_fit.py) are replayed with the twin's latency probe, and
the two HPA reference runs (tests/data/reference-runs/) with benchmarks/reference_runs.py.  The
bounds are the fitted errors (benchmarks/results/twin_fit_*.json) with a margin; a change to the
serving model that moves the twin away from the real data fails here.  benchmarks/twin_fit.py
keeps the full figures.
"""

from __future__ import annotations

import csv
import math
import sys
from pathlib import Path

import pytest

from hpa_experiments.backends.sim.latency_probe import probe
from hpa_experiments.twin_profiles import load_profile

pytestmark = pytest.mark.slow  # every test here takes seconds (benchmarks/README.md: the fast loop)

ROOT = Path(__file__).resolve().parents[1]
POINTS = ROOT / "tests" / "data" / "latency-points.csv"


def load_points() -> list[dict[str, str]]:
    with POINTS.open() as f:
        return list(csv.DictReader(f))


def replay(point: dict[str, str]) -> tuple[float, float, float]:
    """(twin TTFT ms, twin ITL ms, twin arrival rate) at a real point, driven as twin_fit.py does."""
    rates = [float(r) for r in point["job_rates"].split()] or [float(point["rate"])]
    if point["client_limited"] != "True":
        rates = [r * float(point["rate"]) / sum(rates) for r in rates]
    result = probe(load_profile(), int(point["replicas"]), rates, seed=1)
    return result.ttft_ms, result.itl_ms, result.arrival_rate


@pytest.fixture(scope="module")
def replayed() -> list[tuple[dict[str, str], tuple[float, float, float]]]:
    return [(p, replay(p)) for p in load_points()]


def log_err(twin: float, real: str) -> float:
    return abs(math.log10(twin / float(real)))


def test_latency_points_mean_error_within_fit(replayed) -> None:
    """Fitted: mean |log10 twin/real| 0.072 (ITL) and 0.156 (TTFT) over the 29 points not client-limited
    (~18 % and ~43 %; TTFT carries a real backlog the steady replay lacks); bounds with ~25 % margin."""
    steady = [(p, r) for p, r in replayed if p["client_limited"] != "True"]
    assert len(steady) >= 20
    itl = sum(log_err(r[1], p["itl_ms"]) for p, r in steady) / len(steady)
    ttft = sum(log_err(r[0], p["ttft_ms"]) for p, r in steady) / len(steady)
    assert itl <= 0.09, itl
    assert ttft <= 0.19, ttft


def test_one_replica_itl_follows_real_up_to_capacity(replayed) -> None:
    """The refit's target: on one replica at 13-27 req/s the twin's ITL is within 15 % of the real one
    (before the refit it was 10-24 % too high at 14-18 req/s), and it rises ~4x from 7 to 26 req/s."""
    one = [
        (float(p["rate"]), float(p["itl_ms"]), r[1])
        for p, r in replayed
        if p["replicas"] == "1"
        and p["client_limited"] != "True"
        and p["run"].startswith(("model-based-multi", "model-based-moderate"))
    ]
    near = [(rate, real, twin) for rate, real, twin in one if rate > 13]
    assert len(near) >= 5
    for rate, real, twin in near:
        assert abs(twin / real - 1) <= 0.15, (rate, real, twin)
    low = min(one)[2]
    high = max(one)[2]
    assert 3.0 <= high / low <= 6.0, (low, high)


def test_client_concurrency_limit_holds_back_the_load_where_it_did(replayed) -> None:
    """Where the real clients' --max-concurrency held the load back (2 replicas, 65 req/s offered),
    the twin's servers also get < 90 % of the offered load, and its ITL is within 25 %."""
    limited = [
        (p, r)
        for p, r in replayed
        if p["client_limited"] == "True" and p["replicas"] == "2" and float(p["offered"]) > 60
    ]
    assert limited
    for p, (_ttft, itl, rate) in limited:
        assert rate < 0.9 * float(p["offered"]), rate
        assert abs(itl / float(p["itl_ms"]) - 1) <= 0.25, (itl, p["itl_ms"])


@pytest.fixture(scope="module")
def reference_runs():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import reference_runs  # the benchmarks' replay of the real HPA runs

    return reference_runs


@pytest.mark.parametrize(
    ("name", "max_replicas_mae", "max_kv_mae"),
    # fitted with seed 1: high-load 1.90 / 0.091, moderate 0.19 / 0.054
    [("high-load-20251124", 2.6, 0.13), ("moderate-extended-20251210", 0.6, 0.09)],
)
def test_hpa_reference_runs_within_fit(reference_runs, tmp_path, name, max_replicas_mae, max_kv_mae) -> None:
    ref = next(r for r in reference_runs.REFERENCES if r.name == name)
    real = reference_runs.real_run(ref, tmp_path)
    twin = reference_runs.twin_run(ref, {}, 1, until_s=reference_runs.real_end_s(real)).run
    errors = reference_runs.fit_errors(real, twin)
    assert errors["replicas_mae"] <= max_replicas_mae, errors
    assert errors["kv_mae"] <= max_kv_mae, errors
    assert abs(errors["d_first_scale_up_at_s"]) <= 60, errors  # fitted: -18 s and -14 s
    assert errors["d_peak_replicas"] == 0, errors
