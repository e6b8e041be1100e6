"""Running a suite: its runs in order, retries with backoff, progress kept, the comparison at the end."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from hpa_experiments.config import (
    ExperimentConfig,
)
from hpa_experiments.errors import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    BackendError,
    HpaExpError,
    PreflightError,
)
from hpa_experiments.rundir import SUITE_ENTRY_FILE, RunStatus, atomic_write_json
from hpa_experiments.signals import stop_on_signals
from hpa_experiments.suite.config import Suite, SuiteRun
from hpa_experiments.suite.progress import Progress, record_failure

COMPARISON_DIR = "comparison"
MAX_BACKOFF_S = 600.0


@dataclass
class SuiteOptions:
    kubeconfig: str | None = None
    context: str | None = None
    prometheus_url: str | None = None
    take_over: bool = False  # --take-over; the suite file's `take_over: true` does the same
    out: TextIO = field(default_factory=lambda: sys.stdout)


@dataclass
class SuiteResult:
    folder: Path
    completed: list[Path]
    failed: list[str]
    skipped: int
    interrupted: bool
    comparison: Any = None  # analysis.compare.CompareFiles when two or more runs completed

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return EXIT_INTERRUPTED
        return EXIT_FAILED if self.failed else EXIT_OK


@dataclass
class _Attempt:
    status: RunStatus
    run_dir: Path | None
    reason: str | None


class SuiteRunner:
    """Runs the suite's runs in order; stops cleanly on SIGINT/SIGTERM."""

    def __init__(self, suite: Suite, options: SuiteOptions, sleep: Callable[[float], None] = time.sleep):
        self.suite = suite
        self.options = options
        self._sleep = sleep
        self._stop: str | None = None

    def _request_stop(self, reason: str) -> None:
        self._stop = self._stop or reason

    def say(self, text: str) -> None:
        print(text, file=self.options.out, flush=True)

    def run(self) -> SuiteResult:
        suite = self.suite
        suite.folder.mkdir(parents=True, exist_ok=True)
        progress = Progress.load(suite.folder, suite.config.name)
        result = SuiteResult(suite.folder, [], [], 0, False)
        total = len(suite.runs)
        # Between runs a signal stops the suite; during a run the Runner's own handlers take over
        # (it cleans up and reports the run as interrupted, which stops the suite too).
        with stop_on_signals(self._request_stop):
            for n, run in enumerate(suite.runs, 1):
                if progress.done(run):
                    result.skipped += 1
                    self.say(f"[{n}/{total}] {run.label}: done before, skipped")
                    continue
                if self._stop:
                    break
                attempt = self._run_with_retries(run, n, total, progress)
                if attempt.status == RunStatus.INTERRUPTED:
                    break
                if attempt.status == RunStatus.COMPLETED and attempt.run_dir:
                    result.completed.append(attempt.run_dir)
                else:
                    result.failed.append(run.label)
        result.interrupted = self._stop is not None
        if result.interrupted:  # no comparison: stop promptly, the rerun compares everything
            self.say(f"suite interrupted ({self._stop}); run it again to resume")
        else:
            result.comparison = self._compare(progress)
        return result

    def _run_with_retries(self, run: SuiteRun, n: int, total: int, progress: Progress) -> _Attempt:
        retries = self.suite.config.max_retries
        for attempt_no in range(1, retries + 2):
            self.say(f"[{n}/{total}] {run.label}: starting" + (f" (attempt {attempt_no})" if attempt_no > 1 else ""))
            attempt = self._attempt(run)
            if attempt.status == RunStatus.INTERRUPTED:
                self._stop = self._stop or attempt.reason or "interrupted"
                return attempt
            if attempt.status == RunStatus.COMPLETED:
                self.say(f"[{n}/{total}] {run.label}: completed -> {attempt.run_dir}")
                progress.record(run, attempt.run_dir, RunStatus.COMPLETED, attempt_no)
                return attempt
            reason = attempt.reason or "failed"
            record_failure(self.suite.folder, run, attempt.run_dir, attempt_no, reason)
            self.say(f"[{n}/{total}] {run.label}: failed: {reason}")
            if attempt_no <= retries:
                delay = min(MAX_BACKOFF_S, self.suite.config.retry_backoff * 2 ** (attempt_no - 1))
                self.say(f"  retry {attempt_no}/{retries} in {delay:g} s")
                if not self._wait(delay):
                    return _Attempt(RunStatus.INTERRUPTED, attempt.run_dir, self._stop)
        progress.record(run, attempt.run_dir, RunStatus.FAILED, retries + 1)
        return attempt

    def _attempt(self, run: SuiteRun) -> _Attempt:
        from hpa_experiments.api import Experiment
        from hpa_experiments.console import PlainConsole

        try:
            if run.backend == "kubernetes":
                self._settle(run.config)
            if self._stop:
                return _Attempt(RunStatus.INTERRUPTED, None, self._stop)
            prepared = Experiment(run.config).prepare(
                run.backend,
                self.suite.folder,
                kubeconfig=self.options.kubeconfig,
                context=self.options.context,
                prometheus_url=self.options.prometheus_url,
                observer=PlainConsole(self.options.out, quiet=True),
                preflight_output=self.options.out,
                take_over=self.options.take_over or self.suite.config.take_over,
            )
            if self._stop:
                prepared.close()
                return _Attempt(RunStatus.INTERRUPTED, None, self._stop)
            outcome = prepared.run()
        except (PreflightError, BackendError) as exc:
            return _Attempt(RunStatus.FAILED, None, str(exc))
        for warning in outcome.warnings:
            self.say(f"  warning: {warning}")
        self._note_origin(run, outcome.run_dir)
        return _Attempt(outcome.status, outcome.run_dir, outcome.reason)

    def _note_origin(self, run: SuiteRun, run_dir: Path) -> None:
        """suite-entry.json in the run directory: which suite entry made it, with which overrides
        (its experiment-config.yaml is the config file as written, before the overrides)."""
        entry = self.suite.config.entries[run.entry]
        atomic_write_json(
            run_dir / SUITE_ENTRY_FILE,
            {
                "suite": self.suite.config.name,
                "suite_file": str(self.suite.path.resolve()),
                "entry": run.entry,
                "repeat": run.repeat,
                "config": str(run.config.source),
                "overrides": entry.overrides,
                "seed": run.config.simulation.seed if run.backend == "simulation" else None,
            },
        )

    def _settle(self, config: ExperimentConfig) -> None:
        """Wait until the HPA's target is back at its minimum replicas (bounded by settle.timeout)."""
        from hpa_experiments.backends.kube.backend import KubeBackend, KubeSettings

        settle = self.suite.config.settle
        try:
            backend = KubeBackend(
                KubeSettings(kubeconfig=self.options.kubeconfig, context=self.options.context),
                None,
                namespace=config.namespace,
                deployment=config.deployment,
                hpa_name=config.hpa_name or "",
                run_id="settle",
            )
        except HpaExpError:
            return  # the run's own preflight reports the problem
        deadline = time.monotonic() + settle.timeout
        try:
            while not self._stop:
                snapshot = backend.scaling_snapshot()
                replicas = (
                    snapshot.current_replicas if snapshot.current_replicas is not None else snapshot.deployment_replicas
                )
                if not snapshot.hpa_found:
                    self._note_no_hpa(config, snapshot.deployment_replicas)
                    return
                if replicas is None or replicas <= (snapshot.min_replicas or 1):
                    return
                if time.monotonic() >= deadline:
                    self.say(f"  settle: still {replicas} replicas after {settle.timeout:g} s; starting anyway")
                    return
                self.say(f"  settle: {replicas} replicas, waiting for {snapshot.min_replicas}")
                self._wait(settle.poll)
        except HpaExpError as exc:
            self.say(f"  settle: cannot read the HPA ({exc}); starting anyway")
        finally:
            backend.close()

    def _note_no_hpa(self, config: ExperimentConfig, replicas: int | None) -> None:
        """Without an HPA (the last run removed the one it applied) nothing scales the Deployment down."""
        minimum = ((config.hpa_manifest or {}).get("spec") or {}).get("minReplicas", 1)
        if replicas is not None and replicas > minimum:
            self.say(
                f"  settle: no HPA now and the Deployment has {replicas} replicas (HPA minimum {minimum}); "
                "the next run starts scaled up: set hpa.remove_after: false for suites"
            )

    def _wait(self, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while not self._stop and (remaining := deadline - time.monotonic()) > 0:
            self._sleep(min(remaining, 0.2))
        return not self._stop

    def _compare(self, progress: Progress) -> Any:
        """compare.png/.html/.json of every completed run of this suite, in suite order."""
        from hpa_experiments.analysis.compare import comparison_table, write_comparison
        from hpa_experiments.analysis.load import load_run

        dirs = [
            Path(progress.records[run.key]["run_dir"])
            for run in self.suite.runs
            if progress.done(run) and progress.records[run.key].get("run_dir")
        ]
        if len(dirs) < 2:
            self.say(f"comparison: {len(dirs)} completed run(s), nothing to compare")
            return None
        try:
            files = write_comparison([load_run(d) for d in dirs], self.suite.folder / COMPARISON_DIR)
        except (HpaExpError, KeyError, ValueError) as exc:
            self.say(f"comparison failed: {exc}")
            return None
        from rich.console import Console

        Console(file=self.options.out, width=160).print(comparison_table(files.comparison))
        self.say(f"comparison: {files.html}")
        return files
