"""Fit check of the twin's serving model: real steady latency points and the two HPA runs, before/after.

    .venv/bin/python benchmarks/twin_fit.py                 # table + plots + JSON (~1-2 min)
    .venv/bin/python benchmarks/twin_fit.py --points-only   # only the latency points (~20 s)
    .venv/bin/python benchmarks/twin_fit.py --search        # grid search of the step-time model (~3-5 min)

Latency points (benchmarks/latency_points.py; copied to tests/data/latency-points.csv for the
fidelity test): the twin runs each point's replica count, fixed, with the point's clients
(hpa_experiments/backends/sim/latency_probe.py): the measured arrival rate split over the Jobs
that were sending, or the Jobs' offered rates where the clients' concurrency limit held the
load back (the twin must then hold it back too).  HPA runs: benchmarks/reference_runs.py.
"before" is the profile as it was before this fit (BEFORE below), "after" the current default.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

sys.path.insert(0, str(Path(__file__).resolve().parent))

from latency_points import Point, all_points, write_csv

from hpa_experiments.backends.sim.latency_probe import ProbeResult, probe
from hpa_experiments.twin_profiles import Profile, load_profile

RESULTS = Path(__file__).resolve().parent / "results"
DOCS = Path(__file__).resolve().parents[1] / "docs"
POINTS_CSV = Path(__file__).resolve().parents[1] / "tests" / "data" / "latency-points.csv"
# the profile before this fit (the values the default had), as overrides of the current default
BEFORE: dict[str, Any] = {
    "step_base_s": 6.472e-3,
    "step_floor_s": 0.0,
    "pod_load_mean_s": 160.0,
    "pod_load_spread_s": 5.0,
    "pod_image_cached_share": 1.0,
}


def point_rates(point: Point) -> list[float]:
    """The clients that drive the twin at `point` (req/s each)."""
    rates = list(point.job_rates) or [point.rate]
    if point.client_limited:
        return rates
    total = sum(rates)
    return [r * point.rate / total for r in rates]


def run_point(profile: Profile, point: Point, seed: int = 1) -> ProbeResult:
    return probe(profile, point.replicas, point_rates(point), seed=seed)


def evaluate_points(profile: Profile, points: list[Point], seed: int = 1) -> list[dict[str, Any]]:
    rows = []
    for p in points:
        r = run_point(profile, p, seed)
        rows.append(
            {
                "run": p.run,
                "replicas": p.replicas,
                "rate_per_replica": round(p.rate_per_replica, 2),
                "client_limited": p.client_limited,
                "real_ttft_ms": p.ttft_ms,
                "real_itl_ms": p.itl_ms,
                "twin_ttft_ms": round(r.ttft_ms, 2),
                "twin_itl_ms": round(r.itl_ms, 2),
                "twin_rate_per_replica": round(r.arrival_rate / p.replicas, 2),
                "twin_running": round(r.running, 1),
                "twin_waiting": round(r.waiting, 1),
                "twin_kv": round(r.kv_usage, 3),
            }
        )
    return rows


SEARCH_GRID: dict[str, list[float]] = {
    "step_base_s": [5.5e-3, 6.472e-3],
    "step_per_decode_seq_s": [0.06e-3, 0.065e-3],
    "step_floor_s": [0.0, 8.0e-3, 8.5e-3],
}


def search(points: list[Point], seed: int) -> list[dict[str, Any]]:
    """Every grid combination of the step-time model scored on the points: mean |log10| error of
    ITL plus half that of TTFT (TTFT carries the API overhead the twin lacks), each the mean over
    load bins (per-replica rate <10, 10-16, 16-22, >=22 req/s) so that the many low-load points
    do not outweigh the few near capacity.  Best first."""
    import itertools

    keys = list(SEARCH_GRID)
    scored = []
    for values in itertools.product(*(SEARCH_GRID[k] for k in keys)):
        overrides = dict(zip(keys, values, strict=True))
        rows = evaluate_points(load_profile(overrides=overrides), points, seed)
        itl, ttft = binned_error(rows, "itl"), binned_error(rows, "ttft")
        scored.append({**overrides, "itl": itl, "ttft": ttft, "score": itl + 0.5 * ttft})
        print(json.dumps(scored[-1]), flush=True)
    return sorted(scored, key=lambda r: r["score"])


BINS = (10.0, 16.0, 22.0)


def binned_error(rows: list[dict[str, Any]], key: str) -> float:
    """`log_error` per load bin of the per-replica rate, averaged over the bins that have points."""
    import bisect

    groups: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(bisect.bisect(BINS, row["rate_per_replica"]), []).append(row)
    return sum(log_error(g, key) for g in groups.values()) / len(groups)


def log_error(rows: list[dict[str, Any]], key: str) -> float:
    """Mean absolute log10 error twin vs real over the rows (0.1 = ~26 % off on average)."""
    import math

    return sum(abs(math.log10(r[f"twin_{key}_ms"] / r[f"real_{key}_ms"])) for r in rows) / len(rows)


def plot_points(before: list[dict[str, Any]], after: list[dict[str, Any]], path: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    for ax, key in zip(axes, ("itl", "ttft"), strict=True):
        x = [r["rate_per_replica"] for r in after]
        ax.scatter(x, [r[f"real_{key}_ms"] for r in after], color="tab:blue", label="real", zorder=3)
        ax.scatter(x, [r[f"twin_{key}_ms"] for r in before], marker="x", color="tab:grey", label="twin before")
        ax.scatter(x, [r[f"twin_{key}_ms"] for r in after], marker="^", color="tab:orange", label="twin after")
        for r in after:
            if r["client_limited"]:
                ax.annotate("limited", (r["rate_per_replica"], r[f"real_{key}_ms"]), fontsize=7, color="tab:blue")
        ax.set_yscale("log")
        ax.set_xlabel("measured arrival rate per replica (req/s)")
        ax.set_ylabel(f"mean {key.upper()} (ms)")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("Steady points of the latency-vs-load runs: real vs twin (one seed)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points-only", action="store_true")
    parser.add_argument("--search", action="store_true")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--hpa-seeds", type=int, default=5, help="seeds 1..N for the HPA runs' spread")
    args = parser.parse_args()
    points = all_points()
    if not points:
        print("no steady points found in the latency-vs-load runs", file=sys.stderr)
        return 1
    write_csv(points, POINTS_CSV)
    RESULTS.mkdir(exist_ok=True)
    if args.search:
        ranked = search(points, args.seed)
        (RESULTS / "twin_fit_search.json").write_text(json.dumps(ranked, indent=1) + "\n")
        print("best:", json.dumps(ranked[0]))
        return 0
    before = evaluate_points(load_profile(overrides=BEFORE), points, args.seed)
    after = evaluate_points(load_profile(), points, args.seed)
    head = f"{'run':42s} {'r':>2s} {'rate':>6s} | {'TTFT real':>9s} {'before':>8s} {'after':>8s} |"
    print(head + f" {'ITL real':>8s} {'before':>7s} {'after':>7s}")
    for b, a in zip(before, after, strict=True):
        print(
            f"{a['run'][11:]:42s} {a['replicas']:2d} {a['rate_per_replica']:6.2f} | {a['real_ttft_ms']:9.1f} "
            f"{b['twin_ttft_ms']:8.1f} {a['twin_ttft_ms']:8.1f} | {a['real_itl_ms']:8.1f} {b['twin_itl_ms']:7.1f} "
            f"{a['twin_itl_ms']:7.1f}{'  limited' if a['client_limited'] else ''}"
        )
    summary = {
        f"{k}{suffix}": {"before": fn(before, k), "after": fn(after, k)}
        for k in ("itl", "ttft")
        for suffix, fn in (("", log_error), ("_binned", binned_error))
    }
    print("mean |log10 twin/real|:", json.dumps(summary))
    (RESULTS / "twin_fit_points.json").write_text(
        json.dumps({"before": before, "after": after, "log10_error": summary}, indent=1) + "\n"
    )
    plot_points(before, after, DOCS / "twin-fit-latency.png")
    if args.points_only:
        return 0
    hpa = evaluate_hpa_runs(args.seed, args.hpa_seeds)
    (RESULTS / "twin_fit_hpa.json").write_text(json.dumps(hpa, indent=1) + "\n")
    return 0


def evaluate_hpa_runs(seed: int, seeds: int) -> dict[str, Any]:
    """Both HPA reference runs replayed before and after: KPIs and trajectory errors with `seed`
    (and one figure each), and the errors' mean, min and max over seeds 1..`seeds`."""
    import tempfile

    from reference_runs import REFERENCES, fit_errors, kpi_row, real_end_s, real_run, twin_run

    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for ref in REFERENCES:
            real = real_run(ref, Path(tmp))
            end = real_end_s(real)
            twins = {
                label: twin_run(ref, params, seed, until_s=end).run
                for label, params in (("before", BEFORE), ("after", {}))
            }
            out[ref.name] = {
                "real": kpi_row(real),
                **{label: {**kpi_row(run), **fit_errors(real, run)} for label, run in twins.items()},
            }
            for label, params in (("before", BEFORE), ("after", {})):
                runs = [fit_errors(real, twin_run(ref, params, s, until_s=end).run) for s in range(1, seeds + 1)]
                out[ref.name][f"{label}_seeds"] = {
                    key: [min(r[key] for r in runs), sum(r[key] for r in runs) / len(runs), max(r[key] for r in runs)]
                    for key in ("replicas_mae", "kv_mae", "waiting_mae", "d_first_scale_up_at_s", "d_replica_seconds")
                    if all(r[key] is not None for r in runs)
                }
            print(ref.name, json.dumps(out[ref.name], default=str))
            plot_hpa(ref.name, real, twins, DOCS / f"twin-fit-{ref.name}.png")
    return out


def plot_hpa(name: str, real: Any, twins: dict[str, Any], path: Path) -> None:
    fig, axes = plt.subplots(3, 1, figsize=(11, 8), sharex=True)
    columns = (
        ("replicas", "replicas"),
        ("kv_cache_usage_perc", "KV usage (avg per pod)"),
        ("num_requests_waiting", "waiting (avg per pod)"),
    )
    for ax, (column, title) in zip(axes, columns, strict=True):
        for label, color in (("before", "tab:grey"), ("after", "tab:orange")):
            ax.step(
                twins[label].elapsed, twins[label].metrics[column], where="post", color=color, label=f"twin {label}"
            )
        ax.step(real.elapsed, real.metrics[column], where="post", color="tab:blue", lw=1.8, label="real")
        ax.set_ylabel(title)
        ax.grid(alpha=0.3)
    axes[0].legend()
    axes[-1].set_xlabel("seconds since the run started")
    fig.suptitle(f"{name}: real vs twin before/after the refit (seed as given)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
