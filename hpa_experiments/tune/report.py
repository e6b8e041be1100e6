"""A search's outcome: the table of points (terminal, tune.json, tune.csv), the cost-attainment
plot with the front (front.png in tune.html), and the recommended manifest."""

from __future__ import annotations

import csv
import html
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from matplotlib.figure import Figure
from rich.markup import escape
from rich.table import Table

from hpa_experiments.analysis.plots import save_figure
from hpa_experiments.analysis.report import NO_DATA, html_page, html_table, png_data_uri
from hpa_experiments.rundir import atomic_write_json
from hpa_experiments.tune.pareto import Recommendation, Scored, pareto_front, recommend
from hpa_experiments.tune.plan import TunePlan

TUNE_JSON = "tune.json"
TUNE_CSV = "tune.csv"
TUNE_HTML = "tune.html"
FRONT_PNG = "front.png"
RULE = (
    "the cheapest point on the Pareto front (median GPU-hours) whose median SLO attainment is at least "
    "the target; when none reaches it, the front point with the highest attainment (flagged)"
)


@dataclass
class Outcome:
    results: list[dict[str, Any]]  # one per point with a result, in point order
    unscored: list[dict[str, Any]]  # results without a completed seed
    front: list[int]
    recommendation: Recommendation | None
    manifest_path: Path | None


def _scored(result: dict[str, Any]) -> Scored | None:
    cost, attained = result["gpu_hours"]["median"], result["attainment"]["median"]
    return None if cost is None or attained is None else Scored(int(result["index"]), cost, attained)


def analyse(plan: TunePlan) -> Outcome:
    results = plan.results()
    scored = [s for s in map(_scored, results) if s is not None]
    front = pareto_front(scored)
    choice = recommend(front, plan.space.spec.target_attainment)
    return Outcome(
        results,
        [r for r in results if _scored(r) is None],
        [p.index for p in front],
        choice,
        None,
    )


def _band(stats: dict[str, Any], digits: int, scale: float = 1.0) -> str:
    if not stats.get("n"):
        return NO_DATA
    return f"{stats['median'] * scale:.{digits}f} ({stats['p10'] * scale:.{digits}f}-{stats['p90'] * scale:.{digits}f})"


def rows(plan: TunePlan, outcome: Outcome) -> tuple[list[str], list[list[str]]]:
    keys = list(plan.space.spec.parameters)
    headers = ["point", *keys, "GPU-hours median (p10-p90)", "SLO attainment % (p10-p90)", "seeds at max", "front"]
    chosen = outcome.recommendation.index if outcome.recommendation else None
    table = []
    for result in outcome.results:
        index = int(result["index"])
        share = result.get("reached_max_share")
        mark = "recommended" if index == chosen else ("yes" if index in outcome.front else "")
        table.append(
            [
                str(index),
                *(str(result["values"].get(k)) for k in keys),
                _band(result["gpu_hours"], 3),
                _band(result["attainment"], 1, 100.0),
                NO_DATA if share is None else f"{share * 100:.0f}%",
                mark,
            ]
        )
    return headers, table


def terminal_table(plan: TunePlan, outcome: Outcome) -> Table:
    headers, body = rows(plan, outcome)
    table = Table(title=f"tune {plan.space.name}: {len(plan.seeds)} seeds per point", title_justify="left")
    for header in headers:
        table.add_column(escape(header), overflow="fold")  # a path like metrics[name] is no markup
    for row in body:
        table.add_row(*map(escape, row))
    return table


def front_figure(plan: TunePlan, outcome: Outcome) -> Figure:
    fig = Figure(figsize=(9.0, 6.0))
    ax = fig.subplots()
    by_index = {int(r["index"]): r for r in outcome.results}
    labels: dict[tuple[float, float], list[str]] = {}  # points at the same place share one label
    for result in outcome.results:
        s = _scored(result)
        if s is None:
            continue
        g, a = result["gpu_hours"], result["attainment"]
        ax.errorbar(
            s.cost,
            s.attainment * 100,
            xerr=[[s.cost - g["p10"]], [g["p90"] - s.cost]],
            yerr=[[(s.attainment - a["p10"]) * 100], [(a["p90"] - s.attainment) * 100]],
            fmt="o",
            color="tab:blue" if s.index in outcome.front else "tab:gray",
            alpha=0.9 if s.index in outcome.front else 0.5,
            ms=5,
            capsize=2,
        )
        labels.setdefault((s.cost, s.attainment * 100), []).append(str(s.index))
    placed: list[tuple[float, float]] = []
    span_x = (max(x for x, _ in labels) - min(x for x, _ in labels)) or 1.0 if labels else 1.0
    span_y = (max(y for _, y in labels) - min(y for _, y in labels)) or 1.0 if labels else 1.0
    for (x, y), names in sorted(labels.items()):
        crowded = any(abs(x - px) < 0.04 * span_x and abs(y - py) < 0.03 * span_y for px, py in placed)
        offset = (4, -11) if crowded else (4, 4)  # a second label close by goes under its point
        ax.annotate(",".join(names), (x, y), textcoords="offset points", xytext=offset, fontsize=7)
        placed.append((x, y))
    front = [by_index[i] for i in outcome.front]
    ax.step(
        [r["gpu_hours"]["median"] for r in front],
        [r["attainment"]["median"] * 100 for r in front],
        where="post",
        color="tab:blue",
        lw=1.2,
        label="Pareto front (medians)",
    )
    ax.axhline(plan.space.spec.target_attainment * 100, color="tab:red", ls=":", lw=1, label="target attainment")
    if outcome.recommendation:
        r = by_index[outcome.recommendation.index]
        ax.plot(
            r["gpu_hours"]["median"],
            r["attainment"]["median"] * 100,
            marker="*",
            ms=16,
            color="tab:orange",
            ls="none",
            label=f"recommended: point {outcome.recommendation.index}",
        )
    ax.set_xlabel("cost: GPU-hours per run (median; bars p10-p90 over seeds)")
    ax.set_ylabel("SLO attainment: % of requests within slo (median; bars p10-p90)")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(0.0, -0.12), fontsize=8, frameon=False, ncols=3)
    fig.suptitle(f"tune {plan.space.name}: cost vs SLO attainment ({len(plan.seeds)} seeds per point)", fontsize=11)
    return fig


def manifest_text(plan: TunePlan, outcome: Outcome) -> str | None:
    if outcome.recommendation is None:
        return None
    index = outcome.recommendation.index
    result = next(r for r in outcome.results if int(r["index"]) == index)
    slo = plan.base.config.slo
    met = "meets" if outcome.recommendation.meets_target else "does NOT meet"
    header = [
        f"# Recommended by `hpa-exp tune` ({plan.space.name}), point {index}: "
        + ", ".join(f"{k}={v}" for k, v in result["values"].items()),
        f"# Rule: {RULE}.",
        f"# It {met} the target attainment {plan.space.spec.target_attainment * 100:g}% "
        f"(slo: ttft_ms {slo.ttft_ms}, itl_ms {slo.itl_ms}).",
        f"# Predicted on the twin for {plan.base.config.name} over seeds {plan.seeds[0]}-{plan.seeds[-1]}: "
        f"GPU-hours {_band(result['gpu_hours'], 3)}, attainment % {_band(result['attainment'], 1, 100.0)} "
        "(median (p10-p90)).",
    ]
    return "\n".join(header) + "\n" + yaml.safe_dump(result["manifest"], sort_keys=False)


def write_outputs(plan: TunePlan, outcome: Outcome) -> dict[str, Path]:
    """tune.json, tune.csv, front.png, tune.html and the recommended manifest, in the search's folder."""
    folder = plan.folder
    headers, body = rows(plan, outcome)
    paths: dict[str, Path] = {}
    kind = "scaledobject" if plan.base.config.autoscaler_kind == "keda" else "hpa"
    text = manifest_text(plan, outcome)
    if text is not None:
        paths["manifest"] = folder / f"recommended-{kind}.yaml"
        paths["manifest"].write_text(text, encoding="utf-8")
        outcome.manifest_path = paths["manifest"]
    paths["json"] = folder / TUNE_JSON
    atomic_write_json(
        paths["json"],
        {
            "name": plan.space.name,
            "experiment": str(plan.base.config.source),
            "space": str(plan.space.source),
            "search": plan.space.spec.search,
            "seeds": plan.seeds,
            "target_attainment": plan.space.spec.target_attainment,
            "slo": {"ttft_ms": plan.base.config.slo.ttft_ms, "itl_ms": plan.base.config.slo.itl_ms},
            "rule": RULE,
            "points_planned": len(plan.points),
            "points_scored": len(outcome.results) - len(outcome.unscored),
            "unscored": [int(r["index"]) for r in outcome.unscored],
            "front": outcome.front,
            "recommended": None
            if outcome.recommendation is None
            else {
                "index": outcome.recommendation.index,
                "meets_target": outcome.recommendation.meets_target,
                "manifest": str(paths.get("manifest")),
            },
            "points": [{k: v for k, v in r.items() if k != "manifest"} for r in outcome.results],
        },
    )
    paths["csv"] = folder / TUNE_CSV
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    keys = list(plan.space.spec.parameters)
    writer.writerow(
        [
            "point",
            *keys,
            "gpu_hours_median",
            "gpu_hours_p10",
            "gpu_hours_p90",
            "attainment_median",
            "attainment_p10",
            "attainment_p90",
            "reached_max_share",
            "scored_seeds",
            "front",
            "recommended",
        ]
    )
    chosen = outcome.recommendation.index if outcome.recommendation else None
    for r in outcome.results:
        g, a = r["gpu_hours"], r["attainment"]
        writer.writerow(
            [
                r["index"],
                *(r["values"].get(k) for k in keys),
                g["median"],
                g["p10"],
                g["p90"],
                a["median"],
                a["p10"],
                a["p90"],
                r.get("reached_max_share"),
                r["scored_seeds"],
                int(r["index"]) in outcome.front,
                int(r["index"]) == chosen,
            ]
        )
    paths["csv"].write_text(buffer.getvalue(), encoding="utf-8")
    paths["png"] = save_figure(front_figure(plan, outcome), folder / FRONT_PNG)
    paths["html"] = folder / TUNE_HTML
    paths["html"].write_text(
        html_page(
            f"tune {plan.space.name}",
            f"{plan.base.config.name}: {len(outcome.results)} points, {len(plan.seeds)} seeds each",
            [
                f"<p>Recommendation rule: {RULE}.</p>",
                html_table(headers, body),
                f'<img alt="cost vs attainment" src="{png_data_uri(paths["png"])}">',
                "<h2>Recommended manifest</h2>",
                f"<pre>{html.escape(text) if text else NO_DATA}</pre>",
            ],
        ),
        encoding="utf-8",
    )
    return paths


def summary_lines(plan: TunePlan, outcome: Outcome, skipped: int) -> Sequence[str]:
    lines = [f"{len(outcome.results)} of {len(plan.points)} points scored ({skipped} done before, skipped)"]
    partial = [str(r["index"]) for r in outcome.results if 0 < r["scored_seeds"] < len(plan.seeds)]
    if partial:
        lines.append(f"points scored on fewer than {len(plan.seeds)} seeds (a seed failed): " + ", ".join(partial))
    if outcome.unscored:
        lines.append(
            "no completed seed (not on the front): points " + ", ".join(str(r["index"]) for r in outcome.unscored)
        )
    if outcome.recommendation is None:
        lines.append("no recommendation: no point has a measured cost and attainment")
    elif not outcome.recommendation.meets_target:
        lines.append(
            f"no point reaches {plan.space.spec.target_attainment * 100:g}% attainment; "
            f"point {outcome.recommendation.index} has the highest"
        )
    return lines
