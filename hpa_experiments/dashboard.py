"""The live dashboard of a run: what the runner reports, drawn as one rich Panel.

Phase bars, elapsed/remaining, a replicas chart (current/desired/ready), queue and KV cache
against their HPA targets (and, on a line of their own, any other metric the autoscaler scales on:
a custom HPA metric or a KEDA trigger, `hpa_<name>` against `hpa_<name>_target`), latest TTFT/ITL
and recent events.  Used by `hpa-exp run` on a
terminal and by the menu.  On a simulated run the observer can pace rows like a replay at
N x speed, so people can watch.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from hpa_experiments.hpa_reasons import target_column
from hpa_experiments.plan import Plan
from hpa_experiments.runner import Runner, RunResult

SPARK = "▁▂▃▄▅▆▇█"
HISTORY_ROWS = 240
FIXED_LINES = 17  # borders, header, bars, replicas block, gauges, hint; 3 lines for the stop question


@dataclass(frozen=True)
class Pace:
    label: str
    speed: float | None  # experiment seconds per wall second; None: as fast as possible

    def describe(self, experiment_s: float) -> str:
        if self.speed is None:
            return f"{self.label} (no pause)"
        return f"{self.label} ({self.speed:g}x: about {experiment_s / self.speed:.0f} s)"


PACES = (Pace("watchable", 75.0), Pace("slow", 15.0), Pace("full speed", None))


@dataclass
class DashboardObserver:
    """Collects what the runner reports (worker thread); `snapshot()` is read by the drawing thread."""

    pace: Pace | None = None
    runner: Runner | None = None
    result: RunResult | None = None
    rows: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=HISTORY_ROWS))
    events: list[tuple[float, str, str]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _wall0: float = 0.0

    def on_start(self, runner: Runner) -> None:
        self.runner = runner
        self._wall0 = time.monotonic()

    def on_row(self, row: dict[str, Any]) -> None:
        with self._lock:
            self.rows.append(row)
        if self.pace and self.pace.speed and self.runner and self.runner.clock.virtual:
            due = self._wall0 + float(row["elapsed_s"]) / self.pace.speed
            time.sleep(max(0.0, due - time.monotonic()))

    def on_event(self, elapsed: float, kind: str, detail: str) -> None:
        with self._lock:
            self.events.append((elapsed, kind, detail))

    def on_finish(self, result: RunResult) -> None:
        self.result = result

    def snapshot(self) -> tuple[list[dict[str, Any]], list[tuple[float, str, str]]]:
        with self._lock:
            return list(self.rows), list(self.events)


def _num(value: Any, digits: int = 1, unit: str = "") -> str:
    if value is None or value == "":
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}{unit}"
    return f"{value}{unit}"


def bar(fraction: float, width: int) -> str:
    """A bar readable without colour: █ done, ░ to do."""
    width = max(width, 4)
    done = round(max(0.0, min(1.0, fraction)) * width)
    return "█" * done + "░" * (width - done)


def sparkline(values: list[float | None], top: float, width: int) -> str:
    """The last `width` values as block characters scaled to 0..top (a gap for missing values)."""
    chars = []
    for value in values[-width:]:
        if value is None:
            chars.append(" ")
        else:
            level = 0 if top <= 0 else round(value / top * (len(SPARK) - 1))
            chars.append(SPARK[max(0, min(len(SPARK) - 1, level))])
    return "".join(chars)


def _against_target(label: str, value: Any, target: Any, digits: int) -> Text:
    text = Text(f"{label} {_num(value, digits)} / target {_num(target, digits)}")
    if isinstance(value, (int, float)) and isinstance(target, (int, float)) and value > target:
        text.append(" ▲ over", style="bold red")
    return text


def _header(elapsed: float, total: float, speed: float | None, phase: str) -> Text:
    remaining = max(0.0, total - elapsed)
    header = Text(f"{elapsed:.0f} s of {total:g} s · remaining {remaining:.0f} s", style="bold")
    if speed:
        header.append(f" (≈{remaining / speed:.0f} s at {speed:g}x)", style="")
    header.append(f" · {phase}")
    header.no_wrap = True
    header.overflow = "ellipsis"
    return header


def _phase_bars(plan: Plan, elapsed: float, width: int) -> Table:
    name_w = min(max([len(j.name) for j in plan.jobs] + [8]), 24)
    bar_w = max(10, width - name_w - 16)
    phases = Table.grid(padding=(0, 1))
    phases.add_column(no_wrap=True, overflow="ellipsis", max_width=name_w)
    phases.add_column(no_wrap=True)
    phases.add_column(no_wrap=True)
    for job in plan.jobs:
        rate = f"{job.rate:g} req/s" if job.rate is not None else ""
        phases.add_row(job.name, bar((elapsed - job.start) / (job.end - job.start), bar_w), rate)
    if plan.cooldown:
        phases.add_row("cooldown", bar((elapsed - plan.load_end) / plan.cooldown, bar_w), "")
    return phases


def _replica_chart(rows: list[dict[str, Any]], width: int) -> Group:
    """current/desired/ready now, and over the last samples on one shared scale."""
    series = {c: [r.get(c) for r in rows] for c in ("replicas", "desired_replicas", "ready_replicas")}
    top = max([v for values in series.values() for v in values if isinstance(v, (int, float))] + [1])
    chart_w = max(6, width - 14)
    chart = Table.grid(padding=(0, 1))
    chart.add_column(no_wrap=True)
    chart.add_column(no_wrap=True)
    last = rows[-1] if rows else {}
    for column, label in (("replicas", "current"), ("desired_replicas", "desired"), ("ready_replicas", "ready")):
        chart.add_row(f"{label:<7} {_num(last.get(column)):>3}", sparkline(series[column], top, chart_w))
    title = Text(f"replicas (chart: 0 to {top:g}, last {min(len(rows), chart_w)} samples)", style="bold")
    return Group(title, chart)


def other_metrics(row: dict[str, Any]) -> list[str]:
    """The row's `hpa_<name>` columns that have a target column: the autoscaler's metrics besides
    queue and KV cache (condition, ratio and last-scale columns have no target and are not listed)."""
    return [c for c in row if c.startswith("hpa_") and not c.endswith("_target") and target_column(c) in row]


def _gauges(row: dict[str, Any]) -> Group:
    gauges = _against_target("queue", row.get("num_requests_waiting"), row.get("num_requests_waiting_target"), 1)
    gauges.append("   ")
    gauges.append_text(_against_target("KV", row.get("kv_cache_usage_perc"), row.get("kv_cache_usage_target"), 2))
    lines = [gauges]
    others = other_metrics(row)
    if others:
        line = Text()
        for column in others:
            if line:
                line.append("   ")
            name = column.removeprefix("hpa_")
            line.append_text(_against_target(name, row.get(column), row[target_column(column)], 2))
        line.no_wrap = True
        line.overflow = "ellipsis"
        lines.append(line)
    latency = Text(
        f"TTFT {_num(row.get('ttft_ms'), 0, ' ms')} · ITL {_num(row.get('itl_ms'), 1, ' ms')} · "
        f"offered {_num(row.get('offered_rps'), 0, ' req/s')}"
    )
    if "keda_active" in row:  # a KEDA run: is the ScaledObject active (0 <-> 1 is KEDA's own step)?
        states: dict[Any, str] = {1: "active", 0: "not active"}  # the value may be None, or a float
        state = states.get(row.get("keda_active"), "active: unknown")
        latency.append(f" · KEDA {state}" + (" · FALLBACK" if row.get("keda_fallback") == 1 else ""))
    return Group(*lines, latency)


def _recent_events(events: list[tuple[float, str, str]], room: int) -> Text:
    recent = Text("\n".join(f"[{t:5.0f}s] {kind}: {detail}" for t, kind, detail in events[-room:]), style="dim")
    recent.no_wrap = True
    recent.overflow = "ellipsis"
    return recent


def render(observer: DashboardObserver, console: Console, status: str) -> Panel:
    runner = observer.runner
    if runner is None:
        return Panel("starting the run…", title="hpa-exp")
    rows, events = observer.snapshot()
    plan = runner.plan
    last = rows[-1] if rows else {}
    elapsed = float(last.get("elapsed_s", 0.0))
    if not runner.clock.virtual:  # wall clock: time moves between samples too
        elapsed = max(elapsed, min(runner.elapsed, plan.total))
    speed = observer.pace.speed if observer.pace and runner.clock.virtual else None
    inner = console.width - 4
    lines_taken = FIXED_LINES + len(plan.jobs) + (1 if plan.cooldown else 0) + (1 if other_metrics(last) else 0)
    room = max(1, console.height - lines_taken)
    body = Group(
        _header(elapsed, plan.total, speed, str(last.get("phase", "starting"))),
        Text(bar(elapsed / plan.total if plan.total else 1.0, inner)),
        _phase_bars(plan, elapsed, inner),
        _replica_chart(rows, inner),
        _gauges(last),
        _recent_events(events, room),
        Text(status, style="bold"),
    )
    run_dir = runner.writer.dir.name if runner.writer else ""
    return Panel(body, title=f"{runner.config.name} · {runner.backend.name}", subtitle=run_dir, padding=(0, 1))
