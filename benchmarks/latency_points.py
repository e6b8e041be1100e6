"""Steady (replicas, arrival rate, TTFT, ITL) points from the real latency-vs-load runs.

Source: /work/shared/reference-runs/latency-vs-load/runs/<run>/ (README there).  Per run:
- the controller log's "Metrics collected" lines: replicas, mean TTFT and ITL over the last
  minute (vLLM histograms), and the arrival rate the controller measured (requests per minute);
  a line logged twice at the same time is kept once;
- the run's experiment-config.yaml and the Job manifests it names: each Job's rate, prompts and
  start delay, hence the offered load and the number of clients (each `--max-concurrency 512`).
  The first Job is taken to start where the first non-zero arrival rate says (its sample's
  time minus the share of a minute the rate covers).

A point is a stretch of consecutive samples with the same replica count, the first sample dropped (its minute mixes the
state before), then cut to its longest part whose arrival rates all lie within 10 % of their
median, which must have at least `MIN_SAMPLES` - 1 samples over >= 90 s.  Its offered load is
that of the Jobs the configured timeline has sending at the stretch's middle (the timeline is
only as good as the estimated start, +-30 s).  A stretch measuring more
than 110 % of the offered load is a backlog draining, not a point.  A point is
`client_limited` when the servers got < 90 % of the offered load while, by Little's law, at
least half the clients' concurrency limit was in flight: the limit held requests back, so the
twin must be driven by the offered load, not by the measured one.
Runs without a controller log (no measured arrival rate) or config give no points.
"""

from __future__ import annotations

import csv
import gzip
import re
import statistics
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

import yaml

DATA = Path("/work/shared/reference-runs/latency-vs-load")
MIN_SAMPLES = 3
_LINE = re.compile(
    r"replicas=(?P<replicas>\d+),.*ttft=(?P<ttft>[\d.]+)ms, itl=(?P<itl>[\d.]+)ms,.*"
    r"arrivalRate=(?P<rate>[\d.]+), avgInputTokens=(?P<tin>[\d.]+), avgOutputTokens=(?P<tout>[\d.]+)"
)


@dataclass(frozen=True)
class Sample:
    t: float  # seconds since the first Job started
    replicas: int
    ttft_ms: float
    itl_ms: float
    rate: float  # requests/s measured by the controller (all replicas)
    input_tokens: float
    output_tokens: float


@dataclass(frozen=True)
class Job:
    rate: float
    start_s: float
    end_s: float


@dataclass(frozen=True)
class Point:
    """One steady point: means over the stretch (first sample dropped)."""

    run: str
    t0_s: float
    t1_s: float
    replicas: int
    rate: float  # measured, requests/s over all replicas
    offered: float  # the active Jobs' configured rates, requests/s
    job_rates: tuple[float, ...]
    client_limited: bool
    ttft_ms: float
    itl_ms: float
    output_tokens: float

    @property
    def rate_per_replica(self) -> float:
        return self.rate / self.replicas

    def as_row(self) -> dict[str, object]:
        row = asdict(self)
        row["job_rates"] = " ".join(f"{r:g}" for r in self.job_rates)
        row["rate_per_replica"] = round(self.rate_per_replica, 3)
        return row


def read_samples(run_dir: Path) -> list[tuple[datetime, int, float, float, float, float, float]]:
    """(time, replicas, ttft ms, itl ms, rate req/min, avg input, avg output) per logged sample."""
    log = run_dir / "wva-controller-logs.jsonl.gz"
    if not log.exists():
        return []
    seen: dict[str, tuple[datetime, int, float, float, float, float, float]] = {}
    with gzip.open(log, "rt", errors="replace") as lines:
        for line in lines:
            if "Metrics collected" not in line:
                continue
            match = _LINE.search(line)
            stamp = re.search(r'"ts":"([^"]+)"', line)
            if match is None or stamp is None:
                continue
            ts = datetime.fromisoformat(stamp.group(1).replace("Z", "+00:00"))
            key = ts.strftime("%Y%m%d%H%M%S")  # a line logged twice in the same second counts once
            seen.setdefault(
                key,
                (
                    ts,
                    int(match["replicas"]),
                    float(match["ttft"]),
                    float(match["itl"]),
                    float(match["rate"]),
                    float(match["tin"]),
                    float(match["tout"]),
                ),
            )
    return [seen[k] for k in sorted(seen)]


def read_jobs(run_dir: Path) -> list[tuple[float, float, float]]:
    """(rate, start delay s, length s) of each Job of the run's config (length = prompts / rate)."""
    config = yaml.safe_load((run_dir / "experiment-config.yaml").read_text())
    jobs = []
    for workload in config.get("workloads", []):
        manifest = DATA / "workloads" / Path(workload["job_manifest"]).name
        args = yaml.safe_load(manifest.read_text())["spec"]["template"]["spec"]["containers"][0]["args"]
        rate = float(args[args.index("--request-rate") + 1])
        prompts = float(args[args.index("--num-prompts") + 1])
        jobs.append((rate, float(workload.get("start_delay", 0)), prompts / rate))
    return jobs


def run_samples(run_dir: Path) -> tuple[list[Sample], list[Job]]:
    """The run's samples and Jobs on one time axis (0 = the first Job's first request)."""
    raw = read_samples(run_dir)
    if not raw or not (run_dir / "experiment-config.yaml").exists():
        return [], []
    jobs_cfg = read_jobs(run_dir)
    first = next((s for s in raw if s[4] > 0), None)
    if first is None or not jobs_cfg:
        return [], []
    first_rate = jobs_cfg[0][0]
    covered = min(1.0, first[4] / 60.0 / first_rate)  # share of the minute the first Job was sending
    origin = first[0].timestamp() - 60.0 * covered
    samples = [Sample(s[0].timestamp() - origin, s[1], s[2], s[3], s[4] / 60.0, s[5], s[6]) for s in raw if s[4] > 0]
    jobs = [Job(rate, delay, delay + length) for rate, delay, length in jobs_cfg]
    return samples, jobs


def active_at(jobs: list[Job], t: float) -> tuple[float, ...]:
    """Rates of the Jobs sending at `t` by their configured timeline."""
    return tuple(j.rate for j in jobs if j.start_s <= t < j.end_s)


def steady_points(run_dir: Path) -> list[Point]:
    samples, jobs = run_samples(run_dir)
    points: list[Point] = []
    i = 0
    while i < len(samples):
        j = i
        while j + 1 < len(samples) and samples[j + 1].replicas == samples[i].replicas:
            j += 1
        stretch = _steady_tail(samples[i + 1 : j + 1])  # the first sample mixes the state before
        if len(stretch) >= MIN_SAMPLES - 1 and stretch[-1].t - stretch[0].t >= 90.0:
            window = active_at(jobs, (stretch[0].t - 60.0 + stretch[-1].t) / 2)
            rate = statistics.fmean(s.rate for s in stretch)
            offered = sum(window)
            if not window or rate > 1.1 * offered:  # a backlog draining, not a steady load
                i = j + 1
                continue
            points.append(
                Point(
                    run=run_dir.name,
                    t0_s=round(stretch[0].t - 60.0, 1),
                    t1_s=round(stretch[-1].t, 1),
                    replicas=samples[i].replicas,
                    rate=round(rate, 3),
                    offered=offered,
                    job_rates=window,
                    client_limited=_client_limited(rate, offered, stretch, len(window)),
                    ttft_ms=round(statistics.fmean(s.ttft_ms for s in stretch), 2),
                    itl_ms=round(statistics.fmean(s.itl_ms for s in stretch), 2),
                    output_tokens=round(statistics.fmean(s.output_tokens for s in stretch), 1),
                )
            )
        i = j + 1
    return points


def _client_limited(rate: float, offered: float, stretch: list[Sample], clients: int) -> bool:
    """The servers got < 90 % of the offered load and, by Little's law (rate x (TTFT + output x
    ITL)), at least half the clients' 512-request limit was in flight: the limit was holding the
    load back.  A shortfall without that is the estimated Job timeline's error, not a limit."""
    in_flight = statistics.fmean(s.rate * (s.ttft_ms + s.output_tokens * s.itl_ms) / 1000.0 for s in stretch)
    return rate < 0.9 * offered and in_flight >= 0.5 * 512 * clients


def _steady_tail(stretch: list[Sample]) -> list[Sample]:
    """The longest run of consecutive samples whose rates all lie within 10 % of their median."""
    best: list[Sample] = []
    for a in range(len(stretch)):
        for b in range(len(stretch), a, -1):
            part = stretch[a:b]
            median = statistics.median(s.rate for s in part)
            if len(part) > len(best) and all(abs(s.rate - median) <= 0.1 * median for s in part):
                best = part
                break
    return best


def all_points(data: Path = DATA) -> list[Point]:
    return [p for run in sorted((data / "runs").iterdir()) for p in steady_points(run)]


def write_csv(points: list[Point], path: Path) -> None:
    rows = [p.as_row() for p in points]
    with path.open("w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


if __name__ == "__main__":
    for p in all_points():
        print(
            f"{p.run[11:]:45s} {p.t0_s:6.0f}-{p.t1_s:6.0f} r={p.replicas:2d} rate={p.rate:6.2f} "
            f"({p.rate_per_replica:5.2f}/replica, offered {p.offered:g}{' LIMITED' if p.client_limited else ''}) "
            f"ttft={p.ttft_ms:7.1f} itl={p.itl_ms:5.1f} out={p.output_tokens:.0f}"
        )
