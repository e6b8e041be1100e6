"""The energy figure of a run: GPU power and GPU count, utilization, cumulative energy.

Same conventions as plots.py (one time axis, phases shaded, "no data" instead of a flat 0).
Cumulative energy follows the KPI convention (each sample's power holds until the next sample),
so its last point is the run's `energy.run.energy_kwh`; samples without power add nothing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from hpa_experiments.analysis.energy import JOULES_PER_KWH, POWER_COLUMN
from hpa_experiments.analysis.load import Run
from hpa_experiments.analysis.plots import (
    FIGURE_WIDTH_IN,
    LEGEND,
    LEGEND_PAST_TWIN,
    MARGINS,
    PLOTS_DIR,
    TimeAxis,
    _count_on_twin_axis,
    _line,
    _no_data,
    _plot_times,
    _shade_phases,
    _values,
    save_figure,
)
from hpa_experiments.analysis.samples import sample_durations
from hpa_experiments.analysis.stream import CUMULATIVE_KWH

ENERGY_FILE = "energy.png"


def cumulative_energy_kwh(run: Run) -> tuple[np.ndarray, np.ndarray]:
    """(times, kWh used up to each time): 0 at the first sample, then at the end of each sample."""
    t = run.elapsed.to_numpy(dtype=float)
    if len(t) == 0:
        return t, t
    if CUMULATIVE_KWH in run.metrics.columns:  # a streamed run's envelope: the sums of all its samples
        kwh = run.metrics[CUMULATIVE_KWH].to_numpy(dtype=float)
        return np.concatenate(([t[0]], t)), np.concatenate(([0.0], kwh))
    series = run.series(POWER_COLUMN)
    power = np.zeros(len(t)) if series is None else np.nan_to_num(series.to_numpy(dtype=float, na_value=np.nan))
    durations = sample_durations(t, run.interval_s)
    joules, ends = power * durations, t + durations
    return np.concatenate(([t[0]], ends)), np.concatenate(([0.0], np.cumsum(joules) / JOULES_PER_KWH))


def energy_figure(run: Run) -> Figure:
    """Power (W) with the GPUs counted, utilization (%) and cumulative energy (kWh) over time."""
    t = _plot_times(run)
    start = min(0.0, float(t[0])) if len(t) else 0.0
    end = float(t[-1]) + (run.interval_s or 0.0) if len(t) else 0.0
    axis = TimeAxis.for_span(end - start)
    fig = Figure(figsize=(FIGURE_WIDTH_IN, 8))
    power_ax, util_ax, energy_ax = fig.subplots(3, 1, sharex=True)
    fig.subplots_adjust(**{**MARGINS, "top": 0.91, "bottom": 0.07})
    power = _values(run, POWER_COLUMN)
    if power is None:
        _no_data(power_ax, "GPU power")
    else:
        _line(power_ax, axis, t, power, step=True, color="tab:red", lw=1.5, label="GPU power, all GPUs (W)")
        power_ax.set_ylabel("W")
        power_ax.set_ylim(bottom=0)
        handles = power_ax.get_legend_handles_labels()[0]
        count = _values(run, "gpu_count")
        if count is not None:
            handles += _count_on_twin_axis(power_ax, axis, t, count, "GPUs", "GPUs", lw=1.1)
        power_ax.legend(handles=handles, **(LEGEND_PAST_TWIN if count is not None else LEGEND))
    utilization = _values(run, "gpu_utilization_pct")
    if utilization is None:
        _no_data(util_ax, "GPU utilization")
    else:
        _line(util_ax, axis, t, utilization, step=True, color="tab:orange", lw=1.3, label="mean GPU utilization")
        util_ax.set_ylabel("%")
        util_ax.set_ylim(0, 105)
        util_ax.legend(**LEGEND)
    if power is None:
        _no_data(energy_ax, "energy")
    else:
        times, kwh = cumulative_energy_kwh(run)
        energy_ax.plot(axis.scale(times), kwh, color="tab:green", lw=1.6, label=f"energy, total {kwh[-1]:.4g} kWh")
        energy_ax.set_ylabel("kWh")
        energy_ax.set_ylim(bottom=0)
        energy_ax.legend(**LEGEND)
    axes = [power_ax, util_ax, energy_ax]
    _shade_phases(axes, run, axis)
    for ax in axes:
        ax.grid(True, alpha=0.3)
    energy_ax.set_xlabel(axis.label)
    energy_ax.set_xlim(axis.scale(start), axis.scale(max(end, start + 1.0)))
    fig.suptitle(f"{run.name} · GPU power and energy · backend: {run.backend}\n{run.path.name}", fontsize=12)
    return fig


def write_energy_plots(run: Run) -> list[Path]:
    """<run>/plots/energy.png when the run has GPU power data; returns the files written."""
    if run.series(POWER_COLUMN) is None:
        return []
    return [save_figure(energy_figure(run), run.path / PLOTS_DIR / ENERGY_FILE)]
