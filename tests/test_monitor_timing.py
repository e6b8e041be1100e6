"""The monitor's timing columns: `sample_lag_ms` (HPA read vs tick) and `sample_ms` (tick to last answer)."""

from __future__ import annotations

import csv
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from hpa_experiments.backends.base import (
    Backend,
    Clock,
    InstantSample,
    JobLaunch,
    JobState,
    QueryError,
    RangeSeries,
    ScalingSnapshot,
)
from hpa_experiments.config import load_config
from hpa_experiments.monitor import Monitor, TickResult
from hpa_experiments.plan import build_plan
from hpa_experiments.rundir import metrics_columns, utc_iso
from hpa_experiments.runner import Runner

REPO = Path(__file__).resolve().parents[1]


class Wall(Clock):
    def now(self) -> float:
        return time.time()

    def sleep_until(self, t: float) -> None:
        time.sleep(max(0.0, t - time.time()))


class Frozen(Clock):
    virtual = True

    def __init__(self, t: float):
        self.t = t

    def now(self) -> float:
        return self.t

    def sleep_until(self, t: float) -> None:
        self.t = t


class SlowQueries(Backend):
    """Answers each PromQL query after the delay named in it ("sleep:0.2"); "fail" raises."""

    name = "fake"

    def __init__(self, clock: Clock):
        self.clock = clock

    def start_job(self, launch: JobLaunch) -> None: ...

    def stop_job(self, resource_name: str) -> None: ...

    def job_states(self) -> dict[str, JobState]:
        return {}

    def scaling_snapshot(self) -> ScalingSnapshot:
        return ScalingSnapshot(taken_at=self.clock.now(), hpa_found=False, ready_replicas=1)

    def query(self, promql: str, at: float | None = None) -> list[InstantSample]:
        if promql == "fail":
            time.sleep(0.05)
            raise QueryError("server unreachable")
        time.sleep(float(promql.split(":")[1]))
        return [InstantSample({}, 1.0)]

    def query_range(self, promql: str, start: float, end: float, step: float) -> list[RangeSeries]:
        return []


def tick(backend: Backend, queries: dict[str, str], t0: float) -> TickResult:
    monitor = Monitor(backend, queries, t0, 1.0, lambda _: "load", lambda _: None)
    try:
        return monitor.tick(0).result(timeout=10)
    finally:
        monitor.close()


def sample(backend: Backend, queries: dict[str, str], t0: float) -> dict[str, Any]:
    return tick(backend, queries, t0).row


def test_sample_ms_spans_tick_time_to_the_slowest_answer_with_queries_concurrent() -> None:
    queries = {name: "sleep:0.8" for name in "abcdef"} | {"g": "sleep:0.05"}
    row = sample(SlowQueries(Wall()), queries, time.time())
    assert row["sample_ms"] >= 800.0
    # one after another they take 4,850 ms; concurrently about 800 (the 4,000 bound leaves 5x for a loaded machine)
    assert row["sample_ms"] < 4000.0
    assert row["sample_lag_ms"] < row["sample_ms"]


def test_sample_ms_counts_from_the_planned_tick_time() -> None:
    """A tick started late shows it in both columns: lateness is part of the sampling time."""
    row = sample(SlowQueries(Wall()), {"a": "sleep:0.1"}, time.time() - 0.5)
    assert row["sample_lag_ms"] >= 500.0
    assert row["sample_ms"] >= 600.0


def test_sample_ms_is_set_when_a_query_fails() -> None:
    result = tick(SlowQueries(Wall()), {"ok": "sleep:0.01", "bad": "fail"}, time.time())
    assert result.failures == {"bad": "server unreachable"}
    assert result.row["ok"] == 1.0 and "bad" not in result.row
    assert result.row["sample_ms"] >= 50.0


def test_virtual_clock_gives_zero_so_simulated_rows_stay_reproducible() -> None:
    clock = Frozen(1_700_000_000.0)
    row = sample(SlowQueries(clock), {"a": "sleep:0"}, clock.t)
    assert row["sample_ms"] == 0.0
    assert row["sample_lag_ms"] == 0.0


def test_sample_ms_column_follows_sample_lag_ms() -> None:
    columns = metrics_columns([0.5])
    assert columns.index("sample_ms") == columns.index("sample_lag_ms") + 1


class SlowToPrepare(SlowQueries):
    """Its first reads (the runner's preparation) are slow, as on a distant cluster."""

    def __init__(self, clock: Clock, delay: float):
        super().__init__(clock)
        self.delay = delay
        self.started: dict[str, float] = {}

    def describe(self) -> dict[str, Any]:
        time.sleep(self.delay)
        return super().describe()

    def scaling_snapshot(self) -> ScalingSnapshot:
        if not self.started:
            time.sleep(self.delay)
        return super().scaling_snapshot()

    def start_job(self, launch: JobLaunch) -> None:
        self.started[launch.resource_name] = self.clock.now()

    def query(self, promql: str, at: float | None = None) -> list[InstantSample]:
        return []  # the standard queries, answered at once


@pytest.mark.slow
def test_run_starts_its_clock_after_preparing_so_tick_0_and_first_job_are_on_time(tmp_path: Path) -> None:
    doc = {
        "name": "timing",
        "namespace": "bench",
        "deployment": "vllm",
        "backend": "kubernetes",
        "hpa": {"enabled": False},
        "jobs": [
            {"name": "a", "rate": 1, "duration": 1, "manifest": str(REPO / "workloads" / "vllm-bench-serve.yaml")}
        ],
        "metrics": {"interval": 1, "rate_window": "10s"},
    }
    (tmp_path / "timing.yaml").write_text(yaml.safe_dump(doc))
    config = load_config(tmp_path / "timing.yaml")
    backend = SlowToPrepare(Wall(), delay=1.5)  # two slow reads: a clock started before them is 3 s late
    runner = Runner(config, build_plan(config), backend, base_dir=tmp_path / "out", handle_signals=False)
    result = runner.run()
    assert result.exit_code == 0, result.reason
    (started_at,) = backend.started.values()
    assert started_at - runner.t0 < 0.6  # not 3 s late after two slow preparation reads (5x headroom)
    with (result.run_dir / "metrics.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert float(rows[0]["sample_lag_ms"]) < 600.0
    # The row timestamps are the exact evaluation times of the PromQL columns (whole ms).
    assert abs(runner.t0 * 1000 - round(runner.t0 * 1000)) < 1e-3
    assert [r["timestamp"] for r in rows] == [utc_iso(float(f"{runner.t0 + k:.3f}")) for k in range(len(rows))]
    with (result.run_dir / "phases.csv").open(newline="") as fh:
        (phase,) = list(csv.DictReader(fh))
    assert float(phase["actual_start_s"]) < 0.6


def test_a_long_stall_with_many_pending_ticks_neither_deadlocks_nor_piles_up() -> None:
    """Ticks wait for their calls; with one shared pool, a stall that piles up more pending ticks
    than workers would leave every worker waiting on calls that can never run.  And a slow query
    is asked once, not once a tick: later ticks leave the cell empty (skipped), and its answer,
    later than its tick's wait of one interval, is dropped (late)."""
    queries = {"slow": "sleep:0.3"}
    monitor = Monitor(SlowQueries(Wall()), queries, time.time(), 0.01, lambda _: "load", lambda _: None, max_workers=2)
    began = time.monotonic()
    try:
        futures = [monitor.tick(k) for k in range(12)]
        results = [f.result(timeout=20) for f in futures]
    finally:
        monitor.close()
    assert time.monotonic() - began < 0.3 * 12 / 5  # not the 12 answers one after the other (5x headroom)
    assert [r.row["elapsed_s"] for r in results] == [round(k * 0.01, 6) for k in range(12)]
    assert all("slow" not in r.row and "slow" in r.failures for r in results)
    assert monitor.late["slow"] >= 1 and monitor.late["slow"] + monitor.skipped["slow"] == 12
