"""Speed and memory of the digital twin: the high-load experiment and a 24-hour run.

    .venv/bin/python benchmarks/bench_twin.py                 # both, results in benchmarks/results/bench_twin.json
    .venv/bin/python benchmarks/bench_twin.py --only high-load
    .venv/bin/python benchmarks/bench_twin.py --hours 24

Each measurement runs in a fresh Python process that does exactly what `hpa-exp run CONFIG
--backend sim` does (load the config, build the plan and the backend, run the Runner, write the
run directory).  Wall time is the Runner's run (imports and config loading excluded; the process
total is reported too); peak RSS is the child's ru_maxrss from wait4.

- high-load: experiment-configs/high-load-hpa.yaml as shipped (speedup = virtual / wall seconds).
- day: one Job at 50 req/s for `--hours` hours, 10 replicas from the start, an HPA pinned at
  minReplicas = maxReplicas = 10, 5 s samples.  RSS is read every virtual hour from
  /proc/self/status, so memory growth with run length shows directly (1 h vs 24 h).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
HIGH_LOAD = REPO / "experiment-configs" / "high-load-hpa.yaml"


def rss_mib(field: str = "VmRSS") -> float:
    """Resident memory now (VmRSS) or the peak so far (VmHWM) of this process."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def day_config(folder: Path, hours: float) -> Path:
    """A config with one 50 req/s Job for `hours` and an HPA pinned at 10 replicas."""
    hpa = yaml.safe_load((REPO / "manifests" / "hpa-vllm-combined.yaml").read_text())
    hpa["spec"]["minReplicas"] = hpa["spec"]["maxReplicas"] = 10
    (folder / "hpa-pinned-10.yaml").write_text(yaml.safe_dump(hpa))
    config = {
        "name": f"bench-day-{hours:g}h",
        "backend": "simulation",
        "hpa": {"enabled": True, "manifest": "hpa-pinned-10.yaml"},
        "jobs": [
            {
                "name": "steady-50",
                "rate": 50,
                "duration": hours * 3600,
                "manifest": str(REPO / "workloads" / "vllm-bench-serve.yaml"),
            }
        ],
        "values": {"max_concurrency": 512, "output_len": 1024},
        "metrics": {"interval": 5},
        "simulation": {"seed": 42, "initial_replicas": 10},
        "output": {"base_dir": str(folder / "runs")},
    }
    path = folder / "day.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


class HourlyMemory:
    """Runner observer: RSS and wall time at every virtual hour."""

    def __init__(self) -> None:
        self.marks: list[dict[str, float]] = []
        self.started = time.perf_counter()

    def on_start(self, runner: Any) -> None:
        self.started = time.perf_counter()

    def on_row(self, row: dict[str, Any]) -> None:
        elapsed = float(row.get("elapsed_s") or 0.0)
        if elapsed > 0 and elapsed % 3600 == 0:
            self.marks.append(
                {"virtual_h": elapsed / 3600, "wall_s": time.perf_counter() - self.started, "rss_mib": rss_mib()}
            )

    def on_event(self, elapsed: float, kind: str, detail: str) -> None:
        pass

    def on_finish(self, result: Any) -> None:
        pass


def child(config_path: Path, out: Path) -> dict[str, Any]:
    """Run one config on the twin in this process; returns timings (printed as JSON by main)."""
    from hpa_experiments.backends.factory import BackendOptions, make_backend
    from hpa_experiments.config import load_config
    from hpa_experiments.plan import build_plan
    from hpa_experiments.runner import Runner
    from hpa_experiments.workloads import new_run_id

    config = load_config(config_path)
    plan = build_plan(config)
    run_id = new_run_id(time.time())
    observer = HourlyMemory()
    started = time.perf_counter()
    backend, names = make_backend("simulation", config, plan, run_id, BackendOptions())
    result = Runner(config, plan, backend, base_dir=out, metric_names=names, observer=observer, run_id=run_id).run()
    wall = time.perf_counter() - started
    fleet = backend.fleet  # type: ignore[attr-defined]
    sent = sum(job.sent for job in fleet.jobs.values())
    rows = sum(1 for _ in (result.run_dir / "metrics.csv").open()) - 1
    measured = {
        "exit_code": result.exit_code,
        "virtual_s": plan.total,
        "wall_s": wall,
        "speedup": plan.total / wall,
        "requests_sent": sent,
        "metrics_rows": rows,
        "hourly": observer.marks,
        "rss_end_mib": rss_mib(),
        "peak_rss_run_mib": rss_mib("VmHWM"),
        "requests_csv_bytes": (result.run_dir / "requests.csv").stat().st_size,
    }
    # what `hpa-exp run` does next for summary.json: the per-request statistics read requests.csv
    from hpa_experiments.analysis.load import load_run
    from hpa_experiments.analysis.requests import request_kpis

    started = time.perf_counter()
    request_kpis(load_run(result.run_dir))
    measured["request_kpis_s"] = time.perf_counter() - started
    return measured


def measure(config_path: Path, out: Path) -> dict[str, Any]:
    """Run `child` in a fresh interpreter; add its peak RSS and total process wall time."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child", str(config_path), "--child-out", str(out)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    assert proc.stdout is not None
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"benchmark child failed ({proc.returncode}) for {config_path}")
    data = json.loads(output.strip().splitlines()[-1])
    data["process_wall_s"] = time.perf_counter() - started
    data["peak_rss_mib"] = usage.ru_maxrss / 1024  # kilobytes on Linux
    data["cpu_s"] = usage.ru_utime + usage.ru_stime
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=["high-load", "day"])
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--repeat", type=int, default=3, help="high-load runs (the best wall time is kept)")
    parser.add_argument("--output", type=Path, default=RESULTS / "bench_twin.json")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.child_out)))
        return

    results: dict[str, Any] = {
        "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_avg_at_start": os.getloadavg(),
    }
    with tempfile.TemporaryDirectory(prefix="bench-twin-") as tmp:
        folder = Path(tmp)
        if args.only in (None, "high-load"):
            runs = [measure(HIGH_LOAD, folder / f"high-{i}") for i in range(args.repeat)]
            best = min(runs, key=lambda r: r["wall_s"])
            results["high_load"] = {**best, "wall_s_all": [r["wall_s"] for r in runs]}
            print(
                f"high-load: {best['virtual_s']:g} virtual s in {best['wall_s']:.2f} s "
                f"({best['speedup']:.0f}x real time), {best['requests_sent']} requests, "
                f"peak RSS {best['peak_rss_run_mib']:.0f} MiB (run) / {best['peak_rss_mib']:.0f} MiB "
                f"(with request statistics, {best['request_kpis_s']:.2f} s)",
                flush=True,
            )
        if args.only in (None, "day"):
            day = measure(day_config(folder, args.hours), folder / "day")
            results["day"] = {**day, "hours": args.hours}
            print(
                f"day: {args.hours:g} h in {day['wall_s']:.0f} s ({day['speedup']:.0f}x), "
                f"{day['requests_sent']} requests, requests.csv {day['requests_csv_bytes'] / 2**20:.0f} MiB, "
                f"peak RSS {day['peak_rss_run_mib']:.0f} MiB (run) / {day['peak_rss_mib']:.0f} MiB "
                f"(with request statistics, {day['request_kpis_s']:.1f} s)",
                flush=True,
            )
            for mark in day["hourly"]:
                print(f"  hour {mark['virtual_h']:4.0f}: wall {mark['wall_s']:7.1f} s  RSS {mark['rss_mib']:.1f} MiB")
    results["load_avg_at_end"] = os.getloadavg()
    results["max_rss_self_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    args.output.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(args.output.read_text()) if args.output.exists() else {}
    args.output.write_text(json.dumps({**previous, **results}, indent=2) + "\n", encoding="utf-8")
    print(f"written {args.output}")


if __name__ == "__main__":
    main()
