"""A Prometheus that takes 15 s per instant query for a stretch of a `hpa-exp run` (emulator API,
real Prometheus behind a small delaying proxy).

Emulator: the API server is not what is under test; the proxy plays a Prometheus under load (a real
one cannot be made slow on demand), and answers from the real one so the backfill can be checked.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from hpa_experiments.column_queries import MetricNames, standard_queries
from tests.support.kube_emulator import KubeEmulator
from tests.support.prometheus import PrometheusServer
from tests.test_run_kubernetes_e2e import (  # noqa: F401 - `prom` is a fixture
    NS,
    hpa_exp,
    prom,
    read_csv,
    run_dir,
    write_config,
)

pytestmark = pytest.mark.slow  # every test here takes seconds (benchmarks/README.md: the fast loop)

SLOW_S = 15.0
PLAN_S = 30
SLOW_TICKS = range(5, 20)  # instant queries asked in these seconds after t0 take SLOW_S to answer


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # a tick opens ~20 connections at once; a backlog of 5 drops some (1 s SYN retry)


class SlowProxy:
    """Forwards to a real Prometheus; instant queries asked within the slow window wait first."""

    def __init__(self, upstream: str):
        self.upstream = upstream
        self.slow_window: tuple[float, float] | None = None  # unix times
        self.slowed: list[str] = []  # the PromQL of each slowed query
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self._forward(b"")

            def do_POST(self) -> None:
                self._forward(self.rfile.read(int(self.headers.get("Content-Length") or 0)))

            def _forward(self, body: bytes) -> None:
                url = urllib.parse.urlsplit(self.path)
                params = urllib.parse.parse_qs(url.query) | urllib.parse.parse_qs(body.decode())
                window = proxy.slow_window
                if url.path == "/api/v1/query" and window and window[0] <= time.time() < window[1]:
                    proxy.slowed.append(params.get("query", [""])[0])
                    time.sleep(SLOW_S)
                request = urllib.request.Request(
                    proxy.upstream + self.path,
                    data=body or None,
                    method=self.command,
                    headers={"Content-Type": self.headers.get("Content-Type") or "application/x-www-form-urlencoded"},
                )
                try:
                    with urllib.request.urlopen(request, timeout=30) as answer:
                        status, payload = answer.status, answer.read()
                except urllib.error.HTTPError as exc:
                    status, payload = exc.code, exc.read()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:
                    pass  # the client gave up waiting (its timeout): nothing to answer

            def log_message(self, *args: object) -> None:
                pass

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def slow_proxy(prom: PrometheusServer) -> Iterator[SlowProxy]:  # noqa: F811 - the imported fixture
    proxy = SlowProxy(prom.url)
    yield proxy
    proxy.stop()


def test_15_s_queries_neither_delay_ticks_nor_pile_up_and_the_backfill_fills_the_holes(
    kube_cluster: KubeEmulator,
    prom: PrometheusServer,  # noqa: F811 - the imported fixture
    slow_proxy: SlowProxy,
    tmp_path: Path,
) -> None:
    config = write_config(
        tmp_path,
        [
            {"name": "a", "rate": 5, "duration": 12},
            {"name": "b", "rate": 5, "duration": 12, "start_delay": 10},  # starts and ends under slow queries
            {"name": "c", "rate": 5, "duration": 10, "start_delay": 20},
        ],
        output={"results_grace": 0},
    )
    out = tmp_path / "out"
    stdout, stderr = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    with stdout.open("w") as out_fh, stderr.open("w") as err_fh:
        process = subprocess.Popen(
            hpa_exp(str(config), kube=kube_cluster, prom_url=slow_proxy.url, out=out), stdout=out_fh, stderr=err_fh
        )
        try:
            while not list(out.glob("*/run.json")) and process.poll() is None:
                time.sleep(0.02)
            t0 = json.loads(next(out.glob("*/run.json")).read_text())["t0_unix"]
            slow_proxy.slow_window = (t0 + SLOW_TICKS[0] - 0.001, t0 + SLOW_TICKS[-1] + 0.9)
            returncode = process.wait(timeout=180)
        finally:
            process.kill()
    output = stderr.read_text() + stdout.read_text()
    assert returncode == 0, output[-4000:]
    assert slow_proxy.slowed

    run = run_dir(out)
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "completed", info["reason"]
    rows = read_csv(run / "metrics.csv")
    assert [float(r["elapsed_s"]) for r in rows] == [float(k) for k in range(PLAN_S + 1)]  # every tick written
    # no tick waited for a slow answer past the next tick (1 s); the old code waited 10 s (the timeout)
    lateness = max(float(r["sample_ms"]) for r in rows) / 1000
    assert lateness < 5.0, [(r["elapsed_s"], r["sample_ms"]) for r in rows]
    phases = {p["job"]: p for p in read_csv(run / "phases.csv")}
    for job, (start, end) in {"a": (0, 12), "b": (10, 22), "c": (20, 30)}.items():
        assert abs(float(phases[job]["actual_start_s"]) - start) < 1.0, phases[job]
        assert abs(float(phases[job]["actual_end_s"]) - end) < 1.0, phases[job]
    ended = datetime.fromisoformat(info["end_utc"].replace("Z", "+00:00")).timestamp()
    assert ended - (t0 + PLAN_S) < 10.0  # the run ended on time (no wait for the calls still in flight)

    # at most one call in flight per column: a new slow call once the previous one timed out (10 s),
    # so two per column in the 15 s, not one a tick (15)
    per_query = Counter(slow_proxy.slowed)
    assert max(per_query.values()) <= 2, per_query
    queries = standard_queries(MetricNames(**info["config"]["metric_names"]), "m", NS, "10s", [0.5, 0.9, 0.99])
    assert set(queries.values()) <= set(per_query)
    sampling = info["sampling"]
    assert all(sampling["cells_skipped"][c] >= len(SLOW_TICKS) - 2 for c in queries), sampling
    assert all(sampling["answers_late"][c] >= 1 for c in queries), sampling

    # the holes were filled by the range queries with what Prometheus answers for each instant
    checked = 0
    for row in rows:
        at = datetime.fromisoformat(row["timestamp"].replace("Z", "+00:00")).timestamp()
        if not SLOW_TICKS[0] <= float(row["elapsed_s"]) <= SLOW_TICKS[-1]:
            continue
        for column, promql in queries.items():
            answer = prom.query(promql, at)
            value = float(answer[0]["value"][1]) if answer else float("nan")
            if value != value:
                assert row[column] == "", (row["elapsed_s"], column, row[column])
            else:
                assert float(row[column]) == pytest.approx(value, rel=1e-6), (row["elapsed_s"], column)
                checked += 1
    assert checked > 0
    events = read_csv(run / "events.csv")
    (fill,) = [e for e in events if e["kind"] == "range_fill"]
    print(
        f"15 s queries at ticks {SLOW_TICKS[0]}-{SLOW_TICKS[-1]}: {len(rows)} rows written, max tick lateness "
        f"{lateness:.2f} s, {len(slow_proxy.slowed)} slow calls, skipped {sum(sampling['cells_skipped'].values())}, "
        f"late {sum(sampling['answers_late'].values())}; {fill['detail']}; {checked} filled cells equal Prometheus'; "
        f"run ended {ended - t0 - PLAN_S:.1f} s after the plan"
    )
