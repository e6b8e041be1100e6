"""Compare runs: overlay plots on experiment time and a KPI table with deltas vs the first run."""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rich.table import Table

from hpa_experiments.analysis.energy import MEASURED_GPU_HOURS
from hpa_experiments.analysis.kpis import compute_kpis
from hpa_experiments.analysis.load import Run
from hpa_experiments.analysis.plots import COMPARE_FILE, compare_figure, save_figure
from hpa_experiments.analysis.report import NO_DATA, definitions_html, fmt, html_page, html_table, png_data_uri
from hpa_experiments.analysis.window_latency import run_window, window_value
from hpa_experiments.rundir import atomic_write_json

COMPARE_HTML = "compare.html"
COMPARE_JSON = "compare.json"


@dataclass(frozen=True)
class Kpi:
    label: str
    unit: str
    digits: int
    pick: Callable[[dict[str, Any]], float | None]
    lower_is_better: bool | None  # None: neither direction is "better"
    unit_of: Callable[[dict[str, Any]], str] | None = None  # a unit that depends on the run (currency)

    def units(self, summaries: Sequence[dict[str, Any]]) -> list[str]:
        return [self.unit_of(s) if self.unit_of else self.unit for s in summaries]


def _first_increase(summary: dict[str, Any], key: str) -> float | None:
    """The KPI of the first load increase that caused a scale-up."""
    rows = (row for row in summary["load_increases"] if row["time_to_first_scale_up_s"] is not None)
    return next((row[key] for row in rows), None)


def _share(value: float | None) -> float | None:
    return None if value is None else value * 100


def _currency(summary: dict[str, Any]) -> str:
    return " " + str((summary.get("energy") or {}).get("currency") or "")


def _cold(summary: dict[str, Any], *keys: str) -> float | None:
    """A cold-start KPI; None for runs without requests.csv (Kubernetes) or from before cold starts."""
    value: Any = summary.get("cold_starts")
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _request_stat(summary: dict[str, Any], column: str, key: str) -> float | None:
    """A per-request statistic of completed requests (twin runs); None without requests.csv."""
    requests = summary.get("requests") or {}
    return (requests.get(column) or {}).get(key)


def _energy(summary: dict[str, Any], key: str) -> float | None:
    """A run-level energy KPI; None for runs without power data or summaries from before energy."""
    energy = summary.get("energy") or {}
    return (energy.get("run") or {}).get(key)


def _client(summary: dict[str, Any], key: str) -> float | None:
    """A run-level client-side KPI (job-results.csv); None for runs without the load Jobs' results."""
    return ((summary.get("client") or {}).get("run") or {}).get(key)


def _run_window_pick(metric: str, key: str) -> Callable[[dict[str, Any]], float | None]:
    """A whole-run histogram KPI (bound here: lambdas made in a loop would share its variables)."""
    return lambda s: window_value(run_window(s), metric, key)


KPIS = [
    Kpi("duration", " s", 0, lambda s: s["kpis"]["duration_s"], None),
    Kpi("peak replicas", "", 0, lambda s: s["kpis"]["replicas"]["peak"], None),
    Kpi("mean replicas", "", 2, lambda s: s["kpis"]["replicas"]["mean"], True),
    Kpi("GPU-hours", "", 3, lambda s: s["kpis"]["replicas"]["gpu_hours"], True),
    Kpi(
        "first scale-up after a load increase", " s", 0, lambda s: _first_increase(s, "time_to_first_scale_up_s"), True
    ),
    Kpi("time to steady replicas", " s", 0, lambda s: _first_increase(s, "time_to_steady_s"), True),
    Kpi("scale-down completion", " s", 0, lambda s: s["kpis"]["scale_down"]["completed_after_s"], True),
    Kpi("replica direction changes", "", 0, lambda s: s["kpis"]["replicas"]["direction_changes"], True),
    Kpi("replica std", "", 2, lambda s: s["kpis"]["replicas"]["std"], None),
    Kpi("time with waiting > 0", " %", 1, lambda s: _share(s["kpis"]["waiting_share"]), True),
    *[
        Kpi(f"{name} {key} over the run (histogram)", " ms", digits, _run_window_pick(metric, key), True)
        for metric, name, digits in (("ttft_ms", "TTFT", 1), ("itl_ms", "ITL", 2))
        for key in ("mean", "p90", "p99")
    ],
    Kpi("TTFT mean of samples", " ms", 1, lambda s: s["kpis"]["ttft_ms"]["mean"], True),
    Kpi("TTFT p90 of samples", " ms", 1, lambda s: s["kpis"]["ttft_ms"]["p90"], True),
    Kpi("TTFT p99 of samples", " ms", 1, lambda s: s["kpis"]["ttft_ms"]["p99"], True),
    Kpi("ITL mean of samples", " ms", 2, lambda s: s["kpis"]["itl_ms"]["mean"], True),
    Kpi("ITL p90 of samples", " ms", 2, lambda s: s["kpis"]["itl_ms"]["p90"], True),
    Kpi("ITL p99 of samples", " ms", 2, lambda s: s["kpis"]["itl_ms"]["p99"], True),
    Kpi("client: requests ok", "", 0, lambda s: _client(s, "successful_requests"), None),
    Kpi("client: requests failed", "", 0, lambda s: _client(s, "failed_requests"), True),
    Kpi("client: TTFT mean", " ms", 1, lambda s: _client(s, "ttft_mean_ms"), True),
    Kpi("client: TTFT P99 (worst job)", " ms", 1, lambda s: _client(s, "ttft_p99_ms_worst_job"), True),
    Kpi("client: TPOT mean", " ms", 2, lambda s: _client(s, "tpot_mean_ms"), True),
    Kpi("client: ITL mean", " ms", 2, lambda s: _client(s, "itl_mean_ms"), True),
    Kpi("client: ITL P99 (worst job)", " ms", 2, lambda s: _client(s, "itl_p99_ms_worst_job"), True),
    Kpi("time with TTFT over SLO", " %", 1, lambda s: _share(s["kpis"].get("ttft_over_slo_share")), True),
    Kpi("time with ITL over SLO", " %", 1, lambda s: _share(s["kpis"].get("itl_over_slo_share")), True),
    Kpi(
        "TTFT p99 per request (requests.csv: gateway waits included)",
        " ms",
        1,
        lambda s: _request_stat(s, "ttft_ms", "p99"),
        True,
    ),
    Kpi("time at 0 replicas", " s", 0, lambda s: _cold(s, "zero_replicas_s"), None),
    Kpi("cold starts (episodes at zero Ready replicas)", "", 0, lambda s: _cold(s, "episodes"), True),
    Kpi("requests that arrived at zero Ready replicas", "", 0, lambda s: _cold(s, "requests_at_zero"), True),
    Kpi("cold start (arrival to first token) max", " s", 1, lambda s: _cold(s, "cold_start_s", "max"), True),
    Kpi("GPU energy", " kWh", 4, lambda s: _energy(s, "energy_kwh"), True),
    Kpi("GPU power mean", " W", 0, lambda s: _energy(s, "mean_power_w"), None),
    Kpi("energy per output token", " J", 3, lambda s: _energy(s, "joules_per_token"), True),
    Kpi(
        "GPU-hours (measured GPU count)",
        "",
        3,
        lambda s: _energy(s, "gpu_hours") if _energy(s, "gpu_hours_basis") == MEASURED_GPU_HOURS else None,
        True,
    ),
    Kpi("cost (GPU-hours x the config's price)", "", 2, lambda s: _energy(s, "cost"), True, _currency),
]


def delta_text(value: float | None, base: float | None, kpi: Kpi) -> str:
    """'+12.5 s (+25%)' relative to the first run; "no data" when either side is missing."""
    if value is None or base is None:
        return NO_DATA
    delta = value - base
    text = f"{delta:+,.{kpi.digits}f}{kpi.unit}"
    if base != 0:
        text += f" ({delta / abs(base) * 100:+.0f}%)"
    return text


def delta_verdict(value: float | None, base: float | None, kpi: Kpi) -> str | None:
    """'better', 'worse' or None (no direction, no data, or equal)."""
    if value is None or base is None or kpi.lower_is_better is None or value == base:
        return None
    return "better" if (value < base) == kpi.lower_is_better else "worse"


@dataclass
class Comparison:
    runs: list[Run]
    summaries: list[dict[str, Any]]

    def headers(self) -> list[str]:
        first = self.runs[0].label
        headers = ["KPI", first]
        for run in self.runs[1:]:
            headers += [run.label, f"Δ vs {first}"]
        return headers

    def label_rows(self) -> list[list[tuple[str, str | None]]]:
        """'tags' and 'suite overrides' rows, when any run has them: what tells the runs apart."""
        table = []
        for title, pick in (("tags", lambda r: r.tags), ("suite overrides", lambda r: r.overrides)):
            texts = [describe_labels(pick(run)) for run in self.runs]
            if any(texts):
                row: list[tuple[str, str | None]] = [(title, None), (texts[0] or "-", None)]
                for text in texts[1:]:
                    row += [(text or "-", None), ("", None)]
                table.append(row)
        return table

    def rows(self) -> list[list[tuple[str, str | None]]]:
        """Cells as (text, verdict) so that HTML can colour better/worse deltas."""
        table = self.label_rows()
        for kpi in KPIS:
            values = [kpi.pick(s) for s in self.summaries]
            if all(v is None for v in values):
                continue
            units = kpi.units(self.summaries)
            base = values[0]
            row: list[tuple[str, str | None]] = [(kpi.label, None), (fmt(base, units[0], kpi.digits), None)]
            for value, unit in zip(values[1:], units[1:], strict=True):
                row.append((fmt(value, unit, kpi.digits), None))
                if unit != units[0] and value is not None and base is not None:
                    row.append((f"not comparable ({unit.strip()} vs {units[0].strip()})", None))
                else:
                    row.append((delta_text(value, base, kpi), delta_verdict(value, base, kpi)))
            table.append(row)
        return table

    def to_json(self) -> dict[str, Any]:
        return {
            "runs": [
                {
                    "id": r.run_id,
                    "name": r.name,
                    "backend": r.backend,
                    "path": str(r.path),
                    "tags": r.tags,
                    "overrides": r.overrides,
                }
                for r in self.runs
            ],
            "kpis": [
                {"kpi": k.label, "unit": units[0], "units": units, "values": [k.pick(s) for s in self.summaries]}
                for k in KPIS
                for units in [[u.strip() for u in k.units(self.summaries)]]
            ],
        }


def describe_labels(labels: dict[str, Any]) -> str:
    """'a=1, b=x' in the given order; '' when there are none."""
    return ", ".join(f"{key}={value}" for key, value in labels.items())


def compare(runs: Sequence[Run]) -> Comparison:
    return Comparison(list(runs), [compute_kpis(run) for run in runs])


def comparison_table(comparison: Comparison) -> Table:
    table = Table(title="KPI comparison (deltas vs the first run)", title_justify="left")
    for header in comparison.headers():
        table.add_column(header, overflow="fold")
    styles = {"better": "green", "worse": "red", None: None}
    for row in comparison.rows():
        table.add_row(*[f"[{styles[v]}]{text}[/]" if styles[v] else text for text, v in row])
    return table


def comparison_html(comparison: Comparison, image: Path) -> str:
    table = html_table(comparison.headers(), comparison.rows())
    runs = "".join(f"<li>{html.escape(r.label)}: {html.escape(str(r.path))}</li>" for r in comparison.runs)
    image_tag = f'<img alt="comparison" src="{png_data_uri(image)}">'
    return html_page(
        "Run comparison",
        " vs ".join(r.label for r in comparison.runs),
        [
            "<h2>Runs</h2>",
            f"<ul>{runs}</ul>",
            "<h2>KPIs</h2>",
            table,
            "<h2>Overlay (aligned on experiment time)</h2>",
            image_tag,
            definitions_html(),
        ],
    )


def default_output_dir(data_dir: Path) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return data_dir / "comparisons" / f"compare-{stamp}"


@dataclass
class CompareFiles:
    comparison: Comparison
    png: Path
    html: Path
    json: Path


def write_comparison(runs: Sequence[Run], output_dir: Path) -> CompareFiles:
    """compare.png, compare.html and compare.json in `output_dir`."""
    comparison = compare(runs)
    output_dir.mkdir(parents=True, exist_ok=True)
    png = save_figure(compare_figure([run.plot_view() for run in comparison.runs]), output_dir / COMPARE_FILE)
    html_path = output_dir / COMPARE_HTML
    html_path.write_text(comparison_html(comparison, png), encoding="utf-8")
    json_path = output_dir / COMPARE_JSON
    atomic_write_json(json_path, comparison.to_json())
    return CompareFiles(comparison, png, html_path, json_path)
