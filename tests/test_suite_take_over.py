"""`hpa-exp suite --take-over` and the suite file's `take_over: true`: an existing HPA that differs
from the runs' manifest is taken over and restored, instead of failing every run at the preflight.

On the emulator, not the test bed: what is tested is that the suite hands the choice to each
run's preflight and backend; the take-over itself against a real API server's defaults is
tests/test_testbed_ownership.py's.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import yaml

from tests.support.kube_emulator import HPAS, KubeEmulator
from tests.support.prometheus import PrometheusServer
from tests.test_reliability_suite import cli, write_suite
from tests.test_run_kubernetes_e2e import NS, prom  # noqa: F401 - `prom` is a fixture
from tests.test_why_kubernetes import write_config

pytestmark = pytest.mark.slow


def suite_args(suite: Path, kube: KubeEmulator, prom_url: str, *extra: str) -> list[str]:
    return ["suite", str(suite), "--kubeconfig", str(kube.kubeconfig), "--prometheus-url", prom_url, *extra]


def hpa_suite(folder: Path, **extra: object) -> Path:
    """One run that applies HPA vllm-hpa with maxReplicas 4; the emulator's vllm-hpa has 8."""
    folder.mkdir()
    config = write_config(folder)
    doc = yaml.safe_load(config.read_text())
    doc["hpa"]["remove_after"] = True
    doc["jobs"][0]["duration"] = 2
    config.write_text(yaml.safe_dump(doc))
    return write_suite(folder, [{"config": str(config)}], max_retries=0, settle={"timeout": 5, "poll": 0.2}, **extra)


def test_without_take_over_the_run_is_refused_naming_the_flag(
    kube_cluster: KubeEmulator,
    prom: PrometheusServer,  # noqa: F811 - the imported fixture
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    original = kube_cluster.get(HPAS, NS, "vllm-hpa")["spec"]  # type: ignore[index]
    code, out, err = cli(capsys, *suite_args(hpa_suite(tmp_path / "a"), kube_cluster, prom.url))
    assert code == 1, out + err
    with (tmp_path / "a" / "out" / "s" / "failures.csv").open(newline="") as fh:
        [failure] = list(csv.DictReader(fh))
    assert "already exists and differs from the manifest" in failure["reason"]
    assert "--take-over" in failure["reason"]
    assert kube_cluster.get(HPAS, NS, "vllm-hpa")["spec"] == original  # type: ignore[index]


@pytest.mark.parametrize("how", ["flag", "suite file"])
def test_take_over_runs_and_restores_the_hpa(
    how: str,
    kube_cluster: KubeEmulator,
    prom: PrometheusServer,  # noqa: F811 - the imported fixture
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    original = kube_cluster.get(HPAS, NS, "vllm-hpa")["spec"]  # type: ignore[index]
    assert original["maxReplicas"] == 8
    suite = hpa_suite(tmp_path / "s", **({"take_over": True} if how == "suite file" else {}))
    extra = ("--take-over",) if how == "flag" else ()
    code, out, err = cli(capsys, *suite_args(suite, kube_cluster, prom.url, *extra))
    assert code == 0, out + err
    [run_dir] = [p for p in (tmp_path / "s" / "out" / "s").iterdir() if (p / "run.json").exists()]
    assert yaml.safe_load((run_dir / "hpa-applied.yaml").read_text())["spec"]["maxReplicas"] == 4
    events = (run_dir / "events.csv").read_text()
    assert "took over HPA" in events, events
    assert kube_cluster.get(HPAS, NS, "vllm-hpa")["spec"] == original  # type: ignore[index]  # restored
