"""Commands as pipelines use them: `--json` output, run tags, and how compare tells runs apart.

Everything runs through the real command line in a subprocess on the digital twin.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.support.cli import hpa_exp

REPO = Path(__file__).resolve().parents[1]
HPA_MANIFEST = REPO / "manifests" / "hpa-vllm-combined.yaml"
JOB_TEMPLATE = REPO / "workloads" / "vllm-bench-serve.yaml"


def small_config(folder: Path, name: str = "small", **extra: object) -> Path:
    config = {
        "name": name,
        "backend": "sim",
        "hpa": {"enabled": True, "manifest": str(HPA_MANIFEST)},
        "jobs": [{"name": "only", "rate": 10, "duration": 90, "manifest": str(JOB_TEMPLATE)}],
        "values": {"output_len": 128},
        "simulation": {"seed": 3, "parameters": {"job_start_delay_s": 0}},
        **extra,
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def test_validate_json_lists_every_file_with_its_verdict(tmp_path: Path) -> None:
    good = small_config(tmp_path, "good")
    bad = small_config(tmp_path, "bad", gap=-5)
    done = hpa_exp("validate", "--json", str(good), str(bad))
    assert done.returncode == 2
    results = json.loads(done.stdout)
    assert [r["valid"] for r in results] == [True, False]
    assert results[0]["jobs"] == 1 and results[0]["total_s"] == 90
    assert any("gap" in problem for problem in results[1]["problems"])


@pytest.fixture(scope="module")
def tagged_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two short twin runs of one config, told apart only by their tags."""
    folder = tmp_path_factory.mktemp("tagged")
    config = small_config(folder, tags={"team": "infra"})
    for variant in ("a", "b"):
        done = hpa_exp("run", str(config), "-o", str(folder / "runs"), "--quiet", "--tag", f"variant={variant}")
        assert done.returncode == 0, done.stderr
    return folder / "runs"


@pytest.mark.slow
def test_runs_json_shows_each_runs_tags(tagged_runs: Path) -> None:
    done = hpa_exp("runs", "--json", "--data-dir", str(tagged_runs))
    assert done.returncode == 0, done.stderr
    listed = json.loads(done.stdout)
    assert sorted(r["tags"]["variant"] for r in listed) == ["a", "b"]
    assert all(r["tags"]["team"] == "infra" and r["status"] == "completed" for r in listed)
    assert all(r["headline"]["peak_replicas"] is not None for r in listed)


@pytest.mark.slow
def test_compare_has_a_tags_row(tagged_runs: Path, tmp_path: Path) -> None:
    runs = sorted(p for p in tagged_runs.iterdir() if p.is_dir())
    done = hpa_exp("compare", *map(str, runs), "-o", str(tmp_path / "cmp"))
    assert done.returncode == 0, done.stderr
    data = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert {r["tags"]["variant"] for r in data["runs"]} == {"a", "b"}
    page = (tmp_path / "cmp" / "compare.html").read_text()
    assert "team=infra, variant=a" in page and "team=infra, variant=b" in page


@pytest.mark.slow
def test_report_json_prints_the_summary(tagged_runs: Path) -> None:
    run = next(p for p in tagged_runs.iterdir() if p.is_dir())
    done = hpa_exp("report", str(run), "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary == json.loads((run / "summary.json").read_text())


@pytest.mark.slow
def test_a_malformed_tag_is_a_usage_error(tmp_path: Path) -> None:
    done = hpa_exp("run", str(small_config(tmp_path)), "-o", str(tmp_path / "runs"), "--tag", "novalue")
    assert done.returncode == 2
    assert "--tag 'novalue': give KEY=VALUE" in done.stderr
    assert not (tmp_path / "runs").exists()


def test_the_version_comes_from_the_package_metadata() -> None:
    from importlib.metadata import version

    done = hpa_exp("--version")
    assert done.stdout.strip() == f"hpa-exp {version('hpa-experiments')}"
