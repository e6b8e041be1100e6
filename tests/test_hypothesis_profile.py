"""The hypothesis profile CI uses: derandomized, no deadline, a fixed example count (tests/conftest.py)."""

from __future__ import annotations

import os

from hypothesis import settings


def test_the_ci_profile_is_derandomized_without_a_deadline() -> None:
    ci = settings.get_profile("ci")
    assert ci.derandomize is True
    assert ci.deadline is None
    assert ci.max_examples == 100
    assert ci.database is None


def test_ci_selects_the_ci_profile() -> None:
    expected = os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev")
    assert settings.default == settings.get_profile(expected)
