"""Terminal primitives of the menu: single keys, typed answers, and a screen that fits the window.

Keys are read one at a time in cbreak mode (no Enter needed; Ctrl-C still raises
KeyboardInterrupt); the menu stays in that mode, so keys typed ahead are neither echoed nor
lost, and switches to line mode only for typed answers.  Every screen is drawn by
`show_screen`, which cuts the body to the window height and lets people scroll it, so the
menu works at 80x24 as well as on large terminals.
"""

from __future__ import annotations

import contextlib
import os
import select
import sys
import termios
import threading
import tty
from collections.abc import Callable, Iterable, Iterator

from rich.console import Console, Group, RenderableType
from rich.segment import Segment, Segments
from rich.text import Text

SCROLL_DOWN = {"down", "j", "space", "pagedown"}
SCROLL_UP = {"up", "k", "pageup"}
_ESCAPES = {"[A": "up", "[B": "down", "[5~": "pageup", "[6~": "pagedown", "OA": "up", "OB": "down"}
_NAMED = {"\r": "enter", "\n": "enter", " ": "space", "\x7f": "backspace", "\t": "tab"}


class QuitMenu(Exception):
    """`q` (or end of input): leave the menu from wherever we are."""


class BackToHome(Exception):
    """Ctrl-C outside a run: abandon the current screen."""


@contextlib.contextmanager
def cbreak(fd: int | None = None) -> Iterator[None]:
    """Keys arrive one by one, unechoed; signals (Ctrl-C) still work. Restored on exit."""
    fd = sys.stdin.fileno() if fd is None else fd
    saved = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd, termios.TCSANOW)  # the default, TCSAFLUSH, would drop keys typed ahead
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


@contextlib.contextmanager
def cooked() -> Iterator[None]:
    """Line editing and echo back on (typed answers, child programs); the previous mode after."""
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    mode = termios.tcgetattr(fd)
    mode[3] |= termios.ICANON | termios.ECHO | termios.ISIG
    termios.tcsetattr(fd, termios.TCSADRAIN, mode)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _read_byte(fd: int, timeout: float | None) -> str | None:
    ready, _, _ = select.select([fd], [], [], timeout)
    if not ready:
        return None
    data = os.read(fd, 1)
    if not data:
        raise QuitMenu  # end of input
    return data.decode("latin-1")


def poll_key(timeout: float) -> str | None:
    """A key if one arrives within `timeout` seconds (call inside `cbreak()`)."""
    fd = sys.stdin.fileno()
    first = _read_byte(fd, timeout)
    if first is None:
        return None
    if first == "\x1b":
        sequence = ""
        while len(sequence) < 3 and (more := _read_byte(fd, 0.05)) is not None:
            sequence += more
            if sequence in _ESCAPES:
                return _ESCAPES[sequence]
        return "escape" if not sequence else "unknown"
    if ord(first) >= 0x80:  # a UTF-8 character: read its continuation bytes
        raw = first.encode("latin-1")
        while (more := _read_byte(fd, 0.05)) is not None:
            raw += more.encode("latin-1")
            with contextlib.suppress(UnicodeDecodeError):
                return raw.decode("utf-8")
        return "unknown"
    return _NAMED.get(first, first.lower() if first.isalpha() else first)


def read_key() -> str:
    with cbreak():
        while (key := poll_key(3600)) is None:
            pass
    return key


def ask_text(
    console: Console,
    question: str,
    default: str | None = None,
    check: Callable[[str], str | None] | None = None,
) -> str:
    """A typed answer (Enter to accept the default). `check` returns an error message or None.

    A lone `q` quits the menu, as everywhere else.
    """
    suffix = f" [{default}]" if default not in (None, "") else ""
    while True:
        try:
            with cooked():
                answer = console.input(Text(f"{question}{suffix}: ")).strip()
        except EOFError:
            raise QuitMenu from None
        if answer.lower() == "q":
            raise QuitMenu
        if not answer and default is not None:
            answer = default
        problem = check(answer) if check else None
        if problem is None:
            return answer
        console.print(Text.assemble("  ", ("✗", "red"), f" {problem}"), highlight=False)


def confirm(console: Console, question: str, default: bool = False) -> bool:
    """A y/n question answered with one key."""
    hint = "[Y/n]" if default else "[y/N]"
    console.print(f"{question} {hint} ", end="", highlight=False, markup=False)
    key = read_key()
    answer = default if key == "enter" else key == "y"
    console.print("yes" if answer else "no")
    return answer


def keys_line(pairs: Iterable[tuple[str, str]]) -> Text:
    """'[r] run  [e] runs ...' with the keys in bold."""
    text = Text()
    for i, (key, label) in enumerate(pairs):
        if i:
            text.append("  ")
        text.append(f"[{key}]", style="bold")
        text.append(f" {label}")
    return text


def _lines(console: Console, renderable: RenderableType) -> list[list[Segment]]:
    return console.render_lines(renderable, console.options.update(height=None), pad=False)


def _key_or_redraw(console: Console, redraw_when: threading.Event | None) -> str | None:
    """The next key, or None when the screen must be drawn again: the window was resized, or
    `redraw_when` was set (something on screen became ready)."""
    size = console.size
    with cbreak():
        while True:
            key = poll_key(0.2)
            if key is not None:
                return key
            if (redraw_when is not None and redraw_when.is_set()) or console.size != size:
                return None


def show_screen(
    console: Console,
    title: str,
    body: RenderableType | Callable[[], RenderableType],
    footer: RenderableType,
    accept: Callable[[str], bool],
    redraw_when: threading.Event | None = None,
) -> str:
    """Draw title, as much body as fits, and footer; scroll on arrows/space (and j/k unless the
    screen accepts them); return an accepted key.

    `body` may be a function, called on each draw: then `redraw_when` (set by another thread)
    redraws the screen once, e.g. when data that was loading is ready.
    `q` always quits; Ctrl-C goes back to the home screen.
    """
    offset = 0
    while True:
        height = console.size.height
        head = _lines(console, Text(title, style="bold reverse"))
        foot = _lines(console, footer)
        body_lines = _lines(console, body() if callable(body) else body)
        room = max(1, height - len(head) - len(foot) - 1)
        offset = max(0, min(offset, len(body_lines) - room))
        shown = body_lines[offset : offset + room]
        more = len(body_lines) > room
        if more:
            below = len(body_lines) - offset - len(shown)
            shown = [*shown[:-1], [Segment(f"── ↑↓/space to scroll · {offset} above · {below} below ──", None)]]
        console.clear()
        _print_lines(console, head + shown + foot)
        pending = redraw_when if redraw_when is not None and not redraw_when.is_set() else None
        try:
            key = _key_or_redraw(console, pending)
        except KeyboardInterrupt:
            raise BackToHome from None
        if key is None:
            continue
        if key == "q":
            raise QuitMenu
        if accept(key):  # a screen's own key wins over scrolling ('k' is Kubernetes on the plan screen)
            return key
        if more and key in SCROLL_DOWN:
            offset += room - 1 if key in ("space", "pagedown") else 1
        elif more and key in SCROLL_UP:
            offset -= room - 1 if key == "pageup" else 1


def _print_lines(console: Console, lines: list[list[Segment]]) -> None:
    segments: list[Segment] = []
    for i, line in enumerate(lines):
        if i:
            segments.append(Segment.line())
        segments.extend(line)
    console.print(Segments(segments))


def stack(*parts: RenderableType | None) -> Group:
    """Renderables one under the other, skipping None."""
    return Group(*(p for p in parts if p is not None))


def notice(console: Console, title: str, body: RenderableType, back_label: str = "back") -> None:
    """A screen to read; any of Enter, b or Escape goes back."""
    footer = stack(Text(""), keys_line([("b", back_label), ("q", "quit")]))
    show_screen(console, title, body, footer, lambda key: key in ("b", "enter", "escape"))
