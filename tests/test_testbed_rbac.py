"""The runner's RBAC (manifests/rbac/hpa-exp-runner.yaml) against the real authorizer.

These use the real test bed, not the emulator: the emulator has no RBAC.  The runner
authenticates with a ServiceAccount token (TokenRequest API), as the in-cluster Job does.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.support.testbed import REPO, Testbed
from tests.support.testbed_kit import NAMESPACE, delete_run_jobs, derive_config, hpa_exp, install_model_server, run_args

pytestmark = pytest.mark.testbed

SHIPPED = REPO / "experiment-configs" / "high-load-hpa.yaml"
RBAC = REPO / "manifests" / "rbac" / "hpa-exp-runner.yaml"


def short_run(doc: dict) -> None:
    doc["jobs"] = [{"name": "rbac-check", "rate": 1, "duration": 15}]
    doc["cooldown"]["duration"] = 5
    doc["values"]["output_len"] = 8


def token_kubeconfig(bed: Testbed, path: Path) -> Path:
    """A kubeconfig for ServiceAccount hpa-exp/hpa-exp-runner with a fresh bound token."""
    answer = bed.request(
        "POST",
        f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts/hpa-exp-runner/token",
        {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 3600}},
    )
    assert answer.status_code == 201, answer.text
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "runner",
                "clusters": [
                    {
                        "name": "testbed",
                        "cluster": {"server": bed.api_url, "certificate-authority": str(bed.pki / "ca.crt")},
                    }
                ],
                "users": [{"name": "runner", "user": {"token": answer.json()["status"]["token"]}}],
                "contexts": [
                    {"name": "runner", "context": {"cluster": "testbed", "user": "runner", "namespace": NAMESPACE}}
                ],
            }
        )
    )
    return path


def runner_args(bed: Testbed, config: Path, kubeconfig: Path) -> list[str]:
    args = run_args(bed, config)
    args[args.index("--kubeconfig") + 1] = str(kubeconfig)
    return args


def rbac_docs(without: tuple[str, str] | None = None) -> list[dict]:
    """The kit's RBAC documents; `without` = (resource, verb) takes that verb out of the Role's rule."""
    with open(RBAC) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    if without is not None:
        resource, verb = without
        for doc in docs:
            if doc["kind"] == "Role":
                for rule in doc["rules"]:
                    if rule["resources"] == [resource]:
                        rule["verbs"] = [v for v in rule["verbs"] if v != verb]
    return docs


def test_runner_with_the_kit_role_succeeds(testbed: Testbed, tmp_path: Path) -> None:
    """A run as the kit's ServiceAccount (Role + namespace-read ClusterRole) completes: exit 0."""
    install_model_server(testbed)
    testbed.apply(rbac_docs())
    kubeconfig = token_kubeconfig(testbed, tmp_path / "runner.kubeconfig")
    config = derive_config(SHIPPED, tmp_path, short_run)
    done = hpa_exp(testbed, *runner_args(testbed, config, kubeconfig), timeout=300)
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"


def test_role_without_job_delete_fails_the_preflight_naming_it(testbed: Testbed, tmp_path: Path) -> None:
    """The kit's Role minus `delete` on batch/jobs: the preflight exits 3 before anything is
    applied and names the missing permission."""
    install_model_server(testbed)
    testbed.apply(rbac_docs(without=("jobs", "delete")))
    try:
        kubeconfig = token_kubeconfig(testbed, tmp_path / "runner.kubeconfig")
        config = derive_config(SHIPPED, tmp_path, short_run)
        done = hpa_exp(testbed, *runner_args(testbed, config, kubeconfig), timeout=300)
        text = done.stdout + done.stderr
        assert done.returncode == 3, f"exit {done.returncode}\n{text[-3000:]}"
        assert "delete" in text and "jobs" in text, text[-3000:]
    finally:
        testbed.apply(rbac_docs())  # the kit's Role again, for the tests that follow
        delete_run_jobs(testbed)  # the Jobs the run could not delete
