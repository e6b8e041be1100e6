"""A suite's memory between invocations: suite-progress.json (finished runs) and failures.csv."""

from __future__ import annotations

import csv
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hpa_experiments.errors import (
    UsageError,
)
from hpa_experiments.rundir import RunStatus, atomic_write_json, utc_iso
from hpa_experiments.suite.config import SuiteRun

PROGRESS_FILE = "suite-progress.json"
FAILURES_FILE = "failures.csv"
FAILURE_COLUMNS = ["time", "run", "entry", "repeat", "attempt", "reason"]


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
        return self.records.get(run.key, {}).get("status") == RunStatus.COMPLETED

    def record(self, run: SuiteRun, run_dir: Path | None, status: RunStatus, attempts: int) -> None:
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
