"""Executes a Plan on a Backend: start and stop Jobs on time, sample on the grid, clean up.

The same code serves the Kubernetes backend (wall clock) and the digital twin (virtual
clock).  Everything happens in one loop over absolute instants (job stops, job starts,
ticks), so nothing drifts.  SIGINT/SIGTERM, a failed Job or a broken backend all lead to
the same cleanup: delete the Jobs this run created, flush the files, mark the run.
"""

from __future__ import annotations

import contextlib
import csv
import math
import os
import platform
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol, TypeVar

import yaml

from hpa_experiments import __version__
from hpa_experiments.backends.base import Backend, JobLaunch, QueryError, ScalingSnapshot
from hpa_experiments.backends.kube.objects import hpa_metric_readings
from hpa_experiments.client_results import ClientResults
from hpa_experiments.column_queries import MetricNames, run_queries
from hpa_experiments.config import ExperimentConfig
from hpa_experiments.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, HpaExpError
from hpa_experiments.keda_names import named_readings
from hpa_experiments.keda_status import condition_changes
from hpa_experiments.latency_windows import write_latency_windows
from hpa_experiments.lost_objects import LostSight
from hpa_experiments.monitor import Monitor, TickResult, extra_hpa_metrics
from hpa_experiments.plan import Plan, PlannedJob
from hpa_experiments.rundir import (
    SCALED_OBJECT_APPLIED_FILE,
    RunInfo,
    RunStatus,
    RunWriter,
    create_run_dir,
    format_cell,
    metrics_columns,
)
from hpa_experiments.signals import stop_on_signals
from hpa_experiments.watchdog import Watchdog, watched_columns
from hpa_experiments.why_recorder import WhyRecorder
from hpa_experiments.workloads import job_resource_name, new_run_id, render_job

T = TypeVar("T")


class RunObserver(Protocol):
    """Receives progress; the console and the menu implement it."""

    def on_start(self, runner: Runner) -> None: ...
    def on_row(self, row: dict[str, Any]) -> None: ...
    def on_event(self, elapsed: float, kind: str, detail: str) -> None: ...
    def on_finish(self, result: RunResult) -> None: ...


@dataclass
class RunResult:
    run_dir: Path
    status: RunStatus
    exit_code: int
    reason: str | None = None
    leftover_jobs: list[str] = field(default_factory=list)
    stopped_waiting: bool = False  # a second signal cut the cleanup short (what is left: leftover_jobs)


@dataclass
class _JobRun:
    planned: PlannedJob
    resource: str
    started: bool = False
    stopped: bool = False
    failed: str | None = None
    in_grace: bool = False  # past its planned end, still running, given time to print its results


class Runner:
    """One run of one experiment. Call `run()` once."""

    def __init__(
        self,
        config: ExperimentConfig,
        plan: Plan,
        backend: Backend,
        *,
        base_dir: Path | None = None,
        metric_names: MetricNames | None = None,
        keep_jobs: bool = False,
        observer: RunObserver | None = None,
        handle_signals: bool = True,
        run_id: str | None = None,
    ):
        self.config = config
        self.plan = plan
        self.backend = backend
        self.base_dir = Path(base_dir or config.output.base_dir)
        self.metric_names = metric_names or MetricNames()
        self.keep_jobs = keep_jobs
        self.observer = observer
        self.handle_signals = handle_signals
        self.run_id = run_id
        self.clock = backend.clock
        self._stop_reason: str | None = None
        self._failure: str | None = None
        self.writer: RunWriter | None = None
        self.monitor: Monitor | None = None
        self.t0 = 0.0
        self._pending: deque[Future[TickResult]] = deque()
        self._last_replicas: int | None = None
        self._failing: dict[str, int] = {}  # column -> consecutive missed ticks
        self._missed: dict[str, set[int]] = {}  # column -> ticks without a value
        self._failed_jobs: list[str] = []  # jobs that failed; with `continue` the run goes on
        self._why: WhyRecorder | None = None
        self._keda_conditions: dict[str, dict[str, str]] = {}  # ScaledObject condition type -> last seen
        self._watchdog: Watchdog | None = None
        scaled_object = (config.scaled_object or {}).get("metadata", {}).get("name")
        hpa_name = config.hpa_name if config.hpa.enabled else None
        self._lost = LostSight(config.namespace, config.deployment, hpa_name, scaled_object)
        self.client_results: ClientResults | None = None  # with output.include_pod_logs
        self._cleaning = False  # in _cleanup: its API calls are waited for patiently (see _patiently)
        self._hurry: str | None = None  # the signal that came again: cleanup stops waiting
        self._gave_up: list[str] = []  # cleanup steps not waited for after that signal
        self._cleanup_problems: list[str] = []  # cleanup steps that failed
        self._write_failed = False  # a file of the run could not be written (disk full)

    # -- control from outside (signals, the menu) ------------------------------------

    def request_stop(self, reason: str = "interrupted") -> None:
        """Ask the run to stop at the next moment it can; cleanup follows."""
        if self._stop_reason is None:
            self._stop_reason = reason

    def stop_waiting(self, signal_name: str = "a second stop request") -> None:
        """A second SIGINT/SIGTERM: cleanup gives up what it is waiting for and lists what is left.
        Called from a signal handler, so it only sets a flag."""
        self._hurry = self._hurry or signal_name

    @property
    def elapsed(self) -> float:
        return self.clock.now() - self.t0

    # -- the run ---------------------------------------------------------------------

    def _expected_metrics(self, first: ScalingSnapshot) -> ScalingSnapshot:
        """The first snapshot, with the metrics the run will see when the HPA does not exist yet (the
        run applies it, or KEDA makes it): its manifest's, KEDA's under their triggers' names."""
        manifest = self.config.hpa_manifest
        if first.metrics or not manifest:
            return first
        return replace(first, metrics=named_readings(hpa_metric_readings(manifest), self.config.scaled_object))

    def run(self) -> RunResult:
        with stop_on_signals(self.request_stop, self.handle_signals, self.stop_waiting):
            # Run id, folder name and start/end in run.json are wall-clock; rows and events use
            # the backend's clock (virtual for the twin, so a seed gives byte-identical rows).
            started = time.time()
            run_id = self.run_id or new_run_id(started)
            self.run_id = run_id
            jobs = [_JobRun(j, job_resource_name(j.name, run_id)) for j in self.plan.jobs]
            launches = {j.resource: self._launch(j, run_id) for j in jobs}  # render all before applying
            seen = self.backend.scaling_snapshot()
            first = self._expected_metrics(seen)
            queries = run_queries(self.config, self.metric_names)
            columns = metrics_columns(
                self.config.metrics.percentiles,
                extra_hpa_metrics(first.metrics),
                self.config.metrics.prometheus,
                keda=self.config.autoscaler_kind == "keda",
            )
            self._why = WhyRecorder(self.config.hpa_manifest, first)
            columns += [c for c in self._why.columns() if c not in columns]
            backend_info, versions = self.backend.describe(), _versions()
            # t0 only after the slow preparations (rendering, API reads), so tick 0 and Jobs
            # planned at 0 s are not late by their duration.  A whole millisecond, so the
            # millisecond timestamps in metrics.csv are exactly the PromQL evaluation times.
            self.t0 = math.ceil(self.clock.now() * 1000) / 1000
            info = RunInfo(
                id=run_id,
                name=self.config.name,
                backend=self.backend.name,
                status=RunStatus.RUNNING,
                started_at=started,
                t0=self.t0,
                interval=self.config.metrics.interval,
                config=self.config.resolved_dict(),
                backend_info=backend_info,
                versions=versions,
                pid=os.getpid(),
            )
            info.config["plan"] = self.plan.to_json()
            info.config["metric_names"] = self.metric_names.__dict__
            self.writer = RunWriter(
                create_run_dir(self.base_dir, self.config.name, started), info, columns, self.config.source
            )
            self.backend.attach_run_directory(self.writer.dir, self.t0)
            self._why.attach(self.writer.dir, self.t0)
            if self.config.output.include_pod_logs:
                self.client_results = ClientResults(self.writer.dir, self.backend, self._event)
            self.monitor = Monitor(
                self.backend,
                queries,
                self.t0,
                self.config.metrics.interval,
                self.plan.phase_at,
                self.plan.offered_rps_at,
            )
            self._watchdog = Watchdog(watched_columns(queries, seen.metrics))
            self.backend.set_warning_handler(lambda text: self._event("warning", text))
            self._event("run_started", f"run {run_id} on {self.backend.name}; plan {self.plan.total:g} s")
            if self.observer:
                self.observer.on_start(self)
            created_hpa = False
            try:
                created_hpa = self._prepare_hpa()
                self._record_hpa()
                self._loop(jobs, launches)
            except HpaExpError as exc:
                self._failure = self._failure or str(exc)
                self._event("error", str(exc))
            except OSError as exc:  # a file of the run (disk full, I/O error): stop, clean up, say so
                self._write_failed = True
                self._failure = self._failure or f"cannot write the run's files: {exc}"
                self._event("error", self._failure)
            finally:
                leftover = self._cleanup(jobs, created_hpa)
            return self._finish(leftover)

    def _launch(self, job: _JobRun, run_id: str) -> JobLaunch:
        values = self.config.job_template_values(self.config.jobs[job.planned.index], job.planned.rate)
        return JobLaunch(
            job_name=job.planned.name,
            resource_name=job.resource,
            manifest=render_job(self.config, job.planned, run_id),
            rate=job.planned.rate,
            duration=job.planned.end - job.planned.start,
            values=values,
        )

    def _prepare_hpa(self) -> bool:
        if self.config.autoscaler_kind == "keda":
            return self._prepare_scaled_object()
        manifest = self.config.hpa_manifest
        if not (self.config.hpa.enabled and self.config.hpa.apply and manifest):
            return False
        created = self.backend.apply_hpa(manifest)
        if created:
            self._event("hpa_applied", f"created HPA {manifest['metadata']['name']}")
        return created

    def _record_hpa(self) -> None:
        """The HPA (or KEDA's ScaledObject) as applied and the HPA as it is at the start, into the run
        directory.  With KEDA the run applies the ScaledObject; the HPA is KEDA's own."""
        if not self.config.hpa.enabled:
            return
        keda = self.config.autoscaler_kind == "keda"
        applied = self.config.hpa_manifest if self.config.hpa.apply and not keda else None
        if keda and self.config.scaled_object is not None and self.writer is not None:
            text = yaml.safe_dump(self.config.scaled_object, sort_keys=False)
            (self.writer.dir / SCALED_OBJECT_APPLIED_FILE).write_text(text, encoding="utf-8")
        assert self._why is not None
        for problem in self._why.write_hpa_files(self.backend, applied):
            self._event("warning", problem)

    def _prepare_scaled_object(self) -> bool:
        auto, manifest = self.config.autoscaler, self.config.scaled_object
        if not (auto and auto.enabled and auto.apply and manifest):
            return False
        created = self.backend.apply_scaled_object(manifest)
        if created:
            name, hpa = manifest["metadata"]["name"], self.config.hpa_name
            self._event("scaled_object_applied", f"created ScaledObject {name}; KEDA creates HPA {hpa}")
        return created

    def _schedule(self, jobs: list[_JobRun]) -> list[tuple[float, int, int, str, Any]]:
        """(time since t0, order, seq, kind, payload) sorted; at equal times: stops, starts, tick.

        Results-grace checks and ticks after the plan's end are in the list too; the loop skips
        them when no Job is in its grace any more."""
        events: list[tuple[float, int, str, Any]] = []
        for job in jobs:
            events.append((job.planned.start, 1, "start", job))
            events.append((job.planned.end, 0, "stop", job))
            events += [(at, 0, kind, job) for at, kind in self._grace_checks(job)]
        if self.plan.cooldown:
            events.append((self.plan.load_end, 0, "cooldown", None))
        interval = self.config.metrics.interval
        last = math.floor(self.plan.total / interval + 1e-9)
        for k in range(last + 1):
            events.append((k * interval, 2, "tick", k))
        # A Job whose grace reaches past the plan is still load: sample on while one is in its grace.
        until = max((at for job in jobs for at, _ in self._grace_checks(job)), default=0.0)
        for k in range(last + 1, math.floor(until / interval + 1e-9) + 1):
            events.append((k * interval, 2, "tick_in_grace", k))
        return sorted(
            ((at, order, seq, kind, p) for seq, (at, order, kind, p) in enumerate(events)),
            key=lambda e: e[:3],
        )

    def _loop(self, jobs: list[_JobRun], launches: dict[str, JobLaunch]) -> None:
        pending = self._pending
        assert self.monitor is not None
        for at, _, _, kind, payload in self._schedule(jobs):
            if kind in ("grace_check", "grace_end") and not payload.in_grace:
                continue  # ended in time (or never needed a grace): nothing to wait for
            if kind == "tick_in_grace" and not any(job.in_grace for job in jobs):
                continue
            if not self._wait_until(self.t0 + at):
                break
            if kind == "start":
                self._start(payload, launches[payload.resource])
            elif kind == "stop":
                self._end(payload)
            elif kind in ("grace_check", "grace_end"):
                self._check_grace(payload, final=kind == "grace_end")
            elif kind == "cooldown":
                self._event("cooldown_started", f"{self.plan.cooldown:g} s of cooldown")
            else:
                pending.append(self.monitor.tick(payload))
            self._drain(pending, jobs, block=False)
            if self._stopping():
                break

    def _stopping(self) -> bool:
        """A stop request, a failure, or a file of the run that could not be written (disk full)."""
        error = self.writer.write_error if self.writer is not None else None
        if error is not None and self._failure is None:
            self._failure = f"cannot write the run's files: {error}; rows written before it are kept"
            self._event("error", self._failure)
        return bool(self._stop_reason or self._failure)

    def _wait_until(self, t: float) -> bool:
        """Sleep until t in short steps so a stop request is seen promptly; False if stopping."""
        while not self._stopping():
            now = self.clock.now()
            if now >= t:
                return True
            self.clock.sleep_until(t if self.clock.virtual else min(t, now + 0.1))
        return False

    def _start(self, job: _JobRun, launch: JobLaunch) -> None:
        self.backend.start_job(launch)
        job.started = True
        actual = self.elapsed
        assert self.writer is not None
        self.writer.phase(
            job.planned.name,
            resource_name=job.resource,
            rate=job.planned.rate,
            planned_start_s=job.planned.start,
            planned_end_s=job.planned.end,
            actual_start_s=round(actual, 3),
            outcome="running",
        )
        self._lost.job_started(job.resource, job.planned.name, actual)
        rate = f"{job.planned.rate:g} req/s" if job.planned.rate is not None else "rate unknown"
        self._event("job_started", f"{job.planned.name} as {job.resource} ({rate})")

    # -- a Job's end: results grace, logs, deletion -----------------------------------

    def _grace(self, job: _JobRun) -> float:
        return self.config.results_grace(self.config.jobs[job.planned.index])

    def _grace_checks(self, job: _JobRun) -> list[tuple[float, str]]:
        """Instants after the planned end at which a Job in its grace is checked; the last ends it."""
        grace = self._grace(job)
        if grace <= 0:
            return []
        step = min(self.config.metrics.interval, 5.0)
        checks = [(job.planned.end + i * step, "grace_check") for i in range(1, math.ceil(grace / step - 1e-9))]
        return [*checks, (job.planned.end + grace, "grace_end")]

    def _end(self, job: _JobRun) -> None:
        """The planned end: a Job still running gets its results grace; any other is deleted now."""
        if not job.started or job.stopped:
            return
        grace = self._grace(job)
        if grace > 0 and self._running(job):
            job.in_grace = True
            self._event("job_grace", f"{job.planned.name} still running: up to {grace:g} s to print its results")
            return
        self._stop(job, "completed")

    def _check_grace(self, job: _JobRun, final: bool) -> None:
        if not job.in_grace or job.stopped:
            return
        running = self._running(job)
        if final or not running:
            job.in_grace = False
            late = f"still running {self._grace(job):g} s after its planned end (jobs[].results_grace)"
            self._stop(job, "completed", late if running else "")

    def _running(self, job: _JobRun) -> bool:
        """Whether the Job has a pod still running (so it may yet print its results)."""
        try:
            state = self.backend.job_states().get(job.resource)
        except HpaExpError as exc:
            self._event("warning", f"{job.planned.name}: state not read ({exc}); deleting it now")
            return False
        return bool(state and state.exists and state.active > 0 and not state.failure)

    def _stop(self, job: _JobRun, outcome: str, why_no_results: str = "") -> None:
        if not job.started or job.stopped:
            return
        self._lost.job_stopped(job.resource)
        if self.client_results is not None:
            collect = self.client_results.collect
            try:
                self._patiently(f"logs of {job.resource}", collect, job.planned.name, job.resource, why_no_results)
            except OSError as exc:  # its files (disk full): the Job is deleted all the same
                self._event("warning", f"{job.planned.name}: logs and results not saved: {exc}")
        self._patiently(f"deleting {job.resource}", self.backend.stop_job, job.resource)
        job.stopped = True
        assert self.writer is not None
        lost = self._lost.job_lost(job.resource)
        final = f"failed: {job.failed}" if job.failed else f"lost: {lost}" if lost else outcome
        self.writer.phase(job.planned.name, actual_end_s=round(self.elapsed, 3), outcome=final)
        self._event("job_stopped", f"{job.planned.name} ({final})")

    # -- samples ---------------------------------------------------------------------

    def _drain(self, pending: deque[Future[TickResult]], jobs: list[_JobRun], block: bool) -> None:
        while pending and (block or pending[0].done()):
            self._record(pending.popleft().result(), jobs)

    def _record(self, result: TickResult, jobs: list[_JobRun]) -> None:
        assert self.writer is not None
        row = result.row
        if self._why is not None:
            for kind, text in self._why.fill(row, result.snapshot):
                self._event(kind, text, row)
        self._note_scaling(row)
        if result.snapshot is not None and result.snapshot.scaled_object is not None:
            self._keda_conditions, changes = condition_changes(self._keda_conditions, result.snapshot.scaled_object)
            for line in changes:
                self._event("scaled_object", line, row)
        self._note_failures(result)
        for kind, detail in self._watchdog.check(row, result.snapshot) if self._watchdog else ():
            self._event(kind, detail, row)
        states = None if "jobs" in result.failures else result.job_states
        for kind, detail in self._lost.check(float(row["elapsed_s"]), result.snapshot, states):
            self._event(kind, detail, row)
        for job in jobs:
            state = result.job_states.get(job.resource)
            if state and state.failure and not job.failed and job.started:
                job.failed = state.failure
                self._failed_jobs.append(job.planned.name)
                self._event("job_failed", f"{job.planned.name}: {state.failure}")
                if self.config.on_job_failure == "abort":
                    self._failure = f"job {job.planned.name} failed: {state.failure}"
        self.writer.metric_row(row)
        if self.observer:
            self.observer.on_row(row)

    def _note_scaling(self, row: dict[str, Any]) -> None:
        previous, current = self._last_replicas, row.get("replicas")
        if current is not None and previous is not None and current != previous:
            kind = "scale_up" if current > previous else "scale_down"
            self._event(kind, f"{previous} -> {current} (desired {row.get('desired_replicas')})", row)
        if current is not None:
            self._last_replicas = current

    def _note_failures(self, result: TickResult) -> None:
        """Warn when a value starts failing and when it recovers, not on every tick."""
        failing = self._failing
        for column, error in result.failures.items():
            self._missed.setdefault(column, set()).add(result.k)
            if column not in failing:
                what = {"hpa": "HPA/Deployment state", "jobs": "Job states"}.get(column, column)
                self._event("warning", f"{what}: not obtained ({error}); cells stay empty", result.row)
            failing[column] = failing.get(column, 0) + 1
        for column in [c for c in failing if c not in result.failures]:
            self._event("warning", f"{column}: obtained again after {failing.pop(column)} missed tick(s)", result.row)

    # -- the end ---------------------------------------------------------------------

    def _cleanup(self, jobs: list[_JobRun], created_hpa: bool) -> list[str]:
        """Stop what this run started, whatever happened; returns Jobs still present."""
        outcome = "interrupted" if self._stop_reason else ("aborted" if self._failure else "completed")
        self._cleaning = True
        if self._stop_reason and self._stop_reason.startswith("interrupted by SIG") and not self.clock.virtual:
            sig = self._stop_reason.rsplit(" ", 1)[-1]
            self._event(
                "warning",
                f"{self._stop_reason}: cleaning up; {sig} again stops waiting"
                " (what is not deleted yet is then listed and left)",
            )
        for job in jobs:
            if job.started and not job.stopped:
                if self.keep_jobs:
                    assert self.writer is not None
                    self.writer.phase(job.planned.name, outcome=f"kept ({outcome})")
                    continue
                with self._errors_as_events():
                    self._stop(job, outcome, f"deleted before it finished: the run was {outcome}")
        with self._errors_as_events():
            self._drain_patiently(jobs)
        disk_ok = not self._write_failed and (self.writer is None or self.writer.write_error is None)
        if self.monitor is not None:
            with self._errors_as_events():
                self._patiently("the sampling threads", self.monitor.close)
            filled = 0
            if disk_ok:  # both write files; with a full disk they would only fail again
                with self._errors_as_events():
                    filled = self._patiently("range queries", self._fill_from_range_queries, self.monitor)
                with self._errors_as_events():
                    self._patiently("latency windows", self._measure_latency_windows)
            self._note_slow_answers(self.monitor, filled)
        auto = self.config.autoscaler
        if created_hpa and auto and auto.kind == "keda" and auto.remove_after and self.config.scaled_object:
            with self._errors_as_events():
                self._patiently(
                    "deleting the ScaledObject",
                    self.backend.delete_scaled_object,
                    self.config.scaled_object["metadata"]["name"],
                )
                self._event("scaled_object_removed", "deleted the ScaledObject this run created (KEDA deletes its HPA)")
        elif created_hpa and self.config.hpa.remove_after and self.config.hpa_manifest:
            with self._errors_as_events():
                name = self.config.hpa_manifest["metadata"]["name"]
                self._patiently("deleting the HPA", self.backend.delete_hpa, name)
                self._event("hpa_removed", "deleted the HPA this run created")
        with self._errors_as_events():
            for line in self._patiently("restoring what the run took over", self.backend.restore_taken_over):
                self._event("restored", line)
        if self.keep_jobs:
            return []
        # Until a listing confirms it, a Job this run started and did not see deleted may be there.
        leftover = [job.resource for job in jobs if job.started and not job.stopped]
        verified = False
        with self._errors_as_events():
            listed = self._patiently("listing the run's Jobs", self.backend.leftover_jobs)
            leftover = sorted({*leftover, *listed})
            for name in listed:
                self._patiently(f"deleting {name}", self.backend.stop_job, name)
            leftover = self._patiently("listing the run's Jobs", self.backend.leftover_jobs)
            verified = True
        if self._gave_up:
            assert self._hurry is not None
            left = ", ".join(leftover) if leftover else "no Jobs known"
            self._event(
                "error",
                f"{self._hurry} again: stopped waiting for the cleanup ({'; '.join(self._gave_up)}); "
                f"possibly left in the cluster: {left}; finish it with: hpa-exp cleanup {self._run_dir()}",
            )
        elif leftover:
            self._event("error", "Jobs still present after cleanup: " + ", ".join(leftover))
        elif not verified:
            self._event("error", "cleanup: could not check that no Job of the run is left")
        return leftover

    def _patiently(self, what: str, fn: Callable[..., T], *args: Any) -> T:
        """During cleanup, `fn(*args)` in a helper thread that the main thread waits for in short
        steps, so that a second SIGINT/SIGTERM (`stop_waiting`) stops the wait at once; raises
        _GaveUp then (the call may still finish in the background).  Elsewhere just `fn(*args)`."""
        if not self._cleaning or self.clock.virtual:
            return fn(*args)
        if self._hurry:
            raise _GaveUp(what)
        box: dict[str, Any] = {}

        def work() -> None:
            try:
                box["value"] = fn(*args)
            except BaseException as exc:  # handed to the waiting thread
                box["error"] = exc

        helper = threading.Thread(target=work, name="hpa-exp-cleanup", daemon=True)
        helper.start()
        while helper.is_alive():
            helper.join(0.1)
            if self._hurry and helper.is_alive():
                raise _GaveUp(what)
        if "error" in box:
            raise box["error"]
        return box["value"]

    def _drain_patiently(self, jobs: list[_JobRun]) -> None:
        """Write the samples still in flight, unless a second signal says stop waiting."""
        pending = self._pending
        while pending:
            if not self._cleaning or self.clock.virtual:
                self._record(pending.popleft().result(), jobs)
                continue
            if self._hurry:
                raise _GaveUp(f"{len(pending)} sample(s) in flight, not written")
            try:
                result = pending[0].result(timeout=0.1)
            except TimeoutError:
                continue
            pending.popleft()
            self._record(result, jobs)

    def _run_dir(self) -> str:
        return str(self.writer.dir) if self.writer is not None else "<run directory>"

    @contextlib.contextmanager
    def _errors_as_events(self) -> Iterator[None]:
        try:
            yield
        except _GaveUp as gave_up:
            self._gave_up.append(str(gave_up))
        except Exception as exc:
            self._failure = self._failure or f"cleanup: {exc}"
            self._cleanup_problems.append(str(exc))
            self._event("error", f"cleanup: {exc}")

    def _fill_from_range_queries(self, monitor: Monitor) -> int:
        """Fill PromQL cells the live poll missed from one range query per column; how many were filled."""
        missed = {c: ks for c, ks in self._missed.items() if c in monitor.queries}
        if not missed or self.writer is None:
            return 0
        interval = self.config.metrics.interval
        last_k = max(k for ks in missed.values() for k in ks)
        filled: dict[tuple[int, str], float] = {}
        for column, ks in missed.items():
            try:
                series = self.backend.query_range(
                    monitor.queries[column], self.t0, self.t0 + last_k * interval, interval
                )
            except QueryError as exc:
                self._event("warning", f"range query for {column} failed: {exc}")
                continue
            for t, value in series[0].points if series else []:
                k = round((t - self.t0) / interval)
                if k in ks and math.isfinite(value):
                    filled[(k, column)] = value
        if filled:
            _rewrite_metrics(self.writer.dir / "metrics.csv", interval, filled)
        total = sum(len(ks) for ks in missed.values())
        self._event("range_fill", f"range queries filled {len(filled)} of {total} missed cells")
        return len(filled)

    def _note_slow_answers(self, monitor: Monitor, filled: int) -> None:
        """Cells left empty live because an answer was slow (monitor.py), in run.json and as an event."""
        assert self.writer is not None
        skipped, late = dict(monitor.skipped), dict(monitor.late)
        self.writer.info.sampling = {"cells_skipped": skipped, "answers_late": late, "cells_filled_by_range": filled}
        if skipped or late:
            self._event(
                "warning",
                f"slow answers: {sum(skipped.values())} cell(s) not asked (previous call unanswered, or tick late), "
                f"{sum(late.values())} answer(s) dropped as late; range queries filled {filled} PromQL cell(s)",
            )

    def _measure_latency_windows(self) -> None:
        """TTFT/ITL over the run and each phase from the histograms (latency_windows.py); before the
        backend closes.  A problem is a warning: the run's status does not depend on it."""
        assert self.writer is not None
        warn = lambda text: self._event("warning", text)  # noqa: E731
        try:
            write_latency_windows(
                self.backend, self.writer.dir, self.config, self.metric_names, self.t0, self.elapsed, warn
            )
        except OSError as exc:
            warn(f"latency over windows not written: {exc}")

    def _finish(self, leftover: list[str]) -> RunResult:
        assert self.writer is not None
        self._failure = self._failure or self._lost.reason()  # an object gone mid-run: failed (lost_objects.py)
        incomplete = self._cleanup_incomplete(leftover)
        if self._stop_reason and incomplete:  # 130 only when the cleanup really finished
            status, code, reason = RunStatus.INTERRUPTED, EXIT_FAILED, f"{self._stop_reason}; {incomplete}"
        elif self._stop_reason:
            status, code, reason = RunStatus.INTERRUPTED, EXIT_INTERRUPTED, self._stop_reason
        elif self._failure or leftover or self._failed_jobs:
            status, code = RunStatus.FAILED, EXIT_FAILED
            reason = self._failure or (
                f"Jobs left behind: {', '.join(leftover)}"
                if leftover
                else f"job(s) failed (on_job_failure: continue): {', '.join(self._failed_jobs)}"
            )
        else:
            status, code, reason = RunStatus.COMPLETED, EXIT_OK, None
        try:
            self.backend.close()
        except OSError as exc:  # the twin's requests.csv on a full disk
            if not self._write_failed:
                status, code = RunStatus.FAILED, EXIT_FAILED
                reason = f"{reason + '; ' if reason else ''}cannot write the run's files: {exc}"
        self._event("run_finished", f"{status}" + (f": {reason}" if reason else ""))
        self.writer.finish(status, time.time(), code, reason, leftover_jobs=leftover)
        result = RunResult(self.writer.dir, status, code, reason, leftover, stopped_waiting=bool(self._gave_up))
        if self.observer:
            self.observer.on_finish(result)
        return result

    def _cleanup_incomplete(self, leftover: list[str]) -> str:
        """Why the cleanup did not finish, in words ("" when it did)."""
        parts = []
        if leftover:
            parts.append(f"Jobs left in the cluster: {', '.join(leftover)}")
        if self._gave_up:
            parts.append(f"stopped waiting ({self._hurry} again) for: {'; '.join(self._gave_up)}")
        parts += [f"cleanup failed: {problem}" for problem in self._cleanup_problems]
        if not parts:
            return ""
        return "cleanup incomplete: " + "; ".join(parts) + f" (finish it with: hpa-exp cleanup {self._run_dir()})"

    def _event(self, kind: str, detail: str, row: dict[str, Any] | None = None) -> None:
        if self.writer is None:
            return
        t = self.t0 + row["elapsed_s"] if row is not None else self.clock.now()
        self.writer.event(t, kind, detail)
        if self.observer:
            self.observer.on_event(t - self.t0, kind, detail)


class _GaveUp(Exception):
    """A cleanup step not waited for after a second SIGINT/SIGTERM; the text says which."""


def _rewrite_metrics(path: Path, interval: float, filled: dict[tuple[int, str], float]) -> None:
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    header = rows[0]
    index = {c: i for i, c in enumerate(header)}
    for row in rows[1:]:
        k = round(float(row[index["elapsed_s"]]) / interval)
        for column in index:
            value = filled.get((k, column))
            if value is not None and row[index[column]] == "":
                row[index[column]] = format_cell(value)
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh, lineterminator="\n").writerows(rows)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"hpa-exp": __version__, "python": platform.python_version()}
    for package in ("kubernetes", "prometheus-api-client", "numpy", "pandas"):
        with contextlib.suppress(PackageNotFoundError):
            out[package] = version(package)
    return out
