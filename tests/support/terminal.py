"""Drive a terminal program as a person would: a tmux pane of a fixed size, keys in, screen out.

Each `TmuxTerminal` uses its own tmux server (a socket in a temporary folder), so tests never
touch anyone's tmux sessions.  `screen()` is what the pane shows now (tmux renders the escape
sequences, so assertions are on the visible text); `wait_for` polls it.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

TMUX_CONFIG = """\
set -g status off
set -g remain-on-exit on
set -g history-limit 5000
set -g default-terminal "screen-256color"
"""
# Runs the program and writes its exit code to a file (tmux does not always report it).  The
# wrapper ignores Ctrl-C itself; the program gets the default handling back.
EXIT_RECORDER = (
    "import signal, subprocess, sys\n"
    "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
    "code = subprocess.call(sys.argv[2:], preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))\n"
    "open(sys.argv[1], 'w').write(str(code))\n"
)
# Variables that would override the pane size or colour decisions of the program under test.
CLEARED_ENV = ("COLUMNS", "LINES", "NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "TMUX")


class TerminalTimeout(AssertionError):
    pass


def tmux_available() -> bool:
    return shutil.which("tmux") is not None


class TmuxTerminal:
    def __init__(self, folder: Path, width: int = 80, height: int = 24):
        self.folder = folder
        self.width, self.height = width, height
        self.socket = folder / "tmux.sock"
        self.config = folder / "tmux.conf"
        self.config.write_text(TMUX_CONFIG, encoding="utf-8")
        self.status_file = folder / "exit-status"
        self.started = False

    def _tmux(self, *args: str, check: bool = True) -> str:
        done = subprocess.run(
            ["tmux", "-S", str(self.socket), "-f", str(self.config), *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=20,
        )
        if check and done.returncode:
            raise RuntimeError(f"tmux {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    def start(self, argv: list[str], cwd: Path, env: Mapping[str, str | None] | None = None) -> TmuxTerminal:
        """Run argv in a new pane; env values of None remove the variable."""
        changes = {name: None for name in CLEARED_ENV} | dict(env or {})
        env_args = [f"-u{name}" for name, value in changes.items() if value is None]
        env_args += [f"{name}={value}" for name, value in changes.items() if value is not None]
        recorder = [sys.executable, "-c", EXIT_RECORDER, str(self.status_file)]
        command = shlex.join(["env", *env_args, *recorder, *argv])
        self._tmux(
            "new-session", "-d", "-s", "t", "-x", str(self.width), "-y", str(self.height), "-c", str(cwd), command
        )
        self.started = True
        return self

    def screen(self, colours: bool = False) -> str:
        """The visible pane, lines joined by newlines (with SGR escapes when `colours`)."""
        args = ["capture-pane", "-p", "-t", "t"] + (["-e"] if colours else [])
        return self._tmux(*args)

    def wait_for(self, pattern: str, timeout: float = 20.0) -> str:
        """Poll the screen until the regular expression matches; returns that screen."""
        regex = re.compile(pattern, re.MULTILINE)
        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline:
            screen = self.screen()
            if regex.search(screen):
                return screen
            time.sleep(0.1)
        raise TerminalTimeout(f"{pattern!r} not on the screen after {timeout:g} s; the screen shows:\n{screen}")

    def press(self, *keys: str) -> None:
        """Keys as tmux names them: 'q', 'Enter', 'C-c', 'Down', ..."""
        self._tmux("send-keys", "-t", "t", *keys)

    def type_line(self, text: str) -> None:
        if text:
            self._tmux("send-keys", "-t", "t", "-l", text)
        self.press("Enter")

    def exit_status(self, timeout: float = 10.0) -> int:
        """Wait for the program to end; its exit code."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.status_file.exists() and self.status_file.read_text(encoding="utf-8"):
                return int(self.status_file.read_text(encoding="utf-8"))
            time.sleep(0.1)
        raise TerminalTimeout(f"the program did not exit; the screen shows:\n{self.screen()}")

    def close(self) -> None:
        if self.started:
            self._tmux("kill-server", check=False)
            self.started = False
