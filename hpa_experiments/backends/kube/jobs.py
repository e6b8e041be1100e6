"""Jobs by label, for a run (KubeBackend) and for `hpa-exp cleanup` alike: listing them and
deleting them with background propagation (their pods go too), through one retried JSON call
(which KubeBackend.call_json also uses for every other API call)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Protocol

from kubernetes.client.exceptions import ApiException

from hpa_experiments.backends.kube.retry import PermanentFailure, RetryPolicy, call_with_retry


class JsonCall(Protocol):
    """KubeBackend.call_json's shape: (what, method, *args, tolerate=..., **kwargs) -> JSON or None."""

    def __call__(
        self, what: str, method: Callable[..., Any], *args: Any, tolerate: tuple[int, ...] = (), **kwargs: Any
    ) -> dict[str, Any] | None: ...


def call_json(
    what: str,
    method: Callable[..., Any],
    *args: Any,
    timeout: float,
    policy: RetryPolicy,
    on_retry: Callable[[str], None] | None,
    tolerate: tuple[int, ...] = (),
    **kwargs: Any,
) -> dict[str, Any] | None:
    """Call a generated API method with retries and return its answer as plain JSON.

    Plain JSON (`_preload_content=False`): the typed models reject objects they consider
    incomplete.  Returns None when the answer's status is one of `tolerate` (404 on a delete).
    """

    def attempt() -> dict[str, Any] | None:
        try:
            response = method(*args, _preload_content=False, _request_timeout=timeout, **kwargs)
        except ApiException as exc:
            if exc.status in tolerate:
                return None
            raise
        try:
            return json.loads(response.data or b"{}")
        except ValueError:
            raise PermanentFailure(f"{what}: the answer is not JSON (is this a Kubernetes API server?)") from None
        finally:
            response.release_conn()

    return call_with_retry(attempt, what=what, policy=policy, on_retry=on_retry)


def list_jobs(call: JsonCall, batch: Any, namespace: str, selector: str, what: str) -> list[dict[str, Any]]:
    """The Jobs matching the label `selector` in `namespace`, as JSON objects."""
    listing = call(what, batch.list_namespaced_job, namespace, label_selector=selector)
    return list((listing or {}).get("items") or [])


def delete_job(call: JsonCall, batch: Any, namespace: str, name: str) -> None:
    """Delete a Job and, in the background, its pods; a Job already gone is fine."""
    call(
        f"delete Job {namespace}/{name}",
        batch.delete_namespaced_job,
        name,
        namespace,
        propagation_policy="Background",
        tolerate=(404,),
    )
