"""Per-request statistics (analysis/requests.py) and figure (analysis/request_plots.py) on hand-made files."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from hpa_experiments.analysis import requests as request_analysis
from hpa_experiments.analysis.kpis import compute_kpis
from hpa_experiments.analysis.load import load_run
from hpa_experiments.analysis.report import build_report
from hpa_experiments.analysis.request_plots import write_request_plots
from hpa_experiments.analysis.requests import request_kpis
from hpa_experiments.rundir import REQUEST_COLUMNS

# job, arrival_s, outcome, ttft_ms, itl_mean_ms, e2e_ms, queue_wait_ms, prompt, output
ROWS = [
    ("a", 1.0, "completed", 900.0, 10.0, 2000.0, 800.0, 100, 50),  # before a 5 s warm-up
    ("a", 6.0, "completed", 20.0, 8.0, 400.0, 2.0, 120, 48),
    ("a", 7.0, "completed", 40.0, None, 40.0, 0.0, 80, 1),  # one output token: no ITL
    ("a", 8.0, "completed", 60.0, 12.0, 700.0, 5.0, 90, 60),
    ("a", 9.0, "aborted_scale_down", 30.0, None, None, 3.0, 70, 9),
    ("b", 9.5, "aborted_job_stopped", None, None, None, None, 60, 0),  # cancelled while queued: no TTFT
    ("b", 10.0, "completed", 100.0, 20.0, 1100.0, 50.0, 200, 51),
    ("b", 11.0, "running_at_end", 70.0, None, None, 10.0, 40, 3),
]


def make_run(
    folder: Path, rows: list[tuple] | None = ROWS, warm_up: float = 5.0, percentiles: list[float] | None = None
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    metrics = {"warm_up_duration_s": warm_up, "percentiles": percentiles or [0.5, 0.9, 0.99]}
    info = {
        "id": "r1",
        "name": "t",
        "backend": "simulation",
        "status": "completed",
        "interval_s": 5,
        "config": {"metrics": metrics, "slo": {"ttft_ms": 50}},
    }
    (folder / "run.json").write_text(json.dumps(info))
    (folder / "metrics.csv").write_text("elapsed_s,replicas\n0,1\n5,1\n10,1\n")
    if rows is not None:
        with (folder / "requests.csv").open("w", newline="") as fh:
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow(REQUEST_COLUMNS)
            for i, (job, arrival, outcome, ttft, itl, e2e, wait, prompt, output) in enumerate(rows):
                end = "" if outcome == "running_at_end" else arrival + (e2e or 5.0) / 1000
                writer.writerow(
                    [
                        i + 1,
                        job,
                        "vllm-0",
                        arrival,
                        end,
                        _cell(wait),
                        _cell(ttft),
                        _cell(itl),
                        _cell(e2e),
                        prompt,
                        output,
                        outcome,
                    ]
                )
    return folder


def _cell(value: float | None) -> str:
    return "" if value is None else str(value)


def test_counts_tokens_and_latencies_after_the_warm_up(tmp_path: Path) -> None:
    kpis = request_kpis(load_run(make_run(tmp_path / "run")))
    assert kpis is not None
    assert kpis["excluded_by_warm_up"] == 1 and kpis["warm_up_s"] == 5.0
    assert kpis["requests"] == 7
    assert kpis["by_outcome"] == {
        "completed": 4,
        "aborted_scale_down": 1,
        "aborted_job_stopped": 1,
        "rejected": 0,
        "running_at_end": 1,
        "failed_no_replica": 0,
    }
    assert kpis["prompt_tokens"] == 120 + 80 + 90 + 70 + 60 + 200 + 40
    assert kpis["output_tokens"] == 48 + 1 + 60 + 9 + 0 + 51 + 3
    ttft = kpis["ttft_ms"]  # completed after warm-up: 20, 40, 60, 100 (the aborted 30 ms is not counted)
    assert ttft["count"] == 4 and ttft["mean"] == 55.0
    assert ttft["p50"] == 50.0 and ttft["p90"] == pytest.approx(88.0) and ttft["p99"] == pytest.approx(98.8)
    itl = kpis["itl_mean_ms"]  # the empty cell is missing, not 0
    assert itl["count"] == 3 and itl["mean"] == pytest.approx(40 / 3, abs=1e-3)
    assert kpis["queue_wait_ms"]["p50"] == 3.5
    assert kpis["per_job"]["a"]["by_outcome"]["completed"] == 3
    assert kpis["per_job"]["b"]["e2e_ms"] == {"count": 1, "mean": 1100.0, "p50": 1100.0, "p90": 1100.0, "p99": 1100.0}
    assert kpis["per_job"]["b"]["requests"] == 3


def test_configured_percentiles_are_added(tmp_path: Path) -> None:
    kpis = request_kpis(load_run(make_run(tmp_path / "run", warm_up=0.0, percentiles=[0.75, 0.999])))
    assert kpis is not None
    assert list(kpis["e2e_ms"]) == ["count", "mean", "p50", "p75", "p90", "p99", "p99.9"]
    values = np.array([2000.0, 400.0, 40.0, 700.0, 1100.0])
    assert kpis["e2e_ms"]["p75"] == pytest.approx(np.percentile(values, 75))
    assert kpis["excluded_by_warm_up"] == 0 and kpis["requests"] == 8


def test_reading_in_small_chunks_gives_the_same_result(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = load_run(make_run(tmp_path / "run"))
    whole = request_kpis(run)
    monkeypatch.setattr(request_analysis, "CHUNK_ROWS", 3)
    assert request_kpis(run) == whole
    # jobs met in another order than their names sort in, spread over chunks
    rows = [
        (job, 6.0 + i, "completed", 10.0 * (i + 1), 5.0, 100.0 + i, 1.0, 10, 20)
        for i, job in enumerate(["z", "z", "z", "a", "z", "a", "m", "a"])
    ]
    kpis = request_kpis(load_run(make_run(tmp_path / "jobs", rows=rows)))
    assert kpis is not None
    assert list(kpis["per_job"]) == ["z", "a", "m"]
    assert kpis["per_job"]["a"]["ttft_ms"]["mean"] == pytest.approx((40 + 60 + 80) / 3)
    assert kpis["per_job"]["m"]["e2e_ms"]["mean"] == 106.0


def test_a_run_without_requests_csv_has_no_request_kpis_and_no_figure(tmp_path: Path) -> None:
    run = load_run(make_run(tmp_path / "run", rows=None))
    assert request_kpis(run) is None
    assert write_request_plots(run) == []


def test_no_completed_request_gives_no_data_not_zero(tmp_path: Path) -> None:
    rows = [("a", 6.0, "aborted_job_stopped", None, None, None, None, 60, 0)]
    kpis = request_kpis(load_run(make_run(tmp_path / "run", rows=rows)))
    assert kpis is not None
    assert kpis["ttft_ms"] == {"count": 0, "mean": None, "p50": None, "p90": None, "p99": None}
    assert kpis["by_outcome"]["aborted_job_stopped"] == 1


def test_the_figure_is_written_next_to_the_standard_plots(tmp_path: Path) -> None:
    run = load_run(make_run(tmp_path / "run"))
    (path,) = write_request_plots(run)
    assert path == run.path / "plots" / "requests.png"
    assert path.stat().st_size > 10_000


def test_summary_json_and_the_html_report_carry_the_request_kpis(tmp_path: Path) -> None:
    run = load_run(make_run(tmp_path / "run"))
    files = build_report(run)
    summary = json.loads(files.summary_path.read_text())
    assert summary["requests"] == request_kpis(run)
    assert summary["requests"]["excluded_by_warm_up"] == 1
    page = files.html_path.read_text()
    assert "TTFT per completed request mean / p50 / p90 / p99" in page
    assert "55 / 50 / 88 / 98.8 ms" in page
    assert [p.name for p in files.plots] == ["overview.png", "requests.png"]
    without = load_run(make_run(tmp_path / "none", rows=None))
    assert compute_kpis(without)["requests"] is None
    assert "per completed request" not in build_report(without).html_path.read_text()
