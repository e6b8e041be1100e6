"""Prometheus HTTP API client for the Kubernetes backend (through prometheus-api-client).

Every failure raises QueryError with a clear message: a value that could not be obtained is
never reported as 0 (the original system's worst defect).  The bearer token comes from an
environment variable or a file and never appears in repr, describe() output, logs or errors.
"""

from __future__ import annotations

import ast
import datetime
import math
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import requests
import urllib3
from prometheus_api_client import PrometheusApiClientException, PrometheusConnect
from urllib3.util.retry import Retry

from hpa_experiments.backends.base import InstantSample, QueryError, RangeSeries
from hpa_experiments.backends.kube.retry import RetryPolicy, call_with_retry
from hpa_experiments.errors import BackendError
from hpa_experiments.redact import REDACTED, redact_url, url_secrets

T = TypeVar("T")

DEFAULT_QUERY_RETRY = RetryPolicy(max_attempts=3, max_elapsed=10.0, base_delay=0.3, max_delay=2.0)
DEFAULT_MAX_ANSWER_BYTES = 8 * 1024 * 1024  # a run's answers are a few series; a larger one is not for us
_CLIENT_ERROR = re.compile(r"HTTP Status Code (\d+) \((.*)\)$", re.DOTALL)


@dataclass(frozen=True)
class PromSettings:
    """Where Prometheus is and how to authenticate. `headers` values are treated as secrets too."""

    url: str
    token_env: str | None = None
    token_file: str | None = None
    verify_tls: bool = True
    ca_file: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    timeout: float = 10.0
    max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES  # decoded body; a larger answer is a failed query

    def __repr__(self) -> str:
        return (
            f"PromSettings(url={redact_url(self.url)!r}, token_env={self.token_env!r}, "
            f"token_file={self.token_file!r}, verify_tls={self.verify_tls}, ca_file={self.ca_file!r}, "
            f"headers={sorted(self.headers)!r}, timeout={self.timeout}, max_answer_bytes={self.max_answer_bytes})"
        )


class _UnexpectedAnswer(Exception):
    """A 200 answer whose body is not what the Prometheus HTTP API returns."""


class _AnswerCutOff(Exception):
    """The body went past `max_answer_bytes` or took longer than the timeout; it was not read further."""


def _bounded_body(limit: int, timeout: float) -> Callable[..., requests.Response]:
    """A requests response hook reading the body (decompressed) up to `limit` bytes and `timeout` s.

    Hooks run before requests reads the body itself, so an oversized, endless or trickling answer
    is cut off here instead of being held in memory whole or waited for without end."""

    def hook(response: requests.Response, *args: Any, **kwargs: Any) -> requests.Response:
        chunks, size, deadline = [], 0, time.monotonic() + timeout
        for chunk in response.iter_content(64 * 1024):
            size += len(chunk)
            if size > limit or time.monotonic() > deadline:
                response.close()
                too = f"larger than {limit} bytes (prometheus.max_answer_mib)" if size > limit else "too slow"
                raise _AnswerCutOff(f"answer {too}" + ("" if size > limit else f": not complete after {timeout:g} s"))
            chunks.append(chunk)
        response._content = b"".join(chunks)  # what requests would have read, now bounded
        return response

    return hook


class PromHttpError(Exception):
    """A non-200 answer of the Prometheus API, with its status and body (for classification)."""

    def __init__(self, status: int, body: str):
        super().__init__(f"HTTP {status}")
        self.status = status
        self.body = body


def read_token(settings: PromSettings) -> str | None:
    """The bearer token, or None when none is configured. Raises QueryError when it cannot be read."""
    if settings.token_env:
        token = os.environ.get(settings.token_env, "").strip()
        if not token:
            raise QueryError(f"Prometheus token: environment variable {settings.token_env} is unset or empty")
        return token
    if settings.token_file:
        try:
            token = Path(settings.token_file).expanduser().read_text().strip()
        except OSError as exc:
            raise QueryError(f"Prometheus token: cannot read {settings.token_file}: {exc.strerror}") from None
        if not token:
            raise QueryError(f"Prometheus token: file {settings.token_file} is empty")
        return token
    return None


def _value(raw: Any) -> float:
    """A sample value; Prometheus sends "NaN", "+Inf", "-Inf" as strings, which float() reads."""
    try:
        return float(raw)
    except (TypeError, ValueError):
        raise _UnexpectedAnswer(f"sample value {raw!r}") from None


class PromClient:
    """Instant and range PromQL queries, label values, and query validation."""

    def __init__(
        self,
        settings: PromSettings,
        *,
        retry: RetryPolicy = DEFAULT_QUERY_RETRY,
        on_retry: Callable[[str], None] | None = None,
    ):
        self.settings = settings
        self.url = redact_url(settings.url.rstrip("/"))
        self._retry = retry
        self._on_retry = on_retry
        self._token_problem: str | None = None
        headers = dict(settings.headers)
        try:
            token = read_token(settings)
        except QueryError as exc:
            token, self._token_problem = None, str(exc)
        if token:
            headers["Authorization"] = f"Bearer {token}"
        secrets = {v for v in headers.values() if len(v) >= 4} | ({token} if token else set())
        secrets |= {s for s in url_secrets(settings.url) if len(s) >= 4}
        self._secrets = sorted(secrets, key=len, reverse=True)
        session = requests.Session()
        session.hooks["response"].append(_bounded_body(settings.max_answer_bytes, settings.timeout))
        session.verify = settings.ca_file or settings.verify_tls
        if not settings.verify_tls:  # the user's explicit choice, recorded by describe(); once is enough
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        self._connect = PrometheusConnect(
            url=settings.url.rstrip("/"),
            headers=headers or None,
            session=session,
            retry=Retry(total=0, redirect=0, raise_on_status=False),  # retries are ours, bounded and logged
            timeout=settings.timeout,
        )

    @property
    def _auth(self) -> str:
        if self.settings.token_env:
            return f"bearer token from env {self.settings.token_env}"
        if self.settings.token_file:
            return f"bearer token from file {self.settings.token_file}"
        return "none"

    def __repr__(self) -> str:
        return f"PromClient(url={self.url!r}, auth={self._auth!r})"

    def describe(self) -> dict[str, Any]:
        """What run.json may record: no token, no header values."""
        return {
            "url": self.url,
            "auth": self._auth,
            "verify_tls": self.settings.verify_tls,
            "ca_file": self.settings.ca_file,
            "extra_headers": sorted(self.settings.headers),
        }

    def close(self) -> None:
        self._connect.close()

    def _redact(self, text: str) -> str:
        """Remove the token and header values, should a server or proxy echo them back."""
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text

    # --- calls ------------------------------------------------------------------------------

    def _call(self, what: str, fn: Callable[[PrometheusConnect], T], retry: RetryPolicy | None = None) -> T:
        if self._token_problem:
            raise QueryError(self._token_problem)

        def attempt() -> T:
            try:
                return fn(self._connect)
            except PrometheusApiClientException as exc:
                raise _as_http_error(exc) from None
            except _AnswerCutOff as exc:
                raise _UnexpectedAnswer(str(exc)) from None
            except (ValueError, KeyError, TypeError, IndexError, AttributeError, RecursionError) as exc:
                # ValueError covers requests.JSONDecodeError and numbers that are not numbers
                raise _UnexpectedAnswer(type(exc).__name__) from None

        def report_retry(line: str) -> None:
            if self._on_retry is not None:
                self._on_retry(self._redact(line))

        try:
            return call_with_retry(attempt, what=what, policy=retry or self._retry, on_retry=report_retry)
        except BackendError as exc:
            raise QueryError(self._redact(f"Prometheus at {self.url}: {exc}")) from None
        except _UnexpectedAnswer as exc:  # a 200 answer that is not the Prometheus API
            raise QueryError(
                f"Prometheus at {self.url}: {what}: unexpected answer ({exc}); is this the Prometheus HTTP API URL?"
            ) from None

    def query(self, promql: str, at: float | None = None) -> list[InstantSample]:
        params = {} if at is None else {"time": f"{at:.3f}"}
        return self._call(f"query {promql!r}", lambda c: _instant_samples(c.custom_query(promql, params=params)))

    def query_range(self, promql: str, start: float, end: float, step: float) -> list[RangeSeries]:
        if not (math.isfinite(step) and step > 0):
            raise QueryError(f"query_range {promql!r}: step must be a positive number of seconds, got {step}")

        def run(c: PrometheusConnect) -> list[RangeSeries]:
            result = c.custom_query_range(
                promql,
                start_time=datetime.datetime.fromtimestamp(start, datetime.timezone.utc),
                end_time=datetime.datetime.fromtimestamp(end, datetime.timezone.utc),
                step=f"{step:g}",
                params={"start": f"{start:.3f}", "end": f"{end:.3f}"},  # keep sub-second precision
            )
            return [
                RangeSeries(dict(s.get("metric", {})), [(float(t), _value(v)) for t, v in s["values"]]) for s in result
            ]

        return self._call(f"query_range {promql!r}", run)

    def metric_names(self) -> list[str]:
        """All metric names the server knows (`/api/v1/label/__name__/values`)."""
        return list(self._call("list metric names", lambda c: c.get_label_values("__name__")))

    def label_values(self, label: str, match: list[str], lookback_s: float = 3600.0) -> list[str]:
        """Values of `label` on the series matching any selector of `match`, seen in the last `lookback_s`."""
        params = {"match[]": list(match), "start": f"{time.time() - lookback_s:.3f}"}
        what = f"label values of {label} for {', '.join(match)}"
        return sorted(self._call(what, lambda c: c.get_label_values(label, params)))

    def check_reachable(self, retry: RetryPolicy | None = None) -> None:
        """Raise QueryError unless the query API answers (a trivial query)."""
        self._call("reachability check", lambda c: c.custom_query("vector(1)"), retry=retry)

    def parse_problem(self, promql: str) -> str | None:
        """None if the server accepts the query; its error message if it rejects it (400 bad_data)."""
        try:
            self._call(f"query {promql!r}", lambda c: c.custom_query(promql))
        except QueryError as exc:
            if "HTTP 400" in str(exc) or "HTTP 422" in str(exc):
                return str(exc)
            raise
        return None


def _as_http_error(exc: PrometheusApiClientException) -> Exception:
    match = _CLIENT_ERROR.search(str(exc))
    if match is None:
        return exc
    try:
        body = ast.literal_eval(match[2])
    except (ValueError, SyntaxError):
        body = match[2]
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    return PromHttpError(int(match[1]), str(body))


def _instant_samples(result: Any) -> list[InstantSample]:
    if isinstance(result, list) and len(result) == 2 and not isinstance(result[0], dict):
        return [InstantSample(labels={}, value=_value(result[1]))]  # a scalar result: [time, "value"]
    return [InstantSample(labels=dict(s.get("metric", {})), value=_value(s["value"][1])) for s in result]
