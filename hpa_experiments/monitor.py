"""One metrics.csv row per grid tick: HPA and Deployment state plus the PromQL columns.

Every tick is taken at `t0 + k * interval` (absolute times, so there is no drift), and
PromQL is evaluated at exactly that time.  On a wall clock the queries of one tick run
concurrently in a thread pool, so a slow query delays neither the next tick nor a Job
start; on the simulation's virtual clock everything is synchronous.  A value that could
not be obtained stays empty (None), never 0.

Slow answers never pile up: each part of a tick (the HPA/Deployment read, the Job listing, each
PromQL column) has at most one call in flight.  A tick waits until the next tick is due: for a
part's previous call to answer before asking again (else the cell stays empty, counted in
`skipped`), and for its own calls (an answer later than that is dropped, counted in `late`).
The runner's range queries at the end fill the PromQL holes.  A tick that starts more than an
interval after its time (the run was held up, e.g. by an API outage) does not read the cluster:
its state now is not its state then.
"""

from __future__ import annotations

import math
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any

from hpa_experiments.backends.base import Backend, HpaMetricReading, JobState, ScalingSnapshot
from hpa_experiments.hpa_reasons import target_column
from hpa_experiments.keda_status import condition_cells
from hpa_experiments.rundir import utc_iso

QUEUE_SUFFIX = "num_requests_waiting"
KV_SUFFIXES = ("kv_cache_usage_perc", "gpu_cache_usage_perc")


def hpa_metric_column(metric_name: str) -> str:
    """The metrics.csv column for an HPA metric: the two standard ones, else hpa_<name>."""
    if metric_name.endswith(QUEUE_SUFFIX):
        return "num_requests_waiting"
    if metric_name.endswith(KV_SUFFIXES):
        return "kv_cache_usage_perc"
    return f"hpa_{metric_name}"


def extra_hpa_metrics(readings: Iterable[HpaMetricReading]) -> list[str]:
    """HPA metrics that need their own hpa_<name> columns."""
    return [r.name for r in readings if hpa_metric_column(r.name).startswith("hpa_")]


@dataclass
class TickResult:
    """What one tick produced: the row, the job states seen, and query failures."""

    k: int
    row: dict[str, Any]
    job_states: dict[str, JobState] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)  # column -> error text
    snapshot: ScalingSnapshot | None = None


class Monitor:
    """Takes samples on the grid; the runner decides when to call `tick`."""

    def __init__(
        self,
        backend: Backend,
        queries: Mapping[str, str],
        t0: float,
        interval: float,
        phase_at: Callable[[float], str],
        offered_rps_at: Callable[[float], float | None],
        max_workers: int | None = None,
    ):
        self.backend = backend
        self.queries = dict(queries)
        self.t0 = t0
        self.interval = interval
        self.phase_at = phase_at
        self.offered_rps_at = offered_rps_at
        # Two pools: a tick waits for its calls, so ticks and calls must not share workers (a
        # long stall would otherwise fill every worker with waiting ticks: a deadlock).  One call
        # worker per call of a tick (snapshot, job listing, each query), twice over for a late tick.
        calls = max_workers or 2 * (len(self.queries) + 2)
        self._pool = None if backend.clock.virtual else ThreadPoolExecutor(calls, "monitor-call")
        self._ticks = None if backend.clock.virtual else ThreadPoolExecutor(4, "monitor-tick")
        self._in_flight: dict[str, Future[Any]] = {}  # part ("hpa", "jobs", a column) -> its last call
        self._lock = threading.Lock()
        self.skipped: Counter[str] = Counter()  # part -> ticks that did not ask (previous call in flight)
        self.late: Counter[str] = Counter()  # part -> answers dropped, later than their tick's wait

    def tick_time(self, k: int) -> float:
        return self.t0 + k * self.interval

    def tick(self, k: int) -> Future[TickResult]:
        """Start sample k; the Future resolves when all its parts are in."""
        if self._ticks is None:
            done: Future[TickResult] = Future()
            done.set_result(self._sample(k, _now_call))
            return done
        return self._ticks.submit(self._sample, k, self._pool_call)

    def close(self) -> None:
        """Wait for the ticks (each waits at most an interval), not for slow calls still in flight:
        their answers would be dropped anyway, and the run ends on time."""
        if self._ticks is not None:
            self._ticks.shutdown(wait=True)
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    # -- one sample -----------------------------------------------------------------

    def _pool_call(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        assert self._pool is not None
        return self._pool.submit(fn, *args)

    def _sample(self, k: int, call: Callable[..., Future[Any]]) -> TickResult:
        at = self.tick_time(k)
        result = TickResult(k=k, row=self._base_row(k, at))
        wall = self._pool is not None
        started = self.backend.clock.now()
        late_by = started - at if wall else 0.0
        parts: dict[str, tuple[Callable[..., Any], tuple[Any, ...]]] = {
            "hpa": (self._cluster_read, (self.backend.scaling_snapshot,)),
            "jobs": (self._cluster_read, (self.backend.job_states,)),
            **{col: (self.backend.query, (q, at)) for col, q in self.queries.items()},
        }
        deadline = max(at, started) + self.interval  # a tick waits for its calls until the next is due
        for part in ("hpa", "jobs"):
            if late_by > self.interval:
                result.failures[part] = f"tick started {late_by:.1f} s late: not read (the state now is not then)"
                self.skipped[part] += 1
                del parts[part]
        futures = self._ask(parts, call, deadline if wall else None)
        for part in parts.keys() - futures.keys():
            result.failures[part] = "previous call still unanswered: not asked again (slow answers)"
            self.skipped[part] += 1
        answers: dict[str, Any] = {}
        for part, future in futures.items():
            try:
                answers[part] = future.result(timeout=max(0.0, deadline - self.backend.clock.now()) if wall else None)
            except FutureTimeout:
                result.failures[part] = f"no answer within {self.interval:g} s: dropped when it comes"
                self.late[part] += 1
            except Exception as exc:  # the backend already retried; record and go on
                result.failures[part] = _short(exc)
        if "hpa" in answers:
            result.snapshot = answers["hpa"]
            self._fill_scaling(result.row, result.snapshot, at)
        if "jobs" in answers:
            result.job_states = answers["jobs"]
            result.row["active_jobs"] = sum(1 for s in result.job_states.values() if s.exists and s.active > 0)
        for col in self.queries:
            if col in answers:
                try:
                    result.row[col] = single_value(answers[col])
                except Exception as exc:  # an answer of the wrong shape: a failed cell, not a failed run
                    result.failures[col] = _short(exc)
        # How long the tick took, from its planned time until the last part answered.
        result.row["sample_ms"] = round(max(0.0, self.backend.clock.now() - at) * 1000, 1)
        return result

    def _cluster_read(self, read: Callable[[], Any]) -> Any:
        """A read of the cluster at tick time, retried for less than one interval: the next tick
        reads again (an API outage is then one failed read per tick, not reads piling up)."""
        with self.backend.tick_reads(0.8 * self.interval):  # so that it answers, or fails, within the tick
            return read()

    def _ask(
        self,
        parts: Mapping[str, tuple[Callable[..., Any], tuple[Any, ...]]],
        call: Callable[..., Future[Any]],
        deadline: float | None,
    ) -> dict[str, Future[Any]]:
        """Start each part's call once its previous call has answered, waiting for that until
        `deadline` (None: do not wait); parts still busy then are left out."""
        futures: dict[str, Future[Any]] = {}
        while True:
            busy: list[Future[Any]] = []
            with self._lock:
                for part, (fn, args) in parts.items():
                    if part in futures:
                        continue
                    previous = self._in_flight.get(part)
                    if previous is None or previous.done():
                        futures[part] = self._in_flight[part] = call(fn, *args)
                    else:
                        busy.append(previous)
            remaining = 0.0 if deadline is None else deadline - self.backend.clock.now()
            if not busy or remaining <= 0:
                return futures
            wait(busy, timeout=remaining, return_when=FIRST_COMPLETED)

    def _base_row(self, k: int, at: float) -> dict[str, Any]:
        elapsed = round(k * self.interval, 6)
        return {
            "timestamp": utc_iso(at),
            "elapsed_s": elapsed,
            "phase": self.phase_at(elapsed),
            "offered_rps": self.offered_rps_at(elapsed),
        }

    @staticmethod
    def _fill_scaling(row: dict[str, Any], snap: ScalingSnapshot, at: float) -> None:
        row["sample_lag_ms"] = round(max(0.0, snap.taken_at - at) * 1000, 1)
        row["ready_replicas"] = snap.ready_replicas
        if snap.scaled_object is not None:
            row.update(condition_cells(snap.scaled_object))
        if not snap.hpa_found:
            return
        row["replicas"] = snap.current_replicas
        row["desired_replicas"] = snap.desired_replicas
        for reading in snap.metrics:
            column = hpa_metric_column(reading.name)
            row[column] = reading.current
            row[target_column(column)] = reading.target


def single_value(samples: list[Any]) -> float | None:
    """The value of a one-series result; None for no series or NaN (no data, e.g. no traffic)."""
    if not samples:
        return None
    value = float(samples[0].value)
    return None if math.isnan(value) or math.isinf(value) else value


def _now_call(fn: Callable[..., Any], *args: Any) -> Future[Any]:
    future: Future[Any] = Future()
    try:
        future.set_result(fn(*args))
    except Exception as exc:
        future.set_exception(exc)
    return future


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:300]
