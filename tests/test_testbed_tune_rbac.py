"""`hpa-exp tune --backend kubernetes` as the runner's ServiceAccount (manifests/rbac/hpa-exp-runner.yaml).

Real test bed, not the emulator: the emulator has no RBAC, and what matters is the real
authorizer's answer to the SelfSubjectAccessReviews and to the ConfigMap/Job requests.  The
search authenticates with a bound ServiceAccount token (TokenRequest API), as in
tests/test_testbed_rbac.py; the test bed's pod supervisor runs the workers (test_testbed_tune.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.testbed import Testbed
from tests.support.testbed_kit import KIT, NAMESPACE, hpa_exp
from tests.test_testbed_rbac import rbac_docs, token_kubeconfig
from tests.test_tune_run import small_config, space_file

pytestmark = pytest.mark.testbed


def tune_as_runner(bed: Testbed, folder: Path) -> tuple[int, str]:
    kubeconfig = token_kubeconfig(bed, folder / "runner.kubeconfig")
    config, space = small_config(folder), space_file(folder, [1, 3])
    done = hpa_exp(
        bed,
        *("tune", str(config), str(space), "-o", str(folder / "out"), "--backend", "kubernetes"),
        *("--image", "hpa-exp:test", "-n", NAMESPACE, "--kubeconfig", str(kubeconfig)),
        timeout=900,
    )
    return done.returncode, done.stdout + done.stderr


def tune_objects(bed: Testbed) -> list[str]:
    """Names of the ConfigMaps and Jobs a search left in the namespace."""
    names = []
    for path in (f"/api/v1/namespaces/{NAMESPACE}/configmaps", f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs"):
        items = bed.request("GET", path).json()["items"]
        names += [i["metadata"]["name"] for i in items if i["metadata"]["name"].startswith("hpa-exp-tune-")]
    return names


def test_a_search_as_the_runner_with_the_shipped_role_succeeds(testbed: Testbed, tmp_path: Path) -> None:
    """Before: the shipped Role had no ConfigMap create, so the search failed with a 403 (exit 1)."""
    testbed.apply_file(KIT / "namespace.yaml")
    testbed.apply(rbac_docs())
    code, text = tune_as_runner(testbed, tmp_path)
    assert code == 0, text[-3000:]
    assert "Indexed Job" in text and "deleted Job and ConfigMap" in text, text[-3000:]
    assert tune_objects(testbed) == []


def test_a_missing_permission_is_exit_3_before_anything_is_created(testbed: Testbed, tmp_path: Path) -> None:
    """The shipped Role minus `delete` on batch/jobs (a search would otherwise leave its Job behind):
    exit 3 naming the verb and the resource, and no ConfigMap or Job created."""
    testbed.apply_file(KIT / "namespace.yaml")
    testbed.apply(rbac_docs(without=("jobs", "delete")))
    try:
        assert tune_objects(testbed) == []
        code, text = tune_as_runner(testbed, tmp_path)
        assert code == 3, f"exit {code}\n{text[-3000:]}"
        assert "may not delete batch/jobs in namespace" in text, text[-3000:]
        assert "system:serviceaccount:hpa-exp:hpa-exp-runner" in text, text[-3000:]
        assert tune_objects(testbed) == [], "nothing is created when a permission is missing"
    finally:
        testbed.apply(rbac_docs())
        for name in tune_objects(testbed):  # what the search could not delete (before the check)
            for path in (
                f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs/{name}",
                f"/api/v1/namespaces/{NAMESPACE}/configmaps/{name}",
            ):
                testbed.request("DELETE", path, params={"propagationPolicy": "Background"})
