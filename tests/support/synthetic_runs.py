"""Write run directories from given rows, with the real RunWriter: for tests and benchmarks.

Hand-built runs have known answers (a replica step at a known time, a known latency), so the
KPIs can be checked exactly; the long synthetic run measures report speed.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from hpa_experiments.rundir import RunInfo, RunStatus, RunWriter, format_cell, metrics_columns, utc_iso

T0 = 1_780_000_000.0  # a fixed t0 (2026-05-28) so that hand-built runs are reproducible


def write_run(
    directory: Path,
    rows: Iterable[Mapping[str, Any]],
    *,
    phases: Iterable[Mapping[str, Any]] = (),
    events: Iterable[tuple[float, str, str]] = (),
    config: dict[str, Any] | None = None,
    name: str = "hand-built",
    backend: str = "sim",
    interval: float = 1.0,
    status: RunStatus | str = RunStatus.COMPLETED,
    started_at: float = T0,
    pid: int | None = None,
) -> Path:
    """A run directory with these metric rows (keys = columns; `elapsed_s` required)."""
    info = RunInfo(
        id=directory.name,
        name=name,
        backend=backend,
        status=RunStatus.RUNNING,
        started_at=started_at,
        t0=started_at,
        interval=interval,
        config=config or {"name": name},
        backend_info={},
        versions={},
        pid=pid,
    )
    writer = RunWriter(directory, info, metrics_columns([0.5, 0.9, 0.99]), None)
    # Same columns and cell format as the writer's stream, but without its per-row fsync
    # (86,400 fsyncs would take minutes).
    columns = writer.metrics.columns
    writer.metrics.close()
    last = 0.0
    with (directory / "metrics.csv").open("w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh, lineterminator="\n")
        out.writerow(columns)
        for row in rows:
            last = float(row["elapsed_s"])
            cells = {"timestamp": utc_iso(started_at + last), **row}
            out.writerow([format_cell(cells.get(c)) for c in columns])
    for phase in phases:
        writer.phase(phase["job"], **{k: v for k, v in phase.items() if k != "job"})
    for elapsed, kind, detail in events:
        writer.event(started_at + elapsed, kind, detail)
    if status == RunStatus.RUNNING:
        writer.events.close()
    else:
        writer.finish(RunStatus(status), started_at + last, 0)
    return directory


def day_run(directory: Path, hours: float = 24.0, interval: float = 1.0) -> Path:
    """A long run: a daily load wave, replicas following it, latencies rising with the queue."""
    samples = int(hours * 3600 / interval)
    job_length = 3600.0
    phases: list[dict[str, Any]] = [
        {
            "job": f"hour-{h:02d}",
            "rate": 10.0 + 10.0 * (h % 6),
            "planned_start_s": h * job_length,
            "planned_end_s": (h + 1) * job_length,
            "actual_start_s": h * job_length + 0.5,
            "actual_end_s": (h + 1) * job_length,
            "outcome": "succeeded",
        }
        for h in range(int(hours))
    ]

    def rows() -> Iterable[dict[str, Any]]:
        for k in range(samples):
            t = k * interval
            rate = 10.0 + 10.0 * (int(t // job_length) % 6)
            wave = 0.5 + 0.5 * math.sin(2 * math.pi * t / 5400.0)
            replicas = max(1, min(10, round(rate / 6 + 2 * wave)))
            waiting = max(0.0, 30 * wave - 10)
            yield {
                "elapsed_s": t,
                "phase": f"hour-{int(t // job_length):02d}",
                "offered_rps": rate,
                "active_jobs": 1,
                "replicas": replicas,
                "desired_replicas": replicas,
                "ready_replicas": replicas,
                "num_requests_waiting": waiting,
                "num_requests_waiting_target": 20,
                "kv_cache_usage_perc": 0.3 + 0.5 * wave,
                "kv_cache_usage_target": 0.5,
                "ttft_ms": 80 + 40 * waiting,
                "itl_ms": 12 + 3 * wave,
            }

    events = [(p["planned_start_s"], "job_started", p["job"]) for p in phases]
    config = {"name": "synthetic-day", "slo": {"ttft_ms": 500, "itl_ms": 20}}
    return write_run(
        directory, rows(), phases=phases, events=events, name="synthetic-day", interval=interval, config=config
    )
