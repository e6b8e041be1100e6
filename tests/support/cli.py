"""`hpa-exp` as a user runs it: a child process of this interpreter, output captured, no stdin."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def hpa_exp(*args: str, cwd: Path = REPO, timeout: float = 600, **run: Any) -> subprocess.CompletedProcess[str]:
    """`python -m hpa_experiments ARGS` in `cwd` (the checkout by default); extra keywords go to subprocess.run."""
    return subprocess.run(
        [sys.executable, "-m", "hpa_experiments", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        **run,
    )
