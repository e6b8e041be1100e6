"""The selected series as columns, for the evaluator's shortcuts over many series at once.

Series scraped together share one timestamp list (tsdb.Series), so where a sample lies in time is
found once per distinct list; each series then only gives its values at those positions, gathered
by C-level map() calls instead of a Python loop per series.  Used by rate/increase/delta over a
selector (evaluator._locate_windows) and by instant selectors (latest_samples).
"""

from __future__ import annotations

import math
from bisect import bisect_right
from operator import attrgetter, getitem

import numpy as np

from hpa_experiments.backends.sim.promql_engine.tsdb import Series, TimeSeriesDB
from hpa_experiments.backends.sim.promql_engine.values import Labels, Vector

TIMES = attrgetter("times")
_VALUES = attrgetter("values")
_LABELS = attrgetter("labels")
_UNNAMED = attrgetter("unnamed")
_STALE_TIMES = attrgetter("stale_times")
_NEVER_DROPPED = attrgetter("never_dropped")


class SelectedSeries:
    """What stays the same while a selection does (a Selection returns the same list until a series
    is created or removed): the series' value lists (changed in place, never replaced) and label sets."""

    def __init__(self, series: list[Series]) -> None:
        self.series = series
        self.values: list[list[float]] = list(map(_VALUES, series))
        self.labels: list[Labels] = list(map(_LABELS, series))
        self.unnamed: list[Labels] = list(map(_UNNAMED, series))
        self._never_dropped_in: tuple[TimeSeriesDB, int] | None = None  # (db, db.drops) when all were

    def never_dropped(self, db: TimeSeriesDB) -> bool:
        """No series of the selection ever had a sample below the one before (no counter reset)."""
        checked = self._never_dropped_in
        if checked is not None and checked[0] is db and checked[1] == db.drops:
            return True
        if all(map(_NEVER_DROPPED, self.series)):
            self._never_dropped_in = (db, db.drops)
            return True
        return False


def distinct_lists(lists: list[list[int]]) -> tuple[list[int], np.ndarray]:
    """(the index of one holder of each distinct list, each list's position in that first list).
    Equal lists count as one even if they are different objects (they give the same positions)."""
    if lists.count(lists[0]) == len(lists):  # the usual case: every series scraped together
        return [0], np.zeros(len(lists), dtype=np.intp)
    ids = np.fromiter(map(id, lists), dtype=np.uintp, count=len(lists))
    _, first_of, inverse = np.unique(ids, return_index=True, return_inverse=True)
    return first_of.tolist(), inverse


class Latest:
    """An instant selector's samples at one instant, and the instants [valid_from, valid_until] (ms)
    at which it selects the same samples while the store is unchanged."""

    def __init__(self, db: TimeSeriesDB, lookback_ms: int) -> None:
        self.db = db
        self.version = db.version
        self.lookback_ms = lookback_ms
        self.vector: Vector = []
        self.valid_from: float = -math.inf
        self.valid_until: float = math.inf

    def holds(self, db: TimeSeriesDB, t_ms: int, lookback_ms: int) -> bool:
        return (
            db is self.db
            and db.version == self.version
            and lookback_ms == self.lookback_ms
            and self.valid_from <= t_ms <= self.valid_until
        )


def latest_samples(db: TimeSeriesDB, selected: SelectedSeries, t_ms: int, lookback_ms: int) -> Latest:
    """Each series' newest sample at or before t_ms, not older than the lookback and not marked stale
    (Series.latest_at), as a vector in selection order, with how long it stays valid (Latest)."""
    latest = Latest(db, lookback_ms)
    series = selected.series
    if not series:
        return latest
    lists = list(map(TIMES, series))
    where, inverse = distinct_lists(lists)
    newest_index = np.full(len(where), -1, dtype=np.int64)  # -1: no sample selected
    valid_from, valid_until = latest.valid_from, latest.valid_until
    for k, holder in enumerate(where):
        times = lists[holder]
        index = bisect_right(times, t_ms) - 1
        if index + 1 < len(times) and times[index + 1] - 1 < valid_until:
            valid_until = times[index + 1] - 1  # a newer sample comes in
        if index < 0:
            continue
        newest = times[index]
        if newest >= t_ms - lookback_ms:  # selected until it is older than the lookback
            newest_index[k] = index
            valid_from = max(valid_from, newest)
            valid_until = min(valid_until, newest + lookback_ms)
        else:  # too old, and stays so
            valid_from = max(valid_from, newest + lookback_ms + 1)
    indexes = newest_index[inverse]
    stale = list(map(_STALE_TIMES, series))
    if any(stale):  # a staleness marker after the newest sample hides it; fixed between two markers
        for i, markers in enumerate(stale):
            if not markers:
                continue
            j = bisect_right(markers, t_ms) - 1
            if j + 1 < len(markers):
                valid_until = min(valid_until, markers[j + 1] - 1)
            if j >= 0:
                valid_from = max(valid_from, markers[j])
                if indexes[i] >= 0 and markers[j] > lists[i][indexes[i]]:
                    indexes[i] = -1
    latest.valid_from, latest.valid_until = valid_from, valid_until
    values, labels = selected.values, selected.labels
    kept = indexes >= 0
    if not kept.all():
        chosen = np.flatnonzero(kept).tolist()
        values = [values[i] for i in chosen]
        labels = [labels[i] for i in chosen]
        indexes = indexes[kept]
    latest.vector = list(zip(labels, map(getitem, values, indexes.tolist()), strict=True))
    return latest
