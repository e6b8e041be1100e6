"""The report of one run: summary.json, plots, a terminal table and a self-contained HTML page."""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from hpa_experiments.analysis.energy_plots import write_energy_plots
from hpa_experiments.analysis.kpis import write_summary
from hpa_experiments.analysis.load import Run, load_run
from hpa_experiments.analysis.plots import write_standard_plots
from hpa_experiments.analysis.reference_points import headline_sentences
from hpa_experiments.analysis.request_plots import write_request_plots
from hpa_experiments.analysis.slo_gates import gate_results
from hpa_experiments.analysis.why import event_lines, why_html
from hpa_experiments.analysis.why_plots import write_why_plots
from hpa_experiments.analysis.window_latency import phase_window, window_rows, window_value

HTML_FILE = "report.html"
NO_DATA = "no data"


def fmt(value: Any, unit: str = "", digits: int = 1) -> str:
    """A KPI for people: None reads "no data", never 0."""
    if value is None:
        return NO_DATA
    if isinstance(value, float):
        if value != 0 and abs(value) < 10.0**-digits:  # tiny but real: never shown as 0
            return f"{value:.2g}{unit}"
        text = f"{value:,.{digits}f}".rstrip("0").rstrip(".") if digits else f"{value:,.0f}"
        return f"{text}{unit}"
    return f"{value}{unit}"


def significant(value: float | None, unit: str = "", digits: int = 3) -> str:
    """`fmt` with `digits` significant digits (0.00139 kWh, 1,235 kWh): for quantities of any size."""
    if value is None or value == 0:
        return fmt(value, unit)
    return fmt(value, unit, max(0, digits - 1 - math.floor(math.log10(abs(value)))))


def pct(value: float | None) -> str:
    return NO_DATA if value is None else f"{value * 100:.1f}%"


def kpi_rows(summary: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(section, KPI, value) rows: shared by the terminal table and the HTML page."""
    k = summary["kpis"]
    rep = k["replicas"]
    down = k["scale_down"]
    rows = [
        ("run", "backend / status", f"{summary['run']['backend']} / {summary['run']['status']}"),
        ("run", "duration", fmt(k["duration_s"], " s", 0)),
        ("run", "samples (interval)", f"{k['samples']} ({fmt(k['interval_s'], ' s', 2)})"),
        (
            "replicas",
            "peak (at)",
            NO_DATA if rep["peak"] is None else f"{fmt(rep['peak'], '', 0)} (at {fmt(rep['peak_at_s'], ' s', 0)})",
        ),
        (
            "replicas",
            "mean ± std",
            NO_DATA if rep["mean"] is None else f"{fmt(rep['mean'], '', 2)} ± {fmt(rep['std'], '', 2)}",
        ),
        ("replicas", "direction changes", fmt(rep["direction_changes"])),
        ("replicas", "replica-seconds", fmt(rep["replica_seconds"], "", 0)),
        ("replicas", "GPU-hours (1 GPU/replica)", fmt(rep["gpu_hours"], "", 3)),
    ]
    for inc in summary["load_increases"]:
        load = (
            ""
            if inc["offered_rps_after"] is None
            else (f" ({fmt(inc['offered_rps_before'])} → {fmt(inc['offered_rps_after'])} req/s)")
        )
        rows.append(("scale-up", f"load increase at {fmt(inc['at_s'], ' s', 0)}{load}", _scale_up_text(inc)))
    rows.append(_scale_down_row(down, rep["peak"]))
    rows += window_rows(summary, fmt)
    for metric in ("ttft_ms", "itl_ms"):
        stats = k[metric]
        name = metric.removesuffix("_ms").upper()
        rows.append(
            ("latency", f"{name} of the samples (rate-window means) mean / p50 / p90 / p99", _latency_text(stats))
        )
    rows.append(("queue", "time with waiting requests > 0", pct(k["waiting_share"])))
    for metric, threshold in summary["slo"].items():
        name = metric.removesuffix("_ms")
        rows.append(
            ("SLO", f"time with {name.upper()} over {fmt(threshold, ' ms', 0)}", pct(k.get(f"{name}_over_slo_share")))
        )
    from hpa_experiments.analysis.client_report import client_rows  # imports this module

    gates = [("SLO gate", gate.name, gate.detail()) for gate in gate_results(summary.get("slo_gates"))]
    return (
        rows
        + gates
        + request_rows(summary.get("requests"))
        + cold_start_rows(summary.get("cold_starts"))
        + client_rows(summary)
        + energy_rows(summary.get("energy"))
    )


def cold_start_rows(cold: dict[str, Any] | None) -> list[tuple[str, str, str]]:
    """Requests at zero Ready replicas and the cold starts they waited for (twin runs), then the load
    Jobs' side (client_cold_start_rows); none without data."""
    if not cold:
        return []
    client = client_cold_start_rows(cold.get("client"), bool(cold.get("episodes")))
    if not cold.get("episodes"):
        return client
    stats = cold["cold_start_s"]
    times = (
        NO_DATA
        if not stats["count"]
        else (f"{fmt(stats['mean'], ' s', 1)} / {fmt(stats['min'], ' s', 1)} / {fmt(stats['max'], ' s', 1)}")
    )
    refused = f", {cold['failed_no_replica']:,} refused" if cold["failed_no_replica"] else ""
    return [
        (
            "cold starts",
            "episodes at zero Ready replicas",
            f"{cold['episodes']} ({cold['requests_at_zero']:,} requests arrived at zero{refused})",
        ),
        ("cold starts", "first request's arrival to its first token mean / min / max", times),
        ("cold starts", "time at 0 replicas", fmt(cold["zero_replicas_s"], " s", 0)),
        *client,
    ]


def client_cold_start_rows(client: dict[str, Any] | None, server_saw_some: bool) -> list[tuple[str, str, str]]:
    """Per load Job that started at zero replicas: its client's wait for the initial request.  That
    none was measured, or none started at zero, is said when the server side saw cold starts."""
    if not client:
        return []
    what = "client: initial request at 0 replicas, sent to completed"
    if not client["measured"]:
        return [("cold starts", what, f"not measured ({client['reason']})")] if server_saw_some else []
    stats = client["cold_start_s"]
    if not stats["count"]:
        return [("cold starts", what, "no load Job started at 0 replicas")] if server_saw_some else []
    rows = [
        (
            "cold starts",
            f"{what} mean / min / max",
            f"{fmt(stats['mean'], ' s', 1)} / {fmt(stats['min'], ' s', 1)} / {fmt(stats['max'], ' s', 1)}",
        )
    ]
    for job in client["jobs"]:
        if job["from_zero"]:
            ttft = fmt(job["ttft_p99_ms"], " ms", 0)
            detail = f"initial request {fmt(job['initial_test_s'], ' s', 1)}, then TTFT p99 {ttft}"
            rows.append(("cold starts", f"client: job {job['job']}", detail))
    return rows


def energy_rows(energy: dict[str, Any] | None) -> list[tuple[str, str, str]]:
    """GPU energy, power, J per token, GPU-hours and (with a price) cost; "no data" without power series."""
    if not energy:
        return [("energy", "GPU energy", NO_DATA)]
    whole = energy["run"]
    if whole["energy_kwh"] is None:
        rows = [("energy", "GPU energy", NO_DATA)]
    else:
        coverage = whole["power_coverage"]
        known = "" if coverage is None or coverage >= 0.9995 else f" (power known for {pct(coverage)} of the time)"
        rows = [
            ("energy", "GPU energy", f"{significant(whole['energy_kwh'], ' kWh')}{known}"),
            (
                "energy",
                "GPU power mean / peak",
                f"{fmt(whole['mean_power_w'], ' W', 0)} / {fmt(whole['peak_power_w'], ' W', 0)}",
            ),
            ("energy", "GPU utilization mean", fmt(whole["mean_utilization_pct"], " %", 1)),
            ("energy", "energy per output token", significant(whole["joules_per_token"], " J")),
        ]
    basis = whole["gpu_hours_basis"]
    rows.append(("energy", f"GPU-hours, {basis}" if basis else "GPU-hours", fmt(whole["gpu_hours"], "", 3)))
    price, currency = energy["price_per_gpu_hour"], energy["currency"]
    if price is not None:
        rows.append(("cost", f"GPU-hours x {fmt(price, '', 2)} {currency}", fmt(whole["cost"], f" {currency}", 2)))
    return rows


ENERGY_PHASE_HEADERS = ["phase (samples labelled)", "time", "GPU energy", "GPU power mean", "J per token", "GPU-hours"]


def energy_phase_rows(summary: dict[str, Any]) -> list[list[str]]:
    """Energy per phase, when the run has power data (the phases add up to the run)."""
    energy = summary.get("energy")
    if not energy or energy["run"]["energy_kwh"] is None:
        return []
    return [
        [
            p["phase"],
            fmt(p["duration_s"], " s", 0),
            significant(p["energy_kwh"], " kWh"),
            fmt(p["mean_power_w"], " W", 0),
            significant(p["joules_per_token"], " J"),
            fmt(p["gpu_hours"], "", 3),
        ]
        for p in energy["phases"]
    ]


def request_rows(requests: dict[str, Any] | None) -> list[tuple[str, str, str]]:
    """Per-request KPIs (requests.csv, twin runs only); none without the file."""
    if not requests:
        return []
    names = {
        "completed": "completed",
        "aborted_scale_down": "aborted at scale-down",
        "aborted_job_stopped": "aborted at Job stop",
        "rejected": "rejected",
        "running_at_end": "running at end",
        "failed_no_replica": "refused at zero replicas",
    }
    counts = [f"{n:,} {names.get(o, o)}" for o, n in requests["by_outcome"].items() if n or o == "completed"]
    rows = [("requests", "requests by outcome", ", ".join(counts))]
    for column, label in (
        ("ttft_ms", "TTFT"),
        ("itl_mean_ms", "mean ITL"),
        ("e2e_ms", "E2E"),
        ("queue_wait_ms", "queue wait"),
    ):
        stats = requests[column]
        text = (
            NO_DATA
            if not stats["count"]
            else " / ".join(fmt(stats[key], "", 1) for key in ("mean", "p50", "p90", "p99")) + " ms"
        )
        rows.append(("requests", f"{label} per completed request mean / p50 / p90 / p99", text))
    tokens = f"{requests['prompt_tokens']:,} / {requests['output_tokens']:,}"
    rows.append(("requests", "prompt / output tokens", tokens))
    return rows


def _scale_down_row(down: dict[str, Any], peak: float | None) -> tuple[str, str, str]:
    if down["load_end_s"] is None:
        return ("scale-down", "after the load ends", "no data (no job end recorded)")
    label = f"after load end at {fmt(down['load_end_s'], ' s', 0)}"
    if down["completed_after_s"] is None:
        text = NO_DATA if down["to_replicas"] is None else "not back at the minimum before the run ended"
        return ("scale-down", label, text)
    since = down.get("at_minimum_since_s")  # summaries written before it have none
    if peak == down["to_replicas"]:
        return ("scale-down", label, f"none needed: replicas stayed at {fmt(peak, '', 0)} the whole run")
    if since is not None and since < down["load_end_s"]:
        return (
            "scale-down",
            label,
            f"already at the minimum ({fmt(down['to_replicas'], '', 0)}) since "
            f"{fmt(since, ' s', 0)}, {fmt(down['load_end_s'] - since, ' s', 0)} before",
        )
    return (
        "scale-down",
        label,
        f"{fmt(down['from_replicas'], '', 0)} → {fmt(down['to_replicas'], '', 0)} "
        f"replicas after {fmt(down['completed_after_s'], ' s', 0)}",
    )


def _scale_up_text(inc: dict[str, Any]) -> str:
    if inc["baseline_replicas"] is None:
        return NO_DATA
    if inc["time_to_first_scale_up_s"] is None:
        return f"no scale-up before the next increase (stayed at {fmt(inc['steady_replicas'], '', 0)})"
    if inc["time_to_steady_s"] is None:
        steady = "no steady replica count before the next increase"
    else:
        steady = (
            f"steady at {fmt(inc['steady_replicas'], '', 0)} replicas after {fmt(inc['time_to_steady_s'], ' s', 0)}"
        )
    return f"first scale-up after {fmt(inc['time_to_first_scale_up_s'], ' s', 0)}; {steady}"


def _latency_text(stats: dict[str, Any]) -> str:
    if not stats["samples"]:
        return NO_DATA
    return " / ".join(fmt(stats[key], "", 1) for key in ("mean", "p50", "p90", "p99")) + " ms"


PHASE_HEADERS = [
    "phase",
    "window (s)",
    "replicas mean / max",
    "TTFT p90 (histogram)",
    "ITL p90 (histogram)",
    "TTFT p90 of samples",
    "ITL p90 of samples",
    "waiting > 0",
]


def phase_table_rows(summary: dict[str, Any]) -> list[list[str]]:
    slo_keys = [f"{m.removesuffix('_ms')}_over_slo_share" for m in summary["slo"]]
    rows = []
    for phase in summary["phases"]:
        rate = "" if phase["rate"] is None else f" ({fmt(phase['rate'])} rps)"
        rows.append(
            [
                f"{phase['phase']}{rate}",
                f"{fmt(phase['start_s'], '', 0)}–{fmt(phase['end_s'], '', 0)} ({phase['basis']})",
                f"{fmt(phase['replicas_mean'], '', 2)} / {fmt(phase['replicas_max'], '', 0)}",
                *[_window_p90(phase_window(summary, phase["phase"]), metric) for metric in ("ttft_ms", "itl_ms")],
                fmt(phase["ttft_ms"]["p90"], " ms"),
                fmt(phase["itl_ms"]["p90"], " ms"),
                pct(phase["waiting_share"]),
                *[pct(phase.get(key)) for key in slo_keys],
            ]
        )
    return rows


def _window_p90(window: dict[str, Any] | None, metric: str) -> str:
    """A phase's p90 over all its requests; "not measured" when the backend could not answer."""
    if window is not None and window.get("not_measured"):
        return "not measured"
    if window is not None and (window.get(metric) or {}).get("observations") == 0:
        return "no requests"
    return fmt(window_value(window, metric, "p90"), " ms")


def phase_headers(summary: dict[str, Any]) -> list[str]:
    return PHASE_HEADERS + [f"{m.removesuffix('_ms').upper()} > SLO" for m in summary["slo"]]


def kpi_table(summary: dict[str, Any]) -> Table:
    table = Table(title=f"{summary['run']['name']} · {summary['run']['directory']}", title_justify="left")
    table.add_column("", style="bold cyan", overflow="fold")
    table.add_column("KPI", overflow="fold")
    table.add_column("value", overflow="fold")
    previous = None
    for section, label, value in kpi_rows(summary):
        table.add_row(section if section != previous else "", label, value, style="dim" if value == NO_DATA else None)
        previous = section
    return table


def phase_table(summary: dict[str, Any]) -> Table | None:
    rows = phase_table_rows(summary)
    if not rows:
        return None
    table = Table(title="per phase", title_justify="left")
    for header in phase_headers(summary):
        table.add_column(header, overflow="fold")  # wrap on a narrow terminal, never cut
    for row in rows:
        table.add_row(*row)
    return table


def print_report(summary: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console()
    for line in headline_sentences(summary):
        console.print(line, highlight=False)
    console.print(kpi_table(summary))
    phases = phase_table(summary)
    if phases is not None:
        console.print(phases)
    from hpa_experiments.analysis.client_report import CLIENT_HEADERS, client_job_rows

    jobs = client_job_rows(summary)
    if jobs:
        table = Table(title="client side (vllm bench serve) vs server side (Prometheus samples)", title_justify="left")
        for header in CLIENT_HEADERS:
            table.add_column(header)
        for row in jobs:
            table.add_row(*row)
        console.print(table)
    by_phase = energy_phase_rows(summary)
    if by_phase:
        table = Table(title="energy per phase", title_justify="left")
        for header in ENERGY_PHASE_HEADERS:
            table.add_column(header, overflow="fold")  # wrap on a narrow terminal, never cut
        for row in by_phase:
            table.add_row(*row)
        console.print(table)
    lines = event_lines(summary)
    if lines:
        console.print("[bold]why the HPA scaled[/]")
        for n, line in enumerate(lines, start=1):
            console.print(f"  {n}. {line}", highlight=False)
    for note in summary.get("notes", []):
        console.print(f"[yellow]note:[/] {note}", highlight=False)


KPI_DEFINITIONS = [
    "Time is seconds since the run's t0. Each sample holds its value until the next sample "
    "(the last one for one interval); shares and means are weighted by that time.",
    "Load increase: a planned job start at which the planned offered load rises (every job start "
    "when rates are unknown). First scale-up: the first sample after it with desired or current "
    "replicas above the replicas at the increase. Steady: the first count above that, reached after "
    "the first scale-up, that holds unchanged for at least 30 s (or 3 intervals) before the next increase.",
    "Scale-down completion: from the end of the last job until replicas first equal the run's minimum.",
    "Replica-seconds: the area under the replicas step function; GPU-hours = replica-seconds / 3600 "
    "at one GPU per replica. Direction changes: how often replicas switch between rising and falling.",
    "TTFT and ITL over the run (histogram): from the increase of vLLM's histograms over the window, "
    "histogram_quantile(q, sum by (le) (increase(<histogram>_bucket[window]))) evaluated at the window's end, "
    "and the mean as increase(_sum) / increase(_count): percentiles over every request (TTFT) or token gap "
    "(ITL) in the window, within the bucket-interpolation error. Windows start after the warm-up; a phase's "
    "window counts everything in its time span, including jobs running beside it.",
    "TTFT and ITL of the samples are statistics over the sampled values (each a mean over the Prometheus "
    "rate window), not over individual requests: a quiet minute weighs as much as a busy one.",
    "Requests (twin runs, from requests.csv): one row per request; latencies over the completed requests "
    "that arrived after the warm-up, mean ITL per request = (last token - first token) / (output tokens - 1).",
    "Client side (job-results.csv): each load Job's own `vllm bench serve` result block, per request over "
    "the Job's life (TPOT excludes the first token; ITL pools every gap between streamed chunks); the twin "
    "prints the same block from requests.csv. Server side: the phase's Prometheus samples (rate-window means). "
    "Run level: means weighted by requests (ITL by output-token gaps), P99 of the worst job.",
    "GPU energy: the area under the GPU power step function (DCGM exporter, all the Deployment's GPUs) "
    "over the time with power data; J per output token over the time with both power and token rate; "
    "phases of the energy table are the samples' phase labels, so they add up to the run. GPU-hours from "
    "the GPU count when measured; cost = GPU-hours x cost.price_per_gpu_hour.",
    'A value that was not obtained is shown as "no data", never as 0.',
]


def png_data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


HTML_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1500px; color: #222; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; } .sub { color: #666; margin-top: 0; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.92em; }
th, td { border: 1px solid #ddd; padding: 4px 10px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } td.section { font-weight: bold; color: #246; }
td.nodata { color: #999; font-style: italic; } td.num { text-align: right; }
td.better { color: #1a7f37; } td.worse { color: #b42318; }
img { max-width: 100%; border: 1px solid #ddd; margin: 1em 0; }
p.headline { font-size: 1.1em; }
ul.notes { background: #fff8e1; border: 1px solid #f0d890; padding: 0.6em 2em; }
"""


Cell = str | tuple[str, str | None]  # text, or (text, CSS class)


def _html_cell(cell: Cell) -> str:
    text, css = cell if isinstance(cell, tuple) else (cell, None)
    css = css or ("nodata" if text == NO_DATA else None)
    attribute = f' class="{css}"' if css else ""
    return f"<td{attribute}>{html.escape(text)}</td>"


def html_table(headers: Sequence[str], rows: Sequence[Sequence[Cell]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(_html_cell(c) for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def html_page(title: str, subtitle: str, sections: Sequence[str]) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{HTML_STYLE}</style></head><body>"
        f'<h1>{html.escape(title)}</h1><p class="sub">{html.escape(subtitle)}</p>'
        + "\n".join(sections)
        + "</body></html>\n"
    )


def definitions_html() -> str:
    items = "".join(f"<li>{html.escape(text)}</li>" for text in KPI_DEFINITIONS)
    return f"<details><summary>How the KPIs are computed</summary><ul>{items}</ul></details>"


def html_report(summary: dict[str, Any], images: Sequence[Path]) -> str:
    run = summary["run"]
    rows = kpi_rows(summary)
    sectioned = [
        ((section, "section") if i == 0 or rows[i - 1][0] != section else "", label, value)
        for i, (section, label, value) in enumerate(rows)
    ]
    kpis = html_table(["", "KPI", "value"], sectioned)
    phases = html_table(phase_headers(summary), phase_table_rows(summary)) if summary["phases"] else ""
    by_phase = energy_phase_rows(summary)
    energy = html_table(ENERGY_PHASE_HEADERS, by_phase) if by_phase else ""
    from hpa_experiments.analysis.client_report import CLIENT_HEADERS, client_job_rows

    jobs = client_job_rows(summary)
    client = html_table(CLIENT_HEADERS, jobs) if jobs else ""
    figures = "".join(f'<img alt="{html.escape(p.stem)}" src="{png_data_uri(p)}">' for p in images)
    start = run.get("start_utc") or (
        f"{run.get('start_local')} (local time, zone unknown)" if run.get("start_local") else "unknown start"
    )
    notes = "".join(f"<li>{html.escape(note)}</li>" for note in summary.get("notes", []))
    return html_page(
        f"{run['name']} · backend: {run['backend']}",
        f"run {run['directory']} (id {run['id']}) · started {start} · status {run['status']}",
        [
            f'<p class="headline">{html.escape(" · ".join(headline_sentences(summary)))}</p>',
            f'<ul class="notes">{notes}</ul>' if notes else "",
            "<h2>KPIs</h2>",
            kpis,
            "<h2>Per phase</h2>" if phases else "",
            phases,
            "<h2>Client side vs server side, per job</h2>" if client else "",
            client,
            "<h2>Energy per phase</h2>" if energy else "",
            energy,
            why_html(summary),
            "<h2>Figures</h2>",
            figures,
            definitions_html(),
        ],
    )


@dataclass
class ReportFiles:
    summary: dict[str, Any]
    summary_path: Path
    plots: list[Path]
    html_path: Path


def build_report(run_or_path: Run | Path) -> ReportFiles:
    """summary.json, plots/*.png and report.html in the run directory."""
    run = run_or_path if isinstance(run_or_path, Run) else load_run(run_or_path)
    summary, summary_path = write_summary(run)
    drawn = run.plot_view()  # a streamed run's figures come from its envelope; scale events from the summary
    plots = (
        write_standard_plots(drawn)
        + write_why_plots(drawn, summary["scale_events"])
        + write_request_plots(drawn)
        + write_energy_plots(drawn)
    )
    html_path = run.path / HTML_FILE
    html_path.write_text(html_report(summary, plots), encoding="utf-8")
    return ReportFiles(summary, summary_path, plots, html_path)
