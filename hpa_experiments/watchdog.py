"""During a run: say at once when a column stays empty for a minute or the HPA cannot act.

An empty cell alone is easy to miss; a run whose TTFT column is empty throughout, or whose
HPA was disabled by a second HPA mid-run, must not look like a quiet success.  The watchdog
looks at each written row and returns events for the runner to record:

* `data_missing` when a watched column has had no value for `empty_after_s` (once per gap) and
  `data_back` when values return.  Latency columns (TTFT/ITL) have no value without traffic, so
  they count only while load is offered and requests complete (or the completion column itself
  is empty); gauges count always, the HPA's metrics while the HPA exists.
* `hpa_blocked` when the HPA's AbleToScale or ScalingActive condition turns False (with the
  controller's reason; at once after it was True, after `empty_after_s` for a new HPA) and
  `hpa_unblocked` when it is True again.

The summary (analysis/kpis.py `data_notes`) turns these events into notes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from hpa_experiments.backends.base import HpaMetricReading, ScalingSnapshot
from hpa_experiments.monitor import hpa_metric_column
from hpa_experiments.rundir import ENERGY_COLUMNS

EMPTY_AFTER_S = 60.0
BLOCKING_CONDITIONS = ("AbleToScale", "ScalingActive")
MISSING, BACK, BLOCKED, UNBLOCKED = "data_missing", "data_back", "hpa_blocked", "hpa_unblocked"
TRAFFIC_PREFIXES = ("ttft_", "itl_")  # NaN (empty) when no request completed in the window


def watched_columns(query_columns: Iterable[str], hpa_readings: Iterable[HpaMetricReading]) -> list[str]:
    """The PromQL columns (energy is optional: the preflight warned if it has no series) and the HPA's metrics."""
    columns = [c for c in query_columns if c not in ENERGY_COLUMNS]
    return columns + [hpa_metric_column(r.name) for r in hpa_readings]


class Watchdog:
    """Feed it every row (in tick order); it returns (kind, detail) events to record now."""

    def __init__(self, columns: Iterable[str], empty_after_s: float = EMPTY_AFTER_S):
        self.columns = list(dict.fromkeys(columns))
        self.empty_after_s = empty_after_s
        self._empty_since: dict[str, float] = {}
        self._warned: set[str] = set()
        self._blocked: dict[str, str] = {}  # condition type -> reason, while False and said
        self._false_since: dict[str, float] = {}
        self._seen_true: set[str] = set()

    def check(self, row: Mapping[str, Any], snapshot: ScalingSnapshot | None) -> list[tuple[str, str]]:
        events = self._columns(row, snapshot)
        if snapshot is not None and snapshot.hpa_found:
            events += self._conditions(snapshot, float(row["elapsed_s"]))
        return events

    def _expected(self, column: str, row: Mapping[str, Any], snapshot: ScalingSnapshot | None) -> bool:
        if column.startswith(TRAFFIC_PREFIXES):
            # requests completing prove traffic; load still starting up (Job pods pulling images) does not
            completions = row.get("request_rate_per_min")
            return bool(row.get("offered_rps")) and (completions is None or completions > 0)
        if column in ("num_requests_waiting", "kv_cache_usage_perc") or column.startswith("hpa_"):
            return snapshot is not None and snapshot.hpa_found
        return True

    def _columns(self, row: Mapping[str, Any], snapshot: ScalingSnapshot | None) -> list[tuple[str, str]]:
        events: list[tuple[str, str]] = []
        now = float(row["elapsed_s"])
        for column in self.columns:
            if row.get(column) is not None:
                since = self._empty_since.pop(column, None)
                if column in self._warned:
                    self._warned.discard(column)
                    gap = f" after {now - since:g} s without" if since is not None else ""
                    events.append((BACK, f"{column}: values again at {now:g} s{gap}"))
                continue
            if not self._expected(column, row, snapshot):
                self._empty_since.pop(column, None)  # a pause in traffic is not a gap
                continue
            since = self._empty_since.setdefault(column, now)
            if now - since >= self.empty_after_s and column not in self._warned:
                self._warned.add(column)
                while_load = " while load was offered" if column.startswith(TRAFFIC_PREFIXES) else ""
                events.append(
                    (
                        MISSING,
                        f"{column}: no value for {now - since:g} s (since {since:g} s{while_load}); "
                        "the cells stay empty: check the query's series in Prometheus",
                    )
                )
        return events

    def _conditions(self, snapshot: ScalingSnapshot, now: float) -> list[tuple[str, str]]:
        """A turn from True to False is said at once; a condition False since the HPA was applied only
        after `empty_after_s` (a new HPA sees its metrics after the adapter's relist, up to a minute)."""
        events: list[tuple[str, str]] = []
        for condition in snapshot.conditions:
            kind = condition.get("type", "")
            if kind not in BLOCKING_CONDITIONS:
                continue
            if condition.get("status") == "True":
                self._seen_true.add(kind)
                self._false_since.pop(kind, None)
                if kind in self._blocked:
                    events.append((UNBLOCKED, f"HPA condition {kind} is True again (was {self._blocked.pop(kind)})"))
                continue
            if condition.get("status") != "False" or kind in self._blocked:
                continue
            since = self._false_since.setdefault(kind, now)
            if kind in self._seen_true or now - since >= self.empty_after_s:
                reason = condition.get("reason", "?")
                self._blocked[kind] = reason
                lasting = "" if kind in self._seen_true else f" since {since:g} s"
                events.append(
                    (
                        BLOCKED,
                        f"HPA condition {kind} is False{lasting} ({reason}): "
                        f"{condition.get('message', '')}; the HPA cannot scale",
                    )
                )
        return events
