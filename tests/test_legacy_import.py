"""The importer on both real runs of the original system (tests/data, copied to a temporary folder)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from hpa_experiments.analysis import compute_kpis, load_run
from hpa_experiments.errors import UsageError
from hpa_experiments.legacy import import_legacy, is_milli_misread

REFERENCE = Path(__file__).resolve().parent / "data" / "reference-runs"
HIGH = "high-load-hpa-20251124-155733"
MODERATE = "moderate-load-hpa-extended-20251210-132157"


@pytest.fixture
def sources(tmp_path: Path) -> Path:
    folder = tmp_path / "original"
    for name in (HIGH, MODERATE):
        shutil.copytree(REFERENCE / name, folder / name)
    return folder


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.parametrize("name", [HIGH, MODERATE])
def test_import_keeps_rows_and_blanks_never_collected_columns(sources, tmp_path, name):
    result = import_legacy(sources / name, tmp_path / "data")
    original = _rows(sources / name / "metrics.csv")
    imported = _rows(result.directory / "metrics.csv")
    assert result.rows == len(imported) == len(original)
    for column in ("ttft_ms", "itl_ms", "request_rate_per_min", "active_jobs"):
        assert all(row[column] == "" for row in imported), column
    assert [r["replicas"] for r in imported] == [r["replicas"] for r in original]
    kv = [[float(r["kv_cache_usage_perc"]) for r in rows] for rows in (imported, original)]
    assert kv[0] == kv[1]
    info = json.loads((result.directory / "run.json").read_text())
    assert info["backend"] == "legacy-import" and info["status"] == "completed"
    assert info["timezone"] == "unknown" and info["start_utc"] is None and info["t0_unix"] is None
    assert info["legacy"]["source_path"] == str((sources / name).resolve())
    # local time kept, without a UTC marker
    assert imported[0]["timestamp"] == original[0]["timestamp"].replace(" ", "T") + ".000"
    assert (result.directory / "legacy-source" / "metrics.csv").read_bytes() == (
        sources / name / "metrics.csv"
    ).read_bytes()


def test_milli_unit_value_is_corrected(sources, tmp_path):
    result = import_legacy(sources / HIGH, tmp_path / "data")
    waiting = [r["num_requests_waiting"] for r in _rows(result.directory / "metrics.csv")]
    original = [r["num_requests_waiting"] for r in _rows(sources / HIGH / "metrics.csv")]
    assert "60250" in original and "60250" not in waiting
    assert [w for w, o in zip(waiting, original, strict=True) if o == "60250"] == ["60.25", "60.25"]
    assert {c["read"]: c["corrected"] for c in result.corrections} == {60250.0: 60.25}
    # everything else unchanged
    unchanged = [w for w, o in zip(waiting, original, strict=True) if o != "60250"]
    assert unchanged == [o for o in original if o != "60250"]


def test_moderate_run_needs_no_correction(sources, tmp_path):
    result = import_legacy(sources / MODERATE, tmp_path / "data")
    assert result.corrections == []
    assert "97.5" in [r["num_requests_waiting"] for r in _rows(result.directory / "metrics.csv")]


def test_phases_events_and_elapsed(sources, tmp_path):
    result = import_legacy(sources / MODERATE, tmp_path / "data")
    phases = _rows(result.directory / "phases.csv")
    assert [(p["job"], p["planned_start_s"], p["planned_end_s"]) for p in phases] == [
        ("phase-1-baseline", "0", "600"),
        ("phase-2-ramp-up", "180", "780"),
        ("phase-3-sustained", "360", "960"),
        ("phase-4-cooldown", "540", "1140"),
    ]
    events = _rows(result.directory / "events.csv")
    assert events[0]["kind"] == "run_started" and events[-1]["kind"] == "run_finished"
    assert {"scale_up", "scale_down"} <= {e["kind"] for e in events}
    metrics = _rows(result.directory / "metrics.csv")
    # t0 = "Monitor started" at 13:22:03; first sample 13:22:04
    assert float(metrics[0]["elapsed_s"]) == 1
    assert float(metrics[-1]["elapsed_s"]) == (13 * 3600 + 45 * 60 + 54) - (13 * 3600 + 22 * 60 + 3)
    info = json.loads((result.directory / "run.json").read_text())
    assert info["start_local"] == "2025-12-10T13:22:03" and info["interval_s"] == 21
    assert info["backend_info"]["hpa_name"] == "vllm-hpa-combined"


def test_timezone_converts_to_utc(sources, tmp_path):
    result = import_legacy(sources / HIGH, tmp_path / "data", tz="Europe/Rome")
    info = json.loads((result.directory / "run.json").read_text())
    assert info["timezone"] == "Europe/Rome"
    assert info["start_utc"] == "2025-11-24T14:57:38.000Z"  # CET = UTC+1 in November
    assert _rows(result.directory / "metrics.csv")[0]["timestamp"] == "2025-11-24T14:57:38.000Z"


def test_imported_runs_analyse(sources, tmp_path):
    high = compute_kpis(load_run(import_legacy(sources / HIGH, tmp_path / "data").directory))
    assert high["kpis"]["replicas"]["peak"] == 10
    assert high["kpis"]["ttft_ms"]["mean"] is None  # never collected: no data, not 0
    assert high["load_increases"][-1]["time_to_first_scale_up_s"] == 13  # 16:01:51 vs t0+240 s
    notes = "\n".join(high["notes"])
    assert "2 milli-unit value(s) corrected" in notes and "unknown zone" in notes and "ttft_ms" in notes


def test_bad_inputs_are_clear_errors(sources, tmp_path):
    with pytest.raises(UsageError, match="no such directory"):
        import_legacy(tmp_path / "nope", tmp_path / "data")
    with pytest.raises(UsageError, match="unknown time zone"):
        import_legacy(sources / HIGH, tmp_path / "data", tz="Mars/Olympus")
    import_legacy(sources / HIGH, tmp_path / "data")
    with pytest.raises(UsageError, match="already exists"):
        import_legacy(sources / HIGH, tmp_path / "data")


@pytest.mark.parametrize(
    ("value", "expected"), [(60250, True), (1001, True), (97.5, False), (355, False), (2000, False), (1500.5, False)]
)
def test_milli_rule(value, expected):
    assert is_milli_misread(float(value)) is expected
