"""Peak memory of `hpa-exp report`, `compare` and `runs` on a run whose metrics.csv is 1 GB.

The run is a real twin run (high-load-hpa, every column the twin writes) whose metric rows are
repeated, shifted in time, until the file reaches the size asked for; its last line is then cut
in the middle, as a crash mid-write leaves it.  With --vary the repeated rows' measured values
(latencies, KV cache, power, tokens, ratios) are filled and change on every row (0.5 to 1.5 times
the column's median in the run): no two samples are alike, the worst case for the exact
percentiles, which keep one count per distinct value.  With --requests-mb its requests.csv is
inflated too (the run's requests repeated, later each time).
Each command runs in a fresh process; its peak RSS is the child's `ru_maxrss`.  Target (issue
16): under 1 GB for a 1 GB file.

    .venv/bin/python benchmarks/bench_big_csv.py [--gigabytes 1.0] [--vary] [--requests-mb N] [--workdir DIR]

Prints a Markdown section for benchmarks/README.md ("Big metrics.csv").
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hpa_experiments.api import Experiment
from hpa_experiments.rundir import utc_iso

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "experiment-configs" / "high-load-hpa.yaml"
PEAK_RSS = (
    "import resource, subprocess, sys\n"
    "done = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)\n"
    "usage = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
    "print(done.returncode, usage.ru_maxrss, usage.ru_utime + usage.ru_stime, repr(done.stderr[-300:]))\n"
)


def twin_run(folder: Path) -> Path:
    result = Experiment.from_yaml_file(CONFIG).run(backend="sim", output_dir=folder, handle_signals=False)
    return result.run_dir


VARIED = (
    "ttft_ms",
    "itl_ms",
    "kv_cache_usage_perc",
    "prom_kv_cache_usage_avg",
    "gpu_power_w",
    "generation_tokens_per_s",
    "sample_ms",
    "kv_cache_usage_perc_ratio",
)


def _typical(rows: list[list[str]], index: int) -> float:
    """The median of a column's non-zero values in the run (1 without any): the centre of its noise."""
    values = sorted(float(row[index]) for row in rows if row[index] and float(row[index]) != 0)
    return values[len(values) // 2] if values else 1.0


def inflate(run: Path, target_bytes: int, vary: bool = False) -> int:
    """Repeat the run's last metric row (every column filled; elapsed_s and timestamp moved on by
    the interval each time) until the file has `target_bytes`: a long steady stretch, so that the
    scale-event analysis (which costs time per event, not memory) stays as small as the run's.
    Returns the number of data rows.  The last line is left cut, without its newline."""
    path = run / "metrics.csv"
    with path.open(newline="", encoding="utf-8") as fh:
        header, *rows = list(csv.reader(fh))
    t_index, e_index = header.index("timestamp"), header.index("elapsed_s")
    info = json.loads((run / "run.json").read_text())
    t0, interval, last = float(info["t0_unix"]), float(info["interval_s"]), rows[-1]
    written, count, elapsed = path.stat().st_size, len(rows), float(last[e_index])
    varied = [(header.index(c), _typical(rows, header.index(c))) for c in VARIED if c in header]
    noise = random.Random(16)
    with path.open("a", encoding="utf-8", newline="") as out:
        while written < target_bytes:
            lines = []
            for _ in range(10_000):
                elapsed += interval
                last[e_index], last[t_index] = f"{elapsed:g}", utc_iso(t0 + elapsed)
                for index, base in varied if vary else ():
                    last[index] = f"{base * (0.5 + noise.random()):.6f}"
                lines.append(",".join(last))
            text = "\n".join(lines) + "\n"
            out.write(text)
            written += len(text)
            count += len(lines)
        out.write(lines[0][: len(lines[0]) // 2])  # a crash mid-write: half a row, no newline
    return count


def inflate_requests(run: Path, target_bytes: int) -> int:
    """Repeat requests.csv's rows, each copy later by the run's length and with new request ids,
    until the file has `target_bytes`; returns its data rows."""
    path = run / "requests.csv"
    with path.open(newline="", encoding="utf-8") as fh:
        header, *rows = list(csv.reader(fh))
    shift = max(float(r[header.index("end_s")] or 0) for r in rows) + 1.0
    times = [header.index(c) for c in ("arrival_s", "end_s")]
    written, count, copy = path.stat().st_size, len(rows), 0
    with path.open("a", encoding="utf-8", newline="") as out:
        while written < target_bytes:
            copy += 1
            lines = []
            for n, row in enumerate(rows):
                moved = list(row)
                moved[0] = str(copy * len(rows) + n)
                for index in times:
                    if moved[index]:
                        moved[index] = f"{float(moved[index]) + copy * shift:.6f}"
                lines.append(",".join(moved))
            text = "\n".join(lines) + "\n"
            out.write(text)
            written += len(text)
            count += len(lines)
    return count


def peak(command: list[str]) -> tuple[float, float, float, str]:
    """(wall seconds, peak RSS in MB, CPU seconds, stderr tail) of `command` in a fresh process."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", PEAK_RSS, *command], capture_output=True, text=True, check=True)
    code, rss_kb, cpu, tail = done.stdout.strip().split(" ", 3)
    if code != "0":
        raise SystemExit(f"{' '.join(command)} exited {code}: {tail}")
    return time.perf_counter() - start, int(rss_kb) / 1024, float(cpu), tail


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gigabytes", type=float, default=1.0)
    parser.add_argument("--workdir", type=Path, default=None, help="keep the runs here (default: a temp folder)")
    parser.add_argument("--run", type=Path, default=None, help="measure this already inflated run instead")
    parser.add_argument("--vary", action="store_true", help="every repeated row with other measured values")
    parser.add_argument("--requests-mb", type=float, default=0.0, help="inflate requests.csv to this size too")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-big-csv-"))
    started = time.perf_counter()
    if args.run is None:
        run = twin_run(workdir / "runs")
        rows = inflate(run, int(args.gigabytes * 1024**3), args.vary)
        if args.requests_mb:
            inflate_requests(run, int(args.requests_mb * 1024**2))
    else:
        run = args.run
        with (run / "metrics.csv").open("rb") as fh:
            rows = sum(block.count(b"\n") for block in iter(lambda: fh.read(1 << 24), b"")) - 1
    built = time.perf_counter() - started
    size = (run / "metrics.csv").stat().st_size
    requests_size = (run / "requests.csv").stat().st_size if (run / "requests.csv").exists() else 0
    with (run / "metrics.csv").open(encoding="utf-8") as fh:
        width = len(fh.readline().split(","))
    hpa_exp = [sys.executable, "-m", "hpa_experiments"]
    commands = {
        "report RUN": [*hpa_exp, "report", str(run)],
        "compare RUN RUN": [*hpa_exp, "compare", str(run), str(run), "-o", str(workdir / "compare")],
        "runs -d DIR (no summary.json)": [*hpa_exp, "runs", "-d", str(run.parent)],
    }
    (run / "summary.json").unlink(missing_ok=True)  # runs then computes the KPIs itself
    print("## Big metrics.csv\n")
    print(
        f"`.venv/bin/python benchmarks/bench_big_csv.py --gigabytes {args.gigabytes:g}` "
        f"({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, CPython {platform.python_version()}, "
        f"{os.cpu_count()} CPUs shared, load average {os.getloadavg()[0]:.1f}): metrics.csv {size / 1024**2:,.0f} MiB, "
        f"{rows:,} rows: the twin's high-load-hpa run ({width} "
        f"columns, all filled), its last row repeated{' with varied values' if args.vary else ''}; "
        f"last line cut in the middle; requests.csv {requests_size / 1024**2:,.0f} MiB; built in {built:.0f} s.\n"
    )
    print("| command | peak RSS (MB) | wall (s) | CPU (s) | warning |\n|---|---:|---:|---:|---|")
    for name, command in commands.items():
        if name.startswith("runs"):
            (run / "summary.json").unlink(missing_ok=True)
        wall, rss, cpu, tail = peak(command)
        warned = "partial last line" in tail
        print(f"| `hpa-exp {name}` | {rss:,.0f} | {wall:.0f} | {cpu:.0f} | {'cut line reported' if warned else '-'} |")
    print(f"\nload average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
