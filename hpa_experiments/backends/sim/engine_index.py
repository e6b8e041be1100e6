"""Indexes over a fleet's engines so that each event and each routed request costs O(log n).

Both keep the exact choice of a plain scan over the engines in the order they became Ready
(`order`: a number that grows with each engine added), so results do not change with the
indexing:

- `EventQueue.peek()` is `min(engines, key=next_event_t)`: the earliest next event, ties to the
  lowest order (the first in the list).
- `LeastLoaded.pick(start)` is the llm-d gateway's choice: fewest running + waiting requests,
  then the fewest KV blocks in use, then the first in rotating order from the engine at `start`.

Engines change behind the indexes' back (a step ends, a request arrives), so the owner calls
`update(engine)` after every call that may change an engine; an index is exact only at those
points.  Both use lazy deletion: superseded heap entries stay until they reach the top or the
heap is rebuilt (when it holds more than twice the live entries).
"""

from __future__ import annotations

import heapq
from bisect import bisect_left, insort
from typing import Protocol

_INF = float("inf")


class Engine(Protocol):
    next_event_t: float
    used_blocks: int

    @property
    def load(self) -> int: ...


class EventQueue:
    """The engines' next event times in a heap of (t, order, engine)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Engine]] = []
        self._order: dict[Engine, int] = {}
        self._queued: dict[Engine, float | None] = {}  # the time of the engine's live entry, if any

    def add(self, engine: Engine, order: int) -> None:
        self._order[engine] = order
        self._queued[engine] = None
        self.update(engine)

    def remove(self, engine: Engine) -> None:
        del self._order[engine]
        del self._queued[engine]  # its entries become stale

    def update(self, engine: Engine) -> None:
        """Re-queue `engine` if its next event time changed (idle engines are not queued)."""
        t = engine.next_event_t
        if self._queued[engine] == t:
            return
        if t == _INF:
            self._queued[engine] = None
            return
        self._queued[engine] = t
        heap = self._heap
        heapq.heappush(heap, (t, self._order[engine], engine))
        if len(heap) > 2 * len(self._order) + 64:
            self._rebuild()

    def peek(self) -> tuple[float, Engine | None]:
        """The earliest event (time, engine); (inf, None) when no engine has one."""
        heap, queued = self._heap, self._queued
        while heap:
            t, _, engine = heap[0]
            if queued.get(engine) == t:
                return t, engine
            heapq.heappop(heap)
        return _INF, None

    def pop_due(self, horizon: float, skip: dict[Engine, object]) -> list[Engine]:
        """Engines whose next event is at or before `horizon`, except those in `skip`, by order.

        They leave the queue: the caller advances them and calls `update`."""
        heap, queued = self._heap, self._queued
        due: list[tuple[int, Engine]] = []
        kept: list[tuple[float, int, Engine]] = []
        while heap and heap[0][0] <= horizon:
            entry = heapq.heappop(heap)
            t, order, engine = entry
            if queued.get(engine) != t:
                continue  # stale
            if engine in skip:
                kept.append(entry)
            else:
                queued[engine] = None
                due.append((order, engine))
        for entry in kept:
            heapq.heappush(heap, entry)
        due.sort(key=_first)
        return [engine for _, engine in due]

    def _rebuild(self) -> None:
        queued, order = self._queued, self._order
        self._heap = [(t, order[e], e) for e, t in queued.items() if t is not None]
        heapq.heapify(self._heap)


def _first(pair: tuple[int, Engine]) -> int:
    return pair[0]


class LeastLoaded:
    """Engines grouped by (load, used KV blocks); each group holds the members' orders, sorted."""

    def __init__(self) -> None:
        self._groups: dict[tuple[int, int], list[int]] = {}
        self._keys: list[tuple[int, int]] = []  # heap of group keys (some possibly empty: lazy)
        self._in_heap: set[tuple[int, int]] = set()
        self._key: dict[Engine, tuple[int, int]] = {}
        self._order: dict[Engine, int] = {}
        self._by_order: dict[int, Engine] = {}

    def add(self, engine: Engine, order: int) -> None:
        self._order[engine] = order
        self._by_order[order] = engine
        key = (engine.load, engine.used_blocks)
        self._key[engine] = key
        self._insert(key, order)

    def remove(self, engine: Engine) -> None:
        order = self._order.pop(engine)
        del self._by_order[order]
        self._discard(self._key.pop(engine), order)

    def update(self, engine: Engine) -> None:
        key = (engine.load, engine.used_blocks)
        old = self._key[engine]
        if key != old:
            order = self._order[engine]
            self._discard(old, order)
            self._key[engine] = key
            self._insert(key, order)

    def pick(self, start: Engine) -> Engine:
        """The least-loaded engine, ties broken by KV blocks, then rotating order from `start`."""
        keys, groups = self._keys, self._groups
        while True:
            group = groups.get(keys[0])
            if group:
                break
            self._in_heap.discard(heapq.heappop(keys))
        if len(group) == 1:
            return self._by_order[group[0]]
        i = bisect_left(group, self._order[start])
        return self._by_order[group[i] if i < len(group) else group[0]]

    def _insert(self, key: tuple[int, int], order: int) -> None:
        group = self._groups.get(key)
        if group is None:
            self._groups[key] = [order]
            if key not in self._in_heap:
                self._in_heap.add(key)
                heapq.heappush(self._keys, key)
                if len(self._keys) > 2 * len(self._groups) + 64:
                    self._keys = list(self._groups)
                    heapq.heapify(self._keys)
                    self._in_heap = set(self._keys)
        else:
            insort(group, order)

    def _discard(self, key: tuple[int, int], order: int) -> None:
        group = self._groups[key]
        if len(group) == 1:
            del self._groups[key]  # its key stays in the heap until it reaches the top
        else:
            del group[bisect_left(group, order)]
