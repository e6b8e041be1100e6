"""First contact with the Kubernetes API: is a server answering at all?

Calls made during a run retry for minutes (an API outage must not abort a run), but a server
that cannot be reached at the very first call is a wrong kubeconfig or context, or a cluster
that is down: waiting out the run's budget helps no one.  Commands that start talking to the
API (`cleanup`, `tune --backend kubernetes`) ask GET /version first, with a budget of seconds,
and name the server and context when nothing answers.
"""

from __future__ import annotations

from collections.abc import Callable

from kubernetes import client

from hpa_experiments.backends.kube.retry import RetryPolicy, call_with_retry, classify
from hpa_experiments.errors import EXIT_PREFLIGHT, BackendError, HpaExpError

FIRST_CONTACT = RetryPolicy(max_attempts=3, max_elapsed=5.0, base_delay=0.5, max_delay=2.0)
FIRST_CONTACT_TIMEOUT_S = 5.0


class ApiUnreachable(HpaExpError):
    """Nothing answered at the API server's address (refused, unknown host, timeout). Nothing was done."""

    exit_code = EXIT_PREFLIGHT


def server_name(api_client: client.ApiClient, context: str) -> str:
    """'Kubernetes API https://host:6443 (context kind-x)': what a message about the server names."""
    return f"Kubernetes API {api_client.configuration.host} (context {context or 'none'})"


def check_reachable(
    api_client: client.ApiClient,
    context: str,
    *,
    policy: RetryPolicy = FIRST_CONTACT,
    on_retry: Callable[[str], None] | None = None,
) -> None:
    """Raise ApiUnreachable when GET /version gets no HTTP answer at all within `policy`.

    An HTTP answer, even an error (401, 503), means a server is there: the caller's own calls
    then retry or fail with their own message."""
    version = client.VersionApi(api_client)
    try:
        call_with_retry(
            lambda: version.get_code(_request_timeout=FIRST_CONTACT_TIMEOUT_S),
            what="GET /version",
            policy=policy,
            on_retry=on_retry,
        )
    except BackendError as exc:
        cause = exc.__cause__
        failure = classify(cause) if cause is not None else None
        if failure is not None and failure.status is not None:
            return
        raise ApiUnreachable(
            f"{server_name(api_client, context)} is not reachable: {exc}. Nothing was done; "
            "check --kubeconfig / --context (or $KUBECONFIG) and that the cluster is up"
        ) from None
