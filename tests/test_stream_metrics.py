"""The streaming pass over a big metrics.csv (analysis/stream.py) gives the in-memory path's summary.

The streaming path is forced on small runs (`load.BIG_METRICS_BYTES = 0`, a few rows per chunk), so
that both paths can be compared on the same data: integers, texts, None, times and percentiles
exactly; sums and the means and shares made of them within a relative 1e-12 (they are added chunk by
chunk instead of in one numpy sum).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hpa_experiments.analysis import load as load_module
from hpa_experiments.analysis.energy_plots import cumulative_energy_kwh
from hpa_experiments.analysis.kpis import compute_kpis
from hpa_experiments.analysis.load import load_run
from hpa_experiments.analysis.stream import PLOT_BUCKETS, DistinctCounts, ExactPercentiles, NotStreamable
from hpa_experiments.api import Experiment
from hpa_experiments.cli import main
from tests.support.synthetic_runs import write_run

REPO = Path(__file__).resolve().parents[1]
SUM_TOLERANCE = 1e-12


def flat(value: Any, path: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in flat(item, f"{path}.{key}").items()}
    if isinstance(value, list):
        return {k: v for i, item in enumerate(value) for k, v in flat(item, f"{path}[{i}]").items()}
    return {path: value}


def streamed(monkeypatch: pytest.MonkeyPatch, chunk_rows: int) -> None:
    monkeypatch.setattr(load_module, "BIG_METRICS_BYTES", 0)  # every metrics.csv counts as big
    monkeypatch.setattr(load_module, "CHUNK_ROWS", chunk_rows)


def assert_same_summary(run: Path, monkeypatch: pytest.MonkeyPatch, chunk_rows: int) -> set[str]:
    """Compare both paths; returns the keys that differed within the sum tolerance."""
    expected = flat(compute_kpis(load_run(run)))
    with monkeypatch.context() as patch:
        streamed(patch, chunk_rows)
        loaded = load_run(run)
        assert loaded.digest is not None
        got = flat(compute_kpis(loaded))
    assert expected.keys() == got.keys()
    near = set()
    for key, want in expected.items():
        if got[key] == want:
            continue
        assert isinstance(want, float) and isinstance(got[key], float), (key, want, got[key])
        assert math.isclose(want, got[key], rel_tol=SUM_TOLERANCE), (key, want, got[key])
        near.add(key)
    return near


@pytest.mark.parametrize("size", [1, 2, 3, 10, 101, 5000])
def test_percentiles_from_distinct_counts_are_numpys(size: int) -> None:
    rng = np.random.default_rng(size)
    values = np.round(rng.lognormal(3, 1, size), 2)  # rounded: many ties, as in a CSV
    counts = DistinctCounts()
    for part in np.array_split(values, 7):
        counts.add(part)
    percents = (0, 1, 33, 50, 90, 99, 100)
    assert counts.percentiles(percents) == [float(v) for v in np.percentile(values, percents)]
    assert counts.size() == size


@pytest.mark.parametrize("chunk_rows", [pytest.param(3, marks=pytest.mark.slow), 50_000])  # 3: two seconds
def test_a_twin_run_streamed_has_the_in_memory_summary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk_rows: int
) -> None:
    config = REPO / "experiment-configs" / "high-load-hpa.yaml"
    run = Experiment.from_yaml_file(config).run(backend="sim", output_dir=tmp_path, handle_signals=False).run_dir
    near = assert_same_summary(run, monkeypatch, chunk_rows)
    # only float sums (means, std, shares, areas) may differ in their last bits
    assert all(key.rsplit(".", 1)[-1] not in {"samples", "peak", "p50", "p90", "p99", "at_s"} for key in near)


def hand_built(directory: Path) -> Path:
    """Warm-up, SLOs, a sampling pause, empty cells, scale to zero with GPU power, no declared phases
    (load increases from offered_rps), a spike, and ties in the latencies."""

    def row(k: int) -> dict[str, Any]:
        t = k * 2.0 + (400.0 if k >= 150 else 0.0)  # a 400 s pause after sample 150
        replicas = 0 if 60 <= k < 80 else 1 + (k // 40) % 4
        return {
            "elapsed_s": t,
            "phase": "busy" if k < 200 else "cooldown",
            "offered_rps": 5.0 * (1 + (k // 50) % 3),
            "replicas": replicas,
            "desired_replicas": replicas if k % 37 else replicas + 1,
            "ready_replicas": replicas,
            "num_requests_waiting": None if k % 11 == 0 else float(k % 5),
            "ttft_ms": None if k % 13 == 0 else (9000.0 if k == 123 else float(100 + k % 7)),
            "itl_ms": 12.5 + (k % 3),
            "gpu_power_w": None if replicas == 0 else 250.0 * replicas + k % 4,
            "gpu_utilization_pct": 50.0 + k % 9,
            "generation_tokens_per_s": None if replicas == 0 else 100.0 + k,
        }

    config = {"name": "hand-built", "slo": {"ttft_ms": 104, "itl_ms": 13}, "metrics": {"warm_up_duration_s": 31}}
    return write_run(directory, (row(k) for k in range(260)), config=config, interval=2.0)


@pytest.mark.parametrize("chunk_rows", [pytest.param(1, marks=pytest.mark.slow), 4, 1000])  # 1: two seconds
def test_a_hand_built_run_streamed_has_the_in_memory_summary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk_rows: int
) -> None:
    run = hand_built(tmp_path / "run")
    summary = compute_kpis(load_run(run))
    assert summary["load_increases"] and summary["energy"]["measured"]  # the run exercises both
    assert summary["kpis"]["ttft_ms"]["p99"] is not None and summary["kpis"]["ttft_over_slo_share"]
    assert_same_summary(run, monkeypatch, chunk_rows)


@pytest.mark.slow  # a whole report: two seconds
def test_a_streamed_report_reads_a_cut_last_line_and_draws_spikes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run = hand_built(tmp_path / "run")
    metrics = run / "metrics.csv"
    first_row = metrics.read_text().splitlines()[1]
    with metrics.open("a") as fh:
        fh.write(first_row[: len(first_row) // 2])
    streamed(monkeypatch, 7)
    monkeypatch.setattr("hpa_experiments.analysis.stream.PLOT_BUCKETS", 20)  # fewer buckets than samples
    with pytest.raises(SystemExit) as exit_info:
        main(["report", str(run)])
    err = capsys.readouterr().err
    assert exit_info.value.code in (0, None), err
    assert f"warning: {metrics}: partial last line ignored" in err
    assert "read in one pass" in err
    assert (run / "plots" / "overview.png").stat().st_size > 10_000
    assert (run / "report.html").exists()
    loaded = load_run(run)
    envelope = loaded.digest.envelope if loaded.digest else None
    assert envelope is not None and len(envelope) <= 3 * 20 + 3
    assert envelope["ttft_ms"].max() == 9000.0  # the one-sample spike survives the downsampling
    assert loaded.digest is not None and loaded.digest.rows == 260


def test_the_envelope_stays_bounded_when_the_span_is_unknown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = hand_built(tmp_path / "run")
    streamed(monkeypatch, 5)
    monkeypatch.setattr("hpa_experiments.analysis.stream.PLOT_BUCKETS", 10)
    monkeypatch.setattr(load_module, "_span", lambda path, header: 0.0)  # every sample its own bucket at first
    loaded = load_run(run)
    assert loaded.digest is not None
    assert len(loaded.digest.envelope) <= 3 * 4 * 10
    assert loaded.digest.envelope["ttft_ms"].max() == 9000.0
    assert PLOT_BUCKETS >= 1000  # the real figure keeps enough buckets to look like the data


def test_the_energy_figure_of_a_streamed_run_ends_at_the_runs_energy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = hand_built(tmp_path / "run")
    _, whole = cumulative_energy_kwh(load_run(run))
    streamed(monkeypatch, 6)
    monkeypatch.setattr("hpa_experiments.analysis.stream.PLOT_BUCKETS", 15)
    loaded = load_run(run)
    times, drawn = cumulative_energy_kwh(loaded.plot_view())
    assert len(drawn) < len(whole) / 4  # drawn from the envelope
    assert math.isclose(drawn[-1], whole[-1], rel_tol=SUM_TOLERANCE)
    assert (np.diff(drawn) >= 0).all() and (np.diff(times) >= 0).all()


@pytest.mark.parametrize(
    "values",
    [
        np.full(1000, 7.25),  # one value: one bin holds everything
        np.array([-3.5, -0.0, 0.0, 1e-300, 2.0, np.float64(2.0) + 1e-15, 1e300]),  # signs, zeros, extremes
        np.round(np.random.default_rng(1).normal(100, 0.001, 20_000), 6),  # many values in few bins
        np.array([42.0]),
    ],
)
def test_two_pass_percentiles_are_numpys(values: np.ndarray) -> None:
    percentiles = ExactPercentiles()
    for part in np.array_split(values, 5):
        percentiles.first(part)
    percentiles.plan((0, 50, 90, 99, 100))
    for part in np.array_split(values, 3):
        percentiles.second(part)
    assert percentiles.percentiles() == [float(v) for v in np.percentile(values, (0, 50, 90, 99, 100))]
    assert sum(len(kept) for kept in percentiles.kept) <= len(values)


def test_two_pass_percentiles_notice_a_changed_stream() -> None:
    percentiles = ExactPercentiles()
    percentiles.first(np.arange(100.0))
    percentiles.plan((50,))
    percentiles.second(np.delete(np.arange(100.0), 49))  # a value of the median's bin went missing
    with pytest.raises(NotStreamable):
        percentiles.percentiles()


def test_compare_and_runs_take_streamed_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    first, second = hand_built(data / "first"), hand_built(data / "second")
    expected = compute_kpis(load_run(first))["kpis"]["ttft_ms"]
    streamed(monkeypatch, 9)
    for command in (["compare", str(first), str(second), "-o", str(tmp_path / "cmp")], ["runs", "-d", str(data)]):
        with pytest.raises(SystemExit) as exit_info:
            main(command)
        assert exit_info.value.code in (0, None), capsys.readouterr().err
    assert (tmp_path / "cmp" / "compare.png").stat().st_size > 10_000
    rows = json.loads((tmp_path / "cmp" / "compare.json").read_text())["kpis"]
    compared = {row["kpi"]: row["values"] for row in rows}
    assert compared["TTFT p90 of samples"] == [expected["p90"], expected["p90"]]  # as in memory
    assert "first" in capsys.readouterr().out


def test_rows_without_time_and_repeated_rows_count_as_in_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = hand_built(tmp_path / "run")
    path = run / "metrics.csv"
    lines = path.read_text().splitlines(keepends=True)
    column = lines[0].split(",").index("elapsed_s")
    for n in (20, 21, 140):  # no elapsed_s: left out by both paths
        cells = lines[n].split(",")
        cells[column] = ""
        lines[n] = ",".join(cells)
    lines.insert(90, lines[90])  # the same sample twice
    path.write_text("".join(lines))
    assert_same_summary(run, monkeypatch, 4)
