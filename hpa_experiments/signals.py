"""Turning SIGINT and SIGTERM into a stop request instead of an exception mid-operation."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any


@contextlib.contextmanager
def stop_on_signals(request_stop: Callable[[str], None], enabled: bool = True) -> Iterator[None]:
    """While inside, SIGINT/SIGTERM call `request_stop("interrupted by SIGINT")` and return.

    The loop that owns the work checks its stop flag and cleans up; nothing is interrupted
    half-way (an API call, a CSV row).  Outside the main thread signals cannot be handled,
    so this does nothing there (the menu runs the runner in a worker thread and stops it).
    """
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: Any) -> None:
        request_stop(f"interrupted by {signal.Signals(signum).name}")

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def process_alive(pid: int) -> bool:
    """Whether a process with this id exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return False
    return True
