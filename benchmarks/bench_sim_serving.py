"""Speed and memory of the simulated serving side (engines + load generators + fleet).

    .venv/bin/python benchmarks/bench_sim_serving.py              # both scenarios
    .venv/bin/python benchmarks/bench_sim_serving.py --hours 6    # shorter long run
    .venv/bin/python benchmarks/bench_sim_serving.py --set natural_output_len_mean=null  # profile overrides

Scenario "high-load": 1380 s, five load-generator Jobs back to back at 20/50/50/30/20 req/s
(276 s each, `max_concurrency` 512, 1024 output tokens as in the reference runs), 10 Ready
replicas, every replica's metrics read every `--scrape` seconds.  Target: well under 7 s,
ideally ~1.4 s (1000x real time).

Scenario "long": one Job at 50 req/s for `--hours` hours on 10 replicas; the resident set size is
printed every hour: it must not grow with the run length.
"""

from __future__ import annotations

import argparse
import resource
import time
from typing import Any

import yaml

from hpa_experiments.backends.sim.fleet import Fleet
from hpa_experiments.backends.sim.loadgen import LoadGenerator
from hpa_experiments.twin_profiles import Profile, load_profile


def current_rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(fleet: Fleet, duration: float, scrape: float, every: float | None = None) -> dict[str, float]:
    """Advance in scrape-interval steps, stopping Jobs at their end; returns totals."""
    t = 0.0
    next_report = every
    while t < duration:
        t = min(duration, t + scrape)
        fleet.advance_to(t)
        for pod in fleet.pods:
            if pod.engine is not None:
                pod.engine.metric_families(t)
        for job in fleet.jobs.values():
            if not job.stopped and t >= job.stop_t:
                fleet.stop_job(job.name, t)
        if next_report is not None and t >= next_report:
            done = sum(j.completed for j in fleet.jobs.values())
            print(f"  t={t / 3600:5.1f} h  rss={current_rss_mb():6.1f} MB  completed={done}", flush=True)
            next_report += every
    jobs = fleet.jobs.values()
    return {
        "sent": sum(j.sent for j in jobs),
        "completed": sum(j.completed for j in jobs),
        "aborted": sum(j.aborted for j in jobs),
        "generated_tokens": sum(p.engine.generation_tokens for p in fleet.pods if p.engine),
    }


def high_load(profile: Profile, scrape: float) -> None:
    fleet = Fleet(profile, seed=1, initial_replicas=10)
    segment = 1380.0 / 5
    for i, rate in enumerate([20, 50, 50, 30, 20]):
        fleet.add_job(LoadGenerator(f"job-{i}", profile, rate, i * segment, (i + 1) * segment, seed=i))
    cpu, wall = time.process_time(), time.perf_counter()
    totals = run(fleet, 1380.0, scrape)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    print(
        f"high-load 1380 s, 10 replicas: wall {wall:.2f} s, cpu {cpu:.2f} s "
        f"({1380 / wall:.0f}x real time), peak RSS {peak_rss_mb():.1f} MB, {totals}"
    )


def long_run(profile: Profile, hours: float, scrape: float) -> None:
    fleet = Fleet(profile, seed=2, initial_replicas=10)
    fleet.add_job(LoadGenerator("long", profile, 50.0, 0.0, hours * 3600.0, seed=3))
    cpu, wall = time.process_time(), time.perf_counter()
    totals = run(fleet, hours * 3600.0, scrape, every=3600.0)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    print(
        f"long {hours:g} h at 50 req/s, 10 replicas: wall {wall:.1f} s, cpu {cpu:.1f} s, "
        f"peak RSS {peak_rss_mb():.1f} MB, {totals}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hours", type=float, default=24.0, help="length of the long run (0: skip)")
    parser.add_argument("--scrape", type=float, default=5.0, help="metric read interval, seconds")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions of the high-load run")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="profile override")
    args = parser.parse_args()
    overrides: dict[str, Any] = {}
    for item in args.set:
        key, _, value = item.partition("=")
        overrides[key] = yaml.safe_load(value)
    profile = load_profile(overrides=overrides)
    print(
        f"profile {profile.name} {overrides or ''}: b0={profile.step_base_s * 1e3:.3f} ms, "
        f"b2={profile.step_per_decode_seq_s * 1e3:.3f} ms/seq, "
        f"natural_output_len_mean={profile.natural_output_len_mean}"
    )
    for _ in range(args.repeat):
        high_load(profile, args.scrape)
    if args.hours > 0:
        long_run(profile, args.hours, args.scrape)


if __name__ == "__main__":
    main()
