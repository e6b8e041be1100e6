"""Benchmark of the twin's PromQL engine: a monitor tick over a day of scrapes.

10 pods x 51 vLLM series (TTFT and ITL histograms with vLLM's buckets, counters,
gauges), scraped every 15 s into a TimeSeriesDB with 15 min retention.  Every 5 s of
virtual time a monitor tick evaluates hpa-exp's standard metrics.csv queries (with the
default percentiles 0.5, 0.9, 0.99); every 15 s the prometheus-adapter query runs.  Once
an hour a pod is replaced by one with a new name (HPA churn), so dead series must be
dropped too.  Prints, per reported hour, the mean and max wall time and the mean CPU
time per monitor tick (the machine may be shared), RSS, series and sample counts.

    .venv/bin/python benchmarks/bench_promql_engine.py [--hours 24] [--append-readme]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import resource
import time
from pathlib import Path

from hpa_experiments.backends.sim.promql_engine import PromQLEngine, TimeSeriesDB
from hpa_experiments.column_queries import MetricNames, standard_queries

TTFT_BUCKETS = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
                20.0, 40.0, 80.0, 160.0, 640.0, 2560.0]  # fmt: skip
ITL_BUCKETS = [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
               40.0, 80.0]  # fmt: skip
PODS = 10
SCRAPE_S = 15
TICK_S = 5
T0 = 1_763_856_000.0


class FakePod:
    """Cumulative vLLM metrics of one pod, with the label dicts built once."""

    def __init__(self, name: str, rng: random.Random):
        self.rng = rng
        base = {"namespace": "ns", "model_name": "m", "pod": name}
        self.histograms = {
            hist: (
                [{**base, "__name__": f"{hist}_bucket", "le": str(le)} for le in [*bounds, "+Inf"]],
                {**base, "__name__": f"{hist}_sum"},
                {**base, "__name__": f"{hist}_count"},
                [0.0] * (len(bounds) + 1),
                bounds,
            )
            for hist, bounds in (
                ("vllm:time_to_first_token_seconds", TTFT_BUCKETS),
                ("vllm:inter_token_latency_seconds", ITL_BUCKETS),
            )
        }
        self.sums = dict.fromkeys(self.histograms, 0.0)
        self.success_labels = {**base, "__name__": "vllm:request_success_total"}
        self.success = 0.0
        self.gauges = [{**base, "__name__": n} for n in ("vllm:num_requests_running", "vllm:num_requests_waiting")]
        self.kv_labels = {**base, "__name__": "vllm:kv_cache_usage_perc"}

    def scrape(self) -> list[tuple[dict[str, str], float]]:
        samples: list[tuple[dict[str, str], float]] = []
        for hist, (bucket_labels, sum_labels, count_labels, counts, bounds) in self.histograms.items():
            for _ in range(self.rng.randint(5, 40)):
                value = self.rng.lognormvariate(-1.6, 0.8)
                self.sums[hist] += value
                for i, bound in enumerate(bounds):
                    if value <= bound:
                        counts[i] += 1
                counts[-1] += 1
            samples.extend(zip(bucket_labels, counts, strict=True))
            samples.append((sum_labels, self.sums[hist]))
            samples.append((count_labels, counts[-1]))
        self.success += self.rng.randint(5, 40)
        samples.append((self.success_labels, self.success))
        samples.extend((labels, float(self.rng.randint(0, 20))) for labels in self.gauges)
        samples.append((self.kv_labels, self.rng.random()))
        return samples


def rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def run(hours: float) -> list[str]:
    rng = random.Random(1)
    db = TimeSeriesDB(retention_seconds=900)
    engine = PromQLEngine(db)
    queries = list(standard_queries(MetricNames(), "m", "ns", "1m", [0.5, 0.9, 0.99]).values())
    pods = [FakePod(f"vllm-{i}", rng) for i in range(PODS)]
    next_pod = PODS
    lines = [
        f"{len(queries)} standard queries per tick + adapter query every 15 s; "
        f"{PODS} pods x {len(pods[0].scrape())} series; 15 s scrape; 900 s retention",
        "| virtual hour | ms/tick mean | ms/tick max | CPU ms/tick mean | RSS MiB | series | samples |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    tick_times: list[float] = []
    tick_cpu = 0.0
    wall_start = time.perf_counter()
    ticks_per_hour = 3600 // TICK_S
    for tick in range(int(hours * ticks_per_hour)):
        t = T0 + tick * TICK_S
        if tick % (3600 // TICK_S) == 0 and tick:
            pods[tick // ticks_per_hour % PODS] = FakePod(f"vllm-{next_pod}", rng)  # churn
            next_pod += 1
        if tick % (SCRAPE_S // TICK_S) == 0:
            for pod in pods:
                db.append_many(t, pod.scrape())
        started, cpu_started = time.perf_counter(), time.process_time()
        for query in queries:
            engine.instant(query, t)
        if tick % (SCRAPE_S // TICK_S) == 0:
            pod_regex = "|".join(f"vllm-{i}" for i in range(next_pod))
            engine.instant(f'sum(vllm:num_requests_waiting{{namespace="ns",pod=~"{pod_regex}"}}) by (pod)', t)
        tick_times.append(time.perf_counter() - started)
        tick_cpu += time.process_time() - cpu_started
        hour_done = (tick + 1) % ticks_per_hour == 0
        if hour_done and ((tick + 1) // ticks_per_hour in (1, 2, 6, 12, 18, 24) or tick + 1 == hours * ticks_per_hour):
            mean = sum(tick_times) / len(tick_times) * 1000
            lines.append(
                f"| {(tick + 1) // ticks_per_hour} | {mean:.2f} | {max(tick_times) * 1000:.2f} | "
                f"{tick_cpu / len(tick_times) * 1000:.2f} | {rss_mib():.1f} | {db.series_count} | {db.sample_count} |"
            )
            print(lines[-1], flush=True)
        if hour_done:
            tick_times, tick_cpu = [], 0.0
    wall = time.perf_counter() - wall_start
    lines.append(
        f"Wall time {wall:.0f} s for {hours:g} virtual hours (scrape generation included); "
        f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.1f} MiB."
    )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--append-readme", action="store_true", help="append the results to benchmarks/README.md")
    args = parser.parse_args()
    lines = run(args.hours)
    print("\n".join(lines))
    if args.append_readme:
        readme = Path(__file__).with_name("README.md")
        header = "" if readme.exists() else "# Benchmarks\n"
        machine = f"{platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} CPUs (shared)"
        intro = (
            f"`.venv/bin/python benchmarks/bench_promql_engine.py --hours {args.hours:g}` "
            f"({time.strftime('%Y-%m-%d', time.gmtime())}, {machine}): {lines[0]}"
        )
        table = "\n".join(lines[1:-1])
        with readme.open("a") as out:
            out.write(f"{header}\n## PromQL engine\n\n{intro}\n\n{table}\n\n{lines[-1]}\n")


if __name__ == "__main__":
    main()
