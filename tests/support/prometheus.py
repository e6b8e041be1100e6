"""A real Prometheus server (Debian's `prometheus` binary) for tests, on loopback.

Data gets in two ways: scraping an exporter the test runs, or remote-write (instant,
exact samples).  In CI (`CI` set) a missing binary fails the test; elsewhere it skips.
"""

from __future__ import annotations

import socket
import struct
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import cramjam
import requests
import yaml

from tests.support.tools import require_executable

VLLM_RELABEL = {
    "source_labels": ["__name__"],
    "regex": "vllm_(.+)",
    "target_label": "__name__",
    "replacement": "vllm:${1}",
}


def prometheus_binary() -> str:
    """Path of the prometheus binary, or fail (CI) / skip (elsewhere) the calling test."""
    return require_executable("prometheus", "apt-get install prometheus")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrometheusServer:
    """One Prometheus process with its own config and TSDB in a scratch folder."""

    def __init__(
        self,
        workdir: Path,
        scrape_configs: Sequence[Mapping] = (),
        scrape_interval: str = "1s",
        out_of_order_window: str | None = "24h",
    ):
        self.workdir = Path(workdir)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config: dict = {
            "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
            "scrape_configs": list(scrape_configs),
        }
        if out_of_order_window:
            config["storage"] = {"tsdb": {"out_of_order_time_window": out_of_order_window}}
        self.config_path = self.workdir / "prometheus.yml"
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 15.0) -> PrometheusServer:
        binary = prometheus_binary()
        self.process = subprocess.Popen(
            [
                binary,
                f"--config.file={self.config_path}",
                f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--storage.tsdb.retention.time=2d",
                "--web.enable-remote-write-receiver",
                "--log.level=warn",
            ],
            stdout=subprocess.DEVNULL,
            stderr=(self.workdir / "prometheus.log").open("wb"),
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"prometheus exited: {(self.workdir / 'prometheus.log').read_text()}")
            try:
                if requests.get(self.url + "/-/ready", timeout=0.5).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.05)
        raise RuntimeError("prometheus did not become ready")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def push(self, series: Iterable[tuple[Mapping[str, str], Sequence[tuple[float, float]]]]) -> None:
        """Remote-write samples: [(labels incl. __name__, [(unix seconds, value), ...]), ...]."""
        response = requests.post(
            self.url + "/api/v1/write",
            data=bytes(cramjam.snappy.compress_raw(encode_write_request(series))),
            headers={
                "Content-Encoding": "snappy",
                "Content-Type": "application/x-protobuf",
                "X-Prometheus-Remote-Write-Version": "0.1.0",
            },
            timeout=10,
        )
        if response.status_code >= 300:
            raise RuntimeError(f"remote write failed: {response.status_code} {response.text}")

    def query(self, promql: str, at: float | None = None) -> list[dict]:
        params = {"query": promql}
        if at is not None:
            params["time"] = f"{at:.3f}"
        body = requests.get(self.url + "/api/v1/query", params=params, timeout=10).json()
        if body.get("status") != "success":
            raise RuntimeError(f"query failed: {body}")
        return body["data"]["result"]

    def wait_for(self, promql: str, timeout: float = 20.0) -> list[dict]:
        """Poll until the query returns a non-empty result (scraping takes ~5 s to start)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = self.query(promql)
            if result:
                return result
            time.sleep(0.25)
        raise TimeoutError(f"no data for {promql!r} after {timeout}s")


# --- remote-write protobuf (prometheus.WriteRequest), encoded by hand --------------------


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _label(name: str, value: str) -> bytes:
    return _field(1, name.encode()) + _field(2, value.encode())


def _sample(value: float, t_ms: int) -> bytes:
    return _varint(1 << 3 | 1) + struct.pack("<d", value) + _varint(2 << 3) + _varint(t_ms)


def encode_write_request(series: Iterable[tuple[Mapping[str, str], Sequence[tuple[float, float]]]]) -> bytes:
    body = b""
    for labels, samples in series:
        ts = b"".join(_field(1, _label(k, v)) for k, v in sorted(labels.items()))
        ts += b"".join(_field(2, _sample(v, round(t * 1000))) for t, v in samples)
        body += _field(1, ts)
    return body
