"""Retry policy and error classification (hpa_experiments/backends/kube/retry.py), with the real exception types."""

from __future__ import annotations

import email.utils
import http.client
import json

import pytest
import requests
import urllib3
from kubernetes.client.exceptions import ApiException

from hpa_experiments.backends.kube.prom import PromHttpError
from hpa_experiments.backends.kube.retry import (
    PermanentFailure,
    RetriesExhausted,
    RetryPolicy,
    call_with_retry,
    classify,
    parse_retry_after,
)
from hpa_experiments.errors import EXIT_FAILED, BackendError


class FakeResponse:
    """What ApiException reads from a urllib3 response."""

    def __init__(self, status: int, body: str = "", headers: dict[str, str] | None = None):
        self.status = status
        self.reason = http.client.responses.get(status, "")
        self.data = body.encode()
        self.headers = urllib3.HTTPHeaderDict(headers or {})


def api_error(status: int, message: str = "", headers: dict[str, str] | None = None) -> ApiException:
    body = json.dumps({"kind": "Status", "code": status, "message": message}) if message else ""
    return ApiException(http_resp=FakeResponse(status, body, headers))


class Script:
    """A callable that raises the given exceptions in turn, then returns 'done'."""

    def __init__(self, *failures: BaseException):
        self.failures = list(failures)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return "done"


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def monotonic(self) -> float:
        return self.now


def run(fn, policy: RetryPolicy, fake: FakeTime, lines: list[str] | None = None):
    return call_with_retry(
        fn,
        what="create Job bench/load-1",
        policy=policy,
        on_retry=None if lines is None else lines.append,
        sleep=fake.sleep,
        monotonic=fake.monotonic,
        rng=lambda: 0.5,
    )


@pytest.mark.parametrize(
    "exc",
    [
        api_error(500, "etcdserver: leader changed"),
        api_error(502),
        api_error(503),
        api_error(504),
        api_error(429, "slow down", {"Retry-After": "3"}),
        api_error(408),
        urllib3.exceptions.ProtocolError("Connection aborted.", http.client.RemoteDisconnected("closed")),
        urllib3.exceptions.MaxRetryError(None, "/x", urllib3.exceptions.NewConnectionError(None, "refused")),
        urllib3.exceptions.ReadTimeoutError(None, "/x", "read timed out"),
        ConnectionResetError(104, "Connection reset by peer"),
        TimeoutError("timed out"),
        requests.ConnectionError("refused"),
        requests.Timeout("slow"),
        PromHttpError(503, '{"status":"error","error":"overloaded"}'),
    ],
)
def test_transient_failures_are_retryable(exc):
    failure = classify(exc)
    assert failure is not None and failure.transient, failure


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (api_error(403, 'jobs.batch is forbidden: User "x" cannot create'), "forbidden (HTTP 403)"),
        (api_error(404, 'jobs.batch "j" not found'), "not found (HTTP 404)"),
        (api_error(422, 'Job.batch "j" is invalid: spec.template'), "invalid (HTTP 422)"),
        (api_error(400, "bad manifest"), "bad request (HTTP 400)"),
        (api_error(401), "unauthorized (HTTP 401)"),
        (api_error(501), "server error (HTTP 501)"),
        (PromHttpError(400, '{"status":"error","errorType":"bad_data","error":"parse error"}'), "parse error"),
        (requests.exceptions.SSLError("certificate verify failed"), "TLS error"),
    ],
)
def test_permanent_failures_are_not_retried_and_say_why(exc, expected):
    failure = classify(exc)
    assert failure is not None and not failure.transient
    assert expected in failure.message


def test_the_server_message_is_quoted_in_the_failure():
    failure = classify(api_error(403, "jobs.batch is forbidden: cannot create resource jobs"))
    assert failure is not None
    assert failure.message == "forbidden (HTTP 403): jobs.batch is forbidden: cannot create resource jobs"
    assert failure.status == 403


def test_programming_errors_are_not_classified():
    assert classify(KeyError("spec")) is None
    with pytest.raises(KeyError):
        run(Script(KeyError("spec")), RetryPolicy(), FakeTime())


def test_retry_after_seconds_and_http_date():
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("0.5") == 0.5
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    date = email.utils.formatdate(1_000_030, usegmt=True)
    assert parse_retry_after(date, now=1_000_000) == pytest.approx(30.0)
    assert parse_retry_after(email.utils.formatdate(999_000, usegmt=True), now=1_000_000) == 0.0
    failure = classify(api_error(429, "", {"Retry-After": "4"}))
    assert failure is not None and failure.retry_after == 4.0


def test_backoff_grows_exponentially_is_capped_and_jittered():
    policy = RetryPolicy(base_delay=1.0, max_delay=5.0, jitter=0.5)
    assert [policy.backoff(n, rng=lambda: 0.0) for n in (1, 2, 3, 4, 5)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert policy.backoff(2, rng=lambda: 1.0) == 1.0  # full jitter halves it at most
    assert policy.backoff(2, rng=lambda: 0.5) == 1.5


def test_transient_failures_are_retried_until_success_with_one_line_each():
    fake, lines = FakeTime(), []
    script = Script(api_error(500, "boom"), ConnectionResetError(104, "reset"))
    assert run(script, RetryPolicy(base_delay=1.0, jitter=0.5), fake, lines) == "done"
    assert script.calls == 3
    assert fake.sleeps == [0.75, 1.5]
    assert len(lines) == 2
    assert lines[0].startswith("create Job bench/load-1: server error (HTTP 500): boom; retry 1/5 in 0.75 s")
    assert "connection problem: ConnectionResetError" in lines[1]


def test_retry_after_is_honoured_when_longer_than_the_backoff():
    fake = FakeTime()
    script = Script(api_error(429, "busy", {"Retry-After": "3"}))
    assert run(script, RetryPolicy(base_delay=0.1), fake) == "done"
    assert fake.sleeps == [3.0]


def test_permanent_failure_fails_fast_with_a_clear_message():
    fake = FakeTime()
    script = Script(api_error(403, "jobs.batch is forbidden"))
    with pytest.raises(PermanentFailure) as caught:
        run(script, RetryPolicy(), fake)
    assert script.calls == 1 and fake.sleeps == []
    assert str(caught.value) == "create Job bench/load-1: forbidden (HTTP 403): jobs.batch is forbidden"
    assert caught.value.status == 403
    assert isinstance(caught.value, BackendError) and caught.value.exit_code == EXIT_FAILED


def test_attempts_are_bounded():
    fake = FakeTime()
    script = Script(*[api_error(503) for _ in range(10)])
    with pytest.raises(RetriesExhausted, match=r"gave up after 3 attempt\(s\)"):
        run(script, RetryPolicy(max_attempts=3, base_delay=0.1), fake)
    assert script.calls == 3


def test_total_time_is_bounded_including_retry_after():
    fake = FakeTime()
    script = Script(*[api_error(429, "", {"Retry-After": "30"}) for _ in range(10)])
    with pytest.raises(RetriesExhausted, match="too many requests"):
        run(script, RetryPolicy(max_attempts=10, max_elapsed=20.0), fake)
    assert script.calls == 1  # waiting 30 s would exceed the 20 s budget: give up at once
    assert fake.sleeps == []


def test_a_time_only_budget_outlasts_any_number_of_attempts_and_still_ends():
    """An API outage of 30 s is survived by a 120 s budget, however many attempts it takes."""
    fake = FakeTime()
    outage = [ConnectionRefusedError(111, "refused") for _ in range(40)]
    policy = RetryPolicy(max_attempts=None, max_elapsed=120.0, base_delay=0.5, max_delay=2.0, jitter=0.0)
    lines: list[str] = []
    assert run(Script(*outage), policy, fake, lines) == "done"
    assert len(fake.sleeps) == 40 and max(fake.sleeps) == 2.0  # recovery noticed within max_delay
    assert lines[-1].endswith("retry 40 in 2.00 s (for up to 120 s)")
    with pytest.raises(RetriesExhausted, match=r"gave up after \d+ attempt\(s\) in 11\d\.\d s"):
        run(Script(*[ConnectionRefusedError(111, "refused") for _ in range(1000)]), policy, FakeTime())
