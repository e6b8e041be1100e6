"""KPIs on hand-built run directories whose answers are known."""

from __future__ import annotations

import json
import math
from itertools import pairwise
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hpa_experiments.analysis import compute_kpis, load_run
from hpa_experiments.analysis.kpis import latency_stats, load_increases
from hpa_experiments.errors import UsageError
from tests.support.synthetic_runs import write_run


def step_rows(n: int = 240, up_at: int = 90, down_at: int = 170, ttft: bool = True) -> list[dict]:
    """1 replica, 4 from `up_at` (desired 10 s earlier), back to 1 from `down_at`; 1 s samples."""
    rows = []
    for t in range(n):
        replicas = 4 if up_at <= t < down_at else 1
        desired = 4 if up_at - 10 <= t < down_at else 1
        rows.append(
            {
                "elapsed_s": t,
                "replicas": replicas,
                "desired_replicas": desired,
                "num_requests_waiting": 5 if 60 <= t < 100 else 0,
                "ttft_ms": (1000.0 if 60 <= t < 90 else 100.0) if ttft else None,
                "itl_ms": None,
            }
        )
    return rows


PHASES = [
    {
        "job": "load",
        "rate": 20,
        "planned_start_s": 60,
        "planned_end_s": 150,
        "actual_start_s": 60,
        "actual_end_s": 150,
        "outcome": "succeeded",
    }
]


@pytest.fixture
def step_run(tmp_path: Path):
    write_run(
        tmp_path / "step", step_rows(), phases=PHASES, config={"name": "step", "slo": {"ttft_ms": 500, "itl_ms": 30}}
    )
    return load_run(tmp_path / "step")


def test_scale_up_times_after_a_known_step(step_run):
    (increase,) = compute_kpis(step_run)["load_increases"]
    assert increase["at_s"] == 60
    assert increase["offered_rps_before"] == 0 and increase["offered_rps_after"] == 20
    assert increase["baseline_replicas"] == 1
    assert increase["time_to_first_scale_up_s"] == 20  # desired rises at t=80
    assert increase["steady_replicas"] == 4
    assert increase["time_to_steady_s"] == 30  # replicas reach 4 at t=90 and hold


def test_replica_seconds_peak_and_oscillation(step_run):
    replicas = compute_kpis(step_run)["kpis"]["replicas"]
    # 80 s at 4 replicas and 160 s at 1 (each 1 s sample holds for one interval)
    assert replicas["replica_seconds"] == 80 * 4 + 160 * 1
    assert replicas["gpu_hours"] == pytest.approx(480 / 3600)
    assert replicas["peak"] == 4 and replicas["peak_at_s"] == 90
    assert replicas["min"] == 1
    assert replicas["direction_changes"] == 1  # up, then down
    mean = 480 / 240
    assert replicas["mean"] == pytest.approx(mean)
    assert replicas["std"] == pytest.approx(math.sqrt((80 * (4 - mean) ** 2 + 160 * (1 - mean) ** 2) / 240))


def test_scale_down_completion_after_last_job(step_run):
    down = compute_kpis(step_run)["kpis"]["scale_down"]
    assert down["load_end_s"] == 150
    assert down["from_replicas"] == 4 and down["to_replicas"] == 1
    assert down["completed_after_s"] == 20  # replicas back at 1 at t=170


def test_scale_down_never_completed_is_none(tmp_path):
    write_run(tmp_path / "r", step_rows(down_at=10_000), phases=PHASES)
    assert compute_kpis(load_run(tmp_path / "r"))["kpis"]["scale_down"]["completed_after_s"] is None


def test_latency_stats_and_slo_shares(step_run):
    summary = compute_kpis(step_run)
    kpis = summary["kpis"]
    assert kpis["ttft_ms"]["samples"] == 240
    assert kpis["ttft_ms"]["mean"] == pytest.approx((30 * 1000 + 210 * 100) / 240)
    assert kpis["ttft_ms"]["p50"] == 100
    assert kpis["ttft_ms"]["p99"] == 1000
    assert kpis["ttft_over_slo_share"] == pytest.approx(30 / 240)
    assert kpis["waiting_share"] == pytest.approx(40 / 240)
    (load, cooldown) = summary["phases"]
    assert (load["phase"], load["start_s"], load["end_s"], load["basis"]) == ("load", 60, 150, "actual")
    assert load["ttft_over_slo_share"] == pytest.approx(30 / 90)
    assert load["waiting_share"] == pytest.approx(40 / 90)
    assert load["ttft_ms"]["p90"] == 1000
    assert cooldown["phase"] == "cooldown" and cooldown["ttft_over_slo_share"] == 0
    assert summary["slo"] == {"ttft_ms": 500, "itl_ms": 30}


def test_warm_up_leaves_early_samples_out_of_the_statistics(tmp_path):
    config = {"name": "w", "slo": {"ttft_ms": 500}, "metrics": {"warm_up_duration_s": 75}}
    write_run(tmp_path / "w", step_rows(), phases=PHASES, config=config)
    run = load_run(tmp_path / "w")
    summary = compute_kpis(run)
    kpis = summary["kpis"]
    # samples 75..239 count: TTFT 1000 ms for 75..89 (15 samples), 100 ms for the other 150
    assert len(run.metrics) == 240  # the file keeps every sample
    assert (kpis["samples"], kpis["warm_up_s"], kpis["samples_in_statistics"]) == (240, 75, 165)
    assert kpis["ttft_ms"]["samples"] == 165
    assert kpis["ttft_ms"]["mean"] == pytest.approx((15 * 1000 + 150 * 100) / 165)
    assert kpis["ttft_over_slo_share"] == pytest.approx(15 / 165)
    assert kpis["waiting_share"] == pytest.approx(25 / 165)  # waiting 75..99
    assert kpis["replicas_mean"] == pytest.approx((80 * 4 + 85 * 1) / 165)
    (load, cooldown) = summary["phases"]
    assert load["samples"] == 75 and load["ttft_over_slo_share"] == pytest.approx(15 / 75)
    assert load["waiting_share"] == pytest.approx(25 / 75)
    assert cooldown["samples"] == 90 and cooldown["ttft_over_slo_share"] == 0
    # whole-run cost and reaction keep the warm-up
    assert kpis["replicas"]["gpu_hours"] == pytest.approx(480 / 3600)
    assert kpis["replicas"]["peak"] == 4
    (increase,) = summary["load_increases"]
    assert increase["time_to_first_scale_up_s"] == 20
    assert "sample statistics leave out the first 75 s (metrics.warm_up_duration_s)" in summary["notes"]


def test_warm_up_longer_than_the_run_leaves_no_statistics(tmp_path):
    config = {"name": "w", "metrics": {"warm_up_duration_s": 1000}}
    write_run(tmp_path / "w", step_rows(), phases=PHASES, config=config)
    kpis = compute_kpis(load_run(tmp_path / "w"))["kpis"]
    assert kpis["samples_in_statistics"] == 0
    assert kpis["ttft_ms"]["mean"] is None and kpis["waiting_share"] is None
    assert kpis["replicas"]["peak"] == 4


def test_missing_data_is_none_never_zero(tmp_path):
    write_run(tmp_path / "r", step_rows(ttft=False), phases=PHASES, config={"name": "r", "slo": {"ttft_ms": 500}})
    summary = compute_kpis(load_run(tmp_path / "r"))
    kpis = summary["kpis"]
    for column in ("ttft_ms", "itl_ms"):
        assert kpis[column] == {"samples": 0, "mean": None, "p50": None, "p90": None, "p99": None}
    assert kpis["ttft_over_slo_share"] is None
    assert summary["data_coverage"]["ttft_ms"] == 0
    # and it survives JSON as null
    assert json.loads(json.dumps(summary))["kpis"]["ttft_ms"]["mean"] is None


def test_no_slo_means_no_slo_keys(tmp_path):
    write_run(tmp_path / "r", step_rows(), phases=PHASES)
    assert not any(key.endswith("_over_slo_share") for key in compute_kpis(load_run(tmp_path / "r"))["kpis"])


def test_no_scale_up_when_replicas_never_rise(tmp_path):
    rows = [{"elapsed_s": t, "replicas": 2, "desired_replicas": 2} for t in range(100)]
    write_run(tmp_path / "r", rows, phases=PHASES)
    (increase,) = compute_kpis(load_run(tmp_path / "r"))["load_increases"]
    assert increase["time_to_first_scale_up_s"] is None
    assert increase["time_to_steady_s"] is None
    assert increase["steady_replicas"] == 2


def test_only_rising_planned_load_counts_as_increase(tmp_path):
    phases = [
        {"job": "a", "rate": 10, "planned_start_s": 0, "planned_end_s": 100},
        {"job": "b", "rate": 5, "planned_start_s": 100, "planned_end_s": 200},  # load falls 10 -> 5
        {"job": "c", "rate": 20, "planned_start_s": 150, "planned_end_s": 250},  # rises 5 -> 25
    ]
    write_run(tmp_path / "r", [{"elapsed_s": t, "replicas": 1} for t in range(0, 260, 5)], phases=phases, interval=5)
    increases = load_increases(load_run(tmp_path / "r"))
    assert [(i.at_s, i.offered_before, i.offered_after) for i in increases] == [(0, 0, 10), (150, 5, 25)]


def test_increases_from_offered_column_without_phases(tmp_path):
    rows = [{"elapsed_s": t, "replicas": 1, "offered_rps": 5 if t < 50 else 15} for t in range(100)]
    write_run(tmp_path / "r", rows)
    increases = load_increases(load_run(tmp_path / "r"))
    assert [(i.at_s, i.offered_before, i.offered_after) for i in increases] == [(50, 5, 15)]


def test_oscillation_counts_direction_changes(tmp_path):
    pattern = [1, 2, 3, 2, 2, 3, 1, 1]  # up, down, up, down -> 3 direction changes
    write_run(tmp_path / "r", [{"elapsed_s": t, "replicas": r} for t, r in enumerate(pattern)])
    assert compute_kpis(load_run(tmp_path / "r"))["kpis"]["replicas"]["direction_changes"] == 3


def test_latency_stats_percentiles():
    import numpy as np

    stats = latency_stats(np.array([np.nan, 1.0, 2.0, 3.0, 4.0, np.nan]))
    assert stats["samples"] == 4 and stats["mean"] == 2.5 and stats["p50"] == 2.5
    assert stats["p90"] == pytest.approx(3.7)


def test_load_run_rejects_a_folder_without_run_json(tmp_path):
    (tmp_path / "metrics.csv").write_text("timestamp,replicas\n")
    (tmp_path / "scaling-events.log").write_text("")
    with pytest.raises(UsageError, match="import-legacy"):
        load_run(tmp_path)


@pytest.mark.slow
def test_empty_and_truncated_runs_still_report(tmp_path):
    from hpa_experiments.analysis.report import NO_DATA, build_report, kpi_rows

    write_run(tmp_path / "empty", [], status="running")
    files = build_report(tmp_path / "empty")
    assert files.summary["kpis"]["replicas"]["peak"] is None
    assert files.html_path.exists() and (tmp_path / "empty" / "plots" / "overview.png").exists()
    values = dict((label, value) for _, label, value in kpi_rows(files.summary))
    assert values["peak (at)"] == NO_DATA and values["GPU-hours (1 GPU/replica)"] == NO_DATA

    # a killed writer can leave half a row: it is ignored, the complete rows count
    write_run(tmp_path / "cut", [{"elapsed_s": t, "replicas": 2} for t in range(10)])
    with (tmp_path / "cut" / "metrics.csv").open("a") as fh:
        fh.write("2026-05-28T20:26:50.000Z,3,3")
    run = load_run(tmp_path / "cut")
    assert len(run.metrics) == 10
    assert compute_kpis(run)["kpis"]["replicas"]["replica_seconds"] == 20


@pytest.mark.slow
@settings(max_examples=40, deadline=None)
@given(
    replicas=st.lists(st.integers(min_value=1, max_value=10), min_size=1, max_size=60),
    waiting=st.lists(st.one_of(st.none(), st.floats(min_value=0, max_value=50)), min_size=60, max_size=60),
)
def test_kpi_invariants_on_random_runs(replicas, waiting):
    import numpy as np
    import pandas as pd

    from hpa_experiments.analysis.load import Run

    n = len(replicas)
    metrics = pd.DataFrame(
        {
            "elapsed_s": np.arange(n) * 5.0,
            "replicas": np.array(replicas, dtype=float),
            "num_requests_waiting": np.array(waiting[:n], dtype=float),
        }
    )
    run = Run(Path("mem"), {"interval_s": 5.0}, metrics, pd.DataFrame(columns=["job"]), pd.DataFrame())
    kpis = compute_kpis(run)["kpis"]
    assert kpis["replicas"]["replica_seconds"] == pytest.approx(5.0 * sum(replicas))
    assert min(replicas) <= kpis["replicas"]["mean"] <= max(replicas)
    changes = sum(1 for a, b in pairwise(replicas) if a != b)
    assert 0 <= kpis["replicas"]["direction_changes"] <= max(0, changes - 1)
    present = [w for w in waiting[:n] if w is not None]
    if present:
        assert kpis["waiting_share"] == pytest.approx(sum(w > 0 for w in present) / len(present))
    else:
        assert kpis["waiting_share"] is None


@pytest.mark.parametrize(
    ("manifest_name", "spec", "floor"),
    [("hpa-applied.yaml", {"minReplicas": 2}, 2), ("scaledobject-applied.yaml", {"minReplicaCount": 2}, 2)],
)
def test_scale_down_target_is_the_autoscalers_floor_when_the_run_started_below_it(tmp_path, manifest_name, spec, floor):
    """A Deployment at 1 replica under minReplicas 2: the scale-down is complete at 2, not 'never back at 1'."""
    rows = step_rows()
    for row in rows:
        if row["elapsed_s"] >= 170:
            row["replicas"] = row["desired_replicas"] = floor
    write_run(tmp_path / "r", rows, phases=PHASES)
    (tmp_path / "r" / manifest_name).write_text(json.dumps({"spec": spec}), encoding="utf-8")
    down = compute_kpis(load_run(tmp_path / "r"))["kpis"]["scale_down"]
    assert down["to_replicas"] == floor
    assert down["completed_after_s"] == 20
    (tmp_path / "r" / manifest_name).unlink()
    assert compute_kpis(load_run(tmp_path / "r"))["kpis"]["scale_down"]["completed_after_s"] is None
