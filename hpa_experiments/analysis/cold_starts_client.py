"""Cold starts as the load Jobs' clients saw them: summary.json "cold_starts" -> "client".

Source: job-results.csv's `initial_test_start_unix` and `initial_test_s` (log_times.py), present
when the runner read the Job's log with line times (Kubernetes runs).  Per Job:
- `replicas_at_start`: metrics.csv `replicas` of the last sample at or before the client sent its
  initial request (None when no sample precedes it); `from_zero` when that was 0.
- `initial_test_s`: from "Starting initial single prompt test run..." to "Initial test run
  completed." - the initial request's end-to-end time, retries until the endpoint answered
  included; at zero replicas it spans the whole cold start.
- `ttft_p99_ms`: the Job's main benchmark TTFT p99 from its result block (how long the queue
  built during the cold start lingered).
`cold_start_s` aggregates `initial_test_s` over the Jobs that started at zero.  Without any line
times the part says "not measured" and why, never an empty success.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hpa_experiments.analysis.client import read_job_results
from hpa_experiments.analysis.cold_starts import cold_start_kpis
from hpa_experiments.analysis.load import Run
from hpa_experiments.analysis.requests import DECIMALS
from hpa_experiments.bench_log import JOB_RESULTS_FILE
from hpa_experiments.log_times import INITIAL_START_COLUMN, INITIAL_TEST_COLUMN

SOURCE = f"{JOB_RESULTS_FILE} (times of the initial test run's log lines)"


def client_cold_starts(run: Run) -> dict[str, Any] | None:
    """The "client" part of "cold_starts"; None without job-results.csv (logs not kept)."""
    rows = read_job_results(run.path)
    if rows is None:
        return None
    timed = [r for r in rows if r.get(INITIAL_START_COLUMN) is not None and r.get(INITIAL_TEST_COLUMN) is not None]
    if not timed:
        return {"source": SOURCE, "measured": False, "reason": _why_not(run), "jobs": [], "cold_start_s": None}
    start = run.start_time
    jobs = []
    for row in timed:
        at = float(row[INITIAL_START_COLUMN]) - start.timestamp() if start is not None else None
        replicas = _replicas_at(run, at)
        jobs.append(
            {
                "job": row["job"],
                "start_s": None if at is None else round(at, DECIMALS),
                "replicas_at_start": replicas,
                "from_zero": None if replicas is None else replicas == 0,
                "initial_test_s": row[INITIAL_TEST_COLUMN],
                "ttft_p99_ms": row.get("ttft_p99_ms"),
            }
        )
    values = [job["initial_test_s"] for job in jobs if job["from_zero"]]
    return {
        "source": SOURCE,
        "measured": True,
        "reason": None,
        "jobs": jobs,
        "cold_start_s": {
            "count": len(values),
            "mean": round(float(np.mean(values)), DECIMALS) if values else None,
            "min": min(values) if values else None,
            "max": max(values) if values else None,
        },
    }


def _why_not(run: Run) -> str:
    if run.backend == "simulation":
        return "the twin's simulated client log has no line times"
    return "no load Job log had line times for both initial test run lines (read without timestamps, or cut short)"


def _replicas_at(run: Run, at: float | None) -> int | None:
    """`replicas` of the last metrics.csv sample at or before `at` seconds into the run."""
    replicas = run.series("replicas")
    if at is None or replicas is None:
        return None
    before = (run.elapsed <= at) & replicas.notna()
    if not before.any():
        return None
    return int(replicas[before].iloc[-1])


def cold_starts_section(run: Run) -> dict[str, Any] | None:
    """summary.json "cold_starts": the server side (cold_starts.py; `source` None without
    requests.csv) with the client part under "client"; None when the run has neither."""
    server = cold_start_kpis(run)
    client = client_cold_starts(run)
    if server is None and client is None:
        return None
    return (server or {"source": None}) | {"client": client}
