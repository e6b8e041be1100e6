"""What `hpa-exp run` shows while it runs: a live view on a terminal, plain lines in pipelines."""

from __future__ import annotations

import sys
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, TextIO

from rich.console import Console
from rich.live import Live
from rich.panel import Panel

from hpa_experiments.dashboard import DashboardObserver, render

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
        if not self.quiet or kind in ("error", "job_failed", "data_missing", "hpa_blocked", "object_lost"):
            self._line(elapsed, f"{kind}: {detail}")

    def on_finish(self, result: RunResult) -> None:
        print(finish_line(result), file=self.stream, flush=True)


def finish_line(result: RunResult) -> str:
    text = f"{result.status}: {result.run_dir}"
    return text + (f" ({result.reason})" if result.reason else "")


class LiveConsole:
    """The dashboard (phase bars, replicas chart, queue/KV vs targets, TTFT/ITL, events), live."""

    def __init__(self, console: Console | None = None):
        self.console = console or Console()
        self.board = DashboardObserver()
        self.live: Live | None = None
        self._last_refresh = 0.0

    def on_start(self, runner: Runner) -> None:
        self.board.on_start(runner)
        self.live = Live(self._render(), console=self.console, auto_refresh=False, transient=False)
        self.live.start()

    def on_row(self, row: dict[str, Any]) -> None:
        self.board.on_row(row)
        self._refresh()

    def on_event(self, elapsed: float, kind: str, detail: str) -> None:
        self.board.on_event(elapsed, kind, detail)
        self._refresh()

    def on_finish(self, result: RunResult) -> None:
        self.board.on_finish(result)
        if self.live:
            self.live.update(self._render(result.status), refresh=True)
            self.live.stop()
        self.console.print(finish_line(result))

    def _render(self, status: str = "Ctrl-C stops the run: Jobs are deleted, the partial run is kept") -> Panel:
        return render(self.board, self.console, status)

    def _refresh(self) -> None:
        now = time.monotonic()
        if self.live and now - self._last_refresh > 0.2:
            self._last_refresh = now
            self.live.update(self._render(), refresh=True)
