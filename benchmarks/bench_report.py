"""How long `hpa-exp report` takes on a 24-hour run sampled every second (86,400 rows).

Target: under 3 s.  Measures the whole command as a user runs it (a fresh process, imports
included) and, separately, the report itself inside one process, with a breakdown.

    .venv/bin/python benchmarks/bench_report.py [--hours 24] [--repeats 3]

Prints a Markdown section for benchmarks/README.md ("Report speed").
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hpa_experiments.analysis.kpis import compute_kpis
from hpa_experiments.analysis.load import load_run
from hpa_experiments.analysis.plots import write_standard_plots
from hpa_experiments.analysis.report import build_report

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.synthetic_runs import day_run  # noqa: E402


def timed(action) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def command_seconds(run_dir: Path, repeats: int) -> tuple[list[float], list[float]]:
    """Wall and CPU (user + system) seconds of `hpa-exp report RUN` in a fresh process."""
    command = [sys.executable, "-m", "hpa_experiments", "report", str(run_dir)]
    walls, cpus = [], []
    for _ in range(repeats):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        walls.append(timed(lambda: subprocess.run(command, check=True, capture_output=True)))
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return walls, cpus


def in_process_seconds(run_dir: Path, repeats: int) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {"load": [], "kpis": [], "plots": [], "report": []}
    for _ in range(repeats):
        start = time.perf_counter()
        run = load_run(run_dir)
        results["load"].append(time.perf_counter() - start)
        results["kpis"].append(timed(lambda run=run: compute_kpis(run)))
        results["plots"].append(timed(lambda run=run: write_standard_plots(run)))
        results["report"].append(timed(lambda: build_report(run_dir)))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = day_run(Path(tmp) / "synthetic-day", hours=args.hours, interval=1.0)
        rows = sum(1 for _ in (run_dir / "metrics.csv").open()) - 1
        load_before = os.getloadavg()[0]
        command_wall, command_cpu = command_seconds(run_dir, args.repeats)
        inside = in_process_seconds(run_dir, args.repeats)
        load_after = os.getloadavg()[0]

    def cell(values: list[float]) -> str:
        return f"{min(values):.2f} / {statistics.median(values):.2f}"

    print("## Report speed\n")
    print(
        f"`.venv/bin/python benchmarks/bench_report.py --hours {args.hours:g} --repeats {args.repeats}` "
        f"({time.strftime('%Y-%m-%d')}, CPython {platform.python_version()}, {os.cpu_count()} CPUs (shared), "
        f"load average {load_before:.1f} before / {load_after:.1f} after): synthetic run, {rows:,} rows "
        f"at 1 s, {int(args.hours)} phases; target under 3 s.\n"
    )
    print("| measured | best / median (s) |")
    print("|---|---:|")
    print(f"| `hpa-exp report RUN`, whole command (new process, imports included), wall | {cell(command_wall)} |")
    print(f"| same, CPU time (user + system) | {cell(command_cpu)} |")
    print(f"| report in-process (`build_report`: load, KPIs, summary.json, figure, HTML) | {cell(inside['report'])} |")
    print(f"| - load run directory | {cell(inside['load'])} |")
    print(f"| - KPIs | {cell(inside['kpis'])} |")
    print(f"| - standard figure to PNG | {cell(inside['plots'])} |")


if __name__ == "__main__":
    main()
