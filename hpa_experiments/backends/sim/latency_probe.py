"""The twin's latency under a steady load: N Ready replicas, one or more `vllm bench serve` clients.

Used to compare the serving model with real steady points (benchmarks/twin_fit.py,
tests/test_twin_fidelity.py): after a warm-up, the mean TTFT and ITL over a window are read from
the engines' histograms as a monitor reads vLLM's (sum and count deltas, summed over replicas),
and the arrival rate as the servers saw it (requests that reached an engine per second).
No HPA: the replica count is held fixed, as in the real points where it was steady.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from hpa_experiments.backends.sim.fleet import Fleet
from hpa_experiments.backends.sim.loadgen import LoadGenerator
from hpa_experiments.twin_profiles import Profile


@dataclass(frozen=True)
class ProbeResult:
    ttft_ms: float
    itl_ms: float
    arrival_rate: float  # requests/s that reached the servers (all replicas)
    running: float  # mean running sequences per replica at the window's end
    waiting: float  # mean waiting requests per replica at the window's end
    kv_usage: float  # mean KV usage per replica at the window's end


def probe(
    profile: Profile,
    replicas: int,
    rates: Sequence[float],
    *,
    seed: int = 1,
    max_concurrency: int | None = 512,
    warmup_s: float = 180.0,
    window_s: float = 120.0,
) -> ProbeResult:
    """Run one client per entry of `rates` (req/s) against `replicas` Ready pods; measure a window."""
    fleet = Fleet(profile, seed=seed, initial_replicas=replicas)
    for i, rate in enumerate(rates):
        fleet.add_job(
            LoadGenerator(f"job-{i}", profile, rate, 0.0, seed=seed * 1000 + i, max_concurrency=max_concurrency)
        )
    before = _totals(fleet, warmup_s)
    after = _totals(fleet, warmup_s + window_s)
    d = [b - a for a, b in zip(before, after, strict=True)]
    engines = [p.engine for p in fleet.pods if p.engine is not None]
    t = warmup_s + window_s
    return ProbeResult(
        ttft_ms=1000.0 * d[0] / d[1] if d[1] else float("nan"),
        itl_ms=1000.0 * d[2] / d[3] if d[3] else float("nan"),
        arrival_rate=d[4] / window_s,
        running=sum(len(e.running) for e in engines) / len(engines),
        waiting=sum(len(e.waiting) for e in engines) / len(engines),
        kv_usage=sum(e.kv_usage(t) for e in engines) / len(engines),
    )


def _totals(fleet: Fleet, t: float) -> tuple[float, float, float, float, float]:
    """TTFT sum/count, ITL sum/count and requests admitted by the engines, summed over replicas at `t`."""
    fleet.advance_to(t)
    ttft_s = ttft_n = itl_s = itl_n = 0.0
    for pod in fleet.pods:
        engine = pod.engine
        if engine is None:
            continue
        engine.kv_usage(t)  # brings counters up to t
        ttft_s += engine.ttft.sum
        ttft_n += engine.ttft.count
        itl_s += engine.itl.sum
        itl_n += engine.itl.count
    sent = sum(job.sent for job in fleet.jobs.values()) - len(fleet.gateway)
    return ttft_s, ttft_n, itl_s, itl_n, float(sent)
