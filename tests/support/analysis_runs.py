"""Run directories for the analysis tests: imported reference runs and a fresh simulated run."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from hpa_experiments.legacy import import_legacy

REPO = Path(__file__).resolve().parents[2]
REFERENCE_RUNS = REPO / "tests" / "data" / "reference-runs"
HIGH_LOAD = "high-load-hpa-20251124-155733"
MODERATE = "moderate-load-hpa-extended-20251210-132157"
SIM_CONFIG = REPO / "experiment-configs" / "high-load-hpa.yaml"


def imported_reference_run(name: str, data_dir: Path) -> Path:
    """A copy of a reference run of the original system, imported into `data_dir`."""
    source = REFERENCE_RUNS / name
    copy = data_dir.parent / "original" / name
    shutil.copytree(source, copy)
    return import_legacy(copy, data_dir).directory


def simulated_run(data_dir: Path) -> Path:
    """`hpa-exp run <high-load config> --backend sim`, as a user would start it."""
    before = set(data_dir.glob("*")) if data_dir.exists() else set()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "hpa_experiments",
            "run",
            str(SIM_CONFIG),
            "--backend",
            "sim",
            "--output-dir",
            str(data_dir),
            "--quiet",
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    (created,) = set(data_dir.glob("*")) - before
    return created
