"""The Python API (`from hpa_experiments import Experiment`) and JSON experiment files.

The round trip: high-load-hpa.yaml and the same config written as JSON give the same plan and,
for one seed, byte-identical metrics.csv and phases.csv and the same KPIs on the digital twin.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from hpa_experiments import Experiment, ExperimentResult
from hpa_experiments.api import finish_run
from hpa_experiments.config import MetricsConfig
from hpa_experiments.errors import ConfigError, UsageError
from hpa_experiments.rundir import EVENT_COLUMNS, PHASE_COLUMNS
from hpa_experiments.runner import RunResult
from hpa_experiments.suite.config import load_suite
from tests.support.cli import hpa_exp

REPO = Path(__file__).resolve().parents[1]
HIGH_LOAD = REPO / "experiment-configs" / "high-load-hpa.yaml"
HPA_MANIFEST = REPO / "manifests" / "hpa-vllm-combined.yaml"
SHIPPED_TEMPLATE = REPO / "workloads" / "vllm-bench-serve.yaml"
SEED = 5
ORIGINAL_COLUMNS = [
    "timestamp",
    "replicas",
    "desired_replicas",
    "num_requests_waiting",
    "num_requests_waiting_target",
    "kv_cache_usage_perc",
    "kv_cache_usage_target",
    "ttft_ms",
    "itl_ms",
    "request_rate_per_min",
    "active_jobs",
]


def short_config(**changes: Any) -> dict[str, Any]:
    """One 60 s job at 8 req/s under the combined HPA, no cooldown: a run of a fraction of a second."""
    config: dict[str, Any] = {
        "name": "api-short",
        "backend": "simulation",
        "hpa": {"manifest": str(HPA_MANIFEST)},
        "jobs": [{"name": "load", "rate": 8, "duration": 60}],
        "metrics": {"interval": 5},
        "simulation": {"seed": SEED},
    }
    config.update(changes)
    return config


@dataclasses.dataclass
class RoundTrip:
    from_yaml: Experiment
    from_json: Experiment
    yaml_result: ExperimentResult
    json_result: ExperimentResult


@pytest.fixture(scope="module")
def round_trip(tmp_path_factory: pytest.TempPathFactory) -> RoundTrip:
    """high-load-hpa.yaml as JSON in a copy of the repo layout (its relative paths then still hold),
    both run on the twin with the same seed."""
    root = tmp_path_factory.mktemp("roundtrip")
    (root / "experiment-configs").mkdir()
    for folder in ("manifests", "workloads"):
        (root / folder).symlink_to(REPO / folder)
    json_path = root / "experiment-configs" / "high-load-hpa.json"
    json_path.write_text(json.dumps(yaml.safe_load(HIGH_LOAD.read_text()), indent=2))
    from_yaml, from_json = Experiment.from_yaml_file(HIGH_LOAD), Experiment.from_json_file(json_path)
    yaml_result = from_yaml.run(backend="sim", output_dir=root / "out-yaml", seed=SEED, handle_signals=False)
    json_result = from_json.run(backend="sim", output_dir=root / "out-json", seed=SEED, handle_signals=False)
    return RoundTrip(from_yaml, from_json, yaml_result, json_result)


@pytest.mark.slow
def test_yaml_and_json_files_give_the_same_plan(round_trip: RoundTrip) -> None:
    yaml_plan, json_plan = round_trip.from_yaml.plan(), round_trip.from_json.plan()
    assert json_plan.to_json() == yaml_plan.to_json()
    assert (json_plan.mode, json_plan.total, json_plan.peak_rps) == ("parallel", 900.0, 70.0)
    assert round_trip.from_json.config.hpa_manifest == round_trip.from_yaml.config.hpa_manifest
    assert round_trip.from_json.name == round_trip.from_yaml.name == "high-load-hpa"


def phases_without_run_ids(result: ExperimentResult) -> list[list[str]]:
    """phases.csv byte for byte, except the Job resource names (<job>-<run id>) checked and cut."""
    run_id = json.loads((result.run_dir / "run.json").read_text())["id"]
    with (result.run_dir / "phases.csv").open(newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0][:2] == ["job", "resource_name"]
    assert all(row[1] == f"{row[0]}-{run_id}" for row in rows[1:])
    return [row[:1] + row[2:] for row in rows]


def test_yaml_and_json_give_the_same_simulated_run_for_one_seed(round_trip: RoundTrip) -> None:
    a, b = round_trip.yaml_result, round_trip.json_result
    assert a.run_dir != b.run_dir
    assert (a.status, a.exit_code, a.warnings) == (b.status, b.exit_code, b.warnings) == ("completed", 0, [])
    assert (a.run_dir / "metrics.csv").read_bytes() == (b.run_dir / "metrics.csv").read_bytes()
    assert phases_without_run_ids(a) == phases_without_run_ids(b)
    assert a.summary is not None and b.summary is not None
    assert {k: v for k, v in a.summary.items() if k != "run"} == {k: v for k, v in b.summary.items() if k != "run"}
    assert a.summary["kpis"]["replicas"]["peak"] > 1  # it really scaled, so equal KPIs mean something
    for result in (a, b):
        assert json.loads((result.run_dir / "run.json").read_text())["backend_info"]["seed"] == SEED


def test_the_result_holds_the_summary_and_the_run_files_as_frames(round_trip: RoundTrip) -> None:
    result, plan = round_trip.yaml_result, round_trip.from_yaml.plan()
    assert result.summary == json.loads((result.run_dir / "summary.json").read_text())
    assert len(result.metrics) == int(plan.total / 5) + 1 == 181
    assert result.metrics.columns[: len(ORIGINAL_COLUMNS)].tolist() == ORIGINAL_COLUMNS
    assert result.metrics["replicas"].max() == result.summary["kpis"]["replicas"]["peak"]
    assert result.phases.columns.tolist() == PHASE_COLUMNS
    assert result.phases["job"].tolist() == [job.name for job in plan.jobs]
    assert set(result.phases["outcome"]) == {"completed"}
    assert result.events.columns.tolist() == EVENT_COLUMNS
    kinds = result.events["kind"].tolist()
    assert kinds[0] == "run_started" and kinds[-1] == "run_finished" and kinds.count("job_started") == 3
    requests_file = result.run_dir / "requests.csv"
    if requests_file.exists():  # the twin's per-request log
        assert result.requests is not None and len(result.requests) == len(requests_file.read_text().splitlines()) - 1
    else:
        assert result.requests is None


def test_a_dict_config_resolves_relative_paths_against_base_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = short_config(hpa={"manifest": "manifests/hpa-vllm-combined.yaml"})
    experiment = Experiment(config, base_dir=REPO)
    assert experiment.config.hpa.manifest == HPA_MANIFEST
    assert experiment.config.jobs[0].manifest == SHIPPED_TEMPLATE  # no `manifest`: the shipped template
    assert experiment.config.source is None
    monkeypatch.chdir(REPO)  # the default base is the current folder
    assert Experiment(config).config.hpa.manifest == HPA_MANIFEST
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as raised:
        Experiment(config)
    assert raised.value.source == "<dict>"
    assert any(p.startswith("hpa.manifest:") for p in raised.value.problems)

    config["hpa"]["manifest"] = "changed later"  # the experiment keeps the dict as it was given
    result = experiment.run(output_dir=tmp_path / "out", handle_signals=False)
    assert (result.status, result.exit_code, result.warnings) == ("completed", 0, [])
    assert result.phases["job"].tolist() == ["load"]
    # the 60 s plan's 13 ticks, then more while the Job (sending from 70 s on) had its results grace
    end = float(result.phases["actual_end_s"].iloc[0])
    assert end > 60 and len(result.metrics) == math.ceil(end / 5)
    written = yaml.safe_load((result.run_dir / "experiment-config.yaml").read_text())
    assert written["hpa"]["manifest"] == "manifests/hpa-vllm-combined.yaml"
    assert written["jobs"] == config["jobs"]


def test_invalid_dicts_raise_config_errors_naming_the_key() -> None:
    with pytest.raises(ConfigError, match=r"<dict>: invalid experiment config: jobs: is required"):
        Experiment({"name": "x"})
    with pytest.raises(ConfigError, match=r"jobs\[0\]\.duration: must be > 0 \(got -1\)"):
        Experiment(short_config(jobs=[{"name": "a", "rate": 1, "duration": -1}]))
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        Experiment(["not", "a", "mapping"])  # type: ignore[arg-type]


def test_overrides_make_a_changed_copy_and_check_their_values(tmp_path: Path) -> None:
    hpa = yaml.safe_load(HPA_MANIFEST.read_text())
    del hpa["metadata"]["namespace"]  # it follows the run's namespace
    (tmp_path / "hpa.yaml").write_text(yaml.safe_dump(hpa))
    experiment = Experiment(short_config(backend="kubernetes", hpa={"manifest": str(tmp_path / "hpa.yaml")}))
    changed = experiment.with_overrides(backend="twin", seed=9, namespace="other-ns")
    assert (changed.config.backend, changed.config.simulation.seed, changed.config.namespace) == (
        "simulation",
        9,
        "other-ns",
    )
    assert (experiment.config.backend, experiment.config.simulation.seed, experiment.config.namespace) == (
        "kubernetes",
        SEED,
        "hpa-exp",
    )
    with pytest.raises(UsageError, match="namespace 'Not_Valid'"):
        experiment.with_overrides(namespace="Not_Valid")
    with pytest.raises(ConfigError, match=r"metadata\.namespace is 'hpa-exp' but the run's namespace is 'other-ns'"):
        Experiment(short_config()).with_overrides(namespace="other-ns")
    with pytest.raises(UsageError, match="unknown backend 'docker'"):
        experiment.run(backend="docker")


def test_output_copies_are_written_where_the_config_says(tmp_path: Path) -> None:
    metrics = {
        "interval": 5,
        "output_summary_json_path": "copies/deep/summary.json",
        "output_requests_csv_path": "copies/requests.csv",
    }
    result = Experiment(short_config(metrics=metrics), base_dir=tmp_path).run(
        output_dir=tmp_path / "out", handle_signals=False
    )
    assert result.status == "completed"
    copied_summary = tmp_path / "copies" / "deep" / "summary.json"
    assert copied_summary.read_bytes() == (result.run_dir / "summary.json").read_bytes()
    copied_requests = tmp_path / "copies" / "requests.csv"
    if (result.run_dir / "requests.csv").exists():
        assert result.warnings == []
        assert copied_requests.read_bytes() == (result.run_dir / "requests.csv").read_bytes()
    else:
        assert not copied_requests.exists() and "has no requests.csv" in result.warnings[0]


def test_after_a_run_missing_files_and_failed_kpis_become_warnings(round_trip: RoundTrip, tmp_path: Path) -> None:
    """A run directory without requests.csv (a Kubernetes run) and one whose KPIs cannot be computed."""
    run_dir = shutil.copytree(round_trip.yaml_result.run_dir, tmp_path / "run")
    (run_dir / "requests.csv").unlink(missing_ok=True)
    (run_dir / "summary.json").unlink()
    metrics = MetricsConfig(output_summary_json_path=tmp_path / "s.json", output_requests_csv_path=tmp_path / "r.csv")
    result = finish_run(RunResult(run_dir, "failed", 1, "job x failed"), metrics)
    assert (result.status, result.exit_code, result.reason) == ("failed", 1, "job x failed")
    assert result.summary is not None and (tmp_path / "s.json").read_bytes() == (run_dir / "summary.json").read_bytes()
    assert not (tmp_path / "r.csv").exists() and result.requests is None
    assert result.warnings == [
        f"this run has no requests.csv (only the digital twin records single requests); "
        f"nothing copied to {tmp_path / 'r.csv'}"
    ]

    (run_dir / "metrics.csv").unlink()
    (run_dir / "summary.json").unlink()
    broken = finish_run(RunResult(run_dir, "completed", 0), MetricsConfig(output_summary_json_path=tmp_path / "t.json"))
    assert (broken.status, broken.exit_code, broken.summary) == ("completed", 0, None)
    assert broken.warnings[0].startswith("could not compute the KPIs (") and "metrics.csv" in broken.warnings[0]
    assert "has no summary.json" in broken.warnings[1] and not (tmp_path / "t.json").exists()


@pytest.mark.slow
def test_importing_the_package_does_not_import_the_api_until_used() -> None:
    code = (
        "import sys, hpa_experiments; assert 'hpa_experiments.api' not in sys.modules; "
        "assert 'pandas' not in sys.modules; from hpa_experiments import Experiment; print(Experiment.__module__)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "hpa_experiments.api"
    with pytest.raises(AttributeError, match="no attribute 'Experimnt'"):
        import hpa_experiments

        hpa_experiments.Experimnt  # noqa: B018


@pytest.mark.slow
def test_cli_reports_a_json_syntax_error_with_line_and_column(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{\n  "name": "x",\n  "jobs": [{"name": "a" "rate": 1}]\n}\n')
    for command in ("validate", "plan"):
        done = hpa_exp(command, str(bad))
        assert done.returncode == 2, done.stderr
        assert f"{bad}: invalid experiment config: line 3, column 25: not valid JSON: Expecting ',' delimiter" in (
            done.stderr
        )
        assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_cli_validates_plans_and_runs_a_json_config(tmp_path: Path) -> None:
    config = tmp_path / "short.json"
    config.write_text(json.dumps(short_config()))
    done = hpa_exp("validate", str(config))
    assert done.returncode == 0 and "✓" in done.stdout, done.stderr
    done = hpa_exp("plan", str(config), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["total_s"] == 60.0
    done = hpa_exp("run", str(config), "--backend", "sim", "--output-dir", str(tmp_path / "out"), "--plain")
    assert done.returncode == 0, done.stderr
    (run_dir,) = (tmp_path / "out").iterdir()
    assert "peak replicas" in done.stdout and f"hpa-exp report {run_dir}" in done.stdout
    assert json.loads((run_dir / "run.json").read_text())["status"] == "completed"
    assert json.loads((run_dir / "summary.json").read_text())["run"]["name"] == "api-short"


def test_a_suite_takes_a_json_config_with_overrides(tmp_path: Path) -> None:
    config = tmp_path / "short.json"
    config.write_text(json.dumps(short_config()))
    suite_file = tmp_path / "suite.yaml"
    suite_file.write_text(
        yaml.safe_dump(
            {
                "name": "json-suite",
                "output_dir": str(tmp_path / "suites"),
                "entries": [{"config": "short.json", "repeats": 2, "overrides": {"jobs[0].rate": 4}}],
            }
        )
    )
    suite = load_suite(suite_file)
    assert [(run.repeat, run.config.jobs[0].rate, run.config.simulation.seed) for run in suite.runs] == [
        (1, 4.0, SEED),
        (2, 4.0, SEED + 1),
    ]


@pytest.mark.slow
def test_a_suite_file_may_itself_be_json(tmp_path: Path) -> None:
    (tmp_path / "short.json").write_text(json.dumps(short_config()))
    suite_file = tmp_path / "suite.json"
    suite_file.write_text(json.dumps({"name": "json-suite", "entries": [{"config": "short.json", "repeats": 2}]}))
    assert [run.repeat for run in load_suite(suite_file).runs] == [1, 2]
    suite_file.write_text('{"name": "json-suite",\n "entries": [}\n')
    done = hpa_exp("suite", str(suite_file))
    assert done.returncode == 2
    assert f"{suite_file}: invalid suite: line 2, column 14: not valid JSON: Expecting value" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_menu_lists_json_configs_with_the_yaml_ones(tmp_path: Path) -> None:
    from rich.console import Console

    from hpa_experiments.menu.context import MenuContext

    for name in ("b.json", "a.yaml", "c.yml", "notes.txt"):
        (tmp_path / name).write_text("{}")
    context = MenuContext(Console(), configs_dir=tmp_path, data_dir=tmp_path / "data", cluster=None)
    assert [p.name for p in context.config_files()] == ["a.yaml", "b.json", "c.yml"]
