"""The "why" figure of a run: metric/target ratios, what each metric proposes, what held desired.

Panels on one time axis (phases shaded, as in plots.py): each HPA metric's value / target with the
tolerance band around 1; replicas (current, desired, ready) with each metric's proposal; the limit
that held the desired count (a coloured band per `limited_by` value).  Scale events are numbered
vertical lines, and their one-line explanations are printed under the panels.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from hpa_experiments.analysis.load import Run
from hpa_experiments.analysis.plots import (
    COLORS,
    FIGURE_WIDTH_IN,
    LEGEND,
    MARGINS,
    PLOTS_DIR,
    TimeAxis,
    _gap_positions,
    _line,
    _no_data,
    _plot_times,
    _shade_phases,
    _values,
    save_figure,
)
from hpa_experiments.analysis.why import hpa_spec, metric_labels, scale_events, why_data
from hpa_experiments.hpa_reasons import LIMITED_BY_COLUMN, Tolerances, tolerances_of

WHY_FILE = "why.png"
MAX_LINES = 16
LIMIT_COLORS = {
    "none": "#d9d9d9",
    "maxReplicas": "tab:red",
    "minReplicas": "tab:blue",
    "scaleUp policy": "tab:orange",
    "scaleDown policy": "tab:purple",
    "scaleUp stabilization": "gold",
    "scaleDown stabilization": "tab:pink",
    "tolerance": "tab:green",
    "unready pods": "tab:brown",
    "metrics unavailable": "black",
    "scaling disabled": "0.3",
}


def _ratio_panel(ax: Any, axis: TimeAxis, t: np.ndarray, ratios: dict[str, np.ndarray], tol: Tolerances) -> None:
    drawn = False
    for i, (column, values) in enumerate(ratios.items()):
        if np.isnan(values).all():
            continue
        _line(
            ax,
            axis,
            t,
            values,
            step=True,
            color=COLORS[i % len(COLORS)],
            lw=1.5,
            label=f"{column} / target",
        )
        drawn = True
    if not drawn:
        _no_data(ax, "metric / target ratios")
        return
    ax.axhspan(
        1 - tol.scale_down,
        1 + tol.scale_up,
        color="0.5",
        alpha=0.2,
        label=f"tolerance band ({1 - tol.scale_down:g}-{1 + tol.scale_up:g})",
    )
    ax.axhline(1.0, color="black", lw=0.9, ls="--")
    ax.set_yscale("symlog", linthresh=1.0, linscale=1.0)
    ax.set_ylim(bottom=0)
    ax.set_ylabel("value / target\n(log above 1)")
    ax.legend(**LEGEND)


def _replica_panel(
    ax: Any, axis: TimeAxis, run: Run, t: np.ndarray, proposals: dict[str, np.ndarray], max_replicas: int | None
) -> None:
    drawn = False
    for column, style in (
        ("replicas", {"color": "tab:blue", "lw": 2.0, "label": "current"}),
        ("desired_replicas", {"color": "tab:orange", "lw": 1.4, "ls": "--", "label": "desired"}),
        ("ready_replicas", {"color": "tab:green", "lw": 1.3, "ls": ":", "label": "ready"}),
    ):
        values = _values(run, column)
        if values is not None:
            _line(ax, axis, t, values, step=True, **style)
            drawn = True
    for i, (column, values) in enumerate(proposals.items()):
        if not np.isnan(values).all():
            _line(
                ax,
                axis,
                t,
                values,
                step=True,
                color=COLORS[i % len(COLORS)],
                lw=0.9,
                alpha=0.6,
                label=f"{column} proposes",
            )
    if not drawn:
        _no_data(ax, "replicas")
        return
    if max_replicas is not None:
        ax.axhline(max_replicas, color="tab:red", lw=0.9, ls="-.", label=f"maxReplicas {max_replicas}")
    # Proposals far above what the HPA may reach would flatten the replica lines: clip them.
    counts = [v for c in ("replicas", "desired_replicas") if (v := _values(run, c)) is not None]
    highest = max([float(np.nanmax(v)) for v in counts if not np.isnan(v).all()] + [float(max_replicas or 0)])
    top = 2.0 * max(highest, 1.0)
    clipped = [v for v in proposals.values() if not np.isnan(v).all() and np.nanmax(v) > top]
    if clipped:
        ax.text(
            0.005, 0.97, f"proposals above {top:g} clipped", transform=ax.transAxes, va="top", fontsize=8, color="0.35"
        )
    ax.set_ylim(0, top)
    ax.set_ylabel("replicas")
    ax.legend(**LEGEND)


def _limit_panel(ax: Any, axis: TimeAxis, t: np.ndarray, limits: list[str | None], note: str) -> None:
    ax.set_yticks([])
    known = [x for x in limits if x]
    if not known:
        _no_data(ax, f"limit that held desired ({note})")
        return
    ends = np.append(t[1:], t[-1] + (t[-1] - t[-2] if len(t) > 1 else 1.0))
    spans: dict[str, list[tuple[float, float]]] = {}
    first = 0
    for i in range(1, len(limits) + 1):  # one bar per stretch of equal values, one artist per value
        if i < len(limits) and limits[i] == limits[first]:
            continue
        limit = limits[first]
        if limit:
            start = float(axis.scale(t[first]))
            spans.setdefault(limit, []).append((start, float(axis.scale(ends[i - 1])) - start))
        first = i
    seen = {limit: LIMIT_COLORS.get(limit, "0.6") for limit in spans}
    for limit, bars in spans.items():
        ax.broken_barh(bars, (0, 1), facecolors=seen[limit], alpha=0.85, linewidth=0)
    ax.set_ylim(0, 1)
    unknown = " (white: unknown)" if len(known) < len(limits) else ""
    ax.set_ylabel("what held\ndesired", fontsize=9)
    ax.legend(
        handles=[Patch(color=c, label=k) for k, c in seen.items()],
        title=f"limited_by{unknown}",
        **{**LEGEND, "fontsize": 7},
    )
    if note != "as recorded":
        ax.text(0.005, 0.5, note, transform=ax.transAxes, va="center", fontsize=8, color="0.35", style="italic")


def why_figure(run: Run, events: list[dict[str, Any]] | None = None) -> Figure:
    """Ratios, proposals and limits over time, scale events numbered, their lines below (`events`:
    summary.json's scale_events, when `run` is a streamed run's envelope that cannot find them)."""
    why = why_data(run)
    frame = why.frame
    t = _plot_times(run)  # sample times plus one point per sampling gap, where lines break
    gaps = _gap_positions(run)

    def column(name: str) -> np.ndarray:
        return np.insert(frame[name].to_numpy(dtype=float, na_value=np.nan), gaps, np.nan)

    spec = hpa_spec(run)
    tolerances = tolerances_of(spec) if spec else Tolerances()
    max_replicas = (spec.get("spec") or {}).get("maxReplicas") if spec else None
    labels = metric_labels(run, why.metrics)  # the dicts below are keyed by what the legend says
    ratios = {labels[m]: column(f"{m}_ratio") for m in why.metrics}
    proposals = {labels[m]: column(f"{m}_proposed") for m in why.metrics}
    raw = frame[LIMITED_BY_COLUMN].tolist() if LIMITED_BY_COLUMN in frame.columns else [None] * len(frame)
    limits: list[str | None] = [v if isinstance(v, str) and v else None for v in raw]
    for position in sorted(gaps, reverse=True):
        limits.insert(int(position), None)
    events = scale_events(run, why) if events is None else events
    lines = [f"{n}. {e['line']}" for n, e in enumerate(events, start=1)]
    shown = lines[:MAX_LINES] + (
        [f"... and {len(lines) - MAX_LINES} more (summary.json scale_events)"] if len(lines) > MAX_LINES else []
    )
    wrapped = [w for line in shown for w in textwrap.wrap(line, 170, subsequent_indent="      ")] or [
        "no scale event: the desired replica count never changed"
    ]
    text_in = 0.16 * len(wrapped) + 0.3
    height = 9.0 + text_in
    fig = Figure(figsize=(FIGURE_WIDTH_IN, height))
    grid = fig.add_gridspec(
        3,
        1,
        height_ratios=[1.5, 1.5, 0.45],
        top=1 - 0.8 / height,
        bottom=(text_in + 0.5) / height,
        left=MARGINS["left"],
        right=MARGINS["right"],
        hspace=0.12,
    )
    ratio_ax = fig.add_subplot(grid[0])
    replica_ax = fig.add_subplot(grid[1], sharex=ratio_ax)
    limit_ax = fig.add_subplot(grid[2], sharex=ratio_ax)
    end = float(t[-1]) if len(t) else 1.0
    axis = TimeAxis.for_span(end - min(0.0, float(t[0]) if len(t) else 0.0))
    _ratio_panel(ratio_ax, axis, t, ratios, tolerances)
    _replica_panel(replica_ax, axis, run, t, proposals, max_replicas)
    basis = (
        "recomputed: no HPA conditions recorded, so only 'none' or 'tolerance' can be shown"
        if why.recomputed and not why.has_conditions
        else "as recorded"
    )
    _limit_panel(limit_ax, axis, t, limits, basis)
    axes = [ratio_ax, replica_ax, limit_ax]
    _shade_phases(axes[:2], run, axis)
    xs = [float(axis.scale(e["at_s"])) for e in events]
    colors = ["tab:green" if e["direction"] == "up" else "tab:red" for e in events]
    for ax in axes:  # one collection per panel, not one line per event: cheap on long runs
        ax.vlines(xs, 0, 1, colors=colors, lw=0.9, alpha=0.7, transform=ax.get_xaxis_transform())
    if len(events) <= 2 * MAX_LINES:  # numbers only while they can be told apart
        for n, (x, color) in enumerate(zip(xs, colors, strict=True), start=1):
            ratio_ax.annotate(
                str(n),
                (x, 1.0),
                xycoords=("data", "axes fraction"),
                xytext=(2, -10),
                textcoords="offset points",
                fontsize=8,
                color=color,
                fontweight="bold",
            )
    for ax in axes[:2]:
        ax.grid(True, alpha=0.3)
        ax.tick_params(labelbottom=False)
    limit_ax.set_xlabel(axis.label)
    limit_ax.set_xlim(axis.scale(min(0.0, float(t[0]) if len(t) else 0.0)), axis.scale(max(end, 1.0)))
    fig.text(
        MARGINS["left"],
        (text_in + 0.05) / height,
        "\n".join(wrapped),
        va="top",
        ha="left",
        fontsize=8,
        family="monospace",
    )
    fig.suptitle(f"{run.name} · why the HPA scaled · backend: {run.backend}\n{run.path.name}", fontsize=12)
    return fig


def write_why_plots(run: Run, events: list[dict[str, Any]] | None = None) -> list[Path]:
    """<run>/plots/why.png when the run has HPA metrics against targets; returns the files written."""
    if not why_data(run).metrics:
        return []
    return [save_figure(why_figure(run, events), run.path / PLOTS_DIR / WHY_FILE)]
