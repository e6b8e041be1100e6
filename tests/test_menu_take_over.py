"""`hpa-exp menu`, Kubernetes: an existing HPA that differs from the manifest is refused with a hint
about the take-over toggle; [t] takes it over, the run completes, and the HPA is restored.

The Kubernetes emulator over HTTP and a real Prometheus, as tests/test_menu_kubernetes.py: what
is tested is the menu handing the choice to the preflight and the run; the take-over against a
real API server's defaults is tests/test_testbed_ownership.py's.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.support.kube_emulator import HPAS, KubeEmulator
from tests.support.prometheus import PrometheusServer
from tests.support.terminal import TmuxTerminal
from tests.support.tools import require_executable
from tests.support.vllm_exporter import scraped_prometheus
from tests.test_why_kubernetes import write_config

REPO = Path(__file__).resolve().parents[1]
NS = "bench"

pytestmark = [pytest.mark.prometheus, pytest.mark.tmux, pytest.mark.slow]


@pytest.fixture
def prom(tmp_path_factory) -> Iterator[PrometheusServer]:
    with scraped_prometheus(tmp_path_factory.mktemp("prom"), NS) as server:
        yield server


def workspace_with_config(folder: Path, prom_url: str) -> Path:
    """A config applying HPA vllm-hpa with maxReplicas 4 (the emulator's vllm-hpa has 8)."""
    configs = folder / "experiment-configs"
    configs.mkdir(parents=True)
    path = write_config(configs)
    doc = yaml.safe_load(path.read_text())
    doc["hpa"]["manifest"] = str(configs / "hpa.yaml")
    doc["hpa"]["remove_after"] = True
    doc["jobs"][0]["duration"] = 2
    doc["prometheus"] = {"url": prom_url}
    doc["output"] = {"base_dir": "../experiment-data", "results_grace": 0}
    (configs / "hpa.yaml").rename(folder / "hpa.yaml")  # not listed as a config
    doc["hpa"]["manifest"] = str(folder / "hpa.yaml")
    path.write_text(yaml.safe_dump(doc))
    return folder


def test_the_refusal_offers_take_over_and_the_run_restores_the_hpa(
    kube_cluster: KubeEmulator, prom: PrometheusServer, tmp_path: Path
) -> None:
    require_executable("tmux", "apt-get install tmux")
    original = kube_cluster.get(HPAS, NS, "vllm-hpa")["spec"]  # type: ignore[index]
    assert original["maxReplicas"] == 8
    workspace = workspace_with_config(tmp_path / "work", prom.url)
    terminal = TmuxTerminal(tmp_path, 100, 40).start(
        [sys.executable, "-m", "hpa_experiments", "menu"],
        workspace,
        {"KUBECONFIG": str(kube_cluster.kubeconfig), "PYTHONPATH": str(REPO), "NO_COLOR": "1"},
    )
    try:
        terminal.wait_for(r"no runs yet", timeout=30)
        terminal.press("1")
        screen = terminal.wait_for(r"\[k\] kubernetes, context emulator")
        assert re.search(r"\[t\] take over an existing HPA/ScaledObject.*: off", screen), screen
        terminal.press("t")  # shown in the plan, and it toggles
        terminal.wait_for(r"\[t\] take over an existing HPA/ScaledObject.*: ON")
        terminal.press("t")
        terminal.wait_for(r"\[t\] take over an existing HPA/ScaledObject.*: off")
        terminal.press("k")
        screen = terminal.wait_for(r"take over and retry", timeout=60)
        assert "already exists and differs from the manifest" in screen
        assert re.search(r"--take-over\s+is\s+the\s+toggle\s+\[t\]", screen), screen
        assert kube_cluster.get(HPAS, NS, "vllm-hpa")["spec"] == original  # type: ignore[index]  # refused
        terminal.press("t")
        screen = terminal.wait_for(r"^Confirm", timeout=60)
        assert "take over: ON" in screen and "preflight passed" in screen
        terminal.press("Enter")
        terminal.wait_for(r"completed: run saved in", timeout=90)
        assert kube_cluster.get(HPAS, NS, "vllm-hpa")["spec"] == original  # type: ignore[index]  # restored
        (run_dir,) = (workspace / "experiment-data").iterdir()
        assert json.loads((run_dir / "run.json").read_text())["status"] == "completed"
        assert yaml.safe_load((run_dir / "hpa-applied.yaml").read_text())["spec"]["maxReplicas"] == 4
        assert "took over HPA" in (run_dir / "events.csv").read_text()
        terminal.press("q")
        terminal.wait_for(r"bye: hpa-exp menu closed")
    finally:
        terminal.close()
