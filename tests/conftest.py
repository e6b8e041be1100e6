from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence

import pytest

from tests.support.kube_emulator import kube_cluster  # noqa: F401 - fixture for all tests
from tests.support.prometheus import PrometheusServer


@pytest.fixture
def prometheus_factory(tmp_path_factory) -> Iterator[Callable[..., PrometheusServer]]:
    """Start real Prometheus servers: factory(scrape_configs=[...], scrape_interval="1s")."""
    started: list[PrometheusServer] = []

    def make(scrape_configs: Sequence[Mapping] = (), scrape_interval: str = "1s") -> PrometheusServer:
        server = PrometheusServer(tmp_path_factory.mktemp("prom"), scrape_configs, scrape_interval)
        started.append(server.start())
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def prometheus(prometheus_factory) -> PrometheusServer:
    """A real Prometheus with the remote-write receiver on and no scrape targets."""
    return prometheus_factory()
