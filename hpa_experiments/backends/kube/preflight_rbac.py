"""Preflight: may this user make every request the run needs?  One SelfSubjectAccessReview each.

Asked of the API server itself, so it is exact whatever grants the permission (Role,
ClusterRole, group, webhook).  A missing permission would otherwise surface mid-run as a
403 after load Jobs were already started.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from hpa_experiments.backends.kube.backend import ApiCall

# (status, JSON body) of a POST to an API path; 403/404 are answers, other failures raise
Post = Callable[[str, dict[str, Any]], tuple[int, dict[str, Any]]]

ROLE_FILE = "manifests/rbac/hpa-exp-runner.yaml"
_HPA_WRITES = {"create", "update", "delete"}


def needed_calls(calls: Iterable[ApiCall], will_apply_hpa: bool) -> list[ApiCall]:
    """The calls this run makes: HPA writes only when it applies the HPA."""
    return [
        c for c in calls if will_apply_hpa or not (c.resource == "horizontalpodautoscalers" and c.verb in _HPA_WRITES)
    ]


def _review(call: ApiCall, namespace: str) -> dict[str, Any]:
    resource, _, subresource = call.resource.partition("/")
    attributes: dict[str, Any] = {"verb": call.verb, "group": call.api_group, "resource": resource}
    if subresource:
        attributes["subresource"] = subresource
    if resource == "namespaces":
        attributes["name"] = namespace
    else:
        attributes["namespace"] = namespace
    return {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview",
        "spec": {"resourceAttributes": attributes},
    }


def who_am_i(post: Post) -> str:
    """The user name the server sees (SelfSubjectReview, Kubernetes 1.28+), else 'this user'."""
    try:
        status, body = post(
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
        )
    except Exception:  # only a nicer message is lost
        return "this user"
    user_info = (body.get("status") or {}).get("userInfo") or {} if status in (200, 201) else {}
    name = user_info.get("username")
    return f"user {name}" if name else "this user"


def check_permissions(post: Post, namespace: str, calls: Iterable[ApiCall]) -> tuple[list[str], list[str]]:
    """(problems, warnings): one line per refused permission, each naming what it is for and the fix."""
    problems: list[str] = []
    warnings: list[str] = []
    user: str | None = None
    for call in calls:
        status, body = post("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", _review(call, namespace))
        if status not in (200, 201):
            warnings.append(
                f"permissions not checked: SelfSubjectAccessReview answered HTTP {status} "
                f"({body.get('message', 'no message')}); a missing permission shows up as a 403 during the run"
            )
            return problems, warnings
        if (body.get("status") or {}).get("allowed"):
            continue
        user = user or who_am_i(post)
        group = call.api_group or "core"
        where = "cluster-wide" if call.resource == "namespaces" else f"in namespace {namespace}"
        what = f"{user} may not {call.verb} {group}/{call.resource} {where}, needed to {call.why}"
        if call.optional:
            warnings.append(f"{what}; that check is skipped")
            continue
        problems.append(
            f'{what}. Fix: apply the Role in {ROLE_FILE} (rule apiGroups ["{call.api_group}"], resources '
            f'["{call.resource}"], verb {call.verb}) in namespace {namespace} and bind it to {user}'
        )
    return problems, warnings
