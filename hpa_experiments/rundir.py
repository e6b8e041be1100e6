"""The run-directory format: one folder per run, written as the run goes, readable by analysis.

```
run.json               id, status, backend, versions, resolved config, backend facts, UTC start/end
metrics.csv            one row per grid tick (columns below); an empty cell means "no value"
phases.csv             one row per job: planned and actual start/end (s since t0), outcome
events.csv             elapsed_s, time, kind, detail
requests.csv           twin only: one row per request (backends/sim/request_log.py)
pods.csv               the scaled Deployment's pods: created, started, ready, deleting (s since t0)
hpa-applied.yaml       the HPA manifest as the run applied it (absent when the run applied none)
hpa-live-start.yaml    the HPA as the cluster (or the twin) held it at the start, spec and status
latency-windows.json   TTFT/ITL over the run and each phase from the histograms (latency_windows.py)
job-logs/<pod>_<container>.log  each load Job's pod log, saved before deletion (output.include_pod_logs)
job-results.csv        one row per load Job: its `vllm bench serve` result block (bench_log.py), and
                       from a log with line times its initial test's start and span (log_times.py)
summary.json           KPIs (written by analysis)
experiment-config.yaml the config file exactly as given
```

Rows are flushed as they are written, so a killed process leaves complete rows on disk.
"""

from __future__ import annotations

import csv
import json
import math
import os
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Any

from hpa_experiments.redact import write_config_copy

# The original system's columns, same names and meanings, in its order.
LEGACY_COLUMNS = [
    "timestamp",
    "replicas",
    "desired_replicas",
    "num_requests_waiting",
    "num_requests_waiting_target",
    "kv_cache_usage_perc",
    "kv_cache_usage_target",
    "ttft_ms",
    "itl_ms",
    "request_rate_per_min",
    "active_jobs",
]

# Columns added by hpa-exp, after the legacy ones.  Percentile columns depend on the
# config (`metrics.percentiles`) and extra PromQL columns on `metrics.prometheus`.
ADDED_COLUMNS = [
    "elapsed_s",
    "phase",
    "offered_rps",
    "ready_replicas",
    "prom_requests_running",
    "prom_requests_waiting",
    "prom_kv_cache_usage_avg",
    "prom_kv_cache_usage_max",
    "sample_lag_ms",
    "sample_ms",
]

# GPU power and output tokens (PromQL, see promql.energy_queries): empty when the cluster has no
# DCGM exporter series for the Deployment's pods, never 0.
ENERGY_COLUMNS = [
    "gpu_power_w",
    "gpu_utilization_pct",
    "gpu_count",
    "generation_tokens_per_s",
]

# A KEDA ScaledObject's conditions (keda_status.py): 1 True, 0 False, empty Unknown.
KEDA_COLUMNS = ["keda_ready", "keda_active", "keda_fallback", "keda_paused"]


class RunStatus(str, Enum):
    """run.json's `status`.  A str Enum, so run.json holds the same plain strings as before."""

    RUNNING = "running"  # written at the start; still there if the process was killed
    COMPLETED = "completed"
    INTERRUPTED = "interrupted"  # SIGINT/SIGTERM or a stop from the menu; cleanup done
    FAILED = "failed"

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


RUN_STATUSES = tuple(RunStatus)

EVENT_KINDS = (
    "run_started",
    "job_started",
    "job_grace",
    "job_stopped",
    "job_results",
    "job_failed",
    "scale_up",
    "scale_down",
    "cooldown_started",
    "scaled_object",
    "warning",
    "error",
    "hpa_condition",
    "run_finished",
    "data_missing",  # watchdog.py: a column empty for a minute; data_back when values return
    "data_back",
    "hpa_blocked",  # watchdog.py: AbleToScale/ScalingActive turned False; hpa_unblocked when True again
    "hpa_unblocked",
    "restored",  # an object the run took over (--take-over) put back as it was (ownership.py)
    "object_lost",  # lost_objects.py: the HPA, the Deployment or a Job of the run disappeared
    "object_back",
)

PHASE_COLUMNS = [
    "job",
    "resource_name",
    "rate",
    "planned_start_s",
    "planned_end_s",
    "actual_start_s",
    "actual_end_s",
    "outcome",
]
EVENT_COLUMNS = ["elapsed_s", "time", "kind", "detail"]
REQUESTS_FILE = "requests.csv"
PODS_FILE = "pods.csv"
POD_COLUMNS = ("pod", "created_s", "started_s", "ready_s", "deleting_s")
HPA_APPLIED_FILE = "hpa-applied.yaml"
HPA_LIVE_FILE = "hpa-live-start.yaml"
SCALED_OBJECT_APPLIED_FILE = "scaledobject-applied.yaml"  # KEDA runs: the ScaledObject as the run applied it
LATENCY_WINDOWS_FILE = "latency-windows.json"
# requests.csv (the twin's per-request log): definitions in hpa_experiments/backends/sim/request_log.py
REQUEST_COLUMNS = (
    "request_id",
    "job",
    "replica",
    "arrival_s",
    "end_s",
    "queue_wait_ms",
    "ttft_ms",
    "itl_mean_ms",
    "e2e_ms",
    "prompt_tokens",
    "output_tokens",
    "outcome",
    "gateway_wait_ms",
)
REQUEST_OUTCOMES = (
    "completed",
    "aborted_scale_down",
    "aborted_job_stopped",
    "rejected",
    "running_at_end",
    "failed_no_replica",
)
SUITE_ENTRY_FILE = "suite-entry.json"  # written by suites: the entry and overrides a run was made with


def percentile_label(q: float) -> str:
    """0.5 -> 'p50', 0.99 -> 'p99', 0.999 -> 'p99.9'."""
    text = f"{q * 100:.4f}".rstrip("0").rstrip(".")
    return f"p{text}"


def percentile_columns(percentiles: Iterable[float]) -> list[str]:
    labels = [percentile_label(q) for q in percentiles]
    return [f"ttft_{p}_ms" for p in labels] + [f"itl_{p}_ms" for p in labels]


def metrics_columns(
    percentiles: Iterable[float],
    extra_hpa_metrics: Iterable[str] = (),
    extra_queries: Iterable[str] = (),
    keda: bool = False,
) -> list[str]:
    """All columns of metrics.csv for a run, in file order (`keda`: the ScaledObject's conditions)."""
    cols = LEGACY_COLUMNS + ADDED_COLUMNS + ENERGY_COLUMNS + percentile_columns(percentiles)
    if keda:
        cols += KEDA_COLUMNS
    for name in extra_hpa_metrics:
        cols += [f"hpa_{name}", f"hpa_{name}_target"]
    cols += [f"query_{name}" for name in extra_queries]
    return cols


def utc_iso(t: float) -> str:
    """Unix seconds -> '2026-11-23T04:16:55.123Z'."""
    dt = datetime.fromtimestamp(t, tz=timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def format_cell(value: Any) -> str:
    """Empty for missing/NaN, integers without a decimal point, floats with up to 6 decimals."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return ""
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return f"{value:.6f}".rstrip("0").rstrip(".")
    return str(value)


def run_dir_name(name: str, started_at: float) -> str:
    stamp = datetime.fromtimestamp(started_at, tz=timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"{name}-{stamp}"


def create_run_dir(base: Path, name: str, started_at: float) -> Path:
    """Create and return <base>/<name>-<UTC stamp>, with -2, -3, ... when runs start within the same
    second.  Each name is claimed by its mkdir, so runs started at once in other processes (an
    ensemble's seeds) never get the same folder."""
    first = base / run_dir_name(name, started_at)
    base.mkdir(parents=True, exist_ok=True)
    candidate, n = first, 1
    while True:
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            n += 1
            candidate = first.with_name(f"{first.name}-{n}")


class _CsvStream:
    """A CSV file that is flushed and fsync'ed row by row.

    A failed write (disk full, I/O error) is kept in `error` and not raised: the writer may be
    called from anywhere (the monitor's threads, cleanup), and the runner checks `error` and
    stops.  Later rows are counted in `dropped`, not written; the rows before stay complete
    (a cut last line is skipped by the readers)."""

    def __init__(self, path: Path, columns: list[str]):
        self.columns = columns
        self.name = path.name
        self.error: OSError | None = None
        self.dropped = 0
        self._fh = path.open("w", newline="", encoding="utf-8")
        self._writer = csv.writer(self._fh, lineterminator="\n")
        self._lock = threading.Lock()  # events may come from the monitor's threads
        self._write([*columns])

    def _write(self, cells: list[str]) -> None:
        with self._lock:
            if self._fh.closed:
                return
            if self.error is not None:
                self.dropped += 1
                return
            try:
                self._writer.writerow(cells)
                self._fh.flush()
                os.fsync(self._fh.fileno())
            except OSError as exc:
                self.error = exc

    def write(self, row: Mapping[str, Any]) -> None:
        self._write([format_cell(row.get(c)) for c in self.columns])

    def close(self) -> None:
        with self._lock:
            if not self._fh.closed:
                try:
                    self._fh.close()
                except OSError as exc:  # the rest of a row that did not fit: the line stays cut
                    self.error = self.error or exc


@dataclass
class RunInfo:
    """Everything run.json holds.  `status` moves running -> completed | interrupted | failed."""

    id: str
    name: str
    backend: str
    status: RunStatus
    started_at: float
    t0: float
    interval: float
    config: dict[str, Any]
    backend_info: dict[str, Any]
    versions: dict[str, str]
    ended_at: float | None = None
    exit_code: int | None = None
    reason: str | None = None
    pid: int | None = None
    # cells the live poll left empty because an answer was slow, and how many range queries filled
    sampling: dict[str, Any] | None = None
    leftover_jobs: list[str] | None = None  # Jobs still in the cluster at the end (cleanup incomplete)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "status": self.status,
            "backend": self.backend,
            "start_utc": utc_iso(self.started_at),
            "end_utc": utc_iso(self.ended_at) if self.ended_at is not None else None,
            "t0_unix": self.t0,
            "interval_s": self.interval,
            "exit_code": self.exit_code,
            "reason": self.reason,
            "pid": self.pid,
            "sampling": self.sampling,
            **({"leftover_jobs": self.leftover_jobs} if self.leftover_jobs else {}),
            "versions": self.versions,
            "backend_info": self.backend_info,
            "config": self.config,
        }


class RunWriter:
    """Creates a run directory and streams its files; safe to stop at any point.

    A small reserve file is written at the start and deleted just before the final run.json,
    so that a run whose disk filled up can still record how it ended."""

    def __init__(self, directory: Path, info: RunInfo, metrics_cols: list[str], config_source: Path | None):
        self.dir = directory
        self.info = info
        directory.mkdir(parents=True, exist_ok=True)  # created by create_run_dir, or a new folder
        if any(directory.iterdir()):
            raise FileExistsError(f"{directory}: not empty (a run directory is written once)")
        if config_source is not None:
            write_config_copy(config_source, directory / "experiment-config.yaml")  # credentials as ***
        self.write_run_json()
        self._reserve = directory / RESERVE_FILE
        self._reserve.write_bytes(b"\0" * RESERVE_BYTES)
        self.metrics = _CsvStream(directory / "metrics.csv", metrics_cols)
        self.events = _CsvStream(directory / "events.csv", EVENT_COLUMNS)
        self._phases: dict[str, dict[str, Any]] = {}
        self._phase_error: OSError | None = None

    @property
    def write_error(self) -> str | None:
        """The first failed write of the streamed files, as "metrics.csv: [Errno 28] ...", or None."""
        for stream in (self.metrics, self.events):
            if stream.error is not None:
                return f"{stream.name}: {stream.error}"
        return f"phases.csv: {self._phase_error}" if self._phase_error is not None else None

    def write_run_json(self) -> None:
        atomic_write_json(self.dir / "run.json", self.info.to_json())

    def metric_row(self, row: Mapping[str, Any]) -> None:
        self.metrics.write(row)

    def event(self, t: float, kind: str, detail: str) -> None:
        self.events.write({"elapsed_s": round(t - self.info.t0, 3), "time": utc_iso(t), "kind": kind, "detail": detail})

    def phase(self, job: str, **fields: Any) -> None:
        """Update one job's row of phases.csv (the whole small file is rewritten atomically)."""
        self._phases.setdefault(job, {"job": job}).update(fields)
        lines = [PHASE_COLUMNS] + [[format_cell(r.get(c)) for c in PHASE_COLUMNS] for r in self._phases.values()]
        tmp = self.dir / "phases.csv.tmp"
        try:
            with tmp.open("w", newline="", encoding="utf-8") as fh:
                csv.writer(fh, lineterminator="\n").writerows(lines)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.dir / "phases.csv")
        except OSError as exc:  # the previous phases.csv stays whole
            self._phase_error = self._phase_error or exc
            tmp.unlink(missing_ok=True)

    def finish(
        self,
        status: RunStatus,
        ended_at: float,
        exit_code: int,
        reason: str | None = None,
        leftover_jobs: list[str] | None = None,
    ) -> None:
        """The final run.json (the reserve's space freed first), and the streams closed."""
        self.info.status = status
        self.info.ended_at = ended_at
        self.info.exit_code = exit_code
        self.info.reason = reason
        self.info.leftover_jobs = list(leftover_jobs) if leftover_jobs else None
        self.metrics.close()
        self.events.close()
        self._reserve.unlink(missing_ok=True)
        self.write_run_json()


RESERVE_FILE = ".space-reserve"  # deleted when the run ends (kept by a killed process)
RESERVE_BYTES = 256 * 1024


def atomic_write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)
