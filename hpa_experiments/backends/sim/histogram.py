"""Prometheus-style cumulative histograms with vLLM's exact bucket boundaries.

Bucket boundaries come from vLLM's V1 `PrometheusStatLogger` (see
/work/shared/reference/sim-model.md section 3).  Counts are kept per bucket (not
cumulative) so that adding `n` identical observations is O(log buckets); the
cumulative `_bucket{le=...}` values are the running sums of `counts`.
"""

from __future__ import annotations

from collections.abc import Sequence

TTFT_BUCKETS: tuple[float, ...] = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
)  # fmt: skip
ITL_BUCKETS: tuple[float, ...] = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
    40.0, 80.0,
)  # fmt: skip
REQUEST_LATENCY_BUCKETS: tuple[float, ...] = (
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0,
    480.0, 960.0, 1920.0, 7680.0,
)  # fmt: skip


def format_le(bound: float) -> str:
    """Bucket label as prometheus_client writes it (`0.01`, `1.0`, `+Inf`)."""
    return "+Inf" if bound == float("inf") else repr(float(bound))


class Histogram:
    """Cumulative (never reset) histogram: per-bucket counts, `_sum` and `_count`."""

    __slots__ = ("bounds", "count", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds: tuple[float, ...] = tuple(bounds)
        self.counts: list[int] = [0] * (len(self.bounds) + 1)  # last slot is the +Inf bucket
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float, n: int = 1) -> None:
        """Add `n` observations of `value` (le semantics: value <= bound)."""
        bounds = self.bounds  # bisect_left, written out: native float comparisons when compiled
        lo, hi = 0, len(bounds)
        while lo < hi:
            mid = (lo + hi) >> 1
            if bounds[mid] < value:
                lo = mid + 1
            else:
                hi = mid
        self.counts[lo] += n
        self.sum += value * n
        self.count += n
