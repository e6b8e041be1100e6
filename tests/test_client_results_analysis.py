"""summary.json's `client` section, the report's client-vs-server table and compare's client KPIs,
on a short twin run with two jobs: one prints its results, one is deleted before it can."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest
import yaml

from hpa_experiments.analysis.client_report import client_job_rows, client_rows
from hpa_experiments.analysis.compare import compare
from hpa_experiments.analysis.kpis import compute_kpis
from hpa_experiments.analysis.load import load_run
from hpa_experiments.analysis.report import build_report
from hpa_experiments.backends.factory import BackendOptions, make_backend
from hpa_experiments.config import load_config
from hpa_experiments.plan import build_plan
from hpa_experiments.runner import Runner

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("client")
    template = str(REPO / "workloads" / "vllm-bench-serve.yaml")
    doc = {
        "name": "client",
        "backend": "simulation",
        "hpa": {"enabled": True, "manifest": str(REPO / "manifests" / "hpa-vllm-combined.yaml")},
        "jobs": [
            {"name": "prints", "rate": 4, "duration": 40, "manifest": template},
            {"name": "cut-off", "rate": 3, "duration": 40, "manifest": template, "results_grace": "1s"},
        ],
        "gap": 5,
        "values": {"max_concurrency": 512, "output_len": 64},
        "simulation": {"seed": 2, "parameters": {"job_start_delay_s": 10.0}},
    }
    path = folder / "client.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    config = load_config(path)
    plan = build_plan(config)
    backend, names = make_backend("simulation", config, plan, "r1", BackendOptions())
    result = Runner(config, plan, backend, base_dir=folder / "out", metric_names=names, handle_signals=False).run()
    assert result.status == "completed", result.reason
    return result.run_dir


def _results(run_dir: Path) -> dict[str, dict[str, str]]:
    with (run_dir / "job-results.csv").open(newline="") as fh:
        return {row["job"]: row for row in csv.DictReader(fh)}


def test_client_section_counts_only_jobs_with_results_and_names_the_others(run_dir: Path) -> None:
    summary = compute_kpis(load_run(run_dir))
    rows = _results(run_dir)
    client = summary["client"]
    assert client["run"]["jobs"] == 2 and client["run"]["jobs_with_results"] == 1
    assert client["run"]["successful_requests"] == int(rows["prints"]["successful_requests"])
    assert client["run"]["ttft_mean_ms"] == float(rows["prints"]["ttft_mean_ms"])  # one job: its own mean
    assert client["run"]["ttft_p99_ms_worst_job"] == float(rows["prints"]["ttft_p99_ms"])
    (missing,) = client["jobs_without_results"]
    assert missing.startswith("cut-off: no_result_block (no result block;")
    assert missing.endswith("still running 1 s after its planned end (jobs[].results_grace))")
    assert f"no client-side results for job {missing}" in summary["notes"]


def _numbers(text: str) -> list[float]:
    return [float(x.replace(",", "")) for x in re.findall(r"\d[\d,]*(?:\.\d+)?", text)]


@pytest.mark.slow
def test_report_shows_client_beside_server_per_job(run_dir: Path) -> None:
    files = build_report(run_dir)
    summary = files.summary
    by_job = {row[0]: row for row in client_job_rows(summary)}
    prints = _results(run_dir)["prints"]
    phase = next(p for p in summary["phases"] if p["phase"] == "prints")
    client_ttft = [float(prints[f"ttft_{k}_ms"]) for k in ("mean", "median", "p99")]
    assert _numbers(by_job["prints"][2]) == pytest.approx(client_ttft, abs=0.006)
    server_ttft = [phase["ttft_ms"][k] for k in ("mean", "p50", "p99")]
    assert _numbers(by_job["prints"][3]) == pytest.approx(server_ttft, abs=0.006)
    assert by_job["cut-off"][1].startswith("no results: no_result_block")
    assert by_job["cut-off"][2] == "no data"
    labels = [label for _, label, _ in client_rows(summary)]
    assert "TTFT mean (request-weighted) / P99 (worst job)" in labels
    page = files.html_path.read_text(encoding="utf-8")
    assert "Client side vs server side, per job" in page and "no results: no_result_block" in page


def test_compare_lists_client_kpis(run_dir: Path) -> None:
    run = load_run(run_dir)
    rows = {row[0][0]: row for row in compare([run, run]).rows()}
    requests_ok = int(_results(run_dir)["prints"]["successful_requests"])
    assert rows["client: requests ok"][1][0] == f"{requests_ok:,}"
    assert rows["client: TTFT P99 (worst job)"][3][0].startswith("+0")  # same run: no change
