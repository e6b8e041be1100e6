"""Experiment suites: several experiments (configs x repeats, with overrides) run one after another.

```yaml
name: rate-sweep
backend: sim                 # optional: else each config's own backend
output_dir: ../experiment-data/suites   # the suite's folder is <output_dir>/<name>
settle: {timeout: 10m, poll: 10s}       # Kubernetes: wait for replicas at the HPA minimum before a run
max_retries: 2               # a failed run is tried again up to this many times ...
retry_backoff: 30s           # ... after 30 s, 60 s, ... (doubling)
entries:
  - config: ../high-load-hpa.yaml
    repeats: 2
    overrides: {"jobs[0].rate": 15, "simulation.seed": 3}
```

Every config (with its overrides) is validated before anything runs.  The suite's folder holds
the run directories, `suite-progress.json` (each finished run: entry, repeat, run dir, status),
`failures.csv` (time, run, reason of every failed attempt) and `comparison/`.  Rerunning the
same suite skips the runs recorded as completed; a changed config or override runs again.
On the simulation, repeat r uses seed + r - 1 (identical seeds would give identical runs).
"""

from __future__ import annotations

import copy
import csv
import difflib
import hashlib
import json
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import ErrorDetails

from hpa_experiments.backends.factory import normalize_backend
from hpa_experiments.config import (
    RUN_NAME,
    ExperimentConfig,
    Seconds,
    config_from_data,
    load_config,
    read_config_data,
)
from hpa_experiments.errors import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    BackendError,
    ConfigError,
    HpaExpError,
    PreflightError,
    UsageError,
)
from hpa_experiments.plan import build_plan
from hpa_experiments.rundir import SUITE_ENTRY_FILE, atomic_write_json, utc_iso
from hpa_experiments.signals import stop_on_signals

PROGRESS_FILE = "suite-progress.json"
FAILURES_FILE = "failures.csv"
FAILURE_COLUMNS = ["time", "run", "entry", "repeat", "attempt", "reason"]
COMPARISON_DIR = "comparison"
MAX_BACKOFF_S = 600.0


class SuiteError(ConfigError):
    """The suite file, or a config it names, is invalid. Nothing has run."""

    def render(self) -> str:
        head = f"{self.source}: invalid suite" if self.source else "invalid suite"
        if len(self.problems) == 1:
            return f"{head}: {self.problems[0]}"
        return head + "\n" + "\n".join(f"  - {p}" for p in self.problems)


# --- the suite file --------------------------------------------------------------------------


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SettleConfig(_Section):
    timeout: Seconds = Field(600.0, ge=0)
    poll: Seconds = Field(10.0, gt=0)


class SuiteEntry(_Section):
    config: Path
    repeats: int = Field(1, ge=1)
    overrides: dict[str, Any] = Field(default_factory=dict)


class SuiteConfig(_Section):
    name: str
    description: str = ""
    backend: str | None = None
    output_dir: Path = Path("experiment-data/suites")
    settle: SettleConfig = Field(default_factory=SettleConfig)
    max_retries: int = Field(2, ge=0)
    retry_backoff: Seconds = Field(30.0, ge=0)
    entries: list[SuiteEntry] = Field(min_length=1)

    @field_validator("name")
    @classmethod
    def _folder_name(cls, v: str) -> str:
        if not RUN_NAME.match(v) or len(v) > 80:
            raise ValueError("must be letters, digits, '.', '_' or '-' (it names the suite's folder)")
        return v

    @field_validator("backend")
    @classmethod
    def _backend(cls, v: str | None) -> str | None:
        if v is None:
            return None
        try:
            return normalize_backend(v)
        except HpaExpError as exc:
            raise ValueError(str(exc)) from None


# --- overrides -------------------------------------------------------------------------------

_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*|\[\d+\])*\Z")
_PART = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]")


def parse_override_key(key: str) -> list[str | int]:
    """'jobs[0].rate' -> ['jobs', 0, 'rate']; ValueError for anything else."""
    if not _KEY.match(key):
        raise ValueError("not a key path such as 'jobs[0].rate' or 'simulation.seed'")
    return [int(index) if index else name for name, index in _PART.findall(key)]


def apply_override(raw: dict[str, Any], key: str, value: Any) -> None:
    """Set `key` (a dotted path with [i] list indices) in the parsed config; missing mappings are
    created (validation then reports unknown keys), list indices must exist."""
    parts = parse_override_key(key)
    node: Any = raw
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        where = _render(parts[:depth]) or "the top level"
        if isinstance(part, int):
            if not isinstance(node, list):
                raise ValueError(f"{where} is not a list")
            if part >= len(node):
                raise ValueError(f"{where} has {len(node)} item(s), there is no [{part}]")
        elif not isinstance(node, dict):
            raise ValueError(f"{where} is not a mapping of keys")
        if last:
            node[part] = copy.deepcopy(value)
        else:
            if isinstance(part, str) and node.get(part) is None:
                node[part] = {}
            node = node[part]


def _render(parts: list[str | int]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else ("." if out else "") + part
    return out


# --- loading and validating ------------------------------------------------------------------


@dataclass
class SuiteRun:
    """One run of the suite: entry, repeat, and the validated config for it."""

    entry: int  # 0-based index in `entries`
    repeat: int  # 1-based
    config: ExperimentConfig
    backend: str
    fingerprint: str

    @property
    def key(self) -> str:
        return f"{self.entry}/{self.repeat}/{self.fingerprint}"

    @property
    def label(self) -> str:
        name = self.config.source.name if self.config.source else self.config.name
        return f"entry {self.entry + 1} ({name}) repeat {self.repeat}"


@dataclass
class Suite:
    path: Path
    config: SuiteConfig
    runs: list[SuiteRun]
    folder: Path


def load_suite(path: Path, *, backend: str | None = None, output_dir: Path | None = None) -> Suite:
    """Read the suite and validate every config with its overrides; ConfigError lists all problems."""
    source = str(path)
    try:
        raw = read_config_data(path)  # YAML, or JSON for a .json suite
    except ConfigError as exc:
        raise SuiteError(exc.problems, source) from None
    if not isinstance(raw, dict):
        raise SuiteError("the top level must be a mapping of keys (name, entries, ...)", source)
    try:
        suite = SuiteConfig.model_validate(raw)
    except ValidationError as exc:
        raise SuiteError([_describe(err) for err in exc.errors()], source) from None
    base = path.resolve().parent
    chosen_backend = normalize_backend(backend) if backend else suite.backend
    runs: list[SuiteRun] = []
    problems: list[str] = []
    for i, entry in enumerate(suite.entries):
        config_path = entry.config if entry.config.is_absolute() else base / entry.config
        try:
            config = _entry_config(config_path, entry, f"entries[{i}]")
        except ConfigError as exc:
            problems += [f"entries[{i}] ({exc.source or config_path}): {p}" for p in exc.problems]
            continue
        kind = chosen_backend or normalize_backend(config.backend)
        fingerprint = _fingerprint(config_path, entry, kind)
        for repeat in range(1, entry.repeats + 1):
            runs.append(SuiteRun(i, repeat, _for_repeat(config, kind, repeat), kind, fingerprint))
    if problems:
        raise SuiteError(problems, source)
    out = output_dir or (suite.output_dir if suite.output_dir.is_absolute() else base / suite.output_dir)
    folder = out.resolve() / suite.name
    for candidate in (out, folder):
        if candidate.exists() and not candidate.is_dir():
            raise SuiteError(f"output folder {candidate} exists and is not a folder", source)
    return Suite(path, suite, runs, folder)


def _entry_config(config_path: Path, entry: SuiteEntry, where: str) -> ExperimentConfig:
    config = load_config(config_path)  # the file as it is, with its own messages
    if not entry.overrides:
        build_plan(config)
        return config
    raw = read_config_data(config_path)
    problems = []
    for key, value in entry.overrides.items():
        try:
            apply_override(raw, key, value)
        except ValueError as exc:
            problems.append(f"overrides[{key!r}]: {exc}")
    if problems:
        raise ConfigError(problems, str(config_path))
    config = config_from_data(raw, config_path, source=f"{config_path} with its overrides")
    build_plan(config)
    return config


def _for_repeat(config: ExperimentConfig, backend: str, repeat: int) -> ExperimentConfig:
    copied = config.model_copy(deep=True)
    if backend == "simulation":
        copied.simulation.seed = config.simulation.seed + repeat - 1
    return copied


def _fingerprint(config_path: Path, entry: SuiteEntry, backend: str) -> str:
    """Changes when the config file, the overrides or the backend change (then the run is redone)."""
    digest = hashlib.sha256(config_path.read_bytes())
    digest.update(json.dumps([entry.overrides, backend], sort_keys=True, default=str).encode())
    return digest.hexdigest()[:12]


def _describe(err: ErrorDetails) -> str:
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"]).lstrip(".") or "(top level)"
    if err["type"] == "extra_forbidden":
        known = list(SuiteConfig.model_fields) + list(SuiteEntry.model_fields) + list(SettleConfig.model_fields)
        close = difflib.get_close_matches(str(err["loc"][-1]), known, n=1, cutoff=0.6)
        return f"{where}: unknown key" + (f"; did you mean '{close[0]}'?" if close else "")
    if err["type"] == "missing":
        return f"{where}: is required"
    message = str((err.get("ctx") or {}).get("error") or err["msg"])
    return f"{where}: {message} (got {err.get('input')!r})"


# --- progress ----------------------------------------------------------------------------------


@dataclass
class Progress:
    """suite-progress.json: one record per finished run (completed, or failed after its retries)."""

    path: Path
    suite: str
    records: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def load(cls, folder: Path, suite: str) -> Progress:
        path = folder / PROGRESS_FILE
        progress = cls(path, suite)
        if path.exists():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                progress.records = {r["key"]: r for r in data["runs"]}
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise UsageError(f"{path}: cannot read it ({exc}); move it away to start the suite afresh") from None
        return progress

    def done(self, run: SuiteRun) -> bool:
        return self.records.get(run.key, {}).get("status") == "completed"

    def record(self, run: SuiteRun, run_dir: Path | None, status: str, attempts: int) -> None:
        self.records[run.key] = {
            "key": run.key,
            "entry": run.entry,
            "config": str(run.config.source),
            "repeat": run.repeat,
            "run_dir": str(run_dir) if run_dir else None,
            "status": status,
            "attempts": attempts,
            "finished_utc": utc_iso(time.time()),
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.path, {"suite": self.suite, "runs": list(self.records.values())})


def record_failure(folder: Path, run: SuiteRun, run_dir: Path | None, attempt: int, reason: str) -> None:
    path = folder / FAILURES_FILE
    new = not path.exists()
    with path.open("a", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        if new:
            writer.writerow(FAILURE_COLUMNS)
        writer.writerow([utc_iso(time.time()), str(run_dir or ""), run.entry, run.repeat, attempt, reason])


# --- running -----------------------------------------------------------------------------------


@dataclass
class SuiteOptions:
    kubeconfig: str | None = None
    context: str | None = None
    prometheus_url: str | None = None
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
    status: str  # completed | failed | interrupted
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
                if attempt.status == "interrupted":
                    break
                if attempt.status == "completed" and attempt.run_dir:
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
            if attempt.status == "interrupted":
                self._stop = self._stop or attempt.reason or "interrupted"
                return attempt
            if attempt.status == "completed":
                self.say(f"[{n}/{total}] {run.label}: completed -> {attempt.run_dir}")
                progress.record(run, attempt.run_dir, "completed", attempt_no)
                return attempt
            reason = attempt.reason or "failed"
            record_failure(self.suite.folder, run, attempt.run_dir, attempt_no, reason)
            self.say(f"[{n}/{total}] {run.label}: failed: {reason}")
            if attempt_no <= retries:
                delay = min(MAX_BACKOFF_S, self.suite.config.retry_backoff * 2 ** (attempt_no - 1))
                self.say(f"  retry {attempt_no}/{retries} in {delay:g} s")
                if not self._wait(delay):
                    return _Attempt("interrupted", attempt.run_dir, self._stop)
        progress.record(run, attempt.run_dir, "failed", retries + 1)
        return attempt

    def _attempt(self, run: SuiteRun) -> _Attempt:
        from hpa_experiments.api import Experiment
        from hpa_experiments.console import PlainConsole

        try:
            if run.backend == "kubernetes":
                self._settle(run.config)
            if self._stop:
                return _Attempt("interrupted", None, self._stop)
            prepared = Experiment(run.config).prepare(
                run.backend,
                self.suite.folder,
                kubeconfig=self.options.kubeconfig,
                context=self.options.context,
                prometheus_url=self.options.prometheus_url,
                observer=PlainConsole(self.options.out, quiet=True),
                preflight_output=self.options.out,
            )
            if self._stop:
                prepared.close()
                return _Attempt("interrupted", None, self._stop)
            outcome = prepared.run()
        except (PreflightError, BackendError) as exc:
            return _Attempt("failed", None, str(exc))
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
        from hpa_experiments.backends.kube import KubeBackend, KubeSettings

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
