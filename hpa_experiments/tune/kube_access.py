"""Before a search creates anything on the cluster: is the API there, and may this user do what it needs?

The same SelfSubjectAccessReviews as the run's preflight (backends/kube/preflight_rbac.py), for
the requests runner_kube.py makes.  Without this a missing permission surfaced as a 403 after the
ConfigMap was created (or, for the cleanup's deletes, only at the end).
"""

from __future__ import annotations

import json
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from hpa_experiments.backends.kube.backend import ApiCall
from hpa_experiments.backends.kube.core import CoreReads
from hpa_experiments.backends.kube.preflight_rbac import check_permissions
from hpa_experiments.backends.kube.reach import check_reachable
from hpa_experiments.backends.kube.retry import RetryPolicy, call_with_retry
from hpa_experiments.errors import PreflightError

# every request of runner_kube.py, as RBAC sees it (tests/test_manifests.py checks the shipped Role)
TUNE_API_CALLS: tuple[ApiCall, ...] = (
    ApiCall("", "configmaps", "create", "tune: hand the search's bundle to the worker pods"),
    ApiCall("", "configmaps", "delete", "tune: remove the bundle at the end"),
    ApiCall("batch", "jobs", "create", "tune: start the Indexed Job that evaluates the points"),
    ApiCall("batch", "jobs", "get", "tune: follow the Job until it is complete"),
    ApiCall("batch", "jobs", "delete", "tune: remove the Job (and its pods) at the end"),
    ApiCall("", "pods", "list", "tune: find the Job's finished pods"),
    ApiCall("", "pods/log", "get", "tune: read each finished pod's result line"),
)
_RETRY = RetryPolicy(max_attempts=2, max_elapsed=5.0, base_delay=0.3, max_delay=1.0)
_TIMEOUT_S = 15.0


def check_access(api: client.ApiClient, context: str, namespace: str) -> list[str]:
    """Raise (exit 3) when the API is unreachable or a permission the search needs is refused;
    return warnings (e.g. access reviews not answered) to print."""
    check_reachable(api, context)
    core = CoreReads(api)

    def post(path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        def attempt() -> tuple[int, dict[str, Any]]:
            try:
                response = core.post(path, body, _request_timeout=_TIMEOUT_S)
            except ApiException as exc:
                if exc.status in (403, 404):
                    return int(exc.status), _json(exc.body)
                raise
            try:
                return int(response.status), _json(response.data)
            finally:
                response.release_conn()

        return call_with_retry(attempt, what=f"POST {path}", policy=_RETRY)

    problems, warnings = check_permissions(post, namespace, TUNE_API_CALLS)
    if problems:
        raise PreflightError(problems)
    return warnings


def _json(data: Any) -> dict[str, Any]:
    try:
        parsed = json.loads(data or b"{}")
    except (TypeError, ValueError):
        return {}
    return parsed if isinstance(parsed, dict) else {}
