"""Energy in the digital twin: DCGM-style GPU series from the engines' busy time, and the KPIs on them."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hpa_experiments.analysis.energy import energy_kpis
from hpa_experiments.analysis.load import load_run
from hpa_experiments.backends.sim.fleet import Fleet
from hpa_experiments.backends.sim.power import GpuMeter
from hpa_experiments.backends.sim.serving import Replica, Request
from hpa_experiments.config import EnergyConfig
from hpa_experiments.twin_profiles import load_profile

REPO = Path(__file__).resolve().parents[1]
HPA_MANIFEST = REPO / "manifests" / "hpa-vllm-combined.yaml"
JOB_TEMPLATE = REPO / "workloads" / "vllm-bench-serve.yaml"
IDLE_W, BUSY_W = 75.0, 700.0  # the default profile's watts per GPU


def run_twin(folder: Path, name: str, **sections: object) -> tuple[Path, str]:
    """Run a config on the twin through the CLI; returns the run directory and what the CLI printed."""
    config = {
        "name": name,
        "backend": "simulation",
        "jobs": [{"name": "only", "rate": 15, "duration": 150, "manifest": str(JOB_TEMPLATE)}],
        "values": {"max_concurrency": 512, "output_len": 256},
        "metrics": {"interval": 5},
        "hpa": {"enabled": False},
        **sections,
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    out = folder / f"{name}-out"
    done = subprocess.run(
        [sys.executable, "-m", "hpa_experiments", "run", str(path), "--output-dir", str(out), "--plain"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    return run_dir, done.stdout


def rows(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "metrics.csv").open(newline="") as fh:
        return list(csv.DictReader(fh))


def measured(table: list[dict[str, str]], column: str) -> list[float]:
    return [float(r[column]) for r in table if r[column] != ""]


@pytest.mark.slow
def test_an_idle_fleet_draws_replicas_x_gpus_x_idle_watts(tmp_path: Path) -> None:
    """The Job's first request comes 70 s after it starts (job_start_delay_s): the 60 s run is idle
    (no results grace: the Job is deleted at its planned end, before it sends anything)."""
    run_dir, printed = run_twin(
        tmp_path,
        "idle",
        jobs=[{"name": "late", "rate": 1, "duration": 60, "manifest": str(JOB_TEMPLATE), "results_grace": 0}],
        simulation={"initial_replicas": 3, "parameters": {"gpus_per_replica": 2}},
    )
    table = rows(run_dir)
    power = measured(table, "gpu_power_w")
    assert len(power) >= len(table) - 4  # only the samples before the twin's first scrape are empty
    assert set(power) == {3 * 2 * IDLE_W}
    assert set(measured(table, "gpu_count")) == {6.0}
    assert set(measured(table, "gpu_utilization_pct")) == {0.0}
    energy = energy_kpis(load_run(run_dir))["run"]
    assert energy["mean_power_w"] == pytest.approx(450.0, rel=1e-12)
    assert energy["joules_per_token"] is None  # no output tokens: no figure, not 0
    assert f"GPU energy {energy['energy_kwh']:.3g} kWh\n" in printed  # no price: no cost


@pytest.fixture(scope="module")
def loaded_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """15 req/s under the HPA: scale-out with loading pods, cooldown, and a price."""
    return run_twin(
        tmp_path_factory.mktemp("loaded"),
        "loaded",
        hpa={"enabled": True, "manifest": str(HPA_MANIFEST)},
        cooldown={"enabled": True, "duration": 60},
        simulation={"seed": 3},
        cost={"price_per_gpu_hour": 3.0, "currency": "USD"},
    )


@pytest.mark.slow
def test_power_under_load_lies_between_idle_and_busy_and_follows_utilization(loaded_run: tuple[Path, str]) -> None:
    table = [r for r in rows(loaded_run[0]) if r["gpu_power_w"] != ""]
    per_gpu = []
    for row in table:
        gpus, power, util = float(row["gpu_count"]), float(row["gpu_power_w"]), float(row["gpu_utilization_pct"])
        per_gpu.append(power / gpus)
        assert gpus * IDLE_W <= power <= gpus * BUSY_W
        # P = idle + (busy - idle) x u per GPU; the utilization column is in whole percent per GPU
        assert power / gpus == pytest.approx(IDLE_W + (BUSY_W - IDLE_W) * util / 100, abs=(BUSY_W - IDLE_W) * 0.005)
    assert min(per_gpu) == IDLE_W  # idle before the first request
    assert max(per_gpu) > IDLE_W + 0.5 * (BUSY_W - IDLE_W)  # saturated under load
    assert any(IDLE_W < p < BUSY_W for p in per_gpu)


def test_phase_energies_add_up_and_cost_is_gpu_hours_times_price(loaded_run: tuple[Path, str]) -> None:
    run_dir, printed = loaded_run
    energy = energy_kpis(load_run(run_dir))
    whole = energy["run"]
    assert whole["energy_kwh"] > 0
    assert {p["phase"] for p in energy["phases"]} >= {"only", "cooldown"}
    assert sum(p["energy_kwh"] or 0.0 for p in energy["phases"]) == pytest.approx(whole["energy_kwh"], rel=1e-12)
    assert sum(p["duration_s"] for p in energy["phases"]) == pytest.approx(whole["duration_s"], rel=1e-12)
    assert whole["gpu_hours_basis"] == "measured (gpu_count)"
    assert whole["cost"] == pytest.approx(whole["gpu_hours"] * 3.0, rel=1e-12)
    assert whole["joules_per_token"] == pytest.approx(
        whole["energy_kwh"] * 3.6e6 / whole["output_tokens"], rel=0.05
    )  # the token-less first samples differ
    assert 0 < whole["power_coverage"] < 1  # the twin's first scrape comes after the first sample
    assert energy["notes"] and "GPU power known for" in energy["notes"][0]
    assert f"GPU energy {whole['energy_kwh']:.3g} kWh · cost " in printed and " USD\n" in printed


def test_busy_time_is_the_time_the_engine_spends_stepping() -> None:
    """A lone request keeps the engine busy from its arrival to its last token, and no longer."""
    replica = Replica(load_profile())
    replica.submit(Request(0, 1.0, prompt_len=100, output_len=50), 1.0)
    replica.advance_to(1.05)
    assert replica.busy_time(1.05) == pytest.approx(0.05, abs=1e-12)
    replica.advance_to(100.0)
    assert replica.e2e.count == 1
    assert replica.busy_time(100.0) == pytest.approx(replica.e2e.sum, rel=1e-12)
    replica.submit(Request(1, 200.0, prompt_len=100, output_len=50), 200.0)
    replica.advance_to(300.0)
    assert replica.busy_time(300.0) == pytest.approx(replica.e2e.sum, rel=1e-12)


def test_pending_pods_hold_no_gpus_and_loading_pods_idle() -> None:
    profile = load_profile(overrides={"gpus_per_replica": 2, "pod_image_cached_share": 1.0})  # no image pull
    fleet = Fleet(profile, start_t=0.0, initial_replicas=1)
    meter = GpuMeter(profile, EnergyConfig(power_metric="my_power", pod_label="exported_pod"), "ns")
    fleet.scale_to(2, 10.0)  # the new pod is Pending for pod_pending_s (5 s), then Loading
    fleet.advance_to(12.0)
    samples, gone = meter.scrape(12.0, fleet.pods)
    assert {s[0]["exported_pod"] for s in samples} == {"vllm-0"} and gone == []
    fleet.advance_to(30.0)
    samples, _ = meter.scrape(30.0, fleet.pods)
    power = {(s[0]["exported_pod"], s[0]["gpu"]): s[1] for s in samples if s[0]["__name__"] == "my_power"}
    assert power == {(pod, gpu): IDLE_W for pod in ("vllm-0", "vllm-1") for gpu in ("0", "1")}
    fleet.scale_to(1, 40.0)  # the not-ready pod goes first
    fleet.advance_to(45.0)
    samples, gone = meter.scrape(45.0, fleet.pods)
    assert {s[0]["exported_pod"] for s in samples} == {"vllm-0"}
    assert gone == [{"namespace": "ns", "exported_pod": "vllm-1", "job": "dcgm-exporter"}]


@pytest.mark.slow
def test_configured_metric_and_label_names_are_what_the_twin_exports(tmp_path: Path) -> None:
    run_dir, _ = run_twin(
        tmp_path,
        "renamed",
        jobs=[{"name": "late", "rate": 1, "duration": 30, "manifest": str(JOB_TEMPLATE), "results_grace": 0}],
        energy={
            "power_metric": "gpu_watts",
            "utilization_metric": "gpu_busy_pct",
            "pod_label": "exported_pod",
            "namespace_label": "exported_namespace",
        },
    )
    assert set(measured(rows(run_dir), "gpu_power_w")) == {IDLE_W}
