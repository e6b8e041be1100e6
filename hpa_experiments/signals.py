"""Turning SIGINT and SIGTERM into a stop request instead of an exception mid-operation."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any


class Interrupted(BaseException):
    """SIGINT/SIGTERM outside the run loop (preflight, summary); the message says what was left.
    Not an Exception, so that no `except Exception` on the way swallows it (nor typer, which
    turns a KeyboardInterrupt into a silent exit 130); `cli.main` prints it."""


@contextlib.contextmanager
def stop_on_signals(
    request_stop: Callable[[str], None],
    enabled: bool = True,
    on_repeat: Callable[[str], None] | None = None,
) -> Iterator[None]:
    """While inside, SIGINT/SIGTERM call `request_stop("interrupted by SIGINT")` and return;
    every later one calls `on_repeat("SIGINT")` (the runner stops waiting for its cleanup).

    The loop that owns the work checks its flags and cleans up; nothing is interrupted
    half-way (an API call, a CSV row), so the callbacks must only set flags.  Outside the main
    thread signals cannot be handled, so this does nothing there (the menu runs the runner in a
    worker thread and stops it).
    """
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield
        return
    seen = 0

    def handler(signum: int, _frame: Any) -> None:
        nonlocal seen
        seen += 1
        name = signal.Signals(signum).name
        if seen == 1 or on_repeat is None:
            request_stop(f"interrupted by {name}")
        else:
            on_repeat(name)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


@contextlib.contextmanager
def raise_on_signals(describe: Callable[[str], str], enabled: bool = True) -> Iterator[None]:
    """While inside, SIGINT/SIGTERM raise `Interrupted(describe("SIGTERM"))`: for stretches that
    apply nothing (the preflight) or whose result can be redone (the summary), where stopping at
    once is safe.  SIGTERM then ends the command with a message and exit 130 instead of killing
    it silently.  Does nothing outside the main thread."""
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: Any) -> None:
        raise Interrupted(describe(signal.Signals(signum).name))

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
