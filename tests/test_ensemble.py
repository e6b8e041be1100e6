"""Ensembles on the digital twin: N seeds in parallel processes, each KPI's median and spread."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
import yaml

from hpa_experiments.analysis.kpis import headline
from hpa_experiments.ensemble import ensemble_seeds, spread
from hpa_experiments.errors import UsageError
from tests.support.cli import hpa_exp

REPO = Path(__file__).resolve().parents[1]
HPA_MANIFEST = REPO / "manifests" / "hpa-vllm-combined.yaml"
JOB_TEMPLATE = REPO / "workloads" / "vllm-bench-serve.yaml"


def test_spread_interpolates_between_order_statistics() -> None:
    stats = spread([10.0, 1.0, 2.0, 3.0, 4.0])  # sorted: 1 2 3 4 10
    assert stats["median"] == 3.0
    assert stats["p10"] == pytest.approx(1.4)  # position 0.4 between 1 and 2
    assert stats["p90"] == pytest.approx(7.6)  # position 3.6 between 4 and 10
    assert (stats["min"], stats["max"], stats["n"]) == (1.0, 10.0, 5)
    assert spread([])["median"] is None


def test_seeds_are_consecutive_from_the_configs_and_bounded() -> None:
    assert ensemble_seeds(42, 3) == [42, 43, 44]
    with pytest.raises(UsageError, match="2 to 1000 seeds"):
        ensemble_seeds(1, 1)


def small_config(folder: Path) -> Path:
    config = {
        "name": "ens",
        "backend": "sim",
        "hpa": {"enabled": True, "manifest": str(HPA_MANIFEST)},
        "jobs": [{"name": "only", "rate": 12, "duration": 120, "manifest": str(JOB_TEMPLATE)}],
        "values": {"output_len": 128},
        "simulation": {"seed": 5, "parameters": {"job_start_delay_s": 0}},
    }
    path = folder / "ens.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def ensemble(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    folder = tmp_path_factory.mktemp("ensemble")
    config = small_config(folder)
    done = hpa_exp("run", str(config), "--seeds", "3", "--processes", "2", "-o", str(folder / "runs"))
    assert done.returncode == 0, done.stderr
    (directory,) = (folder / "runs" / "ensembles").iterdir()
    assert f"ensemble: {directory}" in done.stdout
    return folder, config, directory


@pytest.mark.slow
def test_each_seed_is_a_tagged_run_and_the_medians_are_those_of_the_runs(ensemble) -> None:
    _, _, directory = ensemble
    summary = json.loads((directory / "ensemble.json").read_text())
    assert summary["seeds"] == [5, 6, 7] and summary["completed"] == 3
    peaks, ttfts = [], []
    for entry in summary["runs"]:
        run_dir = Path(entry["run_dir"])
        tags = json.loads((run_dir / "run.json").read_text())["config"]["tags"]
        assert tags == {"ensemble": summary["ensemble"], "seed": str(entry["seed"])}
        run_summary = json.loads((run_dir / "summary.json").read_text())
        peaks.append(run_summary["kpis"]["replicas"]["peak"])
        ttfts.append(headline(run_summary)["ttft_p90_ms"])  # the run's own headline p90
    assert summary["kpis"]["peak_replicas"]["median"] == statistics.median(peaks)
    assert summary["kpis"]["ttft_p90_ms"]["median"] == pytest.approx(statistics.median(ttfts))
    assert summary["max_replicas"] == 10
    assert summary["reached_max_share"] == sum(p >= 10 for p in peaks) / 3
    assert (directory / "replicas-band.png").stat().st_size > 10_000
    page = (directory / "ensemble.html").read_text()
    assert "KPIs across seeds" in page and "(p10 " in page and "seeds 5, 6, 7" in page


@pytest.mark.slow
def test_a_seed_in_the_ensemble_gives_the_same_rows_as_a_single_run(ensemble) -> None:
    """Parallel processes change nothing: seed 6 alone writes a byte-identical metrics.csv."""
    folder, config, directory = ensemble
    summary = json.loads((directory / "ensemble.json").read_text())
    in_ensemble = next(Path(r["run_dir"]) for r in summary["runs"] if r["seed"] == 6)
    done = hpa_exp("run", str(config), "--seed", "6", "-o", str(folder / "single"), "--quiet")
    assert done.returncode == 0, done.stderr
    (alone,) = (folder / "single").iterdir()
    assert (alone / "metrics.csv").read_bytes() == (in_ensemble / "metrics.csv").read_bytes()


@pytest.mark.slow
def test_compare_takes_ensembles_but_not_a_mix(ensemble, tmp_path: Path) -> None:
    _, _, directory = ensemble
    done = hpa_exp("compare", str(directory), str(directory), "-o", str(tmp_path / "cmp"))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "cmp" / "replicas-band.png").exists()
    run = json.loads((directory / "ensemble.json").read_text())["runs"][0]["run_dir"]
    mixed = hpa_exp("compare", str(directory), run, "-o", str(tmp_path / "mixed"))
    assert mixed.returncode == 2
    assert "compare runs with runs, or ensembles with ensembles" in mixed.stderr


@pytest.mark.slow
def test_an_ensemble_on_a_cluster_is_refused_before_anything_runs(tmp_path: Path) -> None:
    done = hpa_exp(
        "run", str(small_config(tmp_path)), "--seeds", "3", "--backend", "kubernetes", "-o", str(tmp_path / "runs")
    )
    assert done.returncode == 2
    assert "ensembles run on the digital twin" in done.stderr
    assert not (tmp_path / "runs").exists()
