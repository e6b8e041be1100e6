"""PromClient (hpa_experiments/backends/kube/prom.py) against a real Prometheus, and against small
loopback HTTP servers where a real Prometheus cannot show the behaviour (auth headers, TLS)."""

from __future__ import annotations

import json
import math
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from hpa_experiments.backends.base import QueryError
from hpa_experiments.backends.kube.prom import PromClient, PromSettings
from hpa_experiments.backends.kube.retry import RetryPolicy
from tests.support.tools import require_executable

FAST = RetryPolicy(max_attempts=2, max_elapsed=3.0, base_delay=0.01, max_delay=0.05)
TOKEN = "tok-5ecret-value-123"
EMPTY_VECTOR = {"status": "success", "data": {"resultType": "vector", "result": []}}


def client_for(url: str, **settings) -> PromClient:
    return PromClient(PromSettings(url=url, **settings), retry=FAST)


# --- real Prometheus -----------------------------------------------------------------------------


def test_instant_and_range_queries_return_the_exact_samples(prometheus):
    t0 = float(int(time.time()) - 120)
    series = [(t0 + i, 0.25 * i) for i in range(61)]
    prometheus.push([({"__name__": "vllm:num_requests_waiting", "pod": "p1"}, series)])
    prom = client_for(prometheus.url)

    [sample] = prom.query("vllm:num_requests_waiting", at=t0 + 30)
    assert sample.labels == {"__name__": "vllm:num_requests_waiting", "pod": "p1"}
    assert sample.value == 7.5

    [curve] = prom.query_range("vllm:num_requests_waiting", t0 + 10.5, t0 + 14.5, 1.0)
    assert curve.labels["pod"] == "p1"
    assert curve.points == [(t0 + 10.5 + k, 0.25 * (10 + k)) for k in range(5)]  # sub-second start kept


def test_an_empty_result_is_empty_not_zero(prometheus):
    prom = client_for(prometheus.url)
    assert prom.query("vllm:time_to_first_token_seconds_sum") == []
    assert prom.query_range("vllm:time_to_first_token_seconds_sum", time.time() - 60, time.time(), 5) == []


def test_nan_and_scalars_are_passed_through(prometheus):
    prom = client_for(prometheus.url)
    [nan] = prom.query("0/0")
    assert math.isnan(nan.value) and nan.labels == {}
    [inf] = prom.query("vector(1)/0")
    assert inf.value == math.inf


def test_a_bad_query_is_a_query_error_with_the_parse_message(prometheus):
    prom = client_for(prometheus.url)
    with pytest.raises(QueryError, match=r"bad request \(HTTP 400\): .*parse error"):
        prom.query("sum(rate(vllm:x[1m])")
    problem = prom.parse_problem("sum(rate(vllm:x[1m])")
    assert problem is not None and "parse error" in problem
    assert prom.parse_problem("sum(rate(vllm:x[1m]))") is None


def test_a_stopped_prometheus_raises_instead_of_returning_zero(prometheus):
    prom = client_for(prometheus.url)
    assert prom.query("vector(2)")[0].value == 2.0
    prometheus.stop()
    with pytest.raises(QueryError, match=r"gave up after 2 attempt\(s\).*connection problem"):
        prom.query("vector(2)")
    with pytest.raises(QueryError):
        prom.query_range("vector(2)", time.time() - 10, time.time(), 1)
    with pytest.raises(QueryError):
        prom.metric_names()


def test_metric_names_come_from_the_label_values_api(prometheus):
    now = time.time()
    prometheus.push(
        [
            ({"__name__": "vllm:num_requests_running"}, [(now, 1.0)]),
            ({"__name__": "vllm_kv_cache_usage_perc"}, [(now, 0.5)]),
        ]
    )
    names = client_for(prometheus.url).metric_names()
    assert {"vllm:num_requests_running", "vllm_kv_cache_usage_perc"} <= set(names)


def test_retries_are_reported_through_the_callback(prometheus):
    prometheus.stop()
    lines: list[str] = []
    prom = PromClient(PromSettings(url=prometheus.url), retry=FAST, on_retry=lines.append)
    with pytest.raises(QueryError):
        prom.query("up")
    assert len(lines) == 1 and lines[0].startswith("query 'up': connection problem")


# --- a scripted HTTP server (what a real Prometheus cannot show) ---------------------------------


class Recorder:
    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.answer: Callable[[dict], tuple[int, str, str]] = lambda req: (
            200,
            "application/json",
            json.dumps(EMPTY_VECTOR),
        )


@pytest.fixture
def scripted() -> Iterator[tuple[str, Recorder]]:
    """An HTTP server on loopback that records requests and answers as the test says."""
    recorder = Recorder()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            request = {"path": self.path, "headers": dict(self.headers)}
            recorder.requests.append(request)
            status, content_type, body = recorder.answer(request)
            payload = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", recorder
    server.shutdown()
    server.server_close()


def test_the_token_from_an_env_var_is_sent_as_bearer(scripted, monkeypatch):
    url, recorder = scripted
    monkeypatch.setenv("PROM_TOKEN", TOKEN)
    client_for(url, token_env="PROM_TOKEN", headers={"X-Scope-OrgID": "tenant-a"}).query("up")
    headers = recorder.requests[0]["headers"]
    assert headers["Authorization"] == f"Bearer {TOKEN}"
    assert headers["X-Scope-OrgID"] == "tenant-a"


def test_the_token_from_a_file_is_sent_as_bearer(scripted, tmp_path):
    url, recorder = scripted
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    client_for(url, token_file=str(token_file)).query("up")
    assert recorder.requests[0]["headers"]["Authorization"] == f"Bearer {TOKEN}"


def test_a_missing_token_is_an_error_and_nothing_is_queried(scripted, monkeypatch, tmp_path):
    url, recorder = scripted
    monkeypatch.delenv("PROM_TOKEN", raising=False)
    with pytest.raises(QueryError, match="environment variable PROM_TOKEN is unset or empty"):
        client_for(url, token_env="PROM_TOKEN").query("up")
    with pytest.raises(QueryError, match=r"cannot read .*absent"):
        client_for(url, token_file=str(tmp_path / "absent")).query("up")
    assert recorder.requests == []


def test_the_token_never_appears_in_repr_describe_or_errors(scripted, monkeypatch):
    url, recorder = scripted
    monkeypatch.setenv("PROM_TOKEN", TOKEN)
    lines: list[str] = []
    settings = PromSettings(url=url, token_env="PROM_TOKEN", headers={"X-Api-Key": "key-abcdef"})
    prom = PromClient(settings, retry=FAST, on_retry=lines.append)
    # a misbehaving proxy that echoes the request headers in its error page
    recorder.answer = lambda req: (503, "text/plain", f"upstream down; you sent {req['headers']}")
    with pytest.raises(QueryError) as caught:
        prom.query("up")
    assert "HTTP 503" in str(caught.value) and "***" in str(caught.value)
    visible = [repr(settings), repr(prom), json.dumps(prom.describe()), str(caught.value), *lines]
    assert len(recorder.requests) == 2 and lines
    for text in visible:
        assert TOKEN not in text and "key-abcdef" not in text
    assert prom.describe()["auth"] == "bearer token from env PROM_TOKEN"
    assert prom.describe()["extra_headers"] == ["X-Api-Key"]


def test_credentials_in_the_url_are_not_shown(scripted):
    url, _ = scripted
    prom = client_for(url.replace("http://", "http://admin:hunter2@"))
    assert "hunter2" not in repr(prom) + json.dumps(prom.describe())


def test_a_url_that_is_not_the_prometheus_api_is_a_clear_error(scripted):
    url, recorder = scripted
    recorder.answer = lambda req: (200, "text/html", "<html>Sign in</html>")
    with pytest.raises(QueryError, match="is this the Prometheus HTTP API URL"):
        client_for(url).query("up")


def test_unauthorized_is_not_retried(scripted):
    url, recorder = scripted
    recorder.answer = lambda req: (401, "text/plain", "Unauthorized")
    with pytest.raises(QueryError, match=r"unauthorized \(HTTP 401\)"):
        client_for(url).query("up")
    assert len(recorder.requests) == 1


# --- TLS ---------------------------------------------------------------------------------------


@pytest.fixture
def tls_server(tmp_path) -> Iterator[tuple[str, Path]]:
    """An HTTPS server on 127.0.0.1 with a self-signed certificate (made with the openssl CLI)."""
    require_executable("openssl", "apt-get install openssl")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            payload = json.dumps(EMPTY_VECTOR).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_address[1]}", cert
    server.shutdown()
    server.server_close()


def test_tls_is_verified_against_the_ca_file_or_can_be_disabled(tls_server):
    url, cert = tls_server
    with pytest.raises(QueryError, match="TLS error"):
        client_for(url).query("up")
    assert client_for(url, ca_file=str(cert)).query("up") == []
    assert client_for(url, verify_tls=False).query("up") == []


def test_an_oversized_answer_is_a_failed_query_read_no_further_than_the_limit(scripted):
    url, recorder = scripted
    series = {"metric": {"pod": "p" * 1000}, "value": [1, "1"]}
    big = {"status": "success", "data": {"resultType": "vector", "result": [series] * 3000}}  # ~3 MiB
    recorder.answer = lambda req: (200, "application/json", json.dumps(big))
    with pytest.raises(QueryError, match=r"answer larger than 1048576 bytes \(prometheus.max_answer_mib\)"):
        client_for(url, max_answer_bytes=1024 * 1024).query("up")
    assert len(recorder.requests) == 1  # not retried: the same question gets the same answer
    assert len(client_for(url).query("up")) == 3000  # within the default limit (8 MiB) it is read


@pytest.mark.parametrize(
    "body",
    [
        '{"status": "success", "data": {"resultType": "matrix", "result": [{"metric": {}, "values": [["x", "1"]]}]}}',
        '{"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1, {}]}]}}',
        '{"status": "success", "data": {"result": {"a": 1}}}',
        '{"status": "success", "data": ' + "[" * 100_000 + "]" * 100_000 + "}",
        '{"status": "success", "data": {"result": [',
        "null",
    ],
)
def test_a_malformed_answer_is_a_failed_query_not_an_internal_error(scripted, body):
    url, recorder = scripted
    recorder.answer = lambda req: (200, "application/json", body)
    prom = client_for(url)
    with pytest.raises(QueryError, match="unexpected answer"):
        prom.query("up")
    with pytest.raises(QueryError, match="unexpected answer"):
        prom.query_range("up", 0, 10, 1)
