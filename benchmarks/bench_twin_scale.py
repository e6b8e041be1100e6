"""Cost of the digital twin against fleet size: wall ms per simulated second at 10..200 replicas.

    .venv/bin/python benchmarks/bench_twin_scale.py                       # 10/50/100/200 replicas, 1 h each
    .venv/bin/python benchmarks/bench_twin_scale.py --replicas 200 --minutes 5 --repeat 3
    .venv/bin/python benchmarks/bench_twin_scale.py --replicas 200 --minutes 2 --profile prof.out
    .venv/bin/python benchmarks/bench_twin_scale.py --plot results/bench_twin_scale.png   # the curves recorded

Each point is one experiment as `hpa-exp run CONFIG --backend sim` runs it (Runner, monitor
PromQL every 5 s, HPA every 15 s, scrapes, metrics.csv and requests.csv written), in a fresh
Python process: the HPA is pinned at minReplicas = maxReplicas = N and the fleet starts with N
Ready pods; one Job sends 5 req/s per replica (1024 output tokens as in the reference runs,
the profile's natural stop lengths) for the given duration.  The client's `max_concurrency`
is 512 per 10 replicas, so the client is not the bottleneck and the load scales with the fleet.
Wall time is the Runner's run (imports and config loading excluded); "ms per simulated s" is
that wall time over the plan's length; peak RSS is the child's ru_maxrss; CPU is the child's
user + system time (less sensitive to a shared machine than wall time); "process CPU" is the
whole child's (imports and the end-of-run summary included).  Each point records which twin core
ran (`twin_core`: compiled or python; backends/sim/twin_core.py).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
RATE_PER_REPLICA = 5.0


def scale_config(folder: Path, replicas: int, minutes: float, seed: int) -> Path:
    """A config with one Job at 5 req/s per replica for `minutes` and an HPA pinned at `replicas`."""
    hpa = yaml.safe_load((REPO / "manifests" / "hpa-vllm-combined.yaml").read_text())
    hpa["spec"]["minReplicas"] = hpa["spec"]["maxReplicas"] = replicas
    manifest = folder / f"hpa-pinned-{replicas}.yaml"
    manifest.write_text(yaml.safe_dump(hpa))
    config = {
        "name": f"bench-scale-{replicas}",
        "backend": "simulation",
        "hpa": {"enabled": True, "manifest": str(manifest)},
        "jobs": [
            {
                "name": "steady",
                "rate": RATE_PER_REPLICA * replicas,
                "duration": minutes * 60,
                "manifest": str(REPO / "workloads" / "vllm-bench-serve.yaml"),
            }
        ],
        "values": {"max_concurrency": max(512, 512 * replicas // 10), "output_len": 1024},
        "metrics": {"interval": 5},
        "simulation": {"seed": seed, "initial_replicas": replicas},
        "output": {"base_dir": str(folder / "runs")},
    }
    path = folder / f"scale-{replicas}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


class Breakdown:
    """Exclusive CPU time per part of the run, by wrapping the Python-level entry points of each part.

    Works with the compiled core too (whose functions cProfile cannot see): the engines' time is
    what the Fleet's calls take minus the Python code they call back (requests.csv rows)."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = {}
        self._stack: list[list[Any]] = []

    def wrap(self, owner: Any, name: str, part: str) -> None:
        setattr(owner, name, self.timed(getattr(owner, name), part))

    def timed(self, original: Any, part: str) -> Any:
        def timed(*args: Any, **kwargs: Any) -> Any:
            frame = [part, time.process_time(), 0.0]  # part, start, time of the parts called inside
            self._stack.append(frame)
            try:
                return original(*args, **kwargs)
            finally:
                self._stack.pop()
                spent = time.process_time() - frame[1]
                self.totals[part] = self.totals.get(part, 0.0) + spent - frame[2]
                if self._stack:
                    self._stack[-1][2] += spent

        return timed


class _TimedFleet:
    """Forwards to the Fleet (a compiled class cannot be patched) and times its driving calls."""

    def __init__(self, fleet: Any, breakdown: Breakdown) -> None:
        object.__setattr__(self, "_fleet", fleet)
        for name in ("advance_to", "scale_to", "stop_job"):
            object.__setattr__(self, name, breakdown.timed(getattr(fleet, name), "engines, fleet, load generators"))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fleet, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._fleet, name, value)


def install_breakdown(backend: Any) -> Breakdown:
    from hpa_experiments.backends.sim import backend as sim_backend
    from hpa_experiments.backends.sim import job_tally, request_log

    breakdown = Breakdown()
    backend.fleet = _TimedFleet(backend.fleet, breakdown)
    for name, part in (
        ("_scrape", "scrapes into the TSDB"),
        ("_sync_hpa", "HPA syncs (adapter PromQL)"),
        ("query", "monitor PromQL"),
        ("query_range", "monitor PromQL"),
        ("job_logs", "end-of-run job log (bench_client)"),
    ):
        breakdown.wrap(sim_backend.SimBackend, name, part)
    # request_log.py is compiled (its class cannot be patched): its chunks' formatting and the job
    # tallies are timed; keeping each request's values and the rows of other outcomes count as engines
    breakdown.wrap(request_log, "format_rows", "requests.csv rows")
    for name in ("completed", "completed_one"):
        breakdown.wrap(job_tally.JobTally, name, "requests.csv rows")
    return breakdown


def child(config_path: Path, profile_out: Path | None, breakdown: bool = False) -> dict[str, Any]:
    """Run one config on the twin in this process; returns the measurements."""
    from hpa_experiments.backends.factory import BackendOptions, make_backend
    from hpa_experiments.config import load_config
    from hpa_experiments.plan import build_plan
    from hpa_experiments.runner import Runner
    from hpa_experiments.workloads import new_run_id

    config = load_config(config_path)
    plan = build_plan(config)
    run_id = new_run_id(time.time())
    profiler = None
    if profile_out is not None:
        import cProfile

        profiler = cProfile.Profile(time.process_time)  # CPU time: the machine may be shared
    started = time.perf_counter()
    cpu_started = time.process_time()
    if profiler is not None:
        profiler.enable()
    backend, names = make_backend("simulation", config, plan, run_id, BackendOptions())
    parts = install_breakdown(backend) if breakdown else None
    result = Runner(
        config, plan, backend, base_dir=config_path.parent / "runs", metric_names=names, run_id=run_id
    ).run()
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(profile_out)
    wall = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    fleet = backend.fleet  # type: ignore[attr-defined]
    try:
        from hpa_experiments.backends.sim import twin_core

        core = twin_core.state()["core"]
    except ImportError:  # code from before the compiled core
        core = "python"
    sent = sum(job.sent for job in fleet.jobs.values())
    completed = sum(job.completed for job in fleet.jobs.values())
    return {
        "exit_code": result.exit_code,
        "virtual_s": plan.total,
        "wall_s": wall,
        "cpu_s": cpu,
        "ms_per_sim_s": 1000 * wall / plan.total,
        "cpu_ms_per_sim_s": 1000 * cpu / plan.total,
        "requests_sent": sent,
        "requests_completed": completed,
        "us_per_request": 1e6 * wall / max(sent, 1),
        "requests_csv_bytes": (result.run_dir / "requests.csv").stat().st_size,
        "twin_core": core,
    } | ({} if parts is None else {"breakdown_cpu_s": {**parts.totals, "rest": cpu - sum(parts.totals.values())}})


def measure(config_path: Path, profile_out: Path | None = None, breakdown: bool = False) -> dict[str, Any]:
    """Run `child` in a fresh interpreter; add its peak RSS."""
    command = [sys.executable, __file__, "--child", str(config_path)]
    if profile_out is not None:
        command += ["--profile", str(profile_out)]
    if breakdown:
        command.append("--breakdown")
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert proc.stdout is not None
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"benchmark child failed for {config_path}")
    data = json.loads(output.strip().splitlines()[-1])
    data["peak_rss_mib"] = usage.ru_maxrss / 1024  # kilobytes on Linux
    data["process_cpu_s"] = usage.ru_utime + usage.ru_stime  # the whole child: imports and summary too
    return data


def plot(results_file: Path, out: Path, last: int) -> None:
    """Against replicas, one line per recorded curve (median of the repeats; the `last` recorded
    with two fleet sizes or more): CPU and wall ms per simulated second, and CPU per request (flat
    when the cost per request does not grow)."""
    import statistics

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 5.5))
    curves = [r for r in json.loads(results_file.read_text()) if len({p["replicas"] for p in r["points"]}) > 1]
    for record in curves[-last:]:
        by_n: dict[int, list[dict[str, Any]]] = {}
        for point in record["points"]:
            by_n.setdefault(point["replicas"], []).append(point)
        ns = sorted(by_n)
        label = f"{record['label']} ({record['minutes']:g} min)"
        cpu = [statistics.median(p["cpu_ms_per_sim_s"] for p in by_n[n]) for n in ns]
        wall = [statistics.median(p["ms_per_sim_s"] for p in by_n[n]) for n in ns]
        per_request = [statistics.median(1e6 * p["cpu_s"] / p["requests_sent"] for p in by_n[n]) for n in ns]
        (line,) = left.plot(ns, cpu, "-o", label=f"CPU: {label}")
        left.plot(ns, wall, ":x", color=line.get_color(), label=f"wall: {label}")
        right.plot(ns, per_request, "-o", color=line.get_color(), label=label)
    left.set_ylabel("ms per simulated second (log)")
    left.set_yscale("log")
    right.set_ylabel("CPU us per request (whole run)")
    right.set_ylim(bottom=0)
    for ax in (left, right):
        ax.set_xlabel("replicas (5 req/s each)")
        ax.grid(True, which="both", alpha=0.3)
    handles, labels = right.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=8, frameon=False)
    left.set_title("solid: CPU, dotted: wall", fontsize=9)
    fig.tight_layout(rect=(0, 0.07 * ((len(labels) + 1) // 2), 1, 1))
    fig.savefig(out, dpi=110)
    print(f"written {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--replicas", type=int, nargs="+", default=[10, 50, 100, 200])
    parser.add_argument("--minutes", type=float, default=60.0, help="length of the Job (simulated)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per point")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--label", default="", help="stored with the results (e.g. before/after)")
    parser.add_argument("--output", type=Path, default=RESULTS / "bench_twin_scale.json")
    parser.add_argument("--profile", type=Path, help="cProfile the run (one point) into this file")
    parser.add_argument("--plot", type=Path, help="draw the curves recorded in --output into this PNG and exit")
    parser.add_argument("--plot-last", type=int, default=4, help="how many of the latest curves --plot draws")
    parser.add_argument(
        "--breakdown", action="store_true", help="also time each part of the run (engines, PromQL, scrapes, ...)"
    )
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plot:
        plot(args.output, args.plot, args.plot_last)
        return
    if args.child:
        print(json.dumps(child(args.child, args.profile, args.breakdown)))
        return
    if args.profile and (len(args.replicas) != 1 or args.repeat != 1):
        raise SystemExit("--profile takes one --replicas value and --repeat 1")
    points = []
    with tempfile.TemporaryDirectory(prefix="bench-twin-scale-") as tmp:
        folder = Path(tmp)
        for replicas in args.replicas:
            config = scale_config(folder, replicas, args.minutes, args.seed)
            for i in range(args.repeat):
                load_before = os.getloadavg()[0]
                data = measure(config, args.profile, args.breakdown)
                data.update(replicas=replicas, run=i + 1, load_avg_1m=[load_before, os.getloadavg()[0]])
                points.append(data)
                print(
                    f"{replicas:4d} replicas  {data['virtual_s']:7.0f} sim s  wall {data['wall_s']:7.1f} s  "
                    f"{data['ms_per_sim_s']:7.2f} ms/sim s  CPU {data['cpu_ms_per_sim_s']:7.2f} ms/sim s  "
                    f"{data['us_per_request']:5.1f} us/request  {data['requests_sent']:>9,} requests  "
                    f"peak RSS {data['peak_rss_mib']:5.0f} MiB  process CPU {data['process_cpu_s']:6.1f} s  "
                    f"core {data['twin_core']}  load {load_before:.1f}",
                    flush=True,
                )
                for part, seconds in sorted(data.get("breakdown_cpu_s", {}).items(), key=lambda kv: -kv[1]):
                    print(f"      {part:40s} {seconds:7.2f} s CPU  {100 * seconds / data['cpu_s']:5.1f} %")
    results = {
        "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "label": args.label,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "minutes": args.minutes,
        "points": points,
    }
    if args.profile:
        return
    args.output.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(args.output.read_text()) if args.output.exists() else []
    args.output.write_text(json.dumps([*previous, results], indent=2) + "\n", encoding="utf-8")
    print(f"appended to {args.output}")


if __name__ == "__main__":
    main()
