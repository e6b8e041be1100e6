"""What `hpa-exp run` shows while it runs: a live view on a terminal, plain lines in pipelines."""

from __future__ import annotations

import sys
import time
from collections import deque
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, TextIO

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from hpa_experiments.runner import Runner, RunResult


def _fmt(value: Any, unit: str = "", digits: int = 1) -> str:
    if value is None or value == "":
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}{unit}"
    return f"{value}{unit}"


def row_summary(row: dict[str, Any]) -> str:
    """One line for a metrics row: replicas, queue, KV, latencies."""
    kv = row.get("kv_cache_usage_perc")
    return (
        f"replicas {_fmt(row.get('replicas'))}/{_fmt(row.get('desired_replicas'))} desired, "
        f"{_fmt(row.get('ready_replicas'))} ready | waiting {_fmt(row.get('num_requests_waiting'))} | "
        f"KV {_fmt(kv * 100 if isinstance(kv, (int, float)) else None, '%', 0)} | "
        f"TTFT {_fmt(row.get('ttft_ms'), ' ms', 0)} | ITL {_fmt(row.get('itl_ms'), ' ms', 1)}"
    )


class PlainConsole:
    """Timestamped lines: every event, and a progress line every `every_s` of experiment time."""

    def __init__(self, stream: TextIO | None = None, every_s: float = 30.0, quiet: bool = False):
        self.stream = stream or sys.stdout
        self.every_s = every_s
        self.quiet = quiet
        self._next_progress = 0.0

    def _line(self, elapsed: float, text: str) -> None:
        now = datetime.now(timezone.utc).strftime("%H:%M:%S")
        print(f"{now} [{elapsed:7.1f}s] {text}", file=self.stream, flush=True)

    def on_start(self, runner: Runner) -> None:
        if not self.quiet:
            assert runner.writer is not None
            print(f"run directory: {runner.writer.dir}", file=self.stream, flush=True)

    def on_row(self, row: dict[str, Any]) -> None:
        if self.quiet or row["elapsed_s"] < self._next_progress:
            return
        self._next_progress = row["elapsed_s"] + self.every_s
        self._line(row["elapsed_s"], f"{row.get('phase')}: {row_summary(row)}")

    def on_event(self, elapsed: float, kind: str, detail: str) -> None:
        if not self.quiet or kind in ("error", "job_failed"):
            self._line(elapsed, f"{kind}: {detail}")

    def on_finish(self, result: RunResult) -> None:
        print(finish_line(result), file=self.stream, flush=True)


def finish_line(result: RunResult) -> str:
    text = f"{result.status}: {result.run_dir}"
    return text + (f" ({result.reason})" if result.reason else "")


class LiveConsole:
    """A rich live view: progress, jobs, replicas, queue/KV against targets, latencies, events."""

    def __init__(self, console: Console | None = None):
        self.console = console or Console()
        self.events: deque[str] = deque(maxlen=6)
        self.row: dict[str, Any] = {}
        self.runner: Runner | None = None
        self.live: Live | None = None
        self._last_refresh = 0.0

    def on_start(self, runner: Runner) -> None:
        self.runner = runner
        self.live = Live(self._render(), console=self.console, refresh_per_second=4, transient=False)
        self.live.start()

    def on_row(self, row: dict[str, Any]) -> None:
        self.row = row
        self._refresh()

    def on_event(self, elapsed: float, kind: str, detail: str) -> None:
        self.events.append(f"[{elapsed:6.0f}s] {kind}: {detail}")
        self._refresh()

    def on_finish(self, result: RunResult) -> None:
        if self.live:
            self.live.update(self._render(), refresh=True)
            self.live.stop()
        self.console.print(finish_line(result))

    def _refresh(self) -> None:
        now = time.monotonic()
        if self.live and now - self._last_refresh > 0.2:
            self._last_refresh = now
            self.live.update(self._render())

    def _render(self) -> Panel:
        if self.runner is None:
            return Panel("starting…")
        plan = self.runner.plan
        elapsed = float(self.row.get("elapsed_s", 0.0))
        jobs = Table.grid(padding=(0, 1))
        for job in plan.jobs:
            done = min(max(elapsed - job.start, 0.0), job.end - job.start)
            rate = f"{job.rate:g} req/s" if job.rate is not None else ""
            jobs.add_row(job.name, ProgressBar(total=job.end - job.start, completed=done, width=30), rate)
        r = self.row
        state = Table.grid(padding=(0, 2))
        state.add_row(
            "replicas",
            f"{_fmt(r.get('replicas'))} current  {_fmt(r.get('desired_replicas'))} desired  "
            f"{_fmt(r.get('ready_replicas'))} ready",
        )
        state.add_row(
            "queue",
            f"{_fmt(r.get('num_requests_waiting'))} / target {_fmt(r.get('num_requests_waiting_target'))}",
        )
        state.add_row(
            "KV cache",
            f"{_fmt(r.get('kv_cache_usage_perc'), '', 3)} / target {_fmt(r.get('kv_cache_usage_target'), '', 3)}",
        )
        state.add_row("TTFT / ITL", f"{_fmt(r.get('ttft_ms'), ' ms', 0)} / {_fmt(r.get('itl_ms'), ' ms', 1)}")
        state.add_row("offered", f"{_fmt(r.get('offered_rps'), ' req/s', 0)}  phase {r.get('phase', '–')}")
        header = Text(f"{elapsed:.0f} s of {plan.total:g} s", style="bold")
        overall = ProgressBar(total=plan.total, completed=min(elapsed, plan.total), width=50)
        events = Text("\n".join(self.events) or "no events yet", style="dim")
        title = f"{self.runner.config.name} on {self.runner.backend.name}"
        return Panel(Group(header, overall, jobs, state, events), title=title)
