"""`hpa-exp cleanup` against the Kubernetes emulator over HTTP: Jobs found by label and deleted, run.json marked."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from hpa_experiments.cli import main
from tests.support.kube_emulator import JOBS, KubeEmulator

NS = "bench"


def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def job(name: str, run_id: str | None) -> dict:
    labels = {"app.kubernetes.io/managed-by": "hpa-exp"}
    if run_id:
        labels["hpa-exp/run"] = run_id
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name, "labels": labels}, "spec": {}}


def fake_run(
    folder: Path, run_id: str, status: str = "running", pid: int | None = None, last_event: str = "job_started"
) -> Path:
    folder.mkdir(parents=True)
    info = {
        "id": run_id,
        "name": "x",
        "status": status,
        "backend": "kubernetes",
        "start_utc": "2026-11-23T04:00:00.000Z",
        "end_utc": None,
        "pid": pid if pid is not None else dead_pid(),
        "backend_info": {"namespace": NS},
        "config": {"namespace": NS},
    }
    (folder / "run.json").write_text(json.dumps(info))
    (folder / "events.csv").write_text(f"elapsed_s,time,kind,detail\n0,t,run_started,x\n1,t,{last_event},y\n2,t,job_s")
    return folder


def cli(*args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    out, err = capsys.readouterr()
    return int(exit_info.value.code or 0), out, err


def test_cleanup_deletes_only_the_runs_jobs_and_marks_it(kube_cluster: KubeEmulator, tmp_path: Path, capsys) -> None:
    for name, run_id in (("a-r1", "r1"), ("b-r1", "r1"), ("a-r2", "r2"), ("foreign", None)):
        kube_cluster.put(JOBS, NS, job(name, run_id))
    run = fake_run(tmp_path / "run-r1", "r1")
    code, out, err = cli("cleanup", str(run), "--kubeconfig", str(kube_cluster.kubeconfig), capsys=capsys)
    assert code == 0, err
    assert kube_cluster.names(JOBS, NS) == ["a-r2", "foreign"]
    deletes = kube_cluster.requests_to("DELETE", r"/jobs/")
    assert sorted(d.path.rsplit("/", 1)[1] for d in deletes) == ["a-r1", "b-r1"]
    assert all(d.params.get("propagationPolicy") == "Background" for d in deletes)
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "interrupted"
    assert info["reason"].startswith("process ended without cleanup; 2 Job(s) deleted by hpa-exp cleanup at ")
    assert "running -> interrupted" in out and "deleted Job bench/a-r1" in out

    # again: nothing left, status kept
    code, out, _ = cli("cleanup", str(run), "--kubeconfig", str(kube_cluster.kubeconfig), capsys=capsys)
    assert code == 0 and "no Jobs found" in out and "'interrupted' kept" in out


def test_cleanup_all_deletes_every_managed_job(kube_cluster: KubeEmulator, tmp_path: Path, capsys) -> None:
    for name, run_id in (("a-r1", "r1"), ("a-r2", "r2")):
        kube_cluster.put(JOBS, NS, job(name, run_id))
    kube_cluster.put(JOBS, NS, {**job("foreign", None), "metadata": {"name": "foreign", "labels": {}}})
    code, _out, err = cli("cleanup", "--all", "-n", NS, "--kubeconfig", str(kube_cluster.kubeconfig), capsys=capsys)
    assert code == 0, err
    assert kube_cluster.names(JOBS, NS) == ["foreign"]


def test_cleanup_marks_failed_after_an_error_event_and_retries_faults(
    kube_cluster: KubeEmulator, tmp_path: Path, capsys
) -> None:
    kube_cluster.put(JOBS, NS, job("a-r3", "r3"))
    run = fake_run(tmp_path / "run-r3", "r3", last_event="error")
    kube_cluster.fail_next(1, 503, method="GET", path="/jobs$")
    kube_cluster.drop_next(1, method="DELETE", path="/jobs/", after_processing=True)
    code, _out, err = cli("cleanup", str(run), "--kubeconfig", str(kube_cluster.kubeconfig), capsys=capsys)
    assert code == 0, err
    assert kube_cluster.names(JOBS, NS) == []
    assert json.loads((run / "run.json").read_text())["status"] == "failed"
    assert err.count("warning:") == 2


def test_cleanup_refuses_a_live_run_and_bad_arguments(kube_cluster: KubeEmulator, tmp_path: Path, capsys) -> None:
    import os

    run = fake_run(tmp_path / "live", "r4", pid=os.getpid())
    code, _, err = cli("cleanup", str(run), "--kubeconfig", str(kube_cluster.kubeconfig), capsys=capsys)
    assert code == 2 and "still in progress" in err
    assert json.loads((run / "run.json").read_text())["status"] == "running"
    code, _, err = cli("cleanup", capsys=capsys)
    assert code == 2 and "--all" in err
    code, _, err = cli("cleanup", str(tmp_path), capsys=capsys)
    assert code == 2 and "not a run directory" in err
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "run.json").write_text("[1, 2")
    code, _, err = cli("cleanup", str(tmp_path / "bad"), capsys=capsys)
    assert code == 2 and "cannot read run.json" in err
    assert "Traceback" not in err
