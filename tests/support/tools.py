"""A test that needs an outside tool or file: it fails in CI (`CI` set) when the thing is missing,
so a pipeline never goes green by skipping; on a workstation it skips with the same message."""

from __future__ import annotations

import os
import shutil
from typing import NoReturn

import pytest


def missing(message: str) -> NoReturn:
    """Fail (CI) or skip (elsewhere) the calling test, saying what is missing and how to get it."""
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def require_executable(name: str, install: str) -> str:
    """The path of `name` on PATH, else `missing(...)` with the install hint."""
    path = shutil.which(name)
    if path is None:
        missing(f"{name} is not installed ({install})")
    return path
