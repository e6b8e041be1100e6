"""An index over a fleet's engines so that each event and each routed request costs O(log n).

It makes exactly the choices of a plain scan over the engines in the order they became Ready
(`order`: a number that grows with each engine added), so results do not change with it:

- `next_event()` is `min(engines, key=next_event_t)`: the earliest next event, ties to the
  lowest order (the first in the list).
- `least_loaded(start)` is the llm-d gateway's choice among the routable engines: fewest running
  + waiting requests, then the fewest KV blocks in use, then the first in rotating order from
  the engine `start`.

Engines change behind the index's back (a step ends, a request arrives), so the owner calls
`touch(engine)` after every call that may change one; the index is exact only at those points.

Structures: the events are a heap of (t, order, engine) with lazy deletion (an entry is live
while its time is the one recorded for the engine).  For routing, engines are grouped by
(load, used blocks); each group is a sorted list of orders (the rotation is a bisect in it) and
the group keys are in a heap, also lazy (a key whose group emptied is dropped when it reaches
the top).  Either heap is rebuilt from the live entries when it holds more than twice as many.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left, insort
from typing import Final

from hpa_experiments.backends.sim.serving import Replica

_INF: Final = float("inf")
Key = tuple[int, int]
E = Replica  # the engines indexed (a concrete class: the compiled core accesses its fields directly)


class _Entry:
    """What the index holds for one engine."""

    __slots__ = ("grouped", "key", "order", "queued_t", "routable")

    def __init__(self, order: int, grouped: bool) -> None:
        self.order = order
        self.queued_t: float | None = None  # time of its live event entry; None: not queued
        self.routable = True
        self.grouped = grouped  # kept in a load group: routable, and routing is least-loaded
        self.key: Key | None = None  # its load group, while grouped


class EngineIndex:
    """The next event over all engines, and the least-loaded choice over the routable ones."""

    def __init__(self, least_loaded: bool) -> None:
        """With `least_loaded` False only events are indexed (round-robin routing needs no more)."""
        self._least_loaded = least_loaded
        self._entries: dict[E, _Entry] = {}
        self._events: list[tuple[float, int, E]] = []
        self._groups: dict[Key, list[int]] = {}
        self._keys: list[Key] = []  # heap of group keys; some groups may be gone (lazy)
        self._by_order: dict[int, E] = {}

    # ------------------------------------------------------------------ membership
    def add(self, engine: E, order: int) -> None:
        """A new engine, routable (Ready)."""
        entry = _Entry(order, self._least_loaded)
        self._entries[engine] = entry
        engine.index_entry = entry  # touch() finds it without hashing the engine
        self._by_order[order] = engine
        self.touch(engine)

    def stop_routing(self, engine: E) -> None:
        """The engine takes no new requests (its pod is being deleted); its events still count."""
        entry = self._entries[engine]
        entry.routable = entry.grouped = False
        if entry.key is not None:
            self._leave_group(entry.key, entry.order)
            entry.key = None

    def remove(self, engine: E) -> None:
        self.stop_routing(engine)
        entry = self._entries.pop(engine)  # its event entries become stale
        engine.index_entry = None
        del self._by_order[entry.order]

    # ------------------------------------------------------------------ updates
    def touch(self, engine: E) -> None:
        """`engine` may have changed: re-queue its next event, move it to its load group."""
        entry: _Entry = engine.index_entry
        t = engine.next_event_t
        if entry.queued_t != t:
            if t == _INF:
                entry.queued_t = None
            else:
                entry.queued_t = t
                events = self._events
                heapq.heappush(events, (t, entry.order, engine))
                if len(events) > 2 * len(self._entries) + 64:
                    self._rebuild_events()
        if entry.grouped:
            key = (len(engine.running) + len(engine.waiting), engine.used_blocks)
            old = entry.key
            if key != old:
                groups = self._groups
                if old is not None:  # leave the old group (inlined _leave_group: the hot path)
                    group = groups[old]
                    if len(group) == 1:
                        del groups[old]
                    else:
                        del group[bisect_left(group, entry.order)]
                entry.key = key
                joined = groups.get(key)
                if joined is None:
                    groups[key] = [entry.order]
                    keys = self._keys
                    heapq.heappush(keys, key)  # may duplicate a key still in the heap: harmless
                    if len(keys) > 2 * len(self._groups) + 64:
                        self._keys = list(self._groups)
                        heapq.heapify(self._keys)
                else:
                    insort(joined, entry.order)

    def _leave_group(self, key: Key, order: int) -> None:
        group = self._groups[key]
        if len(group) == 1:
            del self._groups[key]  # its key stays in the heap until it reaches the top
        else:
            del group[bisect_left(group, order)]

    def _rebuild_events(self) -> None:
        self._events = [(e.queued_t, e.order, eng) for eng, e in self._entries.items() if e.queued_t is not None]
        heapq.heapify(self._events)

    # ------------------------------------------------------------------ queries
    def next_event(self) -> tuple[float, E | None]:
        """The earliest event (time, engine); (inf, None) when no engine has one."""
        events = self._events
        while events:
            t, _, engine = events[0]
            entry: _Entry | None = engine.index_entry  # None: removed from the index
            if entry is not None and entry.queued_t == t:
                return t, engine
            heapq.heappop(events)
        return _INF, None

    def pop_due(self, horizon: float) -> list[E]:
        """The routable engines whose next event is at or before `horizon`, by order.

        They leave the event queue: the caller advances them and touches them."""
        events = self._events
        due: list[tuple[int, E]] = []
        kept: list[tuple[float, int, E]] = []
        while events and events[0][0] <= horizon:
            item = heapq.heappop(events)
            t, order, engine = item
            entry: _Entry | None = engine.index_entry
            if entry is None or entry.queued_t != t:
                continue  # stale
            if entry.routable:
                entry.queued_t = None
                due.append((order, engine))
            else:
                kept.append(item)
        for item in kept:
            heapq.heappush(events, item)
        if len(due) > 1:
            due.sort(key=_first)
        return [engine for _, engine in due]

    def least_loaded(self, start: E) -> E:
        """The least-loaded routable engine, ties broken by KV blocks, then rotating order from `start`."""
        keys, groups = self._keys, self._groups
        while True:
            group = groups.get(keys[0])
            if group:
                break
            heapq.heappop(keys)
        if len(group) == 1:
            return self._by_order[group[0]]
        i = bisect_left(group, start.index_entry.order)
        return self._by_order[group[i] if i < len(group) else group[0]]


def _first(pair: tuple[int, E]) -> int:
    return pair[0]
