"""A full disk during a run, and the readers on cut and large files.

The disk is a fault injected into the twin's run in this process: metrics.csv and events.csv are
opened on a raw file that accepts a fixed number of bytes and then answers ENOSPC, part of a row
first, as a real full disk does.  (A small tmpfs gives the same, but mounting one needs root.)
"""

from __future__ import annotations

import csv
import errno
import io
import json
import math
from pathlib import Path
from typing import Any

import pytest

from hpa_experiments.analysis import load as load_module
from hpa_experiments.analysis.kpis import compute_kpis
from hpa_experiments.analysis.load import load_run
from hpa_experiments.api import Experiment
from hpa_experiments.cli import main
from hpa_experiments.rundir import RESERVE_FILE

pytestmark = pytest.mark.slow  # every test here takes seconds (benchmarks/README.md: the fast loop)

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "experiment-configs" / "baseline-hpa.yaml"


class _Disk:
    def __init__(self, free: int):
        self.free = free


class _FullDiskFile(io.FileIO):
    """A file on a disk with `disk.free` bytes left: a write beyond it is cut, then ENOSPC."""

    def __init__(self, path: str, disk: _Disk):
        super().__init__(path, "w")
        self.disk = disk

    def write(self, data: Any) -> int:
        if self.disk.free <= 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        count = min(len(data), self.disk.free)
        written = super().write(bytes(data[:count]))
        self.disk.free -= written
        return written


def test_a_full_disk_stops_the_run_cleanly_and_keeps_the_rows(tmp_path: Path, monkeypatch) -> None:
    disk = _Disk(free=30_000)
    real_open = Path.open

    def open_on_small_disk(self: Path, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if self.name in ("metrics.csv", "events.csv") and mode == "w":
            return io.TextIOWrapper(io.BufferedWriter(_FullDiskFile(str(self), disk)), encoding="utf-8", newline="")
        return real_open(self, mode, *args, **kwargs)

    monkeypatch.setattr(Path, "open", open_on_small_disk)
    result = Experiment.from_yaml_file(CONFIG).run(backend="sim", output_dir=tmp_path, handle_signals=False)
    monkeypatch.undo()

    assert result.status == "failed" and result.exit_code == 1
    assert "No space left on device" in (result.reason or "")
    assert result.reason.startswith("cannot write the run's files: ")
    info = json.loads((result.run_dir / "run.json").read_text())
    assert info["status"] == "failed" and info["exit_code"] == 1 and info["reason"] == result.reason
    assert not (result.run_dir / RESERVE_FILE).exists()
    # cleanup ran: every Job that started was stopped, none is "running"
    with (result.run_dir / "phases.csv").open(newline="") as fh:
        phases = list(csv.DictReader(fh))
    assert phases and all(p["outcome"] != "running" for p in phases), phases
    # the rows before the disk filled are kept, whole, one per tick; the run stopped early
    text = (result.run_dir / "metrics.csv").read_text()
    complete = text[: text.rfind("\n") + 1]
    rows = list(csv.DictReader(io.StringIO(complete)))
    interval = info["interval_s"]
    assert len(rows) > 10
    assert [float(r["elapsed_s"]) for r in rows] == [k * interval for k in range(len(rows))]
    assert float(rows[-1]["elapsed_s"]) < info["config"]["plan"]["total_s"] / 2
    # and the analysis reads what is there, saying that the last line was cut
    run = load_run(result.run_dir)
    assert len(run.metrics) == len(rows)
    assert compute_kpis(run)["kpis"]["replicas"]["peak"] is not None


def small_run(folder: Path) -> Path:
    return Experiment.from_yaml_file(CONFIG).run(backend="sim", output_dir=folder, handle_signals=False).run_dir


def test_a_cut_last_line_is_skipped_with_a_warning(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = small_run(tmp_path)
    rows_before = len(load_run(run).metrics)
    metrics, events = run / "metrics.csv", run / "events.csv"
    first_row = metrics.read_text().splitlines()[1]
    with metrics.open("a") as fh:
        fh.write(first_row[: len(first_row) // 2])  # "…,0.12" of "…,0.1234,…": a wrong number if parsed
    cut_event = '12.5,2026-01-01T00:00:12.500Z,warning,"a detail, cut inside its quo'
    with events.open("a") as fh:
        fh.write(cut_event)

    loaded = load_run(run)
    assert len(loaded.metrics) == rows_before
    assert [w.split(": ", 1)[1] for w in loaded.warnings] == [
        f"partial last line ignored ({len(first_row) // 2} bytes without a newline, a write cut short)",
        f"partial last line ignored ({len(cut_event)} bytes without a newline, a write cut short)",
    ]
    with pytest.raises(SystemExit) as exit_info:
        main(["report", str(run)])
    err = capsys.readouterr().err
    assert exit_info.value.code in (0, None), err
    assert f"warning: {metrics}: partial last line ignored" in err
    assert f"warning: {events}: partial last line ignored" in err


def test_a_big_metrics_file_out_of_order_reads_compactly_with_the_same_kpis(tmp_path: Path, monkeypatch) -> None:
    """A big metrics.csv that cannot be streamed (two rows swapped: time goes back) is read whole, compactly
    (the streaming path, for files in order, is tested in test_stream_metrics.py)."""
    run = small_run(tmp_path)
    lines = (run / "metrics.csv").read_text().splitlines(keepends=True)
    lines[5], lines[6] = lines[6], lines[5]
    (run / "metrics.csv").write_text("".join(lines))
    whole = load_run(run)
    monkeypatch.setattr(load_module, "BIG_METRICS_BYTES", 0)  # every file counts as big
    monkeypatch.setattr(load_module, "CHUNK_ROWS", 7)  # and is read in many chunks
    compact = load_run(run)

    assert compact.digest is None and len(compact.metrics) == len(whole.metrics)
    assert "timestamp" not in compact.metrics.columns
    assert any("not streamed (elapsed_s goes back in time)" in w for w in compact.warnings)
    assert any("read compactly" in w for w in compact.warnings)
    assert compact.metrics.memory_usage(deep=True).sum() < whole.metrics.memory_usage(deep=True).sum() / 2
    for column in whole.metrics.columns.drop("timestamp"):
        a, b = whole.metrics[column], compact.metrics[column]
        if column in load_module.TEXT_COLUMNS:
            assert a.astype(object).where(a.notna(), None).tolist() == b.astype(object).where(b.notna(), None).tolist()
        else:
            assert a.isna().tolist() == b.isna().tolist(), column
            assert all(math.isclose(x, y, rel_tol=1e-6) for x, y in zip(a.dropna(), b.dropna(), strict=True)), column

    def numbers(value: Any, path: str = "") -> dict[str, float]:
        if isinstance(value, dict):
            return {k: v for key, item in value.items() for k, v in numbers(item, f"{path}.{key}").items()}
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return {path: float(value)}
        return {}

    expected, got = numbers(compute_kpis(whole)), numbers(compute_kpis(compact))
    assert expected.keys() == got.keys()
    differing = {k: (expected[k], got[k]) for k in expected if not math.isclose(expected[k], got[k], rel_tol=1e-5)}
    assert not differing
