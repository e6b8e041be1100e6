"""Run-level tests of the digital twin: `hpa-exp run ... --backend sim` through the real CLI."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import pytest
import yaml

from hpa_experiments.twin_profiles import Profile
from tests.support.cli import hpa_exp

REPO = Path(__file__).resolve().parents[1]
HIGH_LOAD = REPO / "experiment-configs" / "high-load-hpa.yaml"
HPA_MANIFEST = REPO / "manifests" / "hpa-vllm-combined.yaml"
JOB_TEMPLATE = REPO / "workloads" / "vllm-bench-serve.yaml"


def run_sim(config: Path, out: Path, *extra: str) -> Path:
    """Run the config on the twin into the empty folder `out`; returns the run directory."""
    done = hpa_exp("run", str(config), "--backend", "sim", "--output-dir", str(out), "--quiet", *extra)
    assert done.returncode == 0, done.stderr
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    return run_dir


def rows(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "metrics.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def column(table: list[dict[str, str]], name: str) -> list[float | None]:
    return [float(r[name]) if r[name] != "" else None for r in table]


def planned(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "phases.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def small_config(folder: Path, parameters: dict | None = None, name: str = "small") -> Path:
    """One 150 s job at 15 req/s under the combined HPA, no cooldown: a fast run."""
    config = {
        "name": name,
        "backend": "simulation",
        "hpa": {"enabled": True, "manifest": str(HPA_MANIFEST)},
        "jobs": [{"name": "only", "rate": 15, "duration": 150, "manifest": str(JOB_TEMPLATE)}],
        "values": {"max_concurrency": 512, "output_len": 256},
        "simulation": {"seed": 3, **({"parameters": parameters} if parameters else {})},
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def high_load_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return run_sim(HIGH_LOAD, tmp_path_factory.mktemp("high-load"))


@pytest.mark.slow
def test_high_load_run_scales_out_under_the_peak_and_back_in_during_cooldown(high_load_run: Path) -> None:
    table = rows(high_load_run)
    t = column(table, "elapsed_s")
    replicas = column(table, "replicas")
    assert all(r is not None for r in replicas)
    phases = planned(high_load_run)
    load_end = max(float(p["planned_end_s"]) for p in phases)
    initial = replicas[0]
    under_peak = [r for ti, r in zip(t, replicas, strict=True) if ti is not None and ti <= load_end]
    assert max(under_peak) > initial, "no scale-up while the load was on"
    assert max(under_peak) == max(replicas), "the most replicas came after the load had ended"
    cooldown = [r for ti, r in zip(t, replicas, strict=True) if ti is not None and ti > load_end]
    assert cooldown, "no samples in the cooldown"
    assert cooldown[-1] < max(under_peak), "replicas did not fall in the cooldown"
    assert cooldown[-1] == min(replicas)


@pytest.mark.parametrize(
    "name",
    [
        "ttft_ms",
        "itl_ms",
        "num_requests_waiting",
        "kv_cache_usage_perc",
        "prom_requests_waiting",
        "prom_kv_cache_usage_avg",
        "ttft_p90_ms",
        "itl_p90_ms",
    ],
)
def test_high_load_run_fills_latency_queue_and_kv_columns(high_load_run: Path, name: str) -> None:
    table = rows(high_load_run)
    load_end = max(float(p["planned_end_s"]) for p in planned(high_load_run))
    during_load = [r for r in table if 60 <= float(r["elapsed_s"]) < load_end]
    values = [float(r[name]) for r in during_load if r[name] != ""]
    assert len(values) >= 0.9 * len(during_load), f"{name} is mostly empty while the load is on"
    assert all(v >= 0 for v in values)
    if name.startswith(("ttft", "itl", "kv", "prom_kv")):
        assert max(values) > 0


def test_high_load_run_records_the_backend_and_every_model_parameter(high_load_run: Path) -> None:
    info = json.loads((high_load_run / "run.json").read_text())
    assert info["backend"] == "simulation"
    assert info["status"] == "completed"
    recorded = info["backend_info"]["profile"]
    expected = {f.name for f in dataclasses.fields(Profile)}
    assert expected <= set(recorded), f"missing: {sorted(expected - set(recorded))}"
    assert recorded["name"] == "llama-3.1-8b-h100"
    assert info["backend_info"]["seed"] == 42
    optional = {"output_len", "natural_output_len_mean", "kv_capacity_tokens"}
    assert all(recorded[k] is not None for k in expected - optional)


@pytest.mark.slow
def test_same_config_and_seed_give_byte_identical_metrics(high_load_run: Path, tmp_path: Path) -> None:
    again = run_sim(HIGH_LOAD, tmp_path / "again")
    first = (high_load_run / "metrics.csv").read_bytes()
    assert (again / "metrics.csv").read_bytes() == first
    assert len(first.splitlines()) > 100


@pytest.mark.slow
def test_seed_option_changes_the_metrics(high_load_run: Path, tmp_path: Path) -> None:
    other = run_sim(HIGH_LOAD, tmp_path / "other", "--seed", "7")
    assert (other / "metrics.csv").read_bytes() != (high_load_run / "metrics.csv").read_bytes()
    assert json.loads((other / "run.json").read_text())["backend_info"]["seed"] == 7


@pytest.mark.slow
def test_profile_override_is_applied_and_recorded(tmp_path: Path) -> None:
    base = run_sim(small_config(tmp_path, name="base"), tmp_path / "base")
    slow = run_sim(
        small_config(tmp_path, {"step_per_decode_seq_s": 0.002, "pod_load_mean_s": 33.5}, name="slow"),
        tmp_path / "slow",
    )
    recorded = json.loads((slow / "run.json").read_text())["backend_info"]["profile"]
    assert recorded["step_per_decode_seq_s"] == 0.002
    assert recorded["pod_load_mean_s"] == 33.5
    default = json.loads((base / "run.json").read_text())["backend_info"]["profile"]
    assert default["step_per_decode_seq_s"] != 0.002

    def mean_itl(run_dir: Path) -> float:
        values = [v for v in column(rows(run_dir), "itl_ms") if v is not None]
        assert values
        return sum(values) / len(values)

    # a decode step that costs 2 ms per running sequence must show in the inter-token latency
    assert mean_itl(slow) > 1.5 * mean_itl(base)


def test_unknown_override_key_exits_2_naming_the_key(tmp_path: Path) -> None:
    config = small_config(tmp_path, {"step_per_decode_sequence": 0.001}, name="bad")
    done = hpa_exp("run", str(config), "--backend", "sim", "--output-dir", str(tmp_path / "out"), "--quiet")
    assert done.returncode == 2
    assert "step_per_decode_sequence" in done.stderr
    assert "step_per_decode_seq_s" in done.stderr  # the suggestion
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_job_start_delay_holds_back_the_first_request(tmp_path: Path) -> None:
    """The Job's pod starts (image, dataset download) before its first request reaches vLLM."""
    run_dir = run_sim(small_config(tmp_path, {"job_start_delay_s": 60.0}, name="late"), tmp_path / "late")
    table = rows(run_dir)
    running = [(float(r["elapsed_s"]), float(r["prom_requests_running"] or 0)) for r in table]
    assert all(v == 0 for t, v in running if t < 60), "requests ran before the Job's start delay was over"
    assert any(v > 0 for t, v in running if t >= 90), "no requests after the start delay"
    assert json.loads((run_dir / "run.json").read_text())["backend_info"]["profile"]["job_start_delay_s"] == 60.0
