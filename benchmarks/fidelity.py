"""Real vs twin: one figure per reference run and the KPI table, with the current default profile.

    .venv/bin/python benchmarks/fidelity.py          # PNGs, fidelity.md and fidelity.json in benchmarks/results/

For each reference run (benchmarks/reference_runs.py): the real run imported from the original
format, and the twin replaying it (benchmarks/calibration/<run>.yaml) with the config's seed (the
plotted line) and with `--seeds` more seeds (the KPI spread).  Plotted on one time axis: replicas,
KV-cache usage and waiting requests, each as the HPA saw them (per-pod averages from the adapter).
KPIs come from hpa_experiments.analysis.compute_kpis on both runs with the same phase table.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

sys.path.insert(0, str(Path(__file__).resolve().parent))

from reference_runs import (
    REFERENCES,
    Reference,
    fit_errors,
    kpi_row,
    real_end_s,
    real_run,
    twin_run,
)

from hpa_experiments.analysis.load import Run
from hpa_experiments.config import load_config

RESULTS = Path(__file__).resolve().parent / "results"
PANELS = (
    ("replicas", "replicas", None),
    ("kv_cache_usage_perc", "KV-cache usage (avg per pod)", "kv_cache_usage_target"),
    ("num_requests_waiting", "waiting requests (avg per pod)", "num_requests_waiting_target"),
)
KPI_LABELS = {
    "first_scale_up_at_s": "first scale-up (s after start)",
    "peak_replicas": "peak replicas",
    "time_at_peak_s": "time at peak (s after start)",
    "scale_down_completed_after_s": "scale-down completion (s after last job end)",
    "replica_seconds": "replica-seconds",
}


def plot(ref: Reference, real: Run, twins: list[Run], path: Path) -> None:
    fig, axes = plt.subplots(len(PANELS), 1, figsize=(11, 8.5), sharex=True)
    for ax, (column, title, target) in zip(axes, PANELS, strict=True):
        for i, twin in enumerate(twins):
            ax.step(
                twin.elapsed,
                twin.metrics[column],
                where="post",
                color="tab:orange",
                alpha=1.0 if i == 0 else 0.25,
                lw=1.6 if i == 0 else 0.8,
                label="twin (config seed)" if i == 0 else ("twin, other seeds" if i == 1 else None),
            )
        ax.step(real.elapsed, real.metrics[column], where="post", color="tab:blue", lw=1.8, label="real")
        ax.plot(real.elapsed, real.metrics[column], "o", color="tab:blue", ms=3)
        if target:
            value = real.metrics[target].dropna()
            if len(value):
                ax.axhline(float(value.iloc[0]), color="grey", ls="--", lw=0.8, label="HPA target")
        for _job, rate, start, end in ref.jobs:
            ax.axvspan(start, end, color="grey", alpha=0.04)
            if column == "replicas":
                ax.annotate(
                    f"{rate:g}/s",
                    (start, 0),
                    xycoords=("data", "axes fraction"),
                    fontsize=7,
                    xytext=(2, 2),
                    textcoords="offset points",
                    color="grey",
                )
        ax.set_ylabel(title, fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, loc="upper right")
    axes[-1].set_xlabel("seconds since the run started (the first Job's creation)")
    fig.suptitle(f"{ref.name}: real (original system, ~21 s samples) vs twin (5 s samples)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def fmt(value: float | None, digits: int = 0) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def markdown(results: dict[str, Any]) -> str:
    lines: list[str] = []
    for name, data in results["runs"].items():
        lines += [
            f"#### {name}",
            "",
            "| KPI | real | twin (config seed) | twin, seeds "
            + ",".join(map(str, results["seeds"]))
            + " (min – max) |",
            "|---|---:|---:|---:|",
        ]
        for key, label in KPI_LABELS.items():
            values = [k[key] for k in data["twin_seeds_kpis"] if k[key] is not None]
            spread = f"{min(values):.0f} – {max(values):.0f}" if values else "–"
            missing = len(data["twin_seeds_kpis"]) - len(values)
            if missing:
                spread += f" ({missing} without)"
            lines.append(f"| {label} | {fmt(data['real_kpis'][key])} | {fmt(data['twin_kpis'][key])} | {spread} |")
        errors = data["twin_errors"]
        lines += [
            "",
            f"Trajectory error at the real samples (config seed): replicas MAE "
            f"{fmt(errors['replicas_mae'], 2)}, KV MAE {fmt(errors['kv_mae'], 3)}, "
            f"waiting MAE {fmt(errors['waiting_mae'], 1)} requests per pod.",
            "",
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--output-dir", type=Path, default=RESULTS)
    args = parser.parse_args()
    out = args.output_dir
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"seeds": args.seeds, "runs": {}}
    with tempfile.TemporaryDirectory(prefix="fidelity-") as scratch:
        for ref in REFERENCES:
            real = real_run(ref, Path(scratch))
            until = real_end_s(real)
            config_seed = load_config(ref.config).simulation.seed
            main_twin = twin_run(ref, {}, config_seed, until_s=until)
            others = [twin_run(ref, {}, seed, until_s=until) for seed in args.seeds]
            image = out / f"fidelity-{ref.name}.png"
            plot(ref, real, [main_twin.run, *(t.run for t in others)], image)
            results["runs"][ref.name] = {
                "config": str(ref.config.relative_to(Path(__file__).resolve().parents[1])),
                "config_seed": config_seed,
                "real_kpis": kpi_row(real),
                "twin_kpis": kpi_row(main_twin.run),
                "twin_errors": fit_errors(real, main_twin.run),
                "twin_seeds_kpis": [kpi_row(t.run) for t in others],
                "twin_seeds_errors": [fit_errors(real, t.run) for t in others],
                "twin_wall_s": main_twin.wall_s,
                "figure": image.name,
            }
            print(f"{ref.name}: {image}", flush=True)
    (out / "fidelity.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    (out / "fidelity.md").write_text(markdown(results), encoding="utf-8")
    print(markdown(results))


if __name__ == "__main__":
    main()
