"""In-memory time-series store with bounded retention, indexed by metric name.

Samples of one series live in two parallel Python lists (millisecond timestamps and
float values): windows are small (a 15 s scrape keeps ~60 samples per series for a
15 min retention), so bisect plus list slicing beats numpy's per-call overhead here.
A timestamp list is never changed in place, only replaced by a new one, so that the
series scraped together (the same timestamps) share one list: the evaluator then
locates a window once per list instead of once per series.
Memory is bounded: samples older than the newest appended time minus the retention
are dropped, and series left without samples are removed.  Not synchronized: appends
must not run concurrently with queries (the twin is single-threaded on its virtual clock).
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum

from hpa_experiments.backends.sim.promql_engine.values import METRIC_NAME, Labels, drop_metric_name, make_labels


class MatchType(Enum):
    EQUAL = "="
    NOT_EQUAL = "!="
    REGEX = "=~"
    NOT_REGEX = "!~"


@dataclass(unsafe_hash=True)
class LabelMatcher:
    """One label matcher; regexes are anchored at both ends as in Prometheus.  Treated as immutable
    (hashed by name, type and value); not a frozen dataclass, whose `object.__setattr__` in
    __post_init__ a mypyc-compiled class does not support."""

    name: str
    type: MatchType
    value: str
    regex: re.Pattern[str] | None = field(init=False, default=None, compare=False, repr=False)

    def __post_init__(self) -> None:  # always assigned: compiled, the field's default is not set
        self.regex = re.compile(self.value) if self.type in (MatchType.REGEX, MatchType.NOT_REGEX) else None

    def matches(self, label_value: str) -> bool:
        if self.regex is None:
            return (label_value == self.value) is (self.type is MatchType.EQUAL)
        found = self.regex.fullmatch(label_value) is not None
        return found is (self.type is MatchType.REGEX)


# The timestamps of every series without samples.  Like every timestamp list here it is shared and
# never changed in place: appends and trims replace a series' list (TimeSeriesDB._grown_times, _sweep).
_NO_TIMES: list[int] = []


class Series:
    """One series: its interned label set and its samples in time order.  `times` may be the same list
    object as other series' (then their timestamps are equal); it must not be changed in place."""

    __slots__ = ("label_map", "labels", "never_dropped", "stale_times", "times", "unnamed", "values")

    def __init__(self, labels: Labels):
        self.labels = labels
        self.unnamed = drop_metric_name(labels)  # what functions that drop the name return
        self.label_map = dict(labels)
        # No stored sample is below the one before it (no counter reset anywhere in the series):
        # rate() then needs no reset scan.  Set False at the first drop, never back.
        self.never_dropped = True
        self.times: list[int] = _NO_TIMES
        self.values: list[float] = []
        # Staleness markers (a scrape target went away), kept apart from the samples: range
        # functions ignore them, as Prometheus drops them from range vectors.
        self.stale_times: list[int] = []

    def _latest_index(self, t_ms: int, lookback_ms: int) -> int | None:
        index = bisect_right(self.times, t_ms) - 1
        if index < 0 or self.times[index] < t_ms - lookback_ms:
            return None
        if self.stale_times:
            marker = bisect_right(self.stale_times, t_ms) - 1
            if marker >= 0 and self.stale_times[marker] > self.times[index]:
                return None  # the newest thing at t is a staleness marker
        return index

    def latest_at(self, t_ms: int, lookback_ms: int) -> float | None:
        """Value of the newest sample at or before t_ms, not older than the lookback, not marked stale."""
        index = self._latest_index(t_ms, lookback_ms)
        return None if index is None else self.values[index]

    def latest_time_at(self, t_ms: int, lookback_ms: int) -> int | None:
        """Timestamp of the sample latest_at() would return."""
        index = self._latest_index(t_ms, lookback_ms)
        return None if index is None else self.times[index]

    def window(self, start_ms: int, end_ms: int) -> tuple[list[int], list[float]]:
        """Samples with start_ms <= t <= end_ms."""
        lo = bisect_left(self.times, start_ms)
        hi = bisect_right(self.times, end_ms)
        return self.times[lo:hi], self.values[lo:hi]

    def drop_before(self, cutoff_ms: int, trimmed: dict[tuple[int, int], tuple[list[int], list[int]]]) -> None:
        """Drop the samples before cutoff_ms.  `trimmed`: (id of a timestamp list, samples dropped) ->
        (that list, what is left of it), shared by the series trimmed in one sweep so that series
        sharing their timestamps still share them (the entry holds the old list, so its id stays unique)."""
        times = self.times
        count = bisect_left(times, cutoff_ms)
        if count:
            entry = trimmed.get((id(times), count))
            if entry is None:
                entry = trimmed[(id(times), count)] = (times, times[count:])
            self.times = entry[1]
            del self.values[:count]
        stale = bisect_left(self.stale_times, cutoff_ms)
        if stale:
            del self.stale_times[:stale]


def seconds_to_ms(t: float) -> int:
    return round(t * 1000)


class TimeSeriesDB:
    """Append-only store of float samples keyed by label sets (which include `__name__`)."""

    def __init__(self, retention_seconds: float = 900.0, keep_longer: Mapping[str, float] | None = None):
        """`keep_longer`: metric name -> seconds, for the few series kept longer than the rest (the
        twin's end-of-run latency queries need the histograms of the whole run)."""
        if retention_seconds <= 0:
            raise ValueError("retention_seconds must be positive")
        self.retention_ms = seconds_to_ms(retention_seconds)
        self._longer_ms = {name: seconds_to_ms(seconds) for name, seconds in (keep_longer or {}).items()}
        self._series: dict[Labels, Series] = {}
        self._by_name: dict[str, dict[Labels, Series]] = {}
        self._key_cache: dict[tuple[tuple[str, str], ...], Series] = {}
        self._newest_ms: int | None = None
        self._next_sweep_ms: int | None = None
        # id of a timestamp list -> (that list, it plus _grown_ms): the lists grown at _grown_ms, so
        # that the series appended together there share their new list (see _grown_times).
        self._grown: dict[int, tuple[list[int], list[int]]] = {}
        self._grown_ms: int | None = None
        # Bumped whenever a series is created or removed, so selectors can cache matches.
        self.generation = 0
        # Bumped on every write, so query results can be shared while it stays the same.
        self.version = 0
        # Bumped when series are removed, so handles from series() can be kept while it stays the same.
        self.removals = 0
        # Bumped when a series' never_dropped turns False, so a check that none did can be kept.
        self.drops = 0

    # --- writing -------------------------------------------------------------------

    def append(self, labels: Mapping[str, str], t: float, value: float) -> None:
        """Add one sample (t rounded to whole ms, as Prometheus stores it).

        Timestamps must not go backwards within a series (ValueError); a sample at the
        same millisecond as the series' last one replaces it.
        """
        t_ms = seconds_to_ms(t)
        self._append_to(self._series_for(labels), t_ms, float(value))
        self._advance(t_ms)

    def append_many(
        self,
        t: float,
        samples: Iterable[tuple[Mapping[str, str], float]],
        by_handle: Iterable[tuple[list[Series], Iterable[float]]] = (),
    ) -> None:
        """Add one scrape: many samples sharing the timestamp t.  `by_handle` comes first: values of
        series already looked up with series() (`removals` unchanged since), e.g. a scrape target's."""
        t_ms = seconds_to_ms(t)
        append_to = self._append_to
        if t_ms != self._grown_ms:
            self._grown, self._grown_ms = {}, t_ms
        grown = self._grown
        grown_from: list[int] | None = None  # the last list grown here (a target's series usually share it)
        grown_to: list[int] = _NO_TIMES
        for handles, values in by_handle:
            for series, value in zip(handles, values, strict=True):
                # _append_to inlined for the common case, a sample after the series' last one
                value = float(value)
                times = series.times
                if times is not grown_from:
                    if times and t_ms <= times[-1]:
                        append_to(series, t_ms, value)
                        continue
                    entry = grown.get(id(times))
                    if entry is None:
                        entry = grown[id(times)] = (times, [*times, t_ms])
                    grown_from, grown_to = times, entry[1]
                series.times = grown_to
                stored = series.values
                if stored and value < stored[-1] and series.never_dropped:
                    series.never_dropped = False
                    self.drops += 1
                stored.append(value)
        for labels, value in samples:
            append_to(self._series_for(labels), t_ms, float(value))
        self._advance(t_ms)

    def series(self, label_sets: Iterable[Mapping[str, str]]) -> list[Series]:
        """Handles of the series with these label sets (created if new), for append_many's `by_handle`."""
        return [self._series_for(labels) for labels in label_sets]

    def mark_stale(self, labels: Mapping[str, str], t: float) -> int:
        """Write staleness markers at t for every series carrying all of `labels` (a target that went
        away, as Prometheus does on its next scrape); instant queries then stop seeing them at once
        instead of after the 5-minute lookback. Returns how many series were marked."""
        t_ms = seconds_to_ms(t)
        marked = 0
        for series in self._series.values():
            ended = series.times and series.times[-1] < t_ms
            unmarked = not series.stale_times or series.stale_times[-1] < t_ms
            if ended and unmarked and all(series.label_map.get(k) == v for k, v in labels.items()):
                series.stale_times.append(t_ms)
                marked += 1
        if marked:
            self._advance(t_ms)
        return marked

    def _series_for(self, labels: Mapping[str, str]) -> Series:
        raw = tuple(labels.items())
        series = self._key_cache.get(raw)
        if series is not None:
            return series
        key = make_labels(raw)
        series = self._series.get(key)
        if series is None:
            if METRIC_NAME not in labels or not labels[METRIC_NAME]:
                raise ValueError(f"series labels need a {METRIC_NAME!r}: {dict(labels)}")
            series = Series(key)
            self._series[key] = series
            self._by_name.setdefault(labels[METRIC_NAME], {})[key] = series
            self.generation += 1
        if len(self._key_cache) > 4 * len(self._series) + 1024:
            self._key_cache.clear()
        self._key_cache[raw] = series
        return series

    def _append_to(self, series: Series, t_ms: int, value: float) -> None:
        times, values = series.times, series.values
        if times and t_ms <= times[-1]:
            if t_ms == times[-1]:
                values[-1] = value
                if len(values) > 1 and value < values[-2] and series.never_dropped:
                    series.never_dropped = False
                    self.drops += 1
                return
            raise ValueError(
                f"out-of-order sample for {dict(series.labels)}: t={t_ms / 1000} < last {times[-1] / 1000}"
            )
        if values and value < values[-1] and series.never_dropped:
            series.never_dropped = False
            self.drops += 1
        series.times = self._grown_times(times, t_ms)
        values.append(value)

    def _grown_times(self, times: list[int], t_ms: int) -> list[int]:
        """`times` plus t_ms, as one new list for every series whose timestamps were `times`."""
        if t_ms != self._grown_ms:
            self._grown, self._grown_ms = {}, t_ms
        entry = self._grown.get(id(times))  # the entry holds `times`, so its id stays unique
        if entry is None:
            entry = self._grown[id(times)] = (times, [*times, t_ms])
        return entry[1]

    def _advance(self, t_ms: int) -> None:
        self.version += 1
        if self._newest_ms is None or t_ms > self._newest_ms:
            self._newest_ms = t_ms
        if self._next_sweep_ms is None:
            self._next_sweep_ms = t_ms + self.retention_ms // 4
        elif t_ms >= self._next_sweep_ms:
            self._sweep()
            self._next_sweep_ms = t_ms + self.retention_ms // 4

    def _sweep(self) -> None:
        """Drop samples older than the retention, and series left empty."""
        assert self._newest_ms is not None
        cutoff = self._newest_ms - self.retention_ms
        longer = self._longer_ms
        emptied = []
        trimmed: dict[tuple[int, int], tuple[list[int], list[int]]] = {}
        for key, series in self._series.items():
            keep = longer.get(series.label_map[METRIC_NAME]) if longer else None
            series.drop_before(cutoff if keep is None else self._newest_ms - keep, trimmed)
            if not series.times:
                emptied.append(key)
        for key in emptied:
            series = self._series.pop(key)
            name = series.label_map[METRIC_NAME]
            del self._by_name[name][key]
            if not self._by_name[name]:
                del self._by_name[name]
        if emptied:
            self._key_cache.clear()
            self.generation += 1
            self.removals += 1

    # --- reading -------------------------------------------------------------------

    def select(self, matchers: Iterable[LabelMatcher]) -> list[Series]:
        """Series whose labels satisfy every matcher (a missing label counts as the empty string)."""
        matchers = list(matchers)
        name_equal = next((m for m in matchers if m.name == METRIC_NAME and m.type is MatchType.EQUAL), None)
        if name_equal is not None:
            candidates: Iterable[Series] = self._by_name.get(name_equal.value, {}).values()
        else:
            name_matchers = [m for m in matchers if m.name == METRIC_NAME]
            candidates = [
                series
                for name, group in self._by_name.items()
                if all(m.matches(name) for m in name_matchers)
                for series in group.values()
            ]
        selected = [
            series for series in candidates if all(m.matches(series.label_map.get(m.name, "")) for m in matchers)
        ]
        # Prometheus returns series sorted by label set; some results (topk ties) depend on it.
        selected.sort(key=lambda series: series.labels)
        return selected

    @property
    def series_count(self) -> int:
        return len(self._series)

    @property
    def sample_count(self) -> int:
        return sum(len(series.times) for series in self._series.values())
