"""Import a run of the original shell-based system into an hpa-exp run directory.

The original run folder holds `metrics.csv`, `experiment-config.yaml`, `scaling-events.log`
and (later versions) `metadata.json`.  Its known data defects are repaired, not copied:

- Milli-units.  The first monitor version wrote a Kubernetes quantity such as "60250m"
  (= 60.25) as 60250.  A quantity only takes the "m" form when it is not a whole number, so
  a `num_requests_waiting` value that is a whole number >= 1000 and not a multiple of 1000
  can only be such a misread; it is divided by 1000.  (Genuine per-pod queues of 1000 or
  more did not occur in these runs: the load generator capped concurrency at 512 per job.)
  Smaller values are ambiguous ("355" vs "355m") and are kept as read.  Every corrected
  cell is listed in run.json under `legacy.corrections`.
- `ttft_ms`, `itl_ms`, `request_rate_per_min` and `active_jobs` were never collected (the
  monitor wrote 0 instead of "missing"); they become empty cells.
- Timestamps are local time of an unknown zone.  They stay local (ISO 8601 without offset)
  and run.json says `"timezone": "unknown"`, unless a zone is given, in which case they are
  converted to UTC.
- t0 (elapsed_s = 0) is the "Monitor started" line of scaling-events.log, else the
  metadata start time, else the first sample; job `start_delay`s count from there.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timezone
from itertools import pairwise
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from hpa_experiments import __version__
from hpa_experiments.errors import UsageError
from hpa_experiments.rundir import (
    ADDED_COLUMNS,
    EVENT_COLUMNS,
    LEGACY_COLUMNS,
    PHASE_COLUMNS,
    RunStatus,
    atomic_write_json,
    format_cell,
    utc_iso,
)
from hpa_experiments.yaml_io import InputFileError, describe_yaml_error, load_yaml, read_input_text

BACKEND_NAME = "legacy-import"
NEVER_COLLECTED = ("ttft_ms", "itl_ms", "request_rate_per_min", "active_jobs")
MILLI_CHECKED = ("num_requests_waiting",)
SOURCE_FILES = ("metrics.csv", "experiment-config.yaml", "metadata.json", "scaling-events.log", "README.md")
LOCAL_FORMAT = "%Y-%m-%d %H:%M:%S"
_LOG_LINE = re.compile(r"^\[(?P<ts>[^\]]+)\]\s*(?P<text>.*)$")
_CHANGE = re.compile(
    r"(?P<what>SCALE UP TRIGGERED|SCALE DOWN TRIGGERED|REPLICAS CHANGED):\s*(?P<a>\d+)\s*->\s*(?P<b>\d+)"
)


@dataclass
class _Clock:
    """Turns the original local timestamps into our time column and elapsed seconds."""

    zone: ZoneInfo | None
    t0: datetime

    def stamp(self, local: datetime) -> str:
        if self.zone is None:
            return local.strftime("%Y-%m-%dT%H:%M:%S.000")
        utc = local.replace(tzinfo=self.zone).astimezone(timezone.utc)
        return utc.strftime("%Y-%m-%dT%H:%M:%S.000Z")

    def elapsed(self, local: datetime) -> float:
        if self.zone is None:
            return (local - self.t0).total_seconds()
        return (local.replace(tzinfo=self.zone) - self.t0.replace(tzinfo=self.zone)).total_seconds()

    def unix(self, local: datetime) -> float | None:
        return None if self.zone is None else local.replace(tzinfo=self.zone).timestamp()


@dataclass
class ImportResult:
    directory: Path
    rows: int
    corrections: list[dict[str, Any]] = field(default_factory=list)


def is_milli_misread(value: float) -> bool:
    """True for a whole number >= 1000 that is not a multiple of 1000 (see module docstring)."""
    return value >= 1000 and value.is_integer() and value % 1000 != 0


def _parse_local(text: str, where: str) -> datetime:
    try:
        return datetime.strptime(text.strip(), LOCAL_FORMAT)
    except ValueError:
        raise UsageError(f"{where}: timestamp {text!r} is not 'YYYY-MM-DD HH:MM:SS'") from None


def _read_metrics(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            header = list(reader.fieldnames or [])
            rows = [row for row in reader if row.get("timestamp")]
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc}") from None
    missing = [c for c in ("timestamp", "replicas") if c not in header]
    if missing:
        raise UsageError(f"{path}: not a metrics.csv of the original system (missing columns: {missing})")
    return header, rows


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        data = load_yaml(read_input_text(path))
    except InputFileError as exc:
        raise UsageError(f"{path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise UsageError(f"{path}: invalid YAML: {describe_yaml_error(exc)}") from None
    return data if isinstance(data, dict) else {}


def _read_metadata(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path}: invalid JSON: {exc}") from None
    return data if isinstance(data, dict) else {}


def _read_log(path: Path) -> list[tuple[datetime, str]]:
    if not path.exists():
        return []
    entries = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        match = _LOG_LINE.match(line.strip())
        if match:
            entries.append((_parse_local(match["ts"], f"{path}:{number}"), match["text"].strip()))
    return entries


def _choose_t0(
    log: list[tuple[datetime, str]], metadata: dict[str, Any], first_sample: datetime, where: Path
) -> tuple[datetime, str]:
    for when, text in log:
        if text.startswith("Monitor started"):
            return when, "scaling-events.log 'Monitor started'"
    if isinstance(metadata.get("start_time"), str):
        return _parse_local(metadata["start_time"], str(where / "metadata.json")), "metadata.json start_time"
    return first_sample, "first sample"


def _number(text: str | None) -> float | None:
    if text is None or text.strip() == "":
        return None
    try:
        return float(text)
    except ValueError:
        return None


def _phase_rows(config: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for job in config.get("jobs") or []:
        if not isinstance(job, dict) or "name" not in job:
            continue
        start = _number(str(job.get("start_delay", 0)))
        duration = _number(str(job.get("duration"))) if job.get("duration") is not None else None
        manifest = job.get("manifest")
        rows.append(
            {
                "job": job["name"],
                "resource_name": Path(str(manifest)).stem if manifest else None,
                "rate": None,  # the original configs state no rate (only comments, some wrong)
                "planned_start_s": start,
                "planned_end_s": start + duration if start is not None and duration is not None else None,
                "outcome": "unknown",
            }
        )
    return rows


def _active_jobs_label(phases: list[dict[str, Any]], elapsed: float) -> str | None:
    names = [
        p["job"]
        for p in phases
        if p["planned_start_s"] is not None
        and p["planned_end_s"] is not None
        and p["planned_start_s"] <= elapsed < p["planned_end_s"]
    ]
    return "+".join(names) if names else None


def _event(clock: _Clock, when: datetime, text: str) -> dict[str, Any]:
    change = _CHANGE.search(text)
    if text.startswith("Monitor started"):
        kind = "run_started"
    elif text.startswith("Monitor stopped"):
        kind = "run_finished"
    elif change:
        kind = "scale_up" if int(change["b"]) > int(change["a"]) else "scale_down"
        if int(change["b"]) == int(change["a"]):
            kind = "warning"
    else:
        kind = "warning"
    return {
        "elapsed_s": round(clock.elapsed(when), 3),
        "time": clock.stamp(when),
        "kind": kind,
        "detail": f"legacy: {text}",
    }


def _write_csv(path: Path, columns: list[str], rows: list[dict[str, Any]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow([format_cell(row.get(c)) for c in columns])


def _convert_rows(
    raw_rows: list[dict[str, str]], stamps: list[datetime], clock: _Clock, phases: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Original rows -> our rows (defects repaired), and the list of milli-unit corrections."""
    rows: list[dict[str, Any]] = []
    corrections: list[dict[str, Any]] = []
    for index, (raw, when) in enumerate(zip(raw_rows, stamps, strict=True)):
        row: dict[str, Any] = {c: _number(raw.get(c)) for c in LEGACY_COLUMNS if c != "timestamp"}
        for column in NEVER_COLLECTED:
            row[column] = None
        for column in MILLI_CHECKED:
            value = row.get(column)
            if value is not None and is_milli_misread(value):
                row[column] = value / 1000
                corrections.append({"row": index + 1, "column": column, "read": value, "corrected": value / 1000})
        elapsed = clock.elapsed(when)
        row.update(timestamp=clock.stamp(when), elapsed_s=elapsed, phase=_active_jobs_label(phases, elapsed))
        rows.append(row)
    return rows, corrections


def import_legacy(source: Path, output_dir: Path, tz: str | None = None) -> ImportResult:
    """Convert the original run folder `source` into `output_dir/<source name>`."""
    if not source.is_dir():
        raise UsageError(f"{source}: no such directory")
    metrics_path = source / "metrics.csv"
    if not metrics_path.exists():
        raise UsageError(f"{metrics_path}: missing (not a run of the original system)")
    try:
        zone = ZoneInfo(tz) if tz else None
    except (ZoneInfoNotFoundError, ValueError):
        raise UsageError(f"--tz {tz!r}: unknown time zone (use an IANA name such as Europe/Rome)") from None
    target = output_dir / source.name
    if target.exists():
        raise UsageError(f"{target}: already exists (remove it or choose another --output-dir)")

    header, raw_rows = _read_metrics(metrics_path)
    if not raw_rows:
        raise UsageError(f"{metrics_path}: no samples")
    config = _read_yaml(source / "experiment-config.yaml")
    metadata = _read_metadata(source / "metadata.json")
    log = _read_log(source / "scaling-events.log")
    stamps = [_parse_local(r["timestamp"], f"{metrics_path}:{i + 2}") for i, r in enumerate(raw_rows)]
    t0, t0_source = _choose_t0(log, metadata, stamps[0], source)
    clock = _Clock(zone, t0)
    phases = _phase_rows(config)

    rows, corrections = _convert_rows(raw_rows, stamps, clock, phases)
    elapsed_values = [r["elapsed_s"] for r in rows]
    intervals = sorted(b - a for a, b in pairwise(elapsed_values))
    interval = intervals[len(intervals) // 2] if intervals else None
    name = str(config.get("name") or metadata.get("experiment_name") or source.name)
    end_local = _end_time(log, metadata, stamps[-1], source)

    target.mkdir(parents=True)
    extra = [c for c in header if c not in LEGACY_COLUMNS]
    _write_csv(target / "metrics.csv", LEGACY_COLUMNS + ADDED_COLUMNS + extra, rows)
    _write_csv(target / "phases.csv", PHASE_COLUMNS, phases)
    _write_csv(target / "events.csv", EVENT_COLUMNS, [_event(clock, when, text) for when, text in log])
    if (source / "experiment-config.yaml").exists():
        shutil.copyfile(source / "experiment-config.yaml", target / "experiment-config.yaml")
    originals = target / "legacy-source"
    originals.mkdir()
    for file_name in SOURCE_FILES:
        if (source / file_name).exists():
            shutil.copyfile(source / file_name, originals / file_name)

    start_unix = clock.unix(t0)
    end_unix = clock.unix(end_local)
    atomic_write_json(
        target / "run.json",
        {
            "id": source.name,
            "name": name,
            "status": RunStatus.COMPLETED,
            "backend": BACKEND_NAME,
            "start_utc": utc_iso(start_unix) if start_unix is not None else None,
            "end_utc": utc_iso(end_unix) if end_unix is not None else None,
            "start_local": t0.strftime("%Y-%m-%dT%H:%M:%S"),
            "end_local": end_local.strftime("%Y-%m-%dT%H:%M:%S"),
            "timezone": tz or "unknown",
            "t0_unix": start_unix,
            "interval_s": interval,
            "exit_code": None,
            "reason": None,
            "pid": None,
            "versions": {"hpa_experiments": __version__},
            "backend_info": {"source": "original shell-based experiment system", **metadata},
            "config": config,
            "legacy": {
                "source_path": str(source.resolve()),
                "t0_source": t0_source,
                "timezone": tz or "unknown",
                "never_collected_columns": list(NEVER_COLLECTED),
                "milli_unit_rule": "num_requests_waiting: whole number >= 1000, not a multiple of 1000 -> / 1000",
                "corrections": corrections,
                "rows": len(rows),
            },
        },
    )
    return ImportResult(target, len(rows), corrections)


def _end_time(
    log: list[tuple[datetime, str]], metadata: dict[str, Any], last_sample: datetime, source: Path
) -> datetime:
    for when, text in reversed(log):
        if text.startswith("Monitor stopped"):
            return when
    if isinstance(metadata.get("end_time"), str):
        return _parse_local(metadata["end_time"], str(source / "metadata.json"))
    return last_sample
