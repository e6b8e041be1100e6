"""The vLLM Deployment's pods and the router in front of them, on virtual time.

Pods: Pending (scheduling, and an image pull unless the node has the image) -> Loading (container
running, engine starting: weights, compile, CUDA graphs; no metrics, not ready; both delays drawn
in pod_startup.py) -> Ready at the first readiness probe
(`readiness_initial_delay_s` after the container start, then every `readiness_period_s`) that
finds the engine up.  Only Ready (and draining) pods have an engine and expose metrics.

Scale-down removes pods like the ReplicaSet controller: not-ready first (Pending before Loading),
then the newest.  Default `scale_down="abort"`: the pod gets SIGTERM and its in-flight requests
fail at once (the client sees a broken connection) - the simple, pessimistic choice.  With
`"drain"` the pod leaves the router immediately but finishes its requests for up to
`drain_grace_s` (terminationGracePeriodSeconds), then the rest fail.

Routing of each new request among Ready pods: `round_robin` (a plain Service) or
`least_loaded` (the llm-d gateway: fewest running + waiting requests, ties broken by KV usage,
then in rotating order).  While no pod is Ready, requests wait at the gateway (FIFO, still
counted by the client as in flight) and are routed when a pod becomes Ready, or fail at once
with `gateway_at_zero: fail` (gateway.py).

Cost: the next engine event and the least-loaded choice come from indexes (engine_index.py),
so an event or a routed request costs O(log replicas), not a scan of every engine; they make
exactly the choices of the scans (same ties).  The indexes are updated after every call the
Fleet makes to an engine, and for every engine when `advance_to` starts (an engine read or
driven from outside in between, e.g. a scrape applying pending decode steps, is then seen).

With `request_log` set, each request's end (completed, aborted at scale-down or Job stop,
rejected) becomes a row of requests.csv (request_log.py).

All events - request sends, engine steps that change a batch, pod transitions - are processed
in time order, so completions free client slots at the right moment.  (While no client is at its
concurrency cap a completion cannot cause a send, so Ready engines then run on independently up
to the next send; the result is the same.)
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

import numpy as np

from hpa_experiments.backends.sim.engine_index import EngineIndex
from hpa_experiments.backends.sim.gateway import Gateway
from hpa_experiments.backends.sim.loadgen import LoadGenerator
from hpa_experiments.backends.sim.pod_startup import startup_delays
from hpa_experiments.backends.sim.request_log import (
    ABORTED_JOB_STOPPED,
    ABORTED_SCALE_DOWN,
    FAILED_NO_REPLICA,
    REJECTED,
    RequestLog,
)
from hpa_experiments.backends.sim.serving import Replica, Request
from hpa_experiments.twin_profiles import Profile

PENDING, LOADING, READY, TERMINATING = "Pending", "Loading", "Ready", "Terminating"
_DELETE_ORDER = {PENDING: 0, LOADING: 1, READY: 2}
_INF: Final = float("inf")  # a constant, not a lookup of math.inf, in the compiled event loop


@dataclass
class Pod:
    """One vLLM pod; `transitions` lists (time, state) including the final "Gone"."""

    name: str
    created_t: float
    running_t: float  # container started (Pending -> Loading)
    ready_t: float  # first successful readiness probe (Loading -> Ready)
    state: str = PENDING
    engine: Replica | None = None  # exists while Ready or Terminating
    deleted_t: float | None = None
    transitions: list[tuple[float, str]] = field(default_factory=list)

    def set_state(self, state: str, t: float) -> None:
        self.state = state
        self.transitions.append((t, state))


class Fleet:
    """Pods of one Deployment, the router, and the load generators that send to it."""

    def __init__(
        self,
        profile: Profile,
        *,
        seed: int = 0,
        start_t: float = 0.0,
        initial_replicas: int = 1,
        pod_prefix: str = "vllm",
    ) -> None:
        """The Deployment starts with `initial_replicas` pods already Ready at `start_t`."""
        self.profile = profile
        self.t = start_t
        self._rng = np.random.default_rng(seed)
        self._prefix = pod_prefix
        self._pod_counter = 0
        self.pods: list[Pod] = []  # live pods (not yet gone), in creation order
        self.departed: list[Pod] = []  # pods gone since the owner last cleared this list
        self.jobs: dict[str, LoadGenerator] = {}
        self.gateway = Gateway(profile.gateway_at_zero)
        self._lifecycle: list[tuple[float, int, Pod, str]] = []  # (time, seq, pod, next state)
        self._lifecycle_seq = 0
        self._ready: list[Pod] = []  # routable pods in creation order
        self._ready_engines: list[Replica] = []  # their engines, same order
        self._serving_engines: list[Replica] = []  # every engine (Ready or draining pods)
        self._engine_index: EngineIndex = EngineIndex(least_loaded=profile.routing == "least_loaded")
        self._engines_added = 0  # orders the engines as the lists above do
        self._draining: dict[Replica, Pod] = {}
        self._round_robin = profile.routing == "round_robin"
        self._rr = 0
        self._sends_changed = True
        self.aborted_by_scale_down = 0
        self.request_log: RequestLog | None = None  # set to write requests.csv
        for _ in range(initial_replicas):
            pod = self._new_pod(start_t)
            pod.running_t = pod.ready_t = start_t
            self._make_ready(pod, start_t)

    # ------------------------------------------------------------------ control
    @property
    def replicas(self) -> int:
        """Pods that count towards the Deployment's replicas (not terminating)."""
        return sum(1 for p in self.pods if p.state != TERMINATING)

    @property
    def ready_replicas(self) -> int:
        return len(self._ready)

    def scale_to(self, n: int, t: float) -> None:
        """Set the Deployment's replicas at `t`: create pods, or delete not-ready then newest."""
        self.advance_to(t)
        current = [p for p in self.pods if p.state != TERMINATING]
        for _ in range(n - len(current)):
            self._new_pod(t)
        if n < len(current):
            victims = sorted(current, key=lambda p: (_DELETE_ORDER[p.state], -p.created_t, -self._index(p)))
            for pod in victims[: len(current) - n]:
                self._delete(pod, t)

    def scrape(self, t: float) -> list[tuple[Pod, list[tuple[str, Mapping[str, str], float]]]]:
        """Metric samples at `t` of every pod whose vLLM serves /metrics (Ready or draining)."""
        self.advance_to(t)
        return [(pod, pod.engine.metric_families(t)) for pod in self.pods if pod.engine is not None]

    def add_job(self, job: LoadGenerator) -> None:
        if job.name in self.jobs:
            raise ValueError(f"job {job.name!r} already exists")
        self.jobs[job.name] = job

    def stop_job(self, name: str, t: float) -> int:
        """Delete a Job at `t`: its in-flight requests are aborted; returns how many."""
        self.advance_to(t)
        job = self.jobs[name]
        gone = job.stop()
        if gone:
            self.gateway.drop(gone)
            for engine in self._serving_engines:
                engine.abort(gone, t)
            if self.request_log is not None:
                for req in gone:
                    tokens = req.replica.tokens_by(req, t) if req.replica is not None else 0
                    self.request_log.ended(req, t, ABORTED_JOB_STOPPED, tokens)
        return len(gone)

    def in_flight(self) -> list[Request]:
        """Requests sent and not yet ended, over all running Jobs."""
        return [req for job in self.jobs.values() for req in job.in_flight]

    # ------------------------------------------------------------------ time
    def advance_to(self, t: float) -> None:
        """Process every event up to `t` in time order."""
        jobs = [j for j in self.jobs.values() if not j.stopped]
        index = self._engine_index
        for serving in self._serving_engines:  # changed since the last call (scraped, aborted, driven)
            index.touch(serving)
        t_send, sender = _INF, None
        capped = False  # a client at its concurrency limit: a completion may let it send
        self._sends_changed = True
        while True:
            if self._sends_changed:  # a send or a completion happened: the clients' next sends moved
                self._sends_changed = False
                t_send, sender = _INF, None
                capped = False
                for job in jobs:
                    ts = job.next_send_time()
                    if ts < t_send:
                        t_send, sender = ts, job
                    if len(job.in_flight) >= job.concurrency_limit:
                        capped = True
            t_engine, engine = index.next_event()
            t_life = self._lifecycle[0][0] if self._lifecycle else _INF
            t_next = t_send if t_send <= t_engine else t_engine  # min() of three, as plain compares
            if t_life < t_next:
                t_next = t_life
            if t_next > t or t_next == _INF:
                break
            if t_engine == t_next:
                assert engine is not None
                if capped or (self._draining and engine in self._draining):
                    engine.advance_to(t_next)  # a completion may release a blocked client: one event at a time
                    index.touch(engine)
                    if engine in self._draining and engine.idle:
                        self._gone(self._draining[engine], t_next)
                else:  # completions cannot trigger sends: each Ready engine runs on alone until the next send
                    horizon = t_send if t_send <= t_life else t_life
                    if t < horizon:
                        horizon = t
                    for ready in index.pop_due(horizon):
                        ready.advance_to(horizon)
                        index.touch(ready)
            elif t_life == t_next:
                self._lifecycle_event()
            else:
                assert sender is not None
                self._sends_changed = True
                self._route(sender.pop_send(t_next), t_next)
        self.t = max(self.t, t)

    # ------------------------------------------------------------------ pods
    def _index(self, pod: Pod) -> int:
        return int(pod.name.rsplit("-", 1)[1])

    def _new_pod(self, t: float) -> Pod:
        p = self.profile
        pending, load = startup_delays(p, self._rng)
        running_t = t + pending
        engine_up = running_t + load
        first_probe = running_t + p.readiness_initial_delay_s
        probes = max(0, math.ceil((engine_up - first_probe) / p.readiness_period_s - 1e-9))
        ready_t = first_probe + probes * p.readiness_period_s
        pod = Pod(f"{self._prefix}-{self._pod_counter}", t, running_t, ready_t)
        self._pod_counter += 1
        pod.set_state(PENDING, t)
        self.pods.append(pod)
        self._schedule(pod.running_t, pod, LOADING)
        self._schedule(pod.ready_t, pod, READY)
        return pod

    def _schedule(self, t: float, pod: Pod, state: str) -> None:
        self._lifecycle_seq += 1
        heapq.heappush(self._lifecycle, (t, self._lifecycle_seq, pod, state))

    def _lifecycle_event(self) -> None:
        t, _, pod, state = heapq.heappop(self._lifecycle)
        if pod.deleted_t is not None and state != "Gone":
            return  # deleted before it got there
        if state == LOADING and pod.state == PENDING:
            pod.set_state(LOADING, t)
        elif state == READY and pod.state == LOADING:
            self._make_ready(pod, t)
        elif state == "Gone" and pod in self.pods:
            self._gone(pod, t)

    def _make_ready(self, pod: Pod, t: float) -> None:
        pod.engine = Replica(self.profile, start_t=t, on_finished=self._engine_finished, pod=pod.name)
        pod.set_state(READY, t)
        self._ready.append(pod)
        self._ready_engines.append(pod.engine)
        self._serving_engines.append(pod.engine)
        self._engines_added += 1
        self._engine_index.add(pod.engine, self._engines_added)
        for req in self.gateway.release():
            self._route(req, t)

    def _delete(self, pod: Pod, t: float) -> None:
        pod.deleted_t = t
        if pod in self._ready:
            self._ready.remove(pod)
            assert pod.engine is not None  # set by _make_ready
            self._ready_engines.remove(pod.engine)
            self._engine_index.stop_routing(pod.engine)
        if pod.engine is None:
            self._gone(pod, t)
        elif self.profile.scale_down == "drain" and not pod.engine.idle:
            pod.set_state(TERMINATING, t)
            self._draining[pod.engine] = pod
            self._schedule(t + self.profile.drain_grace_s, pod, "Gone")
        else:
            self._gone(pod, t)

    def _gone(self, pod: Pod, t: float) -> None:
        """The pod's process ends: whatever it still holds fails."""
        if pod.engine is not None:
            log = self.request_log
            for req in pod.engine.take_all(t):
                self.aborted_by_scale_down += 1
                if log is not None:
                    log.ended(req, t, ABORTED_SCALE_DOWN, req.generated)
                self._tell_client(req, t, False)
            self._serving_engines.remove(pod.engine)
            self._engine_index.remove(pod.engine)
            self._draining.pop(pod.engine, None)
        pod.set_state("Gone", t)
        self.pods.remove(pod)
        self.departed.append(pod)

    # ------------------------------------------------------------------ routing
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
        engine = engines[start] if self._round_robin else self._engine_index.least_loaded(engines[start])
        engine.submit(req, t)
        self._engine_index.touch(engine)

    def _engine_finished(self, req: Request, t: float, ok: bool) -> None:
        """An engine completed `req` (ok) or refused it (too long for its KV cache)."""
        log = self.request_log
        if log is not None:
            if ok:
                log.completed(req, t)
            else:
                log.ended(req, t, REJECTED, 0)
        self._tell_client(req, t, ok)

    def _tell_client(self, req: Request, t: float, ok: bool) -> None:
        if req.client is not None:
            req.client.on_finished(req, t, ok)
            self._sends_changed = True
