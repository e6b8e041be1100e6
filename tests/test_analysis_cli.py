"""The analysis commands as a user types them: runs, report, compare, import-legacy, notebook."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hpa_experiments.cli import main
from tests.support.analysis_runs import HIGH_LOAD, REFERENCE_RUNS, REPO
from tests.support.synthetic_runs import T0, write_run


def run_cli(*args: str) -> int:
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    return int(exit_info.value.code or 0)


def replica_rows(peak: int, n: int = 120) -> list[dict]:
    return [
        {"elapsed_s": t, "replicas": peak if 30 <= t < 90 else 1, "desired_replicas": peak if 25 <= t < 90 else 1}
        for t in range(n)
    ]


PHASES = [{"job": "load", "rate": 10, "planned_start_s": 10, "planned_end_s": 80}]


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    data = tmp_path / "experiment-data"
    write_run(data / "old-completed", replica_rows(4), phases=PHASES, started_at=T0)
    write_run(
        data / "middle-crashed", replica_rows(3), phases=PHASES, started_at=T0 + 3600, status="running", pid=dead_pid()
    )
    write_run(
        data / "newest-running", replica_rows(2), phases=PHASES, started_at=T0 + 7200, status="running", pid=os.getpid()
    )
    return data


def test_runs_lists_newest_first_with_status(data_dir, capsys):
    assert run_cli("runs", "--data-dir", str(data_dir)) == 0
    out = capsys.readouterr().out
    order = [out.index(name) for name in ("newest-running", "middle-crashed", "old-completed")]
    assert order == sorted(order)
    lines = {
        name: next(line for line in out.splitlines() if name in line)
        for name in ("newest-running", "middle-crashed", "old-completed")
    }
    assert "running" in lines["newest-running"]
    assert "incomplete" in lines["middle-crashed"]  # "running" in run.json, but the process is gone
    assert "completed" in lines["old-completed"] and " 4 " in lines["old-completed"]  # peak replicas


def test_runs_shows_gpu_energy_when_a_run_has_power_data(data_dir, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    rows = [{**row, "gpu_power_w": 1000.0, "gpu_count": 1} for row in replica_rows(2)]
    write_run(data_dir / "powered", rows, phases=PHASES, started_at=T0 + 60)
    assert run_cli("runs", "--data-dir", str(data_dir)) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "energy" in next(line for line in lines if "GPU-h" in line)
    assert "0.0333 kWh" in next(line for line in lines if "powered" in line)  # 1000 W for 120 s
    assert "kWh" not in next(line for line in lines if "old-completed" in line)


def test_running_run_with_stale_metrics_is_incomplete(data_dir):
    from hpa_experiments.analysis.runs import effective_status

    directory = data_dir / "newest-running"
    info = json.loads((directory / "run.json").read_text())
    assert effective_status(directory, info) == "running"
    assert effective_status(directory, info, now=time.time() + 3600) == "incomplete"


@pytest.mark.slow
def test_report_by_name_writes_all_files(data_dir, capsys):
    assert run_cli("report", "old-completed", "--data-dir", str(data_dir)) == 0
    out = capsys.readouterr().out
    run = data_dir / "old-completed"
    for path in (run / "summary.json", run / "plots" / "overview.png", run / "report.html"):
        assert path.exists() and str(path) in out
    summary = json.loads((run / "summary.json").read_text())
    assert summary["load_increases"][0]["time_to_first_scale_up_s"] == 15  # desired rises at t=25
    assert "first scale-up after 15 s" in out


def test_report_errors_are_messages_with_exit_code_2(data_dir, capsys):
    assert run_cli("report", "no-such-run", "--data-dir", str(data_dir)) == 2
    assert "run 'no-such-run' not found" in capsys.readouterr().err
    assert run_cli("compare", "old-completed", "--data-dir", str(data_dir)) == 2
    assert "at least two runs" in capsys.readouterr().err


@pytest.mark.slow
def test_compare_deltas_vs_first_run(data_dir, tmp_path, capsys):
    output = tmp_path / "cmp"
    assert (
        run_cli("compare", "old-completed", "middle-crashed", "--data-dir", str(data_dir), "--output", str(output)) == 0
    )
    out = capsys.readouterr().out
    peak_line = next(line for line in out.splitlines() if "peak replicas" in line)
    assert "-1 (-25%)" in peak_line  # 3 vs 4
    data = json.loads((output / "compare.json").read_text())
    peak = next(k for k in data["kpis"] if k["kpi"] == "peak replicas")
    assert peak["values"] == [4, 3]


def test_import_legacy_command(tmp_path, capsys):
    data = tmp_path / "data"
    assert (
        run_cli("import-legacy", str(REFERENCE_RUNS / HIGH_LOAD), "--tz", "Europe/Rome", "--output-dir", str(data)) == 0
    )
    assert "2 milli-unit value(s) corrected" in capsys.readouterr().out
    info = json.loads((data / HIGH_LOAD / "run.json").read_text())
    assert info["timezone"] == "Europe/Rome" and info["start_utc"].endswith("Z")
    assert run_cli("import-legacy", str(tmp_path / "missing"), "--output-dir", str(data)) == 2


def test_notebook_print_only(data_dir, capsys):
    assert run_cli("notebook", "--print-only", "--data-dir", str(data_dir)) == 0
    out = capsys.readouterr().out.strip()
    # default: the newest run by start time, in the analysis notebook
    assert out.startswith(f"HPA_EXP_RUN_DIR={(data_dir / 'newest-running').resolve()} ")
    assert "-m jupyter lab" in out and out.endswith(str(REPO / "notebooks" / "analyze-hpa-experiment.ipynb"))
    assert run_cli("notebook", "old-completed", "middle-crashed", "--print-only", "--data-dir", str(data_dir)) == 0
    out = capsys.readouterr().out.strip()
    expected = os.pathsep.join(str((data_dir / n).resolve()) for n in ("old-completed", "middle-crashed"))
    assert out.startswith(f"HPA_EXP_RUN_DIRS={expected} ") and out.endswith("compare-runs.ipynb")
