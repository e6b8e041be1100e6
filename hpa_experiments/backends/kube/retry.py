"""Bounded retries of calls to the Kubernetes API and Prometheus.

Transient failures (429 honouring Retry-After, 408, 5xx except 501, connection refused or
reset, dropped connections, timeouts) are retried with exponential backoff and jitter, within
a bound on total time and, optionally, on attempts (the Kubernetes API's reads and deletes are
bounded by time only, so an outage of any length within the budget is survived).  Everything
else that is recognisably an HTTP or network failure (401, 403, 404, 400/422 invalid manifest,
TLS errors, ...) fails at once with one clear message.  Exceptions that are neither
(programming errors) propagate unchanged.

Callers that expect a status (404 on delete, 409 on create) handle it inside the retried
function, so it never reaches the classifier.
"""

from __future__ import annotations

import email.utils
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import requests
import urllib3.exceptions

from hpa_experiments.errors import BackendError, TransientBackendError

T = TypeVar("T")

_TRANSIENT_NETWORK_ERRORS: tuple[type[BaseException], ...] = (
    ConnectionError,  # refused, reset, aborted, broken pipe (and http.client.RemoteDisconnected)
    TimeoutError,
    urllib3.exceptions.ProtocolError,
    urllib3.exceptions.TimeoutError,
    urllib3.exceptions.NewConnectionError,
    requests.ConnectionError,
    requests.Timeout,
)
_STATUS_NAMES = {
    400: "bad request",
    401: "unauthorized",
    403: "forbidden",
    404: "not found",
    405: "method not allowed",
    409: "conflict",
    422: "invalid",
    429: "too many requests",
}
_MAX_DETAIL = 300


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try: at most `max_elapsed` seconds in total and `max_attempts` calls (None: no
    bound on attempts, only on time; `max_delay` then also bounds how late a recovery is noticed)."""

    max_attempts: int | None = 6
    max_elapsed: float = 60.0
    base_delay: float = 0.5
    max_delay: float = 10.0
    jitter: float = 0.5  # each delay is scaled by a uniform factor in [1 - jitter, 1]

    def backoff(self, retry_number: int, rng: Callable[[], float] = random.random) -> float:
        """Delay before retry number `retry_number` (1-based), with jitter."""
        delay = min(self.max_delay, self.base_delay * 2 ** (retry_number - 1))
        return delay * (1.0 - self.jitter * rng())


NO_RETRY = RetryPolicy(max_attempts=1)


@dataclass(frozen=True)
class Failure:
    """What went wrong, in words, and whether trying again may help."""

    transient: bool
    message: str
    status: int | None = None
    retry_after: float | None = None


class PermanentFailure(BackendError):
    """The server refused for a reason retrying cannot fix (403, 404, invalid manifest...)."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class RetriesExhausted(TransientBackendError):
    """Transient failures went on longer than the retry policy allows."""


def _status_of(exc: BaseException) -> int | None:
    for attribute in ("status", "status_code"):
        value = getattr(exc, attribute, None)
        if isinstance(value, int) and value > 0:
            return value
    response = getattr(exc, "response", None)
    value = getattr(response, "status_code", None)
    return value if isinstance(value, int) else None


def _header(exc: BaseException, name: str) -> str | None:
    headers = getattr(exc, "headers", None)
    if headers is None:
        headers = getattr(getattr(exc, "response", None), "headers", None)
    if not headers:
        return None
    return headers.get(name) or headers.get(name.lower())


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date), None if absent/invalid."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _server_detail(exc: BaseException) -> str:
    """The server's own explanation: Kubernetes Status.message or Prometheus' error, else the body."""
    body = getattr(exc, "body", None)
    if body is None:
        body = getattr(getattr(exc, "response", None), "text", None)
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if not body:
        return getattr(exc, "reason", None) or ""
    try:
        parsed: Any = json.loads(body)
    except ValueError:
        return " ".join(str(body).split())[:_MAX_DETAIL]
    if isinstance(parsed, dict):
        for key in ("message", "error"):
            if isinstance(parsed.get(key), str):
                return parsed[key][:_MAX_DETAIL]
    return " ".join(str(body).split())[:_MAX_DETAIL]


def _network_cause(exc: BaseException) -> BaseException:
    """The underlying network error inside requests' and urllib3's wrappers (MaxRetryError)."""
    if isinstance(exc, requests.RequestException) and exc.args and isinstance(exc.args[0], BaseException):
        exc = exc.args[0]
    if isinstance(exc, urllib3.exceptions.MaxRetryError) and exc.reason is not None:
        return exc.reason
    return exc


def classify(exc: BaseException) -> Failure | None:
    """Classify a failed call; None when it is not an HTTP or network failure at all."""
    if isinstance(exc, TransientBackendError):
        return Failure(True, str(exc))
    status = _status_of(exc)
    if status is not None and status >= 400:
        detail = _server_detail(exc)
        name = _STATUS_NAMES.get(status, "server error" if status >= 500 else "refused")
        message = f"{name} (HTTP {status})" + (f": {detail}" if detail else "")
        retry_after = parse_retry_after(_header(exc, "Retry-After")) if status in (429, 503) else None
        transient = status in (408, 429) or (status >= 500 and status != 501)
        return Failure(transient, message, status, retry_after)
    cause = _network_cause(exc)
    if isinstance(cause, (urllib3.exceptions.SSLError, requests.exceptions.SSLError)):  # a ConnectionError
        return Failure(False, f"TLS error: {_short(cause)}")
    if isinstance(cause, _TRANSIENT_NETWORK_ERRORS) or isinstance(exc, _TRANSIENT_NETWORK_ERRORS):
        return Failure(True, f"connection problem: {type(cause).__name__}: {_short(cause)}")
    if isinstance(exc, (urllib3.exceptions.HTTPError, requests.RequestException)):
        return Failure(False, f"{type(exc).__name__}: {_short(exc)}")
    return None


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:_MAX_DETAIL]


def call_with_retry(
    fn: Callable[[], T],
    *,
    what: str,
    policy: RetryPolicy = RetryPolicy(),
    on_retry: Callable[[str], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
    rng: Callable[[], float] = random.random,
) -> T:
    """Call `fn` until it succeeds, a permanent failure occurs, or the policy's bounds are reached.

    `what` names the operation in messages ("create Job bench/load-1").  `on_retry` receives one
    line per retry (the runner records them as warnings).  Raises PermanentFailure or
    RetriesExhausted (both BackendError, so a clear message with exit code 1).
    """
    started = monotonic()
    attempt = 0
    while True:
        attempt += 1
        try:
            return fn()
        except Exception as exc:
            failure = classify(exc)
            if failure is None:
                raise
            if not failure.transient:
                raise PermanentFailure(f"{what}: {failure.message}", failure.status) from exc
            elapsed = monotonic() - started
            delay = policy.backoff(attempt, rng)
            if failure.retry_after is not None:
                delay = max(delay, failure.retry_after)
            out_of_attempts = policy.max_attempts is not None and attempt >= policy.max_attempts
            if out_of_attempts or elapsed + delay > policy.max_elapsed:
                raise RetriesExhausted(
                    f"{what}: gave up after {attempt} attempt(s) in {elapsed:.1f} s: {failure.message}"
                ) from exc
            if on_retry is not None:
                of = "" if policy.max_attempts is None else f"/{policy.max_attempts - 1}"
                budget = f" (for up to {policy.max_elapsed:g} s)" if policy.max_attempts is None else ""
                on_retry(f"{what}: {failure.message}; retry {attempt}{of} in {delay:.2f} s{budget}")
            sleep(delay)
