"""Durations as people write them in configs: 360, 90.5, "90s", "5m", "1h30m" (Prometheus style)."""

from __future__ import annotations

import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")


def parse_duration(value: object) -> float:
    """Seconds from a number or a duration string; ValueError with a readable message otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"must be a number of seconds or a duration like '90s' or '5m' (got {value!r})")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            return float(text)
        except ValueError:
            pass
        parts = _PART.findall(text)
        if parts and "".join(n + u for n, u in parts) == text:
            return sum(float(n) * _UNITS[u] for n, u in parts)
    raise ValueError(f"must be a number of seconds or a duration like '90s' or '5m' (got {value!r})")


def is_prometheus_duration(text: str) -> bool:
    """True for a PromQL range duration such as '1m', '30s', '1h30m' (integers only, as PromQL requires)."""
    parts = re.findall(r"(\d+)(ms|s|m|h|d|w|y)", text)
    return bool(parts) and "".join(n + u for n, u in parts) == text
