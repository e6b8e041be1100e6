"""The Fleet as it was before its engine indexes: every event and every request scans the engines.

Kept as the reference the indexed Fleet must match exactly (tests/test_sim_fleet_index.py): the
two methods below are the old `advance_to` and `_route`, unchanged but for naming, and use the
Fleet's engine lists (which the Fleet still maintains in Ready order).

They subclass `PureFleet`: fleet.py loaded from its source under another name, because with the
compiled twin core (twin_core.py) the Fleet class is compiled and Python cannot subclass it.  The
comparison then also checks the compiled Fleet against the interpreted one.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from operator import attrgetter
from typing import Any

from hpa_experiments.backends.sim import twin_core
from hpa_experiments.backends.sim.request_log import FAILED_NO_REPLICA
from hpa_experiments.backends.sim.serving import Request

_next_event_t = attrgetter("next_event_t")


def _load_pure_fleet() -> Any:
    """fleet.py from source as module `tests.support.pure_fleet` (registered: dataclasses look it up)."""
    name = "tests.support.pure_fleet"
    if name not in sys.modules:
        path = twin_core.module_path("hpa_experiments.backends.sim.fleet")
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


PureFleet = _load_pure_fleet().Fleet


class ScanFleet(PureFleet):
    """O(replicas) per event and per request: the plain scans the indexes replaced."""

    def advance_to(self, t: float) -> None:
        jobs = [j for j in self.jobs.values() if not j.stopped]
        t_send, sender = math.inf, None
        self._sends_changed = True
        while True:
            if self._sends_changed:
                self._sends_changed = False
                t_send, sender = math.inf, None
                for job in jobs:
                    ts = job.next_send_time()
                    if ts < t_send:
                        t_send, sender = ts, job
            engine = min(self._serving_engines, key=_next_event_t, default=None)
            t_engine = engine.next_event_t if engine is not None else math.inf
            t_life = self._lifecycle[0][0] if self._lifecycle else math.inf
            t_next = min(t_send, t_engine, t_life)
            if t_next > t or t_next == math.inf:
                break
            if t_engine == t_next:
                assert engine is not None
                if engine in self._draining or any(len(j.in_flight) >= j.max_concurrency for j in jobs):
                    engine.advance_to(t_next)
                    if engine in self._draining and engine.idle:
                        self._gone(self._draining[engine], t_next)
                else:
                    horizon = min(t_send, t_life, t)
                    for ready in self._ready_engines:
                        if ready.next_event_t <= horizon:
                            ready.advance_to(horizon)
            elif t_life == t_next:
                self._lifecycle_event()
            else:
                assert sender is not None
                self._sends_changed = True
                self._route(sender.pop_send(t_next), t_next)
        self.t = max(self.t, t)

    def _route(self, req: Request, t: float) -> None:
        ready = self._ready
        if not ready:
            if not self.gateway.hold(req):
                if self.request_log is not None:
                    self.request_log.ended(req, t, FAILED_NO_REPLICA, 0)
                self._tell_client(req, t, False)
            return
        engines = self._ready_engines
        n = len(engines)
        start = self._rr % n
        self._rr += 1
        if self._round_robin:
            engines[start].submit(req, t)
            return
        loads = [len(e.running) + len(e.waiting) for e in engines]
        low = min(loads)
        ties = [j for j in range(n) if loads[j] == low]
        if len(ties) > 1:
            ties = [j for j in ties if j >= start] + [j for j in ties if j < start]
            ties.sort(key=lambda j: engines[j].used_blocks)
        engines[ties[0]].submit(req, t)
