"""The monitor's timing columns: `sample_lag_ms` (HPA read vs tick) and `sample_ms` (tick to last answer)."""

from __future__ import annotations

import time
from typing import Any

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
from hpa_experiments.monitor import Monitor, TickResult
from hpa_experiments.rundir import metrics_columns


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
    queries = {"a": "sleep:0.3", "b": "sleep:0.3", "c": "sleep:0.3", "d": "sleep:0.05"}
    row = sample(SlowQueries(Wall()), queries, time.time())
    assert row["sample_ms"] >= 300.0
    assert row["sample_ms"] < 850.0  # well under the 950 ms the queries take one after another
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
