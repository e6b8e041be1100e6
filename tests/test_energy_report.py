"""Energy KPIs on hand-built runs with known answers, and the report, compare and headline lines."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from hpa_experiments.analysis.compare import compare
from hpa_experiments.analysis.energy import JOULES_PER_KWH, energy_kpis
from hpa_experiments.analysis.energy_plots import cumulative_energy_kwh
from hpa_experiments.analysis.kpis import compute_kpis, headline
from hpa_experiments.analysis.load import load_run
from hpa_experiments.analysis.report import NO_DATA, build_report, kpi_rows
from hpa_experiments.rundir import ENERGY_COLUMNS
from tests.support.synthetic_runs import write_run


def half_powered_run(directory: Path, price: float | None = 4.0) -> Path:
    """10 one-second samples: 1000 W on 2 GPUs and 100 tokens/s for the first 5, then no power data."""
    rows = [
        {
            "elapsed_s": float(k),
            "phase": "a" if k < 5 else "b",
            "replicas": 2,
            **(
                {"gpu_power_w": 1000.0, "gpu_count": 2, "gpu_utilization_pct": 40, "generation_tokens_per_s": 100.0}
                if k < 5
                else {}
            ),
        }
        for k in range(10)
    ]
    cost = {"cost": {"price_per_gpu_hour": price, "currency": "EUR"}} if price else {}
    return write_run(directory, rows, config={"name": "energy", **cost})


def unpowered_run(directory: Path, drop_columns: bool = False) -> Path:
    """10 samples with replicas but no GPU data; with `drop_columns`, as a run from before energy columns."""
    write_run(directory, [{"elapsed_s": float(k), "phase": "a", "replicas": 1} for k in range(10)])
    if drop_columns:
        frame = pd.read_csv(directory / "metrics.csv")
        frame.drop(columns=ENERGY_COLUMNS).to_csv(directory / "metrics.csv", index=False)
    return directory


def test_partial_power_data_counts_only_the_covered_time(tmp_path: Path) -> None:
    energy = energy_kpis(load_run(half_powered_run(tmp_path / "run")))
    whole = energy["run"]
    assert whole["energy_kwh"] == 5 * 1000.0 / JOULES_PER_KWH  # never 0 W for the empty cells
    assert whole["power_coverage"] == 0.5
    assert whole["mean_power_w"] == 1000.0 and whole["peak_power_w"] == 1000.0
    assert whole["mean_utilization_pct"] == 40.0
    assert whole["output_tokens"] == 500.0
    assert whole["joules_per_token"] == 10.0
    assert whole["gpu_hours"] == 2 * 5 / 3600  # measured on the covered samples only
    assert whole["cost"] == pytest.approx(whole["gpu_hours"] * 4.0, rel=1e-15)
    assert energy["notes"] == [
        "GPU power known for 50.0% of the run's time: energy and measured GPU-hours cover that part only"
    ]
    a, b = energy["phases"]
    assert (a["phase"], a["start_s"], a["end_s"], a["energy_kwh"]) == ("a", 0.0, 5.0, whole["energy_kwh"])
    assert (b["phase"], b["energy_kwh"], b["power_coverage"]) == ("b", None, 0.0)
    times, kwh = cumulative_energy_kwh(load_run(tmp_path / "run"))
    assert times[-1] == 10.0 and kwh[-1] == whole["energy_kwh"]


@pytest.mark.parametrize("drop_columns", [False, True])
def test_without_power_data_every_energy_figure_is_none(tmp_path: Path, drop_columns: bool) -> None:
    energy = energy_kpis(load_run(unpowered_run(tmp_path / "run", drop_columns)))
    whole = energy["run"]
    assert not energy["measured"]
    for key in ("energy_kwh", "mean_power_w", "peak_power_w", "joules_per_token", "output_tokens", "cost"):
        assert whole[key] is None, key
    assert whole["power_coverage"] == 0.0
    # GPU-hours fall back to replicas, saying that 1 GPU per replica is an assumption
    assert whole["gpu_hours"] == 10 / 3600
    assert whole["gpu_hours_basis"] == "replicas x 1 GPU (assumed: no gpu_count data)"
    assert "no GPU power data" in energy["notes"][0]


@pytest.mark.slow
def test_summary_headline_and_report_show_energy_and_cost(tmp_path: Path) -> None:
    files = build_report(half_powered_run(tmp_path / "run"))
    assert files.summary["energy"]["run"]["energy_kwh"] == 5 * 1000.0 / JOULES_PER_KWH
    h = headline(files.summary)
    assert h["energy_kwh"] == files.summary["energy"]["run"]["energy_kwh"]
    assert h["cost"] == files.summary["energy"]["run"]["cost"] and h["currency"] == "EUR"
    rows = {(section, label): value for section, label, value in kpi_rows(files.summary)}
    assert rows[("energy", "GPU energy")] == "0.00139 kWh (power known for 50.0% of the time)"
    assert rows[("energy", "energy per output token")] == "10 J"
    assert rows[("cost", "GPU-hours x 4 EUR")] == "0.01 EUR"
    assert (tmp_path / "run" / "plots" / "energy.png").exists()
    page = files.html_path.read_text(encoding="utf-8")
    assert "Energy per phase" in page and 'alt="energy"' in page


@pytest.mark.slow
def test_report_says_no_data_without_power_and_no_cost_without_a_price(tmp_path: Path) -> None:
    files = build_report(unpowered_run(tmp_path / "run"))
    rows = kpi_rows(files.summary)
    assert ("energy", "GPU energy", NO_DATA) in rows
    assert not [r for r in rows if r[0] == "cost"]
    assert headline(files.summary)["energy_kwh"] is None
    assert not (tmp_path / "run" / "plots" / "energy.png").exists()
    assert "Energy per phase" not in files.html_path.read_text(encoding="utf-8")


def test_compare_has_energy_rows_when_a_run_has_them(tmp_path: Path) -> None:
    powered, unpowered = load_run(half_powered_run(tmp_path / "a")), load_run(unpowered_run(tmp_path / "b"))
    table = {row[0][0]: [text for text, _ in row[1:]] for row in compare([powered, unpowered]).rows()}
    assert table["GPU energy"] == ["0.0014 kWh", NO_DATA, NO_DATA]
    assert table["energy per output token"] == ["10 J", NO_DATA, NO_DATA]
    assert table["cost (GPU-hours x the config's price)"][0] == "0.01 EUR"
    neither = {row[0][0] for row in compare([unpowered, unpowered]).rows()}
    assert "GPU energy" not in neither and "energy per output token" not in neither


def test_compare_does_not_subtract_costs_in_different_currencies(tmp_path: Path) -> None:
    euros = load_run(half_powered_run(tmp_path / "eur"))
    dollars_dir = half_powered_run(tmp_path / "usd", price=5.0)
    info = (dollars_dir / "run.json").read_text().replace('"currency": "EUR"', '"currency": "USD"')
    (dollars_dir / "run.json").write_text(info)
    comparison = compare([euros, load_run(dollars_dir)])
    cost = next(row for row in comparison.rows() if row[0][0].startswith("cost"))
    assert [text for text, _ in cost[1:]] == ["0.01 EUR", "0.01 USD", "not comparable (USD vs EUR)"]
    (exported,) = [k for k in comparison.to_json()["kpis"] if k["kpi"].startswith("cost")]
    assert exported["units"] == ["EUR", "USD"] and exported["unit"] == "EUR"


def test_compute_kpis_keeps_replica_hours_apart_from_measured_gpu_hours(tmp_path: Path) -> None:
    summary = compute_kpis(load_run(half_powered_run(tmp_path / "run")))
    assert summary["kpis"]["replicas"]["gpu_hours"] == 2 * 10 / 3600  # replica-hours, all 10 samples
    assert summary["energy"]["run"]["gpu_hours"] == 2 * 5 / 3600  # GPUs counted on 5 samples
