"""One namespace per run, decided once (issue 16, item 1).

The HPA manifest's own `metadata.namespace` used to win over the run's: with `-n bench` (or a
config namespace that differs from the manifest's) the HPA was created in another namespace,
the run watched `bench` and recorded no replica values, exit 0.  Now a manifest (HPA or Job
template) whose namespace disagrees is a config error naming the file, the key and both values,
found before anything is applied.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from hpa_experiments.cli import main
from tests.support.kube_emulator import HPAS, KubeEmulator
from tests.support.prometheus import PrometheusServer
from tests.support.vllm_exporter import scraped_prometheus

REPO = Path(__file__).resolve().parents[1]
SHIPPED_HPA = REPO / "manifests" / "hpa-vllm-combined.yaml"  # metadata.namespace: hpa-exp
JOB = REPO / "workloads" / "vllm-bench-serve.yaml"
ADVICE = "a run uses one namespace: remove metadata.namespace from the manifest or make the two equal"


def write_config(folder: Path, **changes: object) -> Path:
    doc = {
        "name": "ns",
        "namespace": "hpa-exp",
        "backend": "kubernetes",
        "hpa": {"manifest": str(SHIPPED_HPA)},
        "jobs": [{"name": "load", "rate": 2, "duration": 3, "manifest": str(JOB)}],
        "metrics": {"interval": 1, "rate_window": "10s"},
        **changes,
    }
    path = folder / "ns.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_a_config_namespace_other_than_the_hpa_manifests_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, namespace="bench")
    with pytest.raises(SystemExit) as info:
        main(["validate", str(config)])
    _, err = capsys.readouterr()
    assert (info.value.code, err.strip()) == (
        2,
        f"✗ {config}: invalid experiment config: hpa.manifest: {SHIPPED_HPA}: metadata.namespace is 'hpa-exp' "
        f"but the run's namespace is 'bench' (config key 'namespace'); {ADVICE}",
    )


def test_a_job_template_in_another_namespace_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    job = tmp_path / "job.yaml"
    job.write_text(
        JOB.read_text().replace("  name: vllm-bench-serve\n", "  name: vllm-bench-serve\n  namespace: prod\n")
    )
    config = write_config(tmp_path, jobs=[{"name": "load", "rate": 2, "duration": 3, "manifest": str(job)}])
    with pytest.raises(SystemExit) as info:
        main(["validate", str(config)])
    _, err = capsys.readouterr()
    assert (info.value.code, err.strip()) == (
        2,
        f"✗ {config}: invalid experiment config: jobs[0].manifest: {job}: metadata.namespace is 'prod' "
        f"but the run's namespace is 'hpa-exp' (config key 'namespace'); {ADVICE}",
    )


def test_a_namespace_template_value_counts_as_the_manifests_namespace(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`namespace: ${namespace}` follows the run; a `values.namespace` that points elsewhere does not."""
    job = tmp_path / "job.yaml"
    job.write_text(
        JOB.read_text().replace("  name: vllm-bench-serve\n", "  name: vllm-bench-serve\n  namespace: ${namespace}\n")
    )
    config = write_config(tmp_path, jobs=[{"name": "load", "rate": 2, "duration": 3, "manifest": str(job)}])
    with pytest.raises(SystemExit) as info:
        main(["validate", str(config)])
    assert info.value.code == 0, capsys.readouterr()
    config = write_config(
        tmp_path, jobs=[{"name": "load", "rate": 2, "duration": 3, "manifest": str(job), "values": {"namespace": "x"}}]
    )
    with pytest.raises(SystemExit) as info:
        main(["validate", str(config)])
    _, err = capsys.readouterr()
    assert info.value.code == 2 and "metadata.namespace is 'x' but the run's namespace is 'hpa-exp'" in err


@pytest.mark.slow
def test_namespace_flag_that_disagrees_with_the_manifest_fails_before_any_request(
    kube_cluster: KubeEmulator, tmp_path: Path
) -> None:
    """Emulator: the point is that no API request at all is made, which its request log shows."""
    config = write_config(tmp_path)  # namespace hpa-exp, as the shipped HPA manifest
    before = len(kube_cluster.requests)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "hpa_experiments",
            "run",
            str(config),
            "-n",
            "bench",
            "--kubeconfig",
            str(kube_cluster.kubeconfig),
            "--prometheus-url",
            "http://127.0.0.1:9",
            "-o",
            str(tmp_path / "out"),
            "--plain",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, done.stderr.strip()) == (
        2,
        f"error: {config}: invalid experiment config: hpa.manifest: {SHIPPED_HPA}: metadata.namespace is 'hpa-exp' "
        f"but the run's namespace is 'bench' (the namespace override: -n/--namespace); {ADVICE}",
    )
    assert len(kube_cluster.requests) == before
    assert not (tmp_path / "out").exists()
    # --dry-run checks the same, before printing anything
    done = subprocess.run(
        [sys.executable, "-m", "hpa_experiments", "run", str(config), "-n", "bench", "--dry-run"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, done.stdout) == (2, "")


@pytest.fixture(scope="module")
def prom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    with scraped_prometheus(tmp_path_factory.mktemp("prom"), "bench") as server:
        yield server


@pytest.mark.slow
def test_an_hpa_manifest_without_namespace_is_created_where_the_run_looks(
    kube_cluster: KubeEmulator, prom: PrometheusServer, tmp_path: Path
) -> None:
    """Emulator and a real Prometheus: `-n bench` puts the HPA in bench, and its replicas are recorded.

    The emulator, not the test bed, because the test plays the HPA controller (sets the status of
    the HPA the run creates) at a known moment."""
    hpa = yaml.safe_load(SHIPPED_HPA.read_text())
    del hpa["metadata"]["namespace"]
    hpa["metadata"]["name"] = "ns-test-hpa"
    manifest = tmp_path / "hpa.yaml"
    manifest.write_text(yaml.safe_dump(hpa))
    # the exporter's model; and no other HPA on the Deployment, which the preflight would refuse
    config = write_config(tmp_path, hpa={"manifest": str(manifest)}, model_name="m")
    kube_cluster.remove(HPAS, "bench", "vllm-hpa")

    def play_the_hpa_controller() -> None:
        deadline = time.monotonic() + 30
        while kube_cluster.get(HPAS, "bench", "ns-test-hpa") is None and time.monotonic() < deadline:
            time.sleep(0.02)
        kube_cluster.set_hpa_status("bench", "ns-test-hpa", current_replicas=2, desired_replicas=2)

    controller = threading.Thread(target=play_the_hpa_controller)
    controller.start()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "hpa_experiments",
            "run",
            str(config),
            "-n",
            "bench",
            "--kubeconfig",
            str(kube_cluster.kubeconfig),
            "--prometheus-url",
            prom.url,
            "-o",
            str(tmp_path / "out"),
            "--plain",
        ],
        capture_output=True,
        text=True,
        timeout=90,
    )
    controller.join()
    assert done.returncode == 0, done.stderr
    posts = [r.path for r in kube_cluster.requests if r.method == "POST" and "horizontalpodautoscalers" in r.path]
    assert posts == ["/apis/autoscaling/v2/namespaces/bench/horizontalpodautoscalers"]
    (run,) = (tmp_path / "out").iterdir()
    replicas = [line.split(",") for line in (run / "metrics.csv").read_text().splitlines()]
    column = replicas[0].index("replicas")
    assert replicas[-1][column] == "2"
