from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence

import pytest
from hypothesis import HealthCheck, settings

from tests.support.kube_emulator import kube_cluster  # noqa: F401 - fixture for all tests
from tests.support.prometheus import PrometheusServer
from tests.support.testbed import Testbed, TestbedMissing

# Hypothesis: in CI the same examples every run (derandomized, no example database), no deadline
# (a loaded 2-core runner is slow), and a fixed number of examples where a test does not set its own.
settings.register_profile(
    "ci",
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=100,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev"))

# What a test needs, from the fixtures it uses (item.fixturenames holds every fixture it pulls in).
NEEDS = {
    "prometheus": {"prometheus", "prometheus_factory", "prom", "kit_prometheus"},
    "testbed": {"testbed"},
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Markers from fixtures (so `-m "not prometheus"` works), and the test bed's tests are slow."""
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        for marker, fixtures in NEEDS.items():
            if used & fixtures and item.get_closest_marker(marker) is None:
                item.add_marker(marker)
        if item.get_closest_marker("testbed") is not None and item.get_closest_marker("slow") is None:
            item.add_marker(pytest.mark.slow)


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


def _started_testbed(tmp_path_factory, autoscaler: str) -> Iterator[Testbed]:
    try:
        bed = Testbed(tmp_path_factory.mktemp(f"testbed-{autoscaler}"), autoscaler=autoscaler)
        bed.start()
    except TestbedMissing as exc:
        pytest.fail(str(exc))
    except Exception as exc:  # whatever broke, stop what did start and show its logs
        logs = bed.logs()
        bed.stop()
        pytest.fail(f"the test bed did not start: {type(exc).__name__}: {exc}\n{logs}")
    _TESTBEDS.append(bed)
    yield bed
    _TESTBEDS.remove(bed)
    bed.stop()


@pytest.fixture(scope="session")
def testbed(tmp_path_factory) -> Iterator[Testbed]:
    """The real control plane of tests/support/testbed.py with prometheus-adapter, started once per session.

    Missing binaries fail (never skip) the test, naming scripts/testbed-build.sh.
    """
    yield from _started_testbed(tmp_path_factory, "prometheus-adapter")


@pytest.fixture(scope="module")
def testbed_keda(tmp_path_factory) -> Iterator[Testbed]:
    """The same control plane with KEDA (operator and metrics server) instead of prometheus-adapter,
    and Service stand-ins that hold requests at zero replicas.  Per module, not per session: in a
    run of every test-bed file it is stopped after its file rather than run beside the other."""
    yield from _started_testbed(tmp_path_factory, "keda")


_TESTBEDS: list[Testbed] = []


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failing test-bed test shows the last lines of every test-bed process log."""
    outcome = yield
    report = outcome.get_result()
    fixtures = getattr(item, "fixturenames", ())
    if report.failed and _TESTBEDS and ("testbed" in fixtures or "testbed_keda" in fixtures):
        report.sections.append(("test bed logs", _TESTBEDS[-1].logs()))
