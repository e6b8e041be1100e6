"""Monitor fidelity of `hpa-exp run` on the Kubernetes backend (issue 3, "Performance").

Runs `python -m hpa_experiments run` as a subprocess against kmock's Kubernetes emulator
(a thread of this process) and a real Prometheus scraping the vLLM exporter, at a 1 s
interval for 120 s with three overlapping Jobs, and measures:

- tick lateness: `sample_lag_ms` (HPA read started minus planned tick time), p50/p99/max,
  and, independently, when the emulator received each tick's HPA GET;
- drift: the linear trend of lateness over the run and last-10 minus first-10 ticks;
- per-tick sampling time: `sample_ms` (planned tick time until the last query answered);
- Job start error: phases.csv actual minus planned start, and the emulator's arrival time
  of each Job POST minus the planned start;
- CPU seconds and peak RSS of the hpa-exp process (wait4 rusage, plus /proc samples).

Targets: p99 lateness < 50 ms, no cumulative drift, peak RSS < 150 MB, Job starts within
100 ms of plan.  Usage: `.venv/bin/python benchmarks/bench_monitor_fidelity.py`.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.kube_emulator import JOBS, KubeEmulator  # noqa: E402
from tests.support.prometheus import PrometheusServer  # noqa: E402
from tests.support.vllm_exporter import VllmExporter, scrape_config  # noqa: E402

NS = "bench"
HPA = "vllm-hpa"
RESULT = REPO / "benchmarks" / "results" / "monitor_fidelity.json"
TARGETS = {"lateness_p99_ms": 50.0, "peak_rss_mb": 150.0, "job_start_error_ms": 100.0}
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# -- the scene ---------------------------------------------------------------------------


class TimedLog(deque):
    """The emulator's request log, also noting when each request arrived (wall clock)."""

    def __init__(self, maxlen: int):
        super().__init__(maxlen=maxlen)
        self.arrivals: list[tuple[float, str, str]] = []

    def append(self, request: Any) -> None:
        self.arrivals.append((time.time(), request.method, request.path))
        super().append(request)


def write_config(folder: Path, duration: float) -> Path:
    """Three overlapping Jobs starting at 0, 25% and 50% of the run; cooldown for the last 1/12."""
    quarter = duration / 4
    jobs = [
        {"name": "load-a", "rate": 5, "duration": quarter * 4 / 3},
        {"name": "load-b", "rate": 7, "duration": quarter * 4 / 3, "start_delay": quarter},
        {"name": "load-c", "rate": 9, "duration": duration * 5 / 12, "start_delay": quarter * 2},
    ]
    doc = {
        "name": "fidelity",
        "namespace": NS,
        "deployment": "vllm",
        "model_name": "m",
        "backend": "kubernetes",
        "hpa": {"enabled": True, "name": HPA, "apply": False},
        "jobs": [{"manifest": str(REPO / "workloads" / "vllm-bench-serve.yaml"), **j} for j in jobs],
        "cooldown": {"enabled": True, "duration": duration / 12},
        "metrics": {"interval": 1, "rate_window": "10s"},
    }
    path = folder / "fidelity.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def play_controllers(kube: KubeEmulator, stop: threading.Event) -> None:
    """Act as the HPA, Deployment and Job controllers: scale every few seconds, give Jobs a pod."""
    seen: set[str] = set()
    step = 0
    while not stop.wait(0.5):
        for job in set(kube.names(JOBS, NS)) - seen:
            kube.add_job_pod(NS, job)
            seen.add(job)
        step += 1
        if step % 14 == 0:  # every 7 s
            replicas = 1 + (step // 14) % 4
            kube.set_hpa_status(NS, HPA, current_replicas=replicas, desired_replicas=replicas)
            kube.set_deployment_replicas(NS, "vllm", replicas=replicas, ready_replicas=replicas)


# -- measuring the process ---------------------------------------------------------------


@dataclass
class ProcessUsage:
    exit_code: int
    launched_at: float  # wall clock
    wall_s: float
    cpu_s: float
    max_rss_mb: float  # rusage ru_maxrss of the child
    proc_hwm_mb: float  # highest VmHWM seen in /proc while it ran
    samples: list[tuple[float, float, float]]  # (time, cpu seconds, VmRSS MB)


def _proc_sample(pid: int) -> tuple[float, float, float] | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime
    kb = {line.split(":")[0]: line.split()[1] for line in status.splitlines() if line.startswith("Vm")}
    if "VmRSS" not in kb:  # a zombie has no memory lines
        return None
    return cpu, int(kb["VmRSS"]) / 1024, int(kb["VmHWM"]) / 1024


def run_and_measure(command: list[str], log_path: Path) -> ProcessUsage:
    """Run the command, sampling /proc every 0.25 s; reap it with wait4 to get its own rusage."""
    launched_at, started = time.time(), time.monotonic()
    with log_path.open("w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
        samples: list[tuple[float, float, float]] = []
        hwm = 0.0
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            sample = _proc_sample(process.pid)
            if sample:
                samples.append((time.time(), sample[0], sample[1]))
                hwm = max(hwm, sample[2])
            time.sleep(0.25)
    process.returncode = os.waitstatus_to_exitcode(status)  # reaped here, so Popen must not wait
    return ProcessUsage(
        exit_code=process.returncode,
        launched_at=launched_at,
        wall_s=time.monotonic() - started,
        cpu_s=usage.ru_utime + usage.ru_stime,
        max_rss_mb=usage.ru_maxrss / 1024,
        proc_hwm_mb=hwm,
        samples=samples,
    )


# -- reading the run directory ------------------------------------------------------------


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def stats(values: list[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=float)
    return {
        "n": int(a.size),
        "mean": float(a.mean()),
        "p50": float(np.percentile(a, 50)),
        "p99": float(np.percentile(a, 99)),
        "max": float(a.max()),
        "min": float(a.min()),
    }


def _number(cell: str | None) -> float | None:
    return float(cell) if cell else None


def drift(elapsed: list[float], lateness: list[float]) -> dict[str, float]:
    """Trend of lateness over the run: least squares, and Theil-Sen (median of pairwise slopes),
    which one late tick (a job start, a busy machine) cannot tilt."""
    x, y = np.asarray(elapsed), np.asarray(lateness)
    i, j = np.triu_indices(len(x), k=1)
    theil_sen = float(np.median((y[j] - y[i]) / (x[j] - x[i])))
    return {
        "least_squares_slope_ms_per_min": float(np.polyfit(x, y, 1)[0] * 60),
        "theil_sen_slope_ms_per_min": theil_sen * 60,
        "first10_median_ms": float(np.median(y[:10])),
        "last10_median_ms": float(np.median(y[-10:])),
        "last10_minus_first10_median_ms": float(np.median(y[-10:]) - np.median(y[:10])),
    }


def analyse(run: Path, arrivals: list[tuple[float, str, str]], usage: ProcessUsage) -> dict[str, Any]:
    info = json.loads((run / "run.json").read_text())
    t0, interval = info["t0_unix"], info["interval_s"]
    rows = read_csv(run / "metrics.csv")
    elapsed = [float(r["elapsed_s"]) for r in rows]
    lag = [float(r["sample_lag_ms"]) for r in rows if r["sample_lag_ms"]]
    sample_ms = [float(r["sample_ms"]) for r in rows if r.get("sample_ms")]
    off_grid = [r["timestamp"] for r in rows if abs(epoch(r["timestamp"]) - t0 - float(r["elapsed_s"])) > 0.0015]

    # Independent view: when the emulator received each tick's HPA GET (first one after the tick).
    hpa_gets = sorted(t for t, method, path in arrivals if method == "GET" and path.endswith(f"/{HPA}"))
    server_lateness = []
    for k in range(len(rows)):
        tick = t0 + k * interval
        first = next((t for t in hpa_gets if t >= tick - 0.005), None)
        if first is not None and first - tick < interval:
            server_lateness.append((first - tick) * 1000)

    posts = sorted(t for t, method, path in arrivals if method == "POST" and path.endswith("/jobs"))
    phases = read_csv(run / "phases.csv")
    planned = sorted(float(p["planned_start_s"]) for p in phases)
    job_start = [
        {
            "job": p["job"],
            "planned_start_s": float(p["planned_start_s"]),
            "actual_start_s": float(p["actual_start_s"]),
            "error_ms": (float(p["actual_start_s"]) - float(p["planned_start_s"])) * 1000,
            "end_error_ms": (float(p["actual_end_s"]) - float(p["planned_end_s"])) * 1000,
        }
        for p in phases
    ]
    post_error = [(t - t0 - s) * 1000 for t, s in zip(posts, planned, strict=False)]

    run_window = [(t, cpu, rss) for t, cpu, rss in usage.samples if t0 <= t <= t0 + elapsed[-1]]
    steady_cpu = (
        (run_window[-1][1] - run_window[0][1]) / (run_window[-1][0] - run_window[0][0]) * 100
        if len(run_window) > 1
        else None
    )
    before_t0 = [s for s in usage.samples if s[0] < t0]
    events = read_csv(run / "events.csv")
    return {
        "run_dir": str(run),
        "status": info["status"],
        "exit_code": usage.exit_code,
        "rows": len(rows),
        "expected_rows": round(elapsed[-1] / interval) + 1,
        "rows_off_grid": len(off_grid),
        "warnings": [e["detail"] for e in events if e["kind"] in ("warning", "error")],
        "lateness_ms": stats(lag),
        "lateness_drift": drift(elapsed[: len(lag)], lag),
        "server_lateness_ms": stats(server_lateness) if server_lateness else None,
        "sample_ms": stats(sample_ms) if sample_ms else None,
        "job_start": job_start,
        "ticks": [
            {"elapsed_s": e, "sample_lag_ms": _number(r["sample_lag_ms"]), "sample_ms": _number(r.get("sample_ms"))}
            for e, r in zip(elapsed, rows, strict=True)
        ],
        "job_post_arrival_error_ms": post_error,
        "process": {
            "wall_s": usage.wall_s,
            "cpu_s": usage.cpu_s,
            "cpu_pct_avg_lifetime": usage.cpu_s / usage.wall_s * 100,
            "cpu_pct_during_run": steady_cpu,
            "peak_rss_mb": usage.max_rss_mb,
            "max_rss_mb_before_t0": max((s[2] for s in before_t0), default=None),
            "max_rss_mb_during_run": max((s[2] for s in run_window), default=None),
            "cpu_s_before_t0": before_t0[-1][1] if before_t0 else None,
            "launch_to_t0_s": t0 - usage.launched_at,
            "run_end_to_exit_s": usage.launched_at + usage.wall_s - (t0 + elapsed[-1]),
            "proc_vmhwm_mb": usage.proc_hwm_mb,
        },
    }


def verdict(result: dict[str, Any]) -> dict[str, bool]:
    worst_start = max(abs(j["error_ms"]) for j in result["job_start"])
    d = result["lateness_drift"]
    return {
        "lateness_p99_below_50ms": result["lateness_ms"]["p99"] < TARGETS["lateness_p99_ms"],
        # no cumulative drift: lateness does not grow over the run (robust trend under 1 ms per
        # minute, median of the last ten ticks within 5 ms of the first ten)
        "no_cumulative_drift": abs(d["theil_sen_slope_ms_per_min"]) < 1.0
        and abs(d["last10_minus_first10_median_ms"]) < 5.0,
        "peak_rss_below_150mb": result["process"]["peak_rss_mb"] < TARGETS["peak_rss_mb"],
        "job_starts_within_100ms": worst_start < TARGETS["job_start_error_ms"],
        "all_rows_on_grid": result["rows"] == result["expected_rows"] and result["rows_off_grid"] == 0,
    }


def print_table(result: dict[str, Any]) -> None:
    def line(name: str, s: dict[str, float] | None) -> None:
        if s:
            print(f"{name:<34} {s['p50']:>8.1f} {s['p99']:>8.1f} {s['max']:>8.1f} {s['mean']:>8.1f}")

    print(f"\n{'ms':<34} {'p50':>8} {'p99':>8} {'max':>8} {'mean':>8}")
    line("tick lateness (sample_lag_ms)", result["lateness_ms"])
    line("tick lateness (HPA GET at server)", result["server_lateness_ms"])
    line("tick sampling time (sample_ms)", result["sample_ms"])
    d = result["lateness_drift"]
    print(
        f"\ndrift: Theil-Sen {d['theil_sen_slope_ms_per_min']:+.3f} ms/min (least squares "
        f"{d['least_squares_slope_ms_per_min']:+.2f}); median of first 10 ticks {d['first10_median_ms']:.1f} ms, "
        f"last 10 {d['last10_median_ms']:.1f} ms"
    )
    for j in result["job_start"]:
        print(
            f"job {j['job']}: planned {j['planned_start_s']:g} s, actual {j['actual_start_s']:.3f} s "
            f"(start {j['error_ms']:+.0f} ms, end {j['end_error_ms']:+.0f} ms)"
        )
    print(
        "Job POST arrival at server vs plan (ms):", ", ".join(f"{e:+.0f}" for e in result["job_post_arrival_error_ms"])
    )
    p = result["process"]
    during = f"{p['cpu_pct_during_run']:.1f} %" if p["cpu_pct_during_run"] is not None else "n/a"
    print(
        f"process: wall {p['wall_s']:.1f} s, CPU {p['cpu_s']:.2f} s ({p['cpu_pct_avg_lifetime']:.1f} % over its "
        f"life, {during} during the run), peak RSS {p['peak_rss_mb']:.1f} MB"
    )
    print(
        f"rows {result['rows']}/{result['expected_rows']}, off grid {result['rows_off_grid']}, "
        f"warnings {len(result['warnings'])}"
    )
    print(
        f"before t0: {p['launch_to_t0_s']:.1f} s (CPU {p['cpu_s_before_t0']:.2f} s, RSS up to "
        f"{p['max_rss_mb_before_t0']:.1f} MB); during the run RSS up to {p['max_rss_mb_during_run']:.1f} MB; "
        f"exit {p['run_end_to_exit_s']:.1f} s after the last tick"
    )
    for name, ok in result["verdict"].items():
        print(f"  {'PASS' if ok else 'FAIL'}  {name}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=120.0, help="planned run length in seconds")
    parser.add_argument("--output", type=Path, default=RESULT, help="where to write the JSON result")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-fidelity-") as scratch:
        work = Path(scratch)
        (work / "kube").mkdir()
        kube = KubeEmulator(work / "kube").start()
        assert kube.handler is not None
        kube.add_vllm_setup(NS, "vllm", HPA)
        log = TimedLog(maxlen=20_000)
        kube.call(lambda: setattr(kube.handler, "log", log))
        exporter = VllmExporter(model_name="m").start()
        (work / "prom").mkdir()
        prom = PrometheusServer(work / "prom", [scrape_config(exporter, NS)]).start()
        stop = threading.Event()
        controllers = threading.Thread(target=play_controllers, args=(kube, stop), daemon=True)
        try:
            prom.wait_for(f'sum(rate(vllm:time_to_first_token_seconds_count{{namespace="{NS}"}}[10s])) > 0')
            config = write_config(work, args.duration)
            out = work / "out"
            command = [
                sys.executable, "-m", "hpa_experiments", "run", str(config), "--backend", "kubernetes",
                "--kubeconfig", str(kube.kubeconfig), "--prometheus-url", prom.url, "-o", str(out), "--plain",
            ]  # fmt: skip
            controllers.start()
            usage = run_and_measure(command, work / "hpa-exp.log")
            stop.set()
            controllers.join()
            if usage.exit_code != 0:
                print((work / "hpa-exp.log").read_text(), file=sys.stderr)
                print(f"hpa-exp run exited with {usage.exit_code}", file=sys.stderr)
                return 1
            (run,) = list(out.iterdir())
            result = analyse(run, list(log.arrivals), usage)
        finally:
            stop.set()
            prom.stop()
            exporter.stop()
            kube.stop()

    result["verdict"] = verdict(result)
    result["meta"] = {
        "date_utc": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M"),
        "cpus": os.cpu_count(),
        "load_avg_1m_at_end": os.getloadavg()[0],
        "python": sys.version.split()[0],
        "duration_s": args.duration,
        "interval_s": 1,
        "command": "python benchmarks/bench_monitor_fidelity.py"
        + (f" --duration {args.duration:g}" if args.duration != 120 else ""),
    }
    result.pop("run_dir")
    print_table(result)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nresult: {args.output}")
    return 0 if all(result["verdict"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
