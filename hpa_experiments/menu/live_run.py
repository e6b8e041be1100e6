"""Running an experiment from the menu: the live dashboard, and stopping with Ctrl-C (or `q`).

The run works in a worker thread (handle_signals=False); this thread draws and owns the
keyboard.  A stop request goes through the runner's own interrupt path (full cleanup).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from rich.console import Console
from rich.live import Live

from hpa_experiments.api import PreparedRun
from hpa_experiments.dashboard import DashboardObserver, render
from hpa_experiments.menu.ui import cbreak, poll_key
from hpa_experiments.runner import RunResult

STOP_REASON = "interrupted from the menu"


@dataclass
class Outcome:
    result: RunResult | None
    error: str | None
    jobs_deleted: int  # Jobs stopped because of the stop request
    warnings: list[str] = field(default_factory=list)  # after the run: KPIs, output copies


def run_with_dashboard(console: Console, run: PreparedRun, observer: DashboardObserver) -> Outcome:
    """Run in a worker thread while drawing; Ctrl-C or `q` asks before stopping with full cleanup."""
    errors: list[str] = []
    warnings: list[str] = []

    def work() -> None:
        try:
            warnings.extend(run.run().warnings)
        except Exception as exc:  # shown on the result screen instead of a traceback
            errors.append(f"{type(exc).__name__}: {exc}")

    worker = threading.Thread(target=work, name="hpa-exp-run", daemon=True)
    worker.start()
    hint = "Ctrl-C or q: stop the experiment (asks first)"
    with cbreak():
        while worker.is_alive():
            if _watch(console, worker, observer, hint) and _confirm_stop(console, worker):
                run.request_stop(STOP_REASON)
                _wait_for_cleanup(console, worker)
    jobs_deleted = sum(1 for _, kind, detail in observer.events if kind == "job_stopped" and "(interrupted" in detail)
    return Outcome(observer.result, errors[0] if errors else None, jobs_deleted, warnings)


def _watch(console: Console, worker: threading.Thread, observer: DashboardObserver, hint: str) -> bool:
    """Draw until the run ends (False) or the person asks to stop (True)."""
    console.clear()
    with Live(render(observer, console, hint), console=console, auto_refresh=False) as live:
        try:
            while worker.is_alive():
                if poll_key(0.15) in ("q", "s"):
                    return True
                live.update(render(observer, console, hint), refresh=True)
            live.update(render(observer, console, "run finished"), refresh=True)
        except KeyboardInterrupt:
            return True
    return False


def _confirm_stop(console: Console, worker: threading.Thread) -> bool:
    console.print("Stop the experiment? Jobs will be deleted [y/N] ", end="", markup=False, highlight=False)
    try:
        while worker.is_alive():
            key = poll_key(0.2)
            if key is not None:
                console.print("yes" if key == "y" else "no")
                return key == "y"
    except KeyboardInterrupt:  # a second Ctrl-C means yes
        console.print("yes")
        return True
    console.print("\nthe run finished meanwhile")
    return False


def _wait_for_cleanup(console: Console, worker: threading.Thread) -> None:
    console.print("stopping: deleting the Jobs this run started, writing the files…")
    while worker.is_alive():
        try:
            worker.join(0.2)
        except KeyboardInterrupt:
            console.print("cleanup under way, please wait…")
