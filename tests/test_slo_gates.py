"""SLO gates: `slo.gates` bounds, checked after a run; `--fail-on-slo` makes a missed gate exit 4.

The pipeline tests run `hpa-exp run` on the digital twin as a CI job would (a subprocess, no
terminal) and read its exit code and the one-line reasons on stderr.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hpa_experiments.analysis.slo_gates import evaluate_gates, gates_summary
from hpa_experiments.errors import EXIT_SLO_MISSED

REPO = Path(__file__).resolve().parents[1]
HPA_MANIFEST = REPO / "manifests" / "hpa-vllm-combined.yaml"
JOB_TEMPLATE = REPO / "workloads" / "vllm-bench-serve.yaml"


def summary(**parts: object) -> dict:
    base: dict = {
        "kpis": {"replicas": {"peak": 6.0, "gpu_hours": 0.5}, "ttft_ms": {"p90": 900.0}, "itl_ms": {"p90": 40.0}},
        "requests": None,
        "energy": None,
    }
    base.update(parts)
    return base


def test_a_gate_passes_at_its_bound_and_misses_above_it() -> None:
    results = evaluate_gates(summary(), {"peak_replicas": 6, "itl_p90_ms": 39.5})
    by_name = {r.name: r for r in results}
    assert by_name["peak_replicas"].passed
    assert not by_name["itl_p90_ms"].passed
    assert by_name["itl_p90_ms"].line() == "itl_p90_ms missed: 40 > 39.5 (percentile of ITL samples)"


def test_unset_gates_are_not_checked_and_no_gate_gives_no_block() -> None:
    assert evaluate_gates(summary(), {"peak_replicas": None, "gpu_hours": None}) == []
    assert gates_summary(summary(), {}) is None


def test_missing_data_misses_the_gate() -> None:
    """No requests.csv (a Kubernetes run without client results): a failed-requests gate cannot pass."""
    (result,) = evaluate_gates(summary(), {"failed_requests": 0})
    assert result.value is None and not result.passed
    assert "no data" in result.line()


def test_sources_prefer_the_per_request_log_and_the_measured_gpu_count() -> None:
    s = summary(
        requests={
            "ttft_ms": {"p90": 1234.0},
            "by_outcome": {"completed": 90, "rejected": 2, "aborted_scale_down": 3, "aborted_job_stopped": 40},
        },
        energy={"run": {"gpu_hours": 0.75}},
    )
    by_name = {r.name: r for r in evaluate_gates(s, {"ttft_p90_ms": 2000, "failed_requests": 4, "gpu_hours": 0.7})}
    assert (by_name["ttft_p90_ms"].value, by_name["ttft_p90_ms"].source) == (1234.0, "requests.csv")
    # rejected + aborted by scale-down = 5; requests the experiment stopped itself are not failures
    assert by_name["failed_requests"].value == 5.0 and not by_name["failed_requests"].passed
    assert (by_name["gpu_hours"].value, by_name["gpu_hours"].source) == (0.75, "measured GPU count")
    assert not by_name["gpu_hours"].passed


def write_config(folder: Path, gates: dict) -> Path:
    config = {
        "name": "gated",
        "backend": "sim",
        "hpa": {"enabled": True, "manifest": str(HPA_MANIFEST)},
        "jobs": [{"name": "only", "rate": 15, "duration": 150, "manifest": str(JOB_TEMPLATE)}],
        "values": {"max_concurrency": 512, "output_len": 256},
        "simulation": {"seed": 3},
        "slo": {"gates": gates},
    }
    path = folder / "gated.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def run_pipeline(config: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hpa_experiments", "run", str(config), "--output-dir", str(out), "--plain", *extra],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.slow
def test_a_pipeline_fails_on_a_missed_gate_with_exit_4_and_a_reason_line(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"ttft_p50_ms": 1, "gpu_hours": 100})
    done = run_pipeline(config, tmp_path / "runs", "--fail-on-slo")
    assert done.returncode == EXIT_SLO_MISSED == 4, done.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    gates = json.loads((run_dir / "summary.json").read_text())["slo_gates"]
    ttft = next(g for g in gates["gates"] if g["gate"] == "ttft_p50_ms")
    assert gates["passed"] is False and ttft["value"] > 1
    assert ttft["value"] == json.loads((run_dir / "summary.json").read_text())["requests"]["ttft_ms"]["p50"]
    reason = f"SLO gate ttft_p50_ms missed: {ttft['value']:.3g} > 1 (requests.csv)"
    assert reason in done.stderr.splitlines()
    assert any(line.startswith("SLO gate gpu_hours met: ") for line in done.stdout.splitlines())
    # the run itself completed: its status is not changed by the gate
    assert json.loads((run_dir / "run.json").read_text())["status"] == "completed"


@pytest.mark.slow
def test_without_the_flag_a_missed_gate_is_reported_but_exits_0(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"ttft_p50_ms": 1})
    done = run_pipeline(config, tmp_path / "runs")
    assert done.returncode == 0, done.stderr
    assert any(line.startswith("SLO gate ttft_p50_ms missed: ") for line in done.stderr.splitlines())


def test_a_negative_gate_is_a_config_error_naming_the_key(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"failed_requests": -1})
    done = subprocess.run(
        [sys.executable, "-m", "hpa_experiments", "validate", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert done.returncode == 2
    assert "slo.gates.failed_requests" in done.stderr + done.stdout
    assert "Traceback" not in done.stderr
