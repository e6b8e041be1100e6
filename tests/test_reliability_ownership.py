"""Ownership and losing sight (issue 16, items 2 and 3) where no real API server is needed.

* A Job template is applied as written only when it stays inside the run: a config-time rule,
  checked by `hpa-exp validate` without any cluster.
* A Deployment deleted mid-run: the emulator (real HTTP through the official client, a real
  Prometheus) is enough, because what matters is the backend seeing a 404 on it, which the
  emulator answers as the API server does.  The HPA and Job cases run on the test bed
  (tests/test_testbed_lost_objects.py).
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest

from hpa_experiments.cli import main
from tests.support.kube_emulator import DEPLOYMENTS, HPAS, JOBS, SCALED_OBJECTS, KubeEmulator
from tests.support.prometheus import PrometheusServer
from tests.test_run_kubernetes_e2e import NS, hpa_exp, prom, read_csv, run_dir, write_config  # noqa: F401

REPO = Path(__file__).resolve().parents[1]
JOB = REPO / "workloads" / "vllm-bench-serve.yaml"


@pytest.mark.parametrize(
    ("insert_after", "added", "problem"),
    [
        (
            "  name: vllm-bench-serve\n",
            "  labels:\n    hpa-exp/run: someone-elses\n",
            "metadata.labels.hpa-exp/run: set by hpa-exp for every run; remove it from the template",
        ),
        (
            "  name: vllm-bench-serve\n",
            "  ownerReferences:\n  - {apiVersion: apps/v1, kind: Deployment, name: vllm, uid: x}\n",
            "metadata.ownerReferences: ties the Job to another object's life (its deletion would take the Job); "
            "remove it",
        ),
        (
            "  backoffLimit: 2\n",
            "  ttlSecondsAfterFinished: 0\n",
            "spec.ttlSecondsAfterFinished: would delete the Job (and its logs) before the run has read them; "
            "the run deletes its Jobs itself; remove it",
        ),
        (
            "  backoffLimit: 2\n",
            "  manualSelector: true\n  selector: {matchLabels: {app: vllm}}\n",
            "spec.selector: would let the Job take pods that are not its own; remove it",
        ),
    ],
)
def test_a_job_template_that_reaches_outside_the_run_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], insert_after: str, added: str, problem: str
) -> None:
    """`hpa-exp validate` names the config key, the file and the template's key path (exit 2)."""
    job = tmp_path / "job.yaml"
    text = JOB.read_text()
    assert insert_after in text
    job.write_text(text.replace(insert_after, insert_after + added, 1))
    config = write_config(tmp_path, [{"name": "load", "rate": 2, "duration": 3, "manifest": str(job)}])
    with pytest.raises(SystemExit) as info:
        main(["validate", str(config)])
    _, err = capsys.readouterr()
    assert info.value.code == 2, err
    assert f"jobs[0].manifest: {job}: {problem}" in err, err


@pytest.mark.slow
def test_a_deployment_deleted_mid_run_is_said_at_once_and_fails_the_run(
    kube_cluster: KubeEmulator,
    prom: PrometheusServer,  # noqa: F811 - the imported fixture
    tmp_path: Path,
) -> None:
    """Emulator: the Deployment is removed once the Job exists; the run says so in an event at the
    tick that sees it, notes it in summary.json and the printed alerts, and exits 1."""

    deleted_at: list[float] = []

    def delete_deployment_when_the_job_exists() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if kube_cluster.names(JOBS, NS):
                time.sleep(1.5)
                kube_cluster.remove(DEPLOYMENTS, NS, "vllm")
                deleted_at.append(time.time())
                return
            time.sleep(0.02)

    config = write_config(tmp_path, [{"name": "load", "rate": 1, "duration": 8}])
    remover = threading.Thread(target=delete_deployment_when_the_job_exists)
    remover.start()
    done = subprocess.run(
        hpa_exp(str(config), kube=kube_cluster, prom_url=prom.url, out=tmp_path / "out"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    remover.join()
    assert deleted_at, "the run never created its Job"
    assert done.returncode == 1, done.stdout + done.stderr
    run = run_dir(tmp_path / "out")
    lost = [e for e in read_csv(run / "events.csv") if e["kind"] == "object_lost"]
    assert len(lost) == 1, lost
    assert lost[0]["detail"].startswith(f"Deployment {NS}/vllm disappeared (not found at ")
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "failed"
    assert info["reason"].startswith(f"lost sight of Deployment {NS}/vllm (gone at ")
    summary = json.loads((run / "summary.json").read_text())
    assert [a for a in summary["alerts"] if "Deployment bench/vllm disappeared" in a] == [
        f"at {float(lost[0]['elapsed_s']):g} s: {lost[0]['detail']}"
    ]
    assert f"warning: at {float(lost[0]['elapsed_s']):g} s: Deployment {NS}/vllm disappeared" in done.stderr
    # said at once: at a tick right after the deletion (interval 1 s), not at the end of the run
    seen = datetime.fromisoformat(lost[0]["time"].replace("Z", "+00:00")).timestamp()
    assert seen - deleted_at[0] < 5


def test_cleanup_deletes_what_a_run_created_restores_what_it_took_over_and_leaves_keda_its_hpa(
    kube_cluster: KubeEmulator,
) -> None:
    """Emulator: the choices cleanup makes among labelled objects (the test bed's
    tests/test_testbed_ownership.py shows the same for an HPA on a real API server after SIGKILL)."""
    from hpa_experiments.backends.kube.backend import KubeSettings
    from hpa_experiments.cleanup import release_autoscalers
    from hpa_experiments.ownership import stamp, taken_over

    marks = {"hpa-exp/run": "r9", "app.kubernetes.io/managed-by": "hpa-exp"}
    kube_cluster.install_keda()
    kube_cluster.add_scaled_object(NS, "so-a", deployment="vllm")  # and keda-hpa-so-a, owned by it
    for resource, name in ((SCALED_OBJECTS, "so-a"), (HPAS, "keda-hpa-so-a")):
        kube_cluster.put(resource, NS, stamp(kube_cluster.get(resource, NS, name) or {}, "r9"))
    original = kube_cluster.get(HPAS, NS, "vllm-hpa") or {}
    changed = {"spec": {**original["spec"], "maxReplicas": 2}}
    kube_cluster.put(HPAS, NS, taken_over(original, changed, "r9"))
    assert marks.items() <= kube_cluster.get(HPAS, NS, "vllm-hpa")["metadata"]["labels"].items()  # type: ignore[index]

    notes: list[str] = []
    settings = KubeSettings(kubeconfig=str(kube_cluster.kubeconfig))
    done = release_autoscalers(settings, NS, "hpa-exp/run=r9", notes, lambda _: None)
    assert (done.deleted, done.restored, notes) == ([f"ScaledObject {NS}/so-a"], [f"HPA {NS}/vllm-hpa"], [])
    assert kube_cluster.get(SCALED_OBJECTS, NS, "so-a") is None
    assert kube_cluster.get(HPAS, NS, "keda-hpa-so-a") is not None  # KEDA's: deleted by KEDA with its owner
    back = kube_cluster.get(HPAS, NS, "vllm-hpa") or {}
    assert (back["spec"], back["metadata"].get("labels"), back["metadata"].get("annotations")) == (
        original["spec"],
        original["metadata"].get("labels"),
        original["metadata"].get("annotations"),
    )
