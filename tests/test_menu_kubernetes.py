"""`hpa-exp menu` on the Kubernetes backend: preflight passes, the run starts Jobs, Ctrl-C + y deletes them.

Real parts as in tests/test_run_kubernetes_e2e.py: kmock's Kubernetes emulator over HTTP with a
kubeconfig, and the real Prometheus scraping an exporter with vLLM's metric names.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.support.kube_emulator import JOBS, KubeEmulator
from tests.support.prometheus import PrometheusServer
from tests.support.terminal import TmuxTerminal
from tests.support.tools import require_executable
from tests.support.vllm_exporter import scraped_prometheus

REPO = Path(__file__).resolve().parents[1]
NS = "bench"

pytestmark = [pytest.mark.prometheus, pytest.mark.tmux, pytest.mark.slow]  # real Prometheus, the emulator, tmux


@pytest.fixture
def prom(tmp_path_factory) -> Iterator[PrometheusServer]:
    with scraped_prometheus(tmp_path_factory.mktemp("prom"), NS) as server:
        yield server


def test_kubernetes_run_from_the_menu_stops_with_cleanup(
    kube_cluster: KubeEmulator, prom: PrometheusServer, tmp_path: Path
) -> None:
    require_executable("tmux", "apt-get install tmux")
    workspace = tmp_path / "work"
    (workspace / "experiment-configs").mkdir(parents=True)
    config = {
        "name": "menu-kube",
        "namespace": NS,
        "deployment": "vllm",
        "model_name": "m",
        "backend": "kubernetes",
        "hpa": {"enabled": True, "name": "vllm-hpa", "apply": False},
        "jobs": [
            {"name": "first", "rate": 2, "duration": 30, "manifest": str(REPO / "workloads" / "vllm-bench-serve.yaml")},
            {
                "name": "second",
                "rate": 3,
                "duration": 30,
                "start_delay": 1,
                "manifest": str(REPO / "workloads" / "vllm-bench-serve.yaml"),
            },
        ],
        "metrics": {"interval": 1, "rate_window": "10s"},
        "prometheus": {"url": prom.url},
        "output": {"base_dir": "../experiment-data"},
    }
    (workspace / "experiment-configs" / "menu-kube.yaml").write_text(yaml.safe_dump(config))
    terminal = TmuxTerminal(tmp_path, 100, 30).start(
        [sys.executable, "-m", "hpa_experiments", "menu"],
        workspace,
        {"KUBECONFIG": str(kube_cluster.kubeconfig), "PYTHONPATH": str(REPO), "NO_COLOR": "1"},
    )
    try:
        screen = terminal.wait_for(r"no runs yet", timeout=30)
        assert "kubernetes context emulator" in screen
        terminal.press("1")
        terminal.wait_for(r"\[k\] kubernetes, context emulator")
        terminal.press("k")
        screen = terminal.wait_for(r"^Confirm", timeout=60)
        assert "Run menu-kube on kubernetes" in screen and f"namespace {NS}" in screen
        assert "preflight passed" in screen
        terminal.press("Enter")
        terminal.wait_for(r"job_started: second", timeout=30)
        assert sorted(n.split("-")[0] for n in kube_cluster.names(JOBS, NS)) == ["first", "second"]
        terminal.press("C-c")
        terminal.wait_for(r"Stop the experiment\? Jobs will be deleted \[y/N\]")
        terminal.press("y")
        screen = terminal.wait_for(r"stopped: 2 job\(s\) deleted, partial run kept in", timeout=30)
        assert kube_cluster.names(JOBS, NS) == []
        (run_dir,) = (workspace / "experiment-data").iterdir()
        info = json.loads((run_dir / "run.json").read_text())
        assert (info["status"], info["backend"], info["reason"]) == (
            "interrupted",
            "kubernetes",
            "interrupted from the menu",
        )
        terminal.press("q")
        terminal.wait_for(r"bye: hpa-exp menu closed")
        assert terminal.exit_status() == 0
    finally:
        terminal.close()
