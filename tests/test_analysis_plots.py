"""The standard figure: title, panels that say "no data", SLO and target lines, thinning."""

from __future__ import annotations

import numpy as np
import pytest

from hpa_experiments.analysis import load_run
from hpa_experiments.analysis.plots import compare_figure, standard_figure, thin_envelope, thin_steps
from tests.support.synthetic_runs import write_run


def texts(fig) -> list[str]:
    return [t.get_text() for ax in fig.axes for t in ax.texts]


def legend_labels(fig) -> list[str]:
    legends = [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend())]
    return [t.get_text() for legend in legends for t in legend.get_texts()]


@pytest.fixture
def run(tmp_path):
    rows = [
        {
            "elapsed_s": t,
            "replicas": 1 + (t >= 50),
            "desired_replicas": 1 + (t >= 45),
            "num_requests_waiting": 3.0,
            "num_requests_waiting_target": 2,
            "ttft_ms": 100.0 + t,
        }
        for t in range(100)
    ]
    phases = [{"job": "burst", "rate": 12, "planned_start_s": 10, "planned_end_s": 70}]
    write_run(
        tmp_path / "run-a",
        rows,
        phases=phases,
        events=[(50, "scale_up", "1 -> 2")],
        config={"name": "plot-test", "slo": {"ttft_ms": 150}},
        name="plot-test",
        backend="sim",
    )
    return load_run(tmp_path / "run-a")


@pytest.mark.slow
def test_title_phases_and_missing_panels(run):
    fig = standard_figure(run)
    assert fig.get_suptitle().startswith("plot-test · backend: sim")
    found = texts(fig)
    assert "burst · 12 rps" in found  # phase labelled in the timeline
    assert "KV cache usage: no data" in found
    assert "ITL: no data" in found
    assert "TTFT: no data" not in found
    labels = legend_labels(fig)
    assert "SLO 150 ms" in labels and "HPA target 2" in labels and "scale up" in labels
    # offered load comes from the planned phases when the column is empty
    assert "planned offered load (req/s)" in labels


def test_compare_figure_marks_runs_and_missing_series(run):
    fig = compare_figure([run, run])
    assert "ITL mean (ms): no data" in texts(fig)
    assert legend_labels(fig).count(run.label) >= 2


def test_thin_steps_keeps_every_change():
    t = np.arange(10.0)
    y = np.array([1, 1, 1, 2, 2, np.nan, np.nan, 3, 3, 3], dtype=float)
    tt, yy = thin_steps(t, y)
    assert list(tt) == [0, 3, 5, 7, 9]
    assert np.array_equal(yy, [1, 2, np.nan, 3, 3], equal_nan=True)


def test_thin_envelope_keeps_extremes_and_bounds_size():
    t = np.arange(100_000.0)
    y = np.sin(t / 1000.0)
    y[54_321] = 50.0
    tt, yy = thin_envelope(t, y, max_points=1000)
    assert len(tt) <= 1000
    assert yy.max() == 50.0 and tt[np.argmax(yy)] == 54_321
    assert np.all(np.diff(tt) > 0)


def test_sampling_gaps_break_the_lines(tmp_path):
    rows = [{"elapsed_s": t, "replicas": 2, "kv_cache_usage_perc": 0.4} for t in [*range(10), *range(100, 110)]]
    write_run(tmp_path / "gap", rows)
    fig = standard_figure(load_run(tmp_path / "gap"))
    replicas_line = fig.axes[2].lines[0]
    kv_line = fig.axes[4].lines[0]
    for line in (replicas_line, kv_line):
        y = np.asarray(line.get_ydata(), dtype=float)
        assert np.isnan(y).sum() == 1  # one break, between t=9 and t=100
        x = np.asarray(line.get_xdata(), dtype=float)
        assert x[np.isnan(y)][0] == 10  # right after the last sample before the pause
