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

Structures: the events are a heap of (t, order) with lazy deletion (an entry is live while its
time is the one recorded for the engine); it is written out over two typed lists (_EventHeap) so
that the compiled core compares native floats and ints, not tuples.  For routing, engines are grouped by
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
_BLOCK_BITS: Final = 40  # a load group's key is (load << _BLOCK_BITS) | used blocks: it orders as the
# pair (load, used blocks) while blocks < 2**_BLOCK_BITS, and is one int (no tuple to hash and compare)
_NO_GROUP: Final = -1
E = Replica  # the engines indexed (a concrete class: the compiled core accesses its fields directly)


class _Entry:
    """What the index holds for one engine."""

    __slots__ = ("engine", "grouped", "key", "order", "queued_t", "routable")

    def __init__(self, engine: E, order: int, grouped: bool) -> None:
        self.engine = engine
        self.order = order
        self.queued_t = _INF  # time of its live event entry; inf: not queued
        self.routable = True
        self.grouped = grouped  # kept in a load group: routable, and routing is least-loaded
        self.key = _NO_GROUP  # its load group's key, while grouped


class EngineIndex:
    """The next event over all engines, and the least-loaded choice over the routable ones."""

    def __init__(self, least_loaded: bool) -> None:
        """With `least_loaded` False only events are indexed (round-robin routing needs no more)."""
        self._least_loaded = least_loaded
        self._entries: dict[E, _Entry] = {}
        self._events = _EventHeap()
        self._groups: dict[int, list[int]] = {}
        self._keys: list[int] = []  # heap of group keys; some groups may be gone (lazy)
        self._by_order: dict[int, _Entry] = {}

    # ------------------------------------------------------------------ membership
    def add(self, engine: E, order: int) -> None:
        """A new engine, routable (Ready)."""
        entry = _Entry(engine, order, self._least_loaded)
        self._entries[engine] = entry
        engine.index_entry = entry  # touch() finds it without hashing the engine
        self._by_order[order] = entry
        self.touch(engine)

    def stop_routing(self, engine: E) -> None:
        """The engine takes no new requests (its pod is being deleted); its events still count."""
        entry = self._entries[engine]
        entry.routable = entry.grouped = False
        if entry.key != _NO_GROUP:
            self._leave_group(entry.key, entry.order)
            entry.key = _NO_GROUP

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
            entry.queued_t = t
            if t != _INF:
                events = self._events
                events.push(t, entry.order)
                if len(events.times) > 2 * len(self._entries) + 64:
                    self._rebuild_events()
        if entry.grouped:
            key = ((len(engine.running) + len(engine.waiting)) << _BLOCK_BITS) | engine.used_blocks
            old = entry.key
            if key != old:
                groups = self._groups
                if old != _NO_GROUP:  # leave the old group (inlined _leave_group: the hot path)
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

    def _leave_group(self, key: int, order: int) -> None:
        group = self._groups[key]
        if len(group) == 1:
            del self._groups[key]  # its key stays in the heap until it reaches the top
        else:
            del group[bisect_left(group, order)]

    def _rebuild_events(self) -> None:
        self._events = _EventHeap()
        for entry in sorted(self._entries.values(), key=_queue_key):
            if entry.queued_t != _INF:
                self._events.push(entry.queued_t, entry.order)

    def _live(self, t: float, order: int) -> _Entry | None:
        """The entry an event (t, order) stands for, None if the event is stale."""
        entry = self._by_order.get(order)  # None: removed from the index
        return entry if entry is not None and entry.queued_t == t else None

    # ------------------------------------------------------------------ queries
    def next_event(self) -> tuple[float, E | None]:
        """The earliest event (time, engine); (inf, None) when no engine has one."""
        events = self._events
        times, orders = events.times, events.orders
        while times:
            t = times[0]
            entry = self._live(t, orders[0])
            if entry is not None:
                return t, entry.engine
            events.pop()
        return _INF, None

    def pop_due(self, horizon: float) -> list[E]:
        """The routable engines whose next event is at or before `horizon`, by order.

        They leave the event queue: the caller advances them and touches them."""
        events = self._events
        times, orders = events.times, events.orders
        due: list[_Entry] = []
        kept: list[_Entry] = []
        while times and times[0] <= horizon:
            t, order = times[0], orders[0]
            events.pop()
            entry = self._live(t, order)
            if entry is None:
                continue  # stale
            if entry.routable:
                entry.queued_t = _INF
                due.append(entry)
            else:
                kept.append(entry)
        for entry in kept:
            events.push(entry.queued_t, entry.order)
        if len(due) > 1:
            due.sort(key=_order)
        return [entry.engine for entry in due]

    def least_loaded(self, start: E) -> E:
        """The least-loaded routable engine, ties broken by KV blocks, then rotating order from `start`."""
        keys, groups = self._keys, self._groups
        while True:
            group = groups.get(keys[0])
            if group:
                break
            heapq.heappop(keys)
        if len(group) == 1:
            return self._by_order[group[0]].engine
        i = bisect_left(group, start.index_entry.order)
        return self._by_order[group[i] if i < len(group) else group[0]].engine


class _EventHeap:
    """A binary min-heap of (time, order) pairs held in two parallel lists (heapq's invariant)."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.orders: list[int] = []

    def push(self, t: float, order: int) -> None:
        times, orders = self.times, self.orders
        times.append(t)
        orders.append(order)
        i = len(times) - 1
        while i > 0:
            parent = (i - 1) >> 1
            pt = times[parent]
            if pt < t or (pt == t and orders[parent] < order):
                break
            times[i] = pt
            orders[i] = orders[parent]
            i = parent
        times[i] = t
        orders[i] = order

    def pop(self) -> None:
        """Remove the smallest pair (the heap is not empty)."""
        times, orders = self.times, self.orders
        t = times.pop()
        order = orders.pop()
        n = len(times)
        if not n:
            return
        i = 0
        child = 1
        while child < n:
            right = child + 1
            if right < n and (
                times[right] < times[child] or (times[right] == times[child] and orders[right] < orders[child])
            ):
                child = right
            ct = times[child]
            if t < ct or (t == ct and order < orders[child]):
                break
            times[i] = ct
            orders[i] = orders[child]
            i = child
            child = 2 * i + 1
        times[i] = t
        orders[i] = order


def _order(entry: _Entry) -> int:
    return entry.order


def _queue_key(entry: _Entry) -> tuple[float, int]:
    return (entry.queued_t, entry.order)
