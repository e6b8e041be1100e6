"""The standard figure of a run, and the overlay figure of several runs (matplotlib).

One time axis for everything, phases shaded and labelled, and a panel without data says
"no data" instead of drawing a flat 0.  Long runs are thinned for drawing only: step series
keep exactly their change points, other series a min/max envelope per bucket (peaks survive).
Figures are built with the object API (no pyplot), so no GUI backend or global state is
involved; `savefig` renders with Agg.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, overload

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from hpa_experiments.analysis.kpis import phase_windows
from hpa_experiments.analysis.load import Run
from hpa_experiments.rundir import RunStatus

MAX_POINTS = 4000
GAP_FACTOR = 3.0
PLOTS_DIR = "plots"
OVERVIEW_FILE = "overview.png"
COMPARE_FILE = "compare.png"
DPI = 110
COLORS = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
# Legends sit right of the panels (past a twin axis's labels), so they never hide data.
LEGEND: dict[str, Any] = {"loc": "upper left", "bbox_to_anchor": (1.01, 1.0), "fontsize": 8, "borderaxespad": 0.0}
LEGEND_PAST_TWIN: dict[str, Any] = {**LEGEND, "bbox_to_anchor": (1.07, 1.0)}
# Fixed margins: constrained layout costs ~0.5 s per figure, too much for long runs.
MARGINS = {"left": 0.065, "right": 0.79, "bottom": 0.04, "hspace": 0.14}
FIGURE_WIDTH_IN = 13.0
PANEL_WIDTH_IN = FIGURE_WIDTH_IN * (MARGINS["right"] - MARGINS["left"])
CHAR_WIDTH_IN = 0.075  # an average character at 8 pt


@dataclass(frozen=True)
class TimeAxis:
    """Seconds, minutes or hours, whichever keeps the tick labels short."""

    divisor: float
    unit: str

    @classmethod
    def for_span(cls, span_s: float) -> TimeAxis:
        if span_s > 6 * 3600:
            return cls(3600.0, "h")
        if span_s > 20 * 60:
            return cls(60.0, "min")
        return cls(1.0, "s")

    @overload
    def scale(self, seconds: float) -> float: ...
    @overload
    def scale(self, seconds: np.ndarray) -> np.ndarray: ...
    def scale(self, seconds: np.ndarray | float) -> np.ndarray | float:
        return seconds / self.divisor

    @property
    def label(self) -> str:
        return f"experiment time ({self.unit})"


def thin_steps(t: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Keep the first sample, every change (including to/from missing) and the last sample."""
    if len(t) <= 2:
        return t, y
    same = (y[1:] == y[:-1]) | (np.isnan(y[1:]) & np.isnan(y[:-1]))
    keep = np.concatenate(([True], ~same))
    keep[-1] = True
    return t[keep], y[keep]


def thin_envelope(t: np.ndarray, y: np.ndarray, max_points: int = MAX_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """At most `max_points` points: each bucket's minimum and maximum, in time order."""
    if len(t) <= max_points:
        return t, y
    width = -(-len(t) // (max_points // 2))  # samples per bucket, rounded up
    padded = np.full(width * -(-len(t) // width), np.nan)
    padded[: len(y)] = y
    buckets = padded.reshape(-1, width)
    empty = np.isnan(buckets).all(axis=1)
    filled = np.where(np.isnan(buckets), 0.0, buckets)
    low = np.where(np.isnan(buckets), np.inf, filled).argmin(axis=1)
    high = np.where(np.isnan(buckets), -np.inf, filled).argmax(axis=1)
    offsets = np.arange(len(buckets)) * width
    first, second = np.minimum(low, high) + offsets, np.maximum(low, high) + offsets
    keep = np.sort(np.unique(np.concatenate([first[~empty], second[~empty], offsets[empty]])))
    keep = keep[keep < len(t)]
    values = y[keep].copy()
    values[np.isin(keep, offsets[empty])] = np.nan  # an all-missing bucket stays a gap
    return t[keep], values


def _gap_positions(run: Run) -> np.ndarray:
    """Rows before which sampling paused (> GAP_FACTOR intervals): lines are broken there."""
    interval = run.interval_s
    t = run.elapsed.to_numpy(dtype=float)
    if interval is None or len(t) < 2:
        return np.array([], dtype=int)
    return np.flatnonzero(np.diff(t) > GAP_FACTOR * interval) + 1


def _plot_times(run: Run) -> np.ndarray:
    """Sample times, plus one point per sampling gap (where every series gets a NaN)."""
    t = run.elapsed.to_numpy(dtype=float)
    gaps = _gap_positions(run)
    return np.insert(t, gaps, t[gaps - 1] + (run.interval_s or 0.0)) if len(gaps) else t


def _values(run: Run, column: str) -> np.ndarray | None:
    """A column aligned with `_plot_times` (NaN in the gaps), or None without any data."""
    series = run.series(column)
    if series is None:
        return None
    values = series.to_numpy(dtype=float, na_value=np.nan)
    gaps = _gap_positions(run)
    return np.insert(values, gaps, np.nan) if len(gaps) else values


def _no_data(ax: Axes, what: str) -> None:
    ax.text(
        0.5,
        0.5,
        f"{what}: no data",
        transform=ax.transAxes,
        ha="center",
        va="center",
        fontsize=11,
        color="0.45",
        style="italic",
    )
    ax.set_yticks([])


def _line(ax: Axes, axis: TimeAxis, t: np.ndarray, y: np.ndarray, *, step: bool = False, **style) -> Line2D:
    tt, yy = thin_steps(t, y) if step else thin_envelope(t, y)
    if step:
        return ax.step(axis.scale(tt), yy, where="post", **style)[0]
    return ax.plot(axis.scale(tt), yy, **style)[0]


def _planned_load(run: Run, t: np.ndarray) -> np.ndarray | None:
    """Sum of the planned rates of the jobs active at each time (None when rates are unknown)."""
    windows = phase_windows(run)
    if not windows:
        return None
    load = np.zeros(len(t))
    for w in windows:
        if w.rate is None:
            return None
        load += np.where((t >= w.start_s) & (t < w.end_s), w.rate, 0.0)
    return load


def _shade_phases(axes: Sequence[Axes], run: Run, axis: TimeAxis) -> None:
    """Each job's window shaded in its colour, its start dotted, the end of load dashed.

    One collection per panel (not one artist per phase): cheap even with hundreds of phases.
    """
    windows = phase_windows(run)
    if not windows:
        return
    colors = [COLORS[i % len(COLORS)] for i in range(len(windows))]
    starts = [float(axis.scale(w.start_s)) for w in windows]
    ends = [float(axis.scale(w.end_s)) for w in windows]
    last_end = max(ends)
    for ax in axes:
        spans = [[(s, 0.0), (s, 1.0), (e, 1.0), (e, 0.0)] for s, e in zip(starts, ends, strict=True)]
        ax.add_collection(
            PolyCollection(spans, facecolors=colors, alpha=0.07, linewidths=0, transform=ax.get_xaxis_transform()),
            autolim=False,
        )
        ax.vlines(starts, 0, 1, colors=colors, lw=0.8, linestyles=":", alpha=0.8, transform=ax.get_xaxis_transform())
        ax.vlines(
            [last_end], 0, 1, colors="0.3", lw=0.8, linestyles="--", alpha=0.6, transform=ax.get_xaxis_transform()
        )


def _phase_lanes(run: Run) -> list[list[int]]:
    """Greedy lanes so that overlapping jobs (parallel mode) sit on separate rows."""
    windows = phase_windows(run)
    lanes: list[list[int]] = []
    ends: list[float] = []
    for i in sorted(range(len(windows)), key=lambda k: windows[k].start_s):
        for lane, end in enumerate(ends):
            if windows[i].start_s >= end:
                lanes[lane].append(i)
                ends[lane] = windows[i].end_s
                break
        else:
            lanes.append([i])
            ends.append(windows[i].end_s)
    return lanes


def _fitting_label(candidates: Sequence[str], width_s: float, span_s: float) -> str | None:
    """The longest label that fits in a bar of this width on the standard figure (8 pt text)."""
    width_in = PANEL_WIDTH_IN * width_s / span_s if span_s > 0 else 0.0
    return next((text for text in candidates if len(text) * CHAR_WIDTH_IN + 0.1 <= width_in), None)


def _draw_timeline(ax: Axes, run: Run, axis: TimeAxis, span_s: float) -> None:
    windows = phase_windows(run)
    if not windows:
        _no_data(ax, "phases")
        return
    lanes = _phase_lanes(run)
    for row, members in enumerate(lanes):
        for i in members:
            w = windows[i]
            color = COLORS[i % len(COLORS)]
            left, width = axis.scale(w.start_s), axis.scale(w.end_s - w.start_s)
            ax.barh(row, width, left=left, height=0.7, color=color, alpha=0.35, edgecolor=color)
            rate = f"{w.rate:g} rps" if w.rate is not None else ""
            label = _fitting_label(
                [f"{w.name} · {rate}" if rate else w.name, w.name, rate], w.end_s - w.start_s, span_s
            )
            if label:
                ax.text(left + width * 0.01, row, label, va="center", ha="left", fontsize=8, clip_on=True)
    last_end = max(w.end_s for w in windows)
    ax.axvline(axis.scale(last_end), color="0.3", lw=0.8, ls="--", alpha=0.6)
    ax.text(axis.scale(last_end), len(lanes) - 0.55, " load ends", fontsize=8, color="0.3", va="bottom")
    ax.set_ylim(len(lanes) - 0.5, -0.5)
    ax.set_yticks([])
    ax.set_ylabel("phases", fontsize=9)


def _draw_load(ax: Axes, run: Run, axis: TimeAxis, t: np.ndarray) -> None:
    offered = _values(run, "offered_rps")
    label = "offered load (req/s)"
    if offered is None:
        offered, label = _planned_load(run, t), "planned offered load (req/s)"
    jobs = _values(run, "active_jobs")
    if offered is None and jobs is None:
        _no_data(ax, "offered load and active jobs")
        return
    handles = []
    if offered is not None:
        _line(ax, axis, t, offered, step=True, color="tab:blue", lw=1.6, label=label)
        ax.set_ylabel("req/s")
        handles += ax.get_legend_handles_labels()[0]
    else:
        ax.text(0.01, 0.85, "offered load: no data", transform=ax.transAxes, fontsize=9, color="0.45")
    if jobs is not None:
        handles += _count_on_twin_axis(ax, axis, t, jobs, "active jobs", "jobs")
    else:
        ax.text(0.01, 0.7, "active jobs: no data", transform=ax.transAxes, fontsize=9, color="0.45")
    ax.legend(handles=handles, **(LEGEND_PAST_TWIN if jobs is not None else LEGEND))


def _count_on_twin_axis(
    ax: Axes, axis: TimeAxis, t: np.ndarray, counts: np.ndarray, label: str, unit: str, lw: float = 1.2
) -> list[Any]:
    """A count (jobs, GPUs) as a dashed grey step line on a right-hand axis; returns its legend handles."""
    twin = ax.twinx()
    _line(twin, axis, t, counts, step=True, color="tab:gray", lw=lw, ls="--", label=label)
    twin.set_ylabel(unit)
    twin.set_ylim(bottom=0, top=max(1.0, float(np.nanmax(counts))) * 1.25)
    return twin.get_legend_handles_labels()[0]


def _draw_replicas(ax: Axes, run: Run, axis: TimeAxis, t: np.ndarray) -> None:
    drawn = False
    for column, style in (
        ("replicas", {"color": "tab:blue", "lw": 2.0, "label": "current"}),
        ("desired_replicas", {"color": "tab:orange", "lw": 1.3, "ls": "--", "label": "desired"}),
        ("ready_replicas", {"color": "tab:green", "lw": 1.3, "ls": ":", "label": "ready"}),
    ):
        values = _values(run, column)
        if values is not None:
            _line(ax, axis, t, values, step=True, **style)
            drawn = True
    if not drawn:
        _no_data(ax, "replicas")
        return
    _mark_scale_events(ax, run, axis, t)
    active = _values(run, "keda_active")
    if active is not None:  # a KEDA run: when the ScaledObject was active (KEDA keeps >= 1 replica)
        ax.fill_between(
            axis.scale(t),
            0,
            1,
            where=active == 1,
            step="post",
            color="tab:purple",
            alpha=0.1,
            transform=ax.get_xaxis_transform(),
            label="KEDA active",
            linewidth=0,
        )
    ax.set_ylabel("replicas")
    ax.set_ylim(bottom=0)
    locator = ax.yaxis.get_major_locator()
    if isinstance(locator, MaxNLocator):  # the linear axis' AutoLocator
        locator.set_params(integer=True)
    ax.legend(**LEGEND)


def _mark_scale_events(ax: Axes, run: Run, axis: TimeAxis, t: np.ndarray) -> None:
    replicas = _values(run, "replicas")
    events = run.events
    if replicas is None or events.empty:
        return
    for kind, marker, color, label in (
        ("scale_up", "^", "tab:green", "scale up"),
        ("scale_down", "v", "tab:red", "scale down"),
    ):
        times = events.loc[events["kind"] == kind, "elapsed_s"].dropna().to_numpy(dtype=float)
        if len(times) == 0:
            continue
        index = np.clip(np.searchsorted(t, times, side="right") - 1, 0, len(t) - 1)
        ax.scatter(
            axis.scale(times),
            replicas[index],
            marker=marker,
            color=color,
            s=36,
            zorder=5,
            label=label,
            edgecolor="black",
            linewidth=0.4,
        )


def _draw_against_target(
    ax: Axes,
    run: Run,
    axis: TimeAxis,
    t: np.ndarray,
    title: str,
    series: Sequence[tuple[str, str, str]],
    target: str,
    unit: str,
) -> None:
    drawn = False
    for column, label, color in series:
        values = _values(run, column)
        if values is not None:
            _line(ax, axis, t, values, color=color, lw=1.4, label=label)
            drawn = True
    if not drawn:
        _no_data(ax, title)
        return
    target_values = _values(run, target)
    if target_values is not None:
        targets = np.unique(target_values[~np.isnan(target_values)])
        label = f"HPA target {targets[0]:g}" if len(targets) == 1 else "HPA target"
        _line(ax, axis, t, target_values, step=True, color="black", lw=1.1, ls="--", label=label)
    ax.set_ylabel(unit)
    ax.set_ylim(bottom=0)
    ax.legend(**LEGEND)


def _draw_latency(ax: Axes, run: Run, axis: TimeAxis, t: np.ndarray, metric: str) -> None:
    name = metric.upper()
    drawn = False
    curves: tuple[tuple[str, str, dict[str, Any]], ...] = (
        (f"{metric}_ms", f"{name} mean", {"color": "tab:purple", "lw": 1.5}),
        (f"{metric}_p90_ms", f"{name} p90", {"color": "tab:purple", "lw": 0.9, "alpha": 0.55, "ls": "--"}),
        (f"{metric}_p99_ms", f"{name} p99", {"color": "tab:purple", "lw": 0.8, "alpha": 0.4, "ls": ":"}),
    )
    for column, label, style in curves:
        values = _values(run, column)
        if values is not None:
            _line(ax, axis, t, values, label=label, **style)
            drawn = True
    if not drawn:
        _no_data(ax, name)
        return
    slo = run.slo.get(f"{metric}_ms")
    if slo is not None:
        ax.axhline(slo, color="tab:red", lw=1.2, ls="--", label=f"SLO {slo:g} ms")
    if _wide_range(run, metric):
        ax.set_yscale("log")
        ax.set_ylabel(f"{name} (ms, log)")
    else:
        ax.set_ylabel(f"{name} (ms)")
        ax.set_ylim(bottom=0)
    ax.legend(**LEGEND)


def _wide_range(run: Run, metric: str) -> bool:
    """Tail percentiles far above the typical mean: a log axis keeps the mean line readable."""
    mean = _values(run, f"{metric}_ms")
    highest = [np.nanmax(v) for c in (f"{metric}_ms", f"{metric}_p99_ms") if (v := _values(run, c)) is not None]
    if mean is None or not highest:
        return False
    typical = float(np.nanmedian(mean))
    return typical > 0 and max(highest) / typical > 20


def standard_figure(run: Run) -> Figure:
    """Load, replicas, queue, KV cache, TTFT and ITL over one time axis, phases shaded."""
    t = _plot_times(run)
    end = max(float(t[-1]) if len(t) else 0.0, max((w.end_s for w in phase_windows(run)), default=0.0))
    start = min(0.0, float(t[0])) if len(t) else 0.0
    axis = TimeAxis.for_span(end - start)
    lanes = max(1, len(_phase_lanes(run)))
    ratios = [0.35 + 0.22 * min(lanes, 6), 1.1, 1.4, 1.1, 1.1, 1.1, 1.1]
    fig = Figure(figsize=(FIGURE_WIDTH_IN, 15))
    axes = fig.subplots(len(ratios), 1, sharex=True, gridspec_kw={"height_ratios": ratios})
    fig.subplots_adjust(top=0.94, **MARGINS)
    timeline, load, replicas, queue, kv, ttft, itl = axes
    _draw_timeline(timeline, run, axis, end - start)
    _draw_load(load, run, axis, t)
    _draw_replicas(replicas, run, axis, t)
    _draw_against_target(
        queue,
        run,
        axis,
        t,
        "queue (waiting requests)",
        [
            ("num_requests_waiting", "waiting per pod (HPA)", "tab:blue"),
            ("prom_requests_waiting", "waiting, all pods (Prom.)", "tab:cyan"),
        ],
        "num_requests_waiting_target",
        "requests",
    )
    _draw_against_target(
        kv,
        run,
        axis,
        t,
        "KV cache usage",
        [
            ("kv_cache_usage_perc", "KV per pod (HPA)", "tab:brown"),
            ("prom_kv_cache_usage_max", "KV, fullest pod (Prom.)", "tab:olive"),
        ],
        "kv_cache_usage_target",
        "fraction",
    )
    _draw_latency(ttft, run, axis, t, "ttft")
    _draw_latency(itl, run, axis, t, "itl")
    _shade_phases(axes[1:], run, axis)
    for ax in axes[1:]:
        ax.grid(True, alpha=0.3)
    itl.set_xlabel(axis.label)
    itl.set_xlim(axis.scale(start), axis.scale(max(end, start + 1.0)))
    status = "" if run.status == RunStatus.COMPLETED else f" [{run.status}]"
    fig.suptitle(f"{run.name} · backend: {run.backend}{status}\n{run.path.name}", fontsize=13)
    return fig


def compare_figure(runs: Sequence[Run]) -> Figure:
    """The key series of several runs overlaid on experiment time (elapsed_s), one legend on top."""
    spans = [float(r.elapsed.max()) for r in runs if len(r.elapsed)]
    axis = TimeAxis.for_span(max(spans, default=0.0))
    panels = [
        ("offered load (req/s)", ["offered_rps"], True),
        ("replicas (current)", ["replicas"], True),
        ("waiting requests (HPA view)", ["num_requests_waiting", "prom_requests_waiting"], False),
        ("KV cache usage (HPA view)", ["kv_cache_usage_perc", "prom_kv_cache_usage_max"], False),
        ("TTFT mean (ms)", ["ttft_ms"], False),
        ("ITL mean (ms)", ["itl_ms"], False),
    ]
    legend_in = 0.25 * len(runs) + 0.2  # one full-width legend line per run, under the title
    height = 2.3 * len(panels) + 1 + legend_in
    fig = Figure(figsize=(FIGURE_WIDTH_IN, height))
    axes = fig.subplots(len(panels), 1, sharex=True)
    fig.subplots_adjust(top=1 - (0.9 + legend_in) / height, **MARGINS)
    handles: dict[int, Line2D] = {}
    for ax, (title, columns, step) in zip(axes, panels, strict=True):
        drawn = False
        for i, run in enumerate(runs):
            values = next((v for c in columns if (v := _values(run, c)) is not None), None)
            if values is None:
                continue
            t = _plot_times(run)
            handles[i] = _line(ax, axis, t, values, step=step, color=COLORS[i % len(COLORS)], lw=1.4, label=run.label)
            drawn = True
        ax.set_ylabel(title, fontsize=9)
        if not drawn:
            _no_data(ax, title)
            continue
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
    axes[-1].set_xlabel(axis.label)
    fig.suptitle("Run comparison (aligned on experiment time)", fontsize=12, y=1 - 0.25 / height)
    if handles:
        order = sorted(handles)
        fig.legend(
            [handles[i] for i in order],
            [_compare_label(runs[i]) for i in order],
            loc="upper left",
            bbox_to_anchor=(MARGINS["left"], 1 - 0.6 / height),
            fontsize=9,
            frameon=False,
        )
    return fig


def _compare_label(run: Run) -> str:
    tags = ", ".join(f"{k}={v}" for k, v in run.tags.items())
    return f"{run.label} [{tags}]" if tags else run.label


def save_figure(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight", pad_inches=0.15)  # nothing outside the canvas is cut
    return path


def write_standard_plots(run: Run) -> list[Path]:
    """<run>/plots/overview.png; returns the files written."""
    return [save_figure(standard_figure(run), run.path / PLOTS_DIR / OVERVIEW_FILE)]
