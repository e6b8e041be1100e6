"""summary.json's `client` section: what the load generators themselves measured.

Read from job-results.csv (one row per load Job: the `vllm bench serve` result block of its log,
or the twin's block from requests.csv; see bench_log.py).  Client-side numbers are per
request over each Job's whole life, from the client's clock; the server-side columns of
metrics.csv are Prometheus rate-window means per sample.  The report puts them side by side per
job (the phase of the same name).

Run-level client numbers combine the jobs that printed results: counts add up; means are
weighted by each job's successful requests (TTFT, TPOT) or output-token gaps (ITL, generated
tokens minus successful requests); percentiles cannot be combined from blocks, so the run level
gives the worst job's.  A job without results is listed with its reason, never counted as 0.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from hpa_experiments.bench_log import BASE_COLUMNS, JOB_RESULTS_FILE, OK

SIDE_BY_SIDE = ("ttft", "tpot", "itl", "e2el")
RUN_SPECIFIC = ("resource_name", "pod")  # names carrying the run id: in job-results.csv, not in the summary


def read_job_results(run_dir: Path) -> list[dict[str, Any]] | None:
    """Rows of job-results.csv with numbers as floats (None when empty); None without the file."""
    path = run_dir / JOB_RESULTS_FILE
    if not path.exists():
        return None
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return [{k: (v if k in BASE_COLUMNS else _number(v)) for k, v in row.items()} for row in rows]


def _number(text: str | None) -> float | None:
    if text is None or text == "":
        return None
    try:
        return float(text)
    except ValueError:
        return None


def _weighted_mean(rows: list[dict[str, Any]], column: str, weight: str | None = None) -> float | None:
    pairs = [
        (row[column], _weight(row, weight))
        for row in rows
        if row.get(column) is not None and _weight(row, weight) is not None
    ]
    total = sum(w for _, w in pairs if w is not None)
    if not pairs or not total:
        return None
    return sum(v * w for v, w in pairs if w is not None) / total


def _weight(row: dict[str, Any], weight: str | None) -> float | None:
    ok = row.get("successful_requests")
    if weight is None:
        return ok
    generated = row.get("total_generated_tokens")
    return None if generated is None or ok is None else max(generated - ok, 0.0)


def _worst(rows: list[dict[str, Any]], column: str) -> float | None:
    values = [row[column] for row in rows if row.get(column) is not None]
    return max(values) if values else None


def client_kpis(run_dir: Path) -> dict[str, Any] | None:
    """The `client` section; None when the run has no job-results.csv (logs not kept, or an old run)."""
    rows = read_job_results(run_dir)
    if rows is None:
        return None
    with_results = [row for row in rows if row["status"] == OK]
    missing = [f"{row['job']}: {row['status']} ({row['note']})" for row in rows if row["status"] != OK]
    run: dict[str, Any] = {
        "jobs": len(rows),
        "jobs_with_results": len(with_results),
        "successful_requests": _sum(with_results, "successful_requests"),
        "failed_requests": _sum(with_results, "failed_requests"),
        "ttft_mean_ms": _weighted_mean(with_results, "ttft_mean_ms"),
        "tpot_mean_ms": _weighted_mean(with_results, "tpot_mean_ms"),
        "itl_mean_ms": _weighted_mean(with_results, "itl_mean_ms", weight="gaps"),
    }
    for metric in SIDE_BY_SIDE:
        for stat in ("p99", "median"):
            run[f"{metric}_{stat}_ms_worst_job"] = _worst(with_results, f"{metric}_{stat}_ms")
    return {
        "source": JOB_RESULTS_FILE,
        "run": run,
        "jobs": [{k: v for k, v in row.items() if k not in RUN_SPECIFIC} for row in rows],
        "jobs_without_results": missing,
    }


def _sum(rows: list[dict[str, Any]], column: str) -> int | None:
    values = [row[column] for row in rows if row.get(column) is not None]
    return int(sum(values)) if values else None


def client_notes(client: dict[str, Any] | None) -> list[str]:
    """Summary notes: every load Job that printed no results, and why."""
    if not client:
        return []
    return [f"no client-side results for job {text}" for text in client["jobs_without_results"]]


def side_by_side(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Per job: client-side results next to the server-side statistics of the phase of the same name."""
    client = summary.get("client") or {}
    phases = {phase["phase"]: phase for phase in summary.get("phases", [])}
    out = []
    for row in client.get("jobs", []):
        phase = phases.get(row["job"], {})
        entry: dict[str, Any] = {"job": row["job"], "status": row["status"], "note": row["note"], "client": row}
        entry["server"] = {column: phase.get(column) for column in ("ttft_ms", "itl_ms")}
        out.append(entry)
    return out
