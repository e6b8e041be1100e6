"""`hpa-exp tune --backend kubernetes`: the points as one Indexed Job on the real test bed.

Real test bed, not the emulator: what matters is Kubernetes' own Job controller running an
Indexed Job (one completion index per point, the index annotation and `$(JOB_COMPLETION_INDEX)`),
the ConfigMap volume, logs read through the API server's `pods/log`, and deletion with the
garbage collector, none of which the emulator plays.  kwok's pods run nothing, so the test bed's
pod supervisor stands in for the container runtime: for a pod whose container runs
`hpa-exp tune --worker` it copies the ConfigMap to a local folder and runs that worker as a
local process, its output being the pod's log (tests/support/testbed_pods.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.testbed import Testbed
from tests.support.testbed_kit import KIT, NAMESPACE, hpa_exp, wait_for
from tests.test_tune_run import small_config, space_file

pytestmark = pytest.mark.testbed


def test_a_search_runs_as_one_indexed_job_and_is_cleaned_up(testbed: Testbed, tmp_path: Path) -> None:
    testbed.apply_file(KIT / "namespace.yaml")
    config, space = small_config(tmp_path), space_file(tmp_path, [1, 3])
    done = hpa_exp(
        testbed,
        "tune",
        str(config),
        str(space),
        "-o",
        str(tmp_path / "kube"),
        "--backend",
        "kubernetes",
        "--image",
        "hpa-exp:test",
        "-n",
        NAMESPACE,
        "--kubeconfig",
        str(testbed.kubeconfig),
        timeout=900,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"Indexed Job {NAMESPACE}/hpa-exp-tune-" in done.stdout, done.stdout
    name = done.stdout.split(f"Indexed Job {NAMESPACE}/", 1)[1].split(" ", 1)[0]
    job = testbed.request("GET", f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs/{name}")
    assert job.status_code == 404, "the Job is deleted"
    assert testbed.request("GET", f"/api/v1/namespaces/{NAMESPACE}/configmaps/{name}").status_code == 404

    def pods_gone() -> bool:
        pods = testbed.request(
            "GET", f"/api/v1/namespaces/{NAMESPACE}/pods", params={"labelSelector": f"job-name={name}"}
        ).json()["items"]
        return not pods

    wait_for("the Job's pods deleted by the garbage collector", pods_gone, 60)
    kube = json.loads((tmp_path / "kube" / "tunes" / "small" / "tune.json").read_text())
    assert kube["points_scored"] == 2 and kube["recommended"] is not None
    assert all(s["run_dir"] is None for p in kube["points"] for s in p["seeds"])  # they ran in the pods

    local = hpa_exp(testbed, "tune", str(config), str(space), "-o", str(tmp_path / "local"), "--processes", "2")
    assert local.returncode == 0, local.stderr
    here = json.loads((tmp_path / "local" / "tunes" / "small" / "tune.json").read_text())
    for a, b in zip(kube["points"], here["points"], strict=True):
        assert (a["key"], a["gpu_hours"], a["attainment"]) == (b["key"], b["gpu_hours"], b["attainment"])
    assert kube["front"] == here["front"] and kube["recommended"]["index"] == here["recommended"]["index"]
