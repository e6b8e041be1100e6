"""List the runs under a data directory, newest first, with status and headline KPIs."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.table import Table

from hpa_experiments.analysis.kpis import SUMMARY_FILE, compute_kpis, headline
from hpa_experiments.analysis.load import load_run, read_run_json, run_directories, start_time_of
from hpa_experiments.analysis.report import fmt, significant
from hpa_experiments.errors import UsageError
from hpa_experiments.rundir import RunStatus
from hpa_experiments.signals import process_alive

INCOMPLETE = "incomplete"  # shown, never written: a "running" run that nobody writes any more
# A "running" run whose metrics.csv has not grown for this long (or 10 intervals) is incomplete.
STALE_AFTER_S = 120.0


@dataclass
class RunListing:
    path: Path
    info: dict[str, Any]
    status: str
    started: datetime | None
    headline: dict[str, Any] | None
    problem: str | None = None


def effective_status(directory: Path, info: dict[str, Any], now: float | None = None) -> str:
    """run.json's status, except that a "running" run nobody is writing any more is "incomplete"."""
    status = str(info.get("status") or "unknown")
    if status != RunStatus.RUNNING:
        return status
    pid = info.get("pid")
    if isinstance(pid, int) and not process_alive(pid):
        return INCOMPLETE
    metrics = directory / "metrics.csv"
    interval = info.get("interval_s")
    if not isinstance(interval, (int, float)):
        interval = 0.0
    stale_after = max(STALE_AFTER_S, 10 * float(interval))
    last_write = metrics.stat().st_mtime if metrics.exists() else (directory / "run.json").stat().st_mtime
    if (now if now is not None else time.time()) - last_write > stale_after:
        return INCOMPLETE
    return RunStatus.RUNNING


def _cached_summary(directory: Path) -> dict[str, Any] | None:
    """summary.json when it is newer than metrics.csv (so it describes the data as it is)."""
    summary, metrics = directory / SUMMARY_FILE, directory / "metrics.csv"
    if not summary.exists() or not metrics.exists() or summary.stat().st_mtime < metrics.stat().st_mtime:
        return None
    try:
        data = json.loads(summary.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) and "kpis" in data else None


def list_runs(data_dir: Path) -> list[RunListing]:
    listings = []
    for directory in run_directories(data_dir):
        try:
            info = read_run_json(directory)
        except UsageError as exc:
            listings.append(RunListing(directory, {}, "unreadable", None, None, str(exc)))
            continue
        status = effective_status(directory, info)
        problem = None
        try:
            summary = _cached_summary(directory) or compute_kpis(load_run(directory))
            numbers = headline(summary)
        except (UsageError, KeyError, ValueError) as exc:
            numbers, problem = None, str(exc)
        listings.append(RunListing(directory, info, status, start_time_of(info), numbers, problem))
    return sorted(listings, key=lambda r: r.started or datetime.min, reverse=True)


def describe_tags(info: dict[str, Any]) -> str:
    config = info.get("config")
    tags = config.get("tags") if isinstance(config, dict) else None
    return ", ".join(f"{k}={v}" for k, v in tags.items()) if isinstance(tags, dict) else ""


def runs_json(listings: list[RunListing]) -> list[dict[str, Any]]:
    """The listing for machines (`hpa-exp runs --json`): one object per run, newest first."""
    rows = []
    for item in listings:
        config = item.info.get("config")
        tags = config.get("tags") if isinstance(config, dict) else None
        rows.append(
            {
                "run": item.path.name,
                "path": str(item.path),
                "backend": item.info.get("backend"),
                "status": item.status,
                "start_utc": item.info.get("start_utc"),
                "tags": tags if isinstance(tags, dict) else {},
                "headline": item.headline,
                "problem": item.problem,
            }
        )
    return rows


STATUS_STYLE = {
    RunStatus.COMPLETED: "green",
    RunStatus.RUNNING: "cyan",
    INCOMPLETE: "yellow",
    RunStatus.INTERRUPTED: "yellow",
    RunStatus.FAILED: "red",
    "unreadable": "red",
}


def runs_table(listings: list[RunListing], data_dir: Path) -> Table:
    table = Table(title=f"runs under {data_dir} (newest first)", title_justify="left")
    table.add_column("run", overflow="fold", min_width=36)
    headers = (
        "backend",
        "status",
        "started",
        "duration",
        "peak",
        "GPU-h",
        "energy",
        "scale-up",
        "scale-down",
        "TTFT p90",
        "tags",
    )
    for header in headers:
        table.add_column(header, overflow="fold")  # wrap on a narrow terminal, never cut
    for item in listings:
        started = item.started.strftime("%Y-%m-%d %H:%M:%S") if item.started else "unknown"
        if item.started:
            started += " UTC" if item.info.get("start_utc") else " (local)"
        h = item.headline or {}
        style = STATUS_STYLE.get(item.status)
        table.add_row(
            item.path.name,
            str(item.info.get("backend", "?")),
            f"[{style}]{item.status}[/]" if style else item.status,
            started,
            fmt(h.get("duration_s"), " s", 0),
            fmt(h.get("peak_replicas"), "", 0),
            fmt(h.get("gpu_hours"), "", 3),
            significant(h.get("energy_kwh"), " kWh"),
            fmt(h.get("first_scale_up_s"), " s", 0),
            fmt(h.get("scale_down_s"), " s", 0),
            fmt(h.get("ttft_p90_ms"), " ms", 0),
            describe_tags(item.info),
        )
    return table
