"""The report's client-side rows: the load Jobs' own results next to the server-side numbers."""

from __future__ import annotations

from typing import Any

from hpa_experiments.analysis.client import side_by_side
from hpa_experiments.analysis.report import NO_DATA, fmt

CLIENT_HEADERS = [
    "job",
    "requests ok / failed",
    "TTFT mean / median / P99 client",
    "TTFT mean / p50 / p99 server",
    "TPOT mean / median / P99 client",
    "ITL mean / median / P99 client",
    "ITL mean / p50 / p99 server",
    "output tok/s client",
    "peak concurrent client",
]


def client_rows(summary: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(section, KPI, value) rows of the run-level client numbers; none without job-results.csv."""
    client = summary.get("client")
    if not client:
        return []
    run = client["run"]
    rows = [
        ("client", "jobs with results", f"{run['jobs_with_results']} of {run['jobs']}"),
        ("client", "requests ok / failed", f"{fmt(run['successful_requests'])} / {fmt(run['failed_requests'])}"),
    ]
    for metric, label in (("ttft", "TTFT"), ("tpot", "TPOT"), ("itl", "ITL")):
        text = f"{fmt(run[f'{metric}_mean_ms'], ' ms', 2)} / {fmt(run[f'{metric}_p99_ms_worst_job'], ' ms', 2)}"
        rows.append(("client", f"{label} mean (request-weighted) / P99 (worst job)", text))
    return rows


def _three(row: dict[str, Any], metric: str) -> str:
    values = [row.get(f"{metric}_{stat}_ms") for stat in ("mean", "median", "p99")]
    if all(v is None for v in values):
        return NO_DATA
    return " / ".join(fmt(v, "", 2) for v in values) + " ms"


def _server(stats: dict[str, Any] | None) -> str:
    if not stats or not stats.get("samples"):
        return NO_DATA
    return " / ".join(fmt(stats[key], "", 2) for key in ("mean", "p50", "p99")) + " ms"


def client_job_rows(summary: dict[str, Any]) -> list[list[str]]:
    """Per job: client-side results beside the server-side statistics of its phase."""
    rows = []
    for entry in side_by_side(summary):
        client, server = entry["client"], entry["server"]
        if entry["status"] != "ok":
            reason = f"no results: {entry['status']} ({entry['note']})"
            rows.append(
                [
                    entry["job"],
                    reason,
                    NO_DATA,
                    _server(server["ttft_ms"]),
                    NO_DATA,
                    NO_DATA,
                    _server(server["itl_ms"]),
                    NO_DATA,
                    NO_DATA,
                ]
            )
            continue
        rows.append(
            [
                entry["job"],
                f"{fmt(client.get('successful_requests'), '', 0)} / {fmt(client.get('failed_requests'), '', 0)}",
                _three(client, "ttft"),
                _server(server["ttft_ms"]),
                _three(client, "tpot"),
                _three(client, "itl"),
                _server(server["itl_ms"]),
                fmt(client.get("output_throughput_tok_s"), "", 0),
                fmt(client.get("peak_concurrent_requests"), "", 0),
            ]
        )
    return rows
