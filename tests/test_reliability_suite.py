"""`hpa-exp suite`: overrides validated like configs, resume from the progress file, retries and
failures.csv, the closing comparison; a suite on Kubernetes interrupted after its second run and
rerun runs only the third."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from hpa_experiments.cli import main
from hpa_experiments.suite.config import SuiteError, apply_override, load_suite, parse_override_key
from hpa_experiments.suite.progress import PROGRESS_FILE
from tests.support.kube_emulator import JOBS, KubeEmulator
from tests.support.prometheus import PrometheusServer
from tests.test_run_kubernetes_e2e import NS, prom, write_config  # noqa: F401 - `prom` is a fixture

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "experiment-configs" / "suites" / "sim-peak-sweep.yaml"


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    out, err = capsys.readouterr()
    return int(exit_info.value.code or 0), out, err


def sim_config(folder: Path, name: str = "quick") -> Path:
    doc = {
        "name": name,
        "backend": "simulation",
        "hpa": {"manifest": str(REPO / "manifests" / "hpa-vllm-combined.yaml")},
        "jobs": [
            {"name": "load", "rate": 5, "duration": 60, "manifest": str(REPO / "workloads" / "vllm-bench-serve.yaml")}
        ],
        "metrics": {"interval": 5},
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def write_suite(folder: Path, entries: list[dict], **extra) -> Path:
    path = folder / "suite.yaml"
    path.write_text(yaml.safe_dump({"name": "s", "output_dir": str(folder / "out"), "entries": entries, **extra}))
    return path


def progress(folder: Path) -> list[dict]:
    path = folder / PROGRESS_FILE
    return json.loads(path.read_text())["runs"] if path.exists() else []


def test_override_keys() -> None:
    assert parse_override_key("jobs[0].rate") == ["jobs", 0, "rate"]
    assert parse_override_key("simulation.seed") == ["simulation", "seed"]
    for bad in ("", "jobs[x]", "a..b", ".a", "jobs[0]rate", "a b", "rate\n"):
        with pytest.raises(ValueError):
            parse_override_key(bad)
    raw = {"jobs": [{"rate": 1}], "hpa": None}
    apply_override(raw, "jobs[0].rate", 15)
    apply_override(raw, "hpa.name", "h")
    assert raw == {"jobs": [{"rate": 15}], "hpa": {"name": "h"}}
    with pytest.raises(ValueError, match="jobs has 1 item"):
        apply_override(raw, "jobs[3].rate", 1)
    with pytest.raises(ValueError, match="not a mapping"):
        apply_override(raw, "jobs[0].rate.x", 1)
    with pytest.raises(ValueError, match="not a list"):
        apply_override(raw, "hpa[0]", 1)


def test_every_config_is_validated_before_any_run(tmp_path: Path, capsys) -> None:
    good = sim_config(tmp_path)
    suite = write_suite(
        tmp_path,
        [
            {"config": str(good)},
            {"config": str(good), "overrides": {"simulation.sede": 3, "jobs[0].rate": -2}},
            {"config": str(good), "overrides": {"jobs[2].rate": 3}},
            {"config": "missing.yaml"},
        ],
        max_retrys=1,
    )
    code, out, err = cli(capsys, "suite", str(suite))
    assert code == 2, out + err
    assert "max_retrys: unknown key; did you mean 'max_retries'?" in err
    code, out, err = cli(capsys, "suite", str(write_suite(tmp_path, yaml.safe_load(suite.read_text())["entries"])))
    assert code == 2
    assert "simulation.sede: unknown key; did you mean 'seed'?" in err
    assert "jobs[0].rate: must be > 0 (got -2)" in err
    assert "overrides['jobs[2].rate']: jobs has 1 item(s), there is no [2]" in err
    assert "missing.yaml): file not found" in err
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()  # nothing ran


@pytest.mark.slow
def test_sim_suite_runs_repeats_with_seeds_resumes_and_compares(tmp_path: Path, capsys) -> None:
    config = sim_config(tmp_path)
    suite = write_suite(
        tmp_path,
        [{"config": str(config), "repeats": 2}, {"config": str(config), "overrides": {"jobs[0].rate": 9}}],
    )
    code, out, err = cli(capsys, "suite", str(suite))
    assert code == 0, out + err
    folder = tmp_path / "out" / "s"
    records = progress(folder)
    assert [(r["entry"], r["repeat"], r["status"]) for r in records] == [
        (0, 1, "completed"),
        (0, 2, "completed"),
        (1, 1, "completed"),
    ]
    seeds = [json.loads((Path(r["run_dir"]) / "run.json").read_text())["config"]["simulation"]["seed"] for r in records]
    rates = [json.loads((Path(r["run_dir"]) / "run.json").read_text())["config"]["jobs"][0]["rate"] for r in records]
    assert seeds == [42, 43, 42] and rates == [5, 5, 9]
    origin = json.loads((Path(records[2]["run_dir"]) / "suite-entry.json").read_text())
    assert origin["entry"] == 1 and origin["overrides"] == {"jobs[0].rate": 9} and origin["seed"] == 42
    compared = json.loads((folder / "comparison" / "compare.json").read_text())
    assert [r["path"] for r in compared["runs"]] == [r["run_dir"] for r in records]
    assert not (folder / "failures.csv").exists()

    code, out, _ = cli(capsys, "suite", str(suite))
    assert code == 0 and out.count("done before, skipped") == 3
    assert progress(folder) == records
    # a changed override is a different run: only that one runs again
    doc = yaml.safe_load(suite.read_text())
    doc["entries"][1]["overrides"]["jobs[0].rate"] = 11
    suite.write_text(yaml.safe_dump(doc))
    code, out, _ = cli(capsys, "suite", str(suite))
    assert code == 0 and out.count("done before, skipped") == 2 and "0 failed" in out
    assert len(progress(folder)) == 4


def test_example_suite_is_valid(capsys) -> None:
    code, out, err = cli(capsys, "suite", str(EXAMPLE), "--check")
    assert code == 0, err
    assert out.count("on simulation") == 3


def test_failed_runs_are_retried_with_backoff_and_logged(kube_cluster: KubeEmulator, tmp_path: Path, capsys) -> None:
    config = write_config(tmp_path, [{"name": "a", "rate": 1, "duration": 1}])
    suite = write_suite(tmp_path, [{"config": str(config)}], max_retries=2, retry_backoff=0.2)
    started = time.monotonic()
    code, out, err = cli(
        capsys,
        "suite",
        str(suite),
        "--kubeconfig",
        str(kube_cluster.kubeconfig),
        "--prometheus-url",
        "http://127.0.0.1:9",
    )
    assert code == 1, out + err
    assert time.monotonic() - started >= 0.2 + 0.4  # backoff 0.2 s, then 0.4 s
    with (tmp_path / "out" / "s" / "failures.csv").open(newline="") as fh:
        failures = list(csv.DictReader(fh))
    assert [f["attempt"] for f in failures] == ["1", "2", "3"]
    assert all("Prometheus is not usable" in f["reason"] and f["time"].endswith("Z") for f in failures)
    (record,) = progress(tmp_path / "out" / "s")
    assert record["status"] == "failed" and record["attempts"] == 3
    assert "retry 1/2 in 0.2 s" in out and "retry 2/2 in 0.4 s" in out


@pytest.mark.slow
def test_interrupted_suite_resumes_with_only_the_third_run(
    kube_cluster: KubeEmulator,
    prom: PrometheusServer,  # noqa: F811 - the imported fixture
    tmp_path: Path,
) -> None:
    config = write_config(
        tmp_path, [{"name": "a", "rate": 1, "duration": 2}], metrics={"interval": 0.5, "rate_window": "10s"}
    )
    suite = write_suite(
        tmp_path,
        [{"config": str(config), "overrides": {"name": f"exp-{n}"}} for n in (1, 2, 3)],
        settle={"timeout": 5, "poll": 0.5},
    )
    folder = tmp_path / "out" / "s"
    command = [
        sys.executable,
        "-m",
        "hpa_experiments",
        "suite",
        str(suite),
        "--backend",
        "kubernetes",
        "--kubeconfig",
        str(kube_cluster.kubeconfig),
        "--prometheus-url",
        prom.url,
    ]
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while len(progress(folder)) < 2 and time.monotonic() < deadline and first.poll() is None:
        time.sleep(0.05)
    first.send_signal(signal.SIGTERM)
    output, _ = first.communicate(timeout=60)
    assert first.returncode == 130, output
    before = progress(folder)
    assert [r["config"] for r in before] == [str(config)] * 2 and [r["entry"] for r in before] == [0, 1]
    assert kube_cluster.names(JOBS, NS) == []
    dirs_before = {p.name for p in folder.iterdir() if (p / "run.json").exists()}
    assert all(any(d.startswith(f"exp-{n}-") for d in dirs_before) for n in (1, 2))
    posts_before = len(kube_cluster.requests_to("POST", "/jobs$"))

    second = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stdout + second.stderr
    after = progress(folder)
    assert after[:2] == before  # the first two are untouched
    assert [(r["entry"], r["status"]) for r in after] == [(0, "completed"), (1, "completed"), (2, "completed")]
    new_dirs = {p.name for p in folder.iterdir() if (p / "run.json").exists()} - dirs_before
    assert len(new_dirs) == 1 and next(iter(new_dirs)).startswith("exp-3-")
    assert Path(after[2]["run_dir"]).name in new_dirs
    assert second.stdout.count("done before, skipped") == 2
    assert len(kube_cluster.requests_to("POST", "/jobs$")) - posts_before == 1  # only the third run's Job
    assert (folder / "comparison" / "compare.json").exists()


@pytest.mark.slow
def test_kubernetes_runs_wait_for_the_hpa_minimum(
    kube_cluster: KubeEmulator,
    prom: PrometheusServer,  # noqa: F811 - the imported fixture
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = write_config(tmp_path, [{"name": "a", "rate": 1, "duration": 1}])
    suite = write_suite(tmp_path, [{"config": str(config)}], settle={"timeout": 30, "poll": 0.2})
    kube_cluster.set_hpa_status(NS, "vllm-hpa", current_replicas=3, desired_replicas=1)
    settled_at: list[float] = []

    def scale_down_later() -> None:
        before = len(kube_cluster.requests_to("GET", "horizontalpodautoscalers"))
        deadline = time.monotonic() + 60
        while len(kube_cluster.requests_to("GET", "horizontalpodautoscalers")) == before:  # the suite looks
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(1.0)
        settled_at.append(time.time())
        kube_cluster.set_hpa_status(NS, "vllm-hpa", current_replicas=1)

    controller = threading.Thread(target=scale_down_later)
    controller.start()
    code, out, err = cli(
        capsys,
        "suite",
        str(suite),
        "--backend",
        "kubernetes",
        "--kubeconfig",
        str(kube_cluster.kubeconfig),
        "--prometheus-url",
        prom.url,
    )
    controller.join()
    assert code == 0, out + err
    assert "settle: 3 replicas, waiting for 1" in out
    (record,) = progress(tmp_path / "out" / "s")
    info = json.loads((Path(record["run_dir"]) / "run.json").read_text())
    started = datetime.fromisoformat(info["start_utc"].replace("Z", "+00:00")).timestamp()
    assert started >= settled_at[0]


def test_the_suite_file_is_described_by_the_same_formatter_as_configs(tmp_path: Path) -> None:
    """One pydantic-error formatter for configs and suites: same wording, 'did you mean' per section."""
    path = tmp_path / "suite.yaml"
    path.write_text(
        yaml.safe_dump({"name": "s", "settle": {"tiemout": 5}, "entries": [{"config": "a.yaml", "repeats": 0}]}),
        encoding="utf-8",
    )
    with pytest.raises(SuiteError) as caught:
        load_suite(path)
    assert caught.value.problems == [
        "settle.tiemout: unknown key; did you mean 'timeout'?",
        "entries[0].repeats: must be >= 1 (got 0)",
    ]
