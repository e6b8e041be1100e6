"""The kit's manifests and hpa-exp's rendered Jobs against a real kube-apiserver (the test bed).

These use the real test bed, not the emulator: the point is the API server's own validation
(schemas, strict field validation, name and label rules), which the emulator does not have.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hpa_experiments.config import MAX_JOB_NAME, load_config
from hpa_experiments.plan import build_plan
from hpa_experiments.workloads import new_run_id, render_job
from tests.support.testbed import REPO, Testbed
from tests.support.testbed_kit import NAMESPACE, derive_config

pytestmark = pytest.mark.testbed

SHIPPED = REPO / "experiment-configs" / "high-load-hpa.yaml"


def dry_run_apply_files(output: str) -> list[Path]:
    """The files of every `kubectl ... apply -f F [-f G]` line that `cluster up --dry-run` prints, in order."""
    files: list[Path] = []
    for line in output.splitlines():
        line = line.strip()
        if not line.startswith("$ kubectl") or " apply " not in line:
            continue
        words = shlex.split(line[2:])
        files += [REPO / words[i + 1] for i, w in enumerate(words) if w == "-f"]
    return files


@pytest.mark.parametrize("hpa", ["queue", "kvcache", "combined"])
def test_cluster_up_manifests_apply_cleanly(testbed: Testbed, hpa: str) -> None:
    """Real API server: every manifest `hpa-exp cluster up --dry-run` would apply passes a server-side
    dry-run apply with strict field validation (unknown or misplaced fields fail), in the kit's order.

    Namespaces are created for real (namespaced objects need them); nothing else is changed, so the
    test bed's own adapter registration stays in place.
    """
    done = subprocess.run(
        [sys.executable, "-m", "hpa_experiments", "cluster", "up", "--dry-run", "--hpa", hpa],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    files = dry_run_apply_files(done.stdout)
    assert REPO / "manifests" / "model-server" / "emulator.yaml" in files, done.stdout
    assert any(f.name.startswith("hpa-vllm-") for f in files), done.stdout
    problems = []
    for path in files:
        with open(path) as f:
            docs = [d for d in yaml.safe_load_all(f) if d]
        for doc in docs:
            if doc["kind"] == "Namespace":
                testbed.apply([doc])
                continue
            try:
                testbed.apply([doc], dry_run=True, strict=True)
            except RuntimeError as exc:
                problems.append(f"{path.relative_to(REPO)}: {exc}")
    assert not problems, "\n".join(problems)


def _job_with_name(tmp_path: Path, name: str) -> dict:
    def change(doc: dict) -> None:
        doc["jobs"] = [{"name": name, "rate": 1, "duration": 10}]

    config = load_config(derive_config(SHIPPED, tmp_path, change))
    planned = build_plan(config).jobs[0]
    return render_job(config, planned, new_run_id(1_900_000_000.0))


def _validate(tmp_path: Path, name: str) -> subprocess.CompletedProcess[str]:
    def change(doc: dict) -> None:
        doc["jobs"] = [{"name": name, "rate": 1, "duration": 10}]

    path = derive_config(SHIPPED, tmp_path, change)
    return subprocess.run(
        [sys.executable, "-m", "hpa_experiments", "validate", str(path)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )


@pytest.mark.parametrize("name", ["a" * MAX_JOB_NAME, "phase-1", "x" + "-9" * 20 + "z"])
def test_job_names_that_validate_accepts_are_accepted_by_the_api_server(
    testbed: Testbed, tmp_path: Path, name: str
) -> None:
    """Real API server: a Job name that `hpa-exp validate` accepts renders a Job (name + run id,
    labels) that the API server accepts too (server-side dry-run create, strict validation).
    The Job controller's pod labels (job-name = the Job's name) are checked by the real server."""
    assert _validate(tmp_path, name).returncode == 0
    testbed.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}])
    job = _job_with_name(tmp_path, name)
    answer = testbed.request(
        "POST",
        f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs",
        job,
        params={"dryRun": "All", "fieldValidation": "Strict"},
    )
    assert answer.status_code == 201, answer.text


@pytest.mark.parametrize("name", ["a" * (MAX_JOB_NAME + 1), "Phase-1", "phase_1", "-phase"])
def test_job_names_the_api_server_rejects_are_rejected_by_validate(testbed: Testbed, tmp_path: Path, name: str) -> None:
    """Real API server: the rendered Job of such a name is refused by the server, and `hpa-exp
    validate` refuses the config first (exit 2, naming the field) - nothing reaches the cluster."""
    run_id = new_run_id(1_900_000_000.0)
    job_name = f"{name}-{run_id}"
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": job_name, "namespace": NAMESPACE},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}},
    }
    testbed.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}])
    answer = testbed.request("POST", f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs", job, params={"dryRun": "All"})
    assert answer.status_code == 422, f"the API server accepted {job_name!r}: {answer.text}"
    done = _validate(tmp_path, name)
    assert done.returncode == 2, done.stdout + done.stderr
    assert re.search(r"jobs\[0\]\.name|jobs\.0\.name", done.stdout + done.stderr), done.stdout + done.stderr
