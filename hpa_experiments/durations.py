"""Durations as people write them in configs: 360, 90.5, "90s", "5m", "1h30m" (Prometheus style)."""

from __future__ import annotations

import math
import re

MAX_SECONDS = 30 * 86400.0  # 30 days: longer is a typo (or an attempt to overflow the timeline)
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")


def parse_duration(value: object) -> float:
    """Seconds from a number or a duration string, finite and at most MAX_SECONDS; ValueError with a
    readable message otherwise."""
    seconds = _seconds(value)
    if not math.isfinite(seconds):
        raise ValueError(f"must be a finite number of seconds (got {_brief(value)})")
    if seconds > MAX_SECONDS:
        raise ValueError(f"must be at most 30 days ({MAX_SECONDS:.0f} s) (got {_brief(value)})")
    return seconds


def _brief(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _seconds(value: object) -> float:
    if isinstance(value, bool):
        raise ValueError(f"must be a number of seconds or a duration like '90s' or '5m' (got {_brief(value)})")
    if isinstance(value, int):
        return float(max(-(2**1000), min(value, 2**1000)))  # float() overflows beyond ~1e308
    if isinstance(value, float):
        return value
    if isinstance(value, str):
        text = value.strip()
        try:
            return float(text)
        except ValueError:
            pass
        parts = _PART.findall(text)
        if parts and "".join(n + u for n, u in parts) == text:
            return sum(float(n) * _UNITS[u] for n, u in parts)
    raise ValueError(f"must be a number of seconds or a duration like '90s' or '5m' (got {_brief(value)})")


def is_prometheus_duration(text: str) -> bool:
    """True for a PromQL range duration such as '1m', '30s', '1h30m' (integers only, as PromQL requires)."""
    parts = re.findall(r"(\d+)(ms|s|m|h|d|w|y)", text)
    return bool(parts) and "".join(n + u for n, u in parts) == text
