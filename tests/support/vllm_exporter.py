"""A /metrics endpoint with vLLM's metric names and known observations, for a real Prometheus to scrape.

Every `period` seconds it records `per_period` requests, each with a TTFT of `ttft_s`, one
inter-token interval of `itl_s` and a success; gauges hold fixed values.  So the PromQL
columns have known answers: mean TTFT = ttft_s, request rate = per_period / period per second,
and histogram quantiles interpolate inside the bucket holding ttft_s.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from tests.support.prometheus import PrometheusServer, free_port

TTFT_BUCKETS = [
    0.001,
    0.005,
    0.01,
    0.02,
    0.04,
    0.06,
    0.08,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
    20.0,
    40.0,
    80.0,
    160.0,
    640.0,
    2560.0,
]
ITL_BUCKETS = [
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.15,
    0.2,
    0.3,
    0.4,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
    20.0,
    40.0,
    80.0,
]


@dataclass
class VllmExporter:
    model_name: str = "m"
    ttft_s: float = 0.2
    itl_s: float = 0.02
    per_period: int = 10
    period: float = 0.1
    itl_metric: str = "vllm:inter_token_latency_seconds"
    port: int = field(default_factory=free_port)

    def __post_init__(self) -> None:
        self.registry = CollectorRegistry()
        labels = ["model_name", "engine"]
        self.ttft = Histogram(
            "vllm:time_to_first_token_seconds", "TTFT", labels, buckets=TTFT_BUCKETS, registry=self.registry
        )
        self.itl = Histogram(self.itl_metric, "ITL", labels, buckets=ITL_BUCKETS, registry=self.registry)
        self.success = Counter(
            "vllm:request_success", "successes", [*labels, "finished_reason"], registry=self.registry
        )
        self.running = Gauge("vllm:num_requests_running", "running", labels, registry=self.registry)
        self.waiting = Gauge("vllm:num_requests_waiting", "waiting", labels, registry=self.registry)
        self.kv = Gauge("vllm:kv_cache_usage_perc", "kv", labels, registry=self.registry)
        values = (self.model_name, "0")
        self.running.labels(*values).set(12)
        self.waiting.labels(*values).set(3)
        self.kv.labels(*values).set(0.42)
        self._stop = threading.Event()

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> VllmExporter:
        self._server, self._server_thread = start_http_server(self.port, addr="127.0.0.1", registry=self.registry)
        self._thread = threading.Thread(target=self._observe, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()

    def _observe(self) -> None:
        values = (self.model_name, "0")
        while not self._stop.wait(self.period):
            for _ in range(self.per_period):
                self.ttft.labels(*values).observe(self.ttft_s)
                self.itl.labels(*values).observe(self.itl_s)
                self.success.labels(*values, "length").inc()


def scrape_config(exporter: VllmExporter, namespace: str, relabel: bool = True) -> dict:
    """A Prometheus scrape job for the exporter, labelled like the kit's pod scrape (namespace, pod)."""
    from tests.support.prometheus import VLLM_RELABEL

    job = {
        "job_name": "vllm",
        "scrape_interval": "1s",
        "scrape_timeout": "1s",
        "static_configs": [{"targets": [exporter.target], "labels": {"namespace": namespace, "pod": "vllm-0"}}],
    }
    if relabel:
        job["metric_relabel_configs"] = [VLLM_RELABEL]
    return job


@contextlib.contextmanager
def scraped_prometheus(workdir: Path, namespace: str) -> Iterator[PrometheusServer]:
    """A real Prometheus scraping a running exporter every second, once rate() has data (~6 s)."""
    exporter = VllmExporter(model_name="m").start()
    server = PrometheusServer(workdir, [scrape_config(exporter, namespace)]).start()
    try:
        server.wait_for(f'sum(rate(vllm:time_to_first_token_seconds_count{{namespace="{namespace}"}}[10s])) > 0')
        yield server
    finally:
        server.stop()
        exporter.stop()
