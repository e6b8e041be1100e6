"""Fewer garbage-collector passes while the twin runs (a speed setting; results do not depend on it).

The twin allocates millions of short-lived objects (requests, heap entries, samples) next to a
large live heap (the TSDB's series, the fleet).  With CPython's default thresholds (700, 10, 10)
the collector then runs so often, and walks the old generations so often, that it took ~20 % of
a 200-replica run (perf, 2026-12-04).  Nothing in the twin relies on when cyclic garbage is
collected (no finalizers, no weak references), so the output is the same; the cost is a little
more memory held by cycles between passes.
"""

from __future__ import annotations

import gc

RUN_THRESHOLDS = (100_000, 50, 1000)


class GcPacing:
    """Applies RUN_THRESHOLDS until `restore()` puts back the ones found (for library users)."""

    def __init__(self) -> None:
        self._saved: tuple[int, int, int] | None = gc.get_threshold()
        gc.set_threshold(*RUN_THRESHOLDS)

    def restore(self) -> None:
        if self._saved is not None and gc.get_threshold() == RUN_THRESHOLDS:  # unless changed since
            gc.set_threshold(*self._saved)
        self._saved = None
