"""Real-cluster defects of issue 13, staged on the test bed, and what the preflight should say.

Real test bed, not the emulator: the first defect is the real HPA controller's behaviour
(AmbiguousSelector), the second needs real Prometheus series from real scrapes.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from tests.support.testbed import REPO, Testbed
from tests.support.testbed_kit import KIT, NAMESPACE, derive_config, hpa_exp, install_model_server, run_args, wait_for

pytestmark = pytest.mark.testbed

SHIPPED = REPO / "experiment-configs" / "high-load-hpa.yaml"
HPAS = f"/apis/autoscaling/v2/namespaces/{NAMESPACE}/horizontalpodautoscalers"


def short_run(doc: dict) -> None:
    doc["jobs"] = [{"name": "defect-check", "rate": 1, "duration": 10}]
    doc["cooldown"]["duration"] = 5
    doc["values"]["output_len"] = 8


def delete_hpas(bed: Testbed) -> None:
    for name in ("vllm-hpa-queue", "vllm-hpa-combined", "vllm-hpa-kvcache"):
        bed.request("DELETE", f"{HPAS}/{name}")


def ambiguous(bed: Testbed, name: str) -> bool:
    found = bed.request("GET", f"{HPAS}/{name}").json()
    return any(c.get("reason") == "AmbiguousSelector" for c in found.get("status", {}).get("conditions", []))


def test_two_hpas_on_one_deployment_disable_both(testbed: Testbed) -> None:
    """What `hpa-exp cluster up` (queue HPA) plus a shipped config (combined HPA) leave behind:
    the real HPA controller refuses to act on either (condition reason AmbiguousSelector)."""
    install_model_server(testbed)
    try:
        testbed.apply_file(KIT / "hpa-vllm-queue.yaml")
        testbed.apply_file(KIT / "hpa-vllm-combined.yaml")
        wait_for(
            "AmbiguousSelector on both HPAs",
            lambda: ambiguous(testbed, "vllm-hpa-queue") and ambiguous(testbed, "vllm-hpa-combined"),
            60,
        )
    finally:
        delete_hpas(testbed)


def test_a_second_hpa_on_the_deployment_fails_the_preflight(testbed: Testbed, tmp_path: Path) -> None:
    """The kit's queue HPA is in place and the config applies the combined one: exit 3, naming
    the other HPA, before any Job starts."""
    install_model_server(testbed)
    try:
        testbed.apply_file(KIT / "hpa-vllm-queue.yaml")
        done = hpa_exp(testbed, *run_args(testbed, derive_config(SHIPPED, tmp_path, short_run)), timeout=300)
        text = done.stdout + done.stderr
        assert done.returncode == 3, f"exit {done.returncode}\n{text[-3000:]}"
        assert "vllm-hpa-queue" in text, text[-3000:]
    finally:
        delete_hpas(testbed)


def test_no_series_for_the_configured_model_fails_the_preflight(testbed: Testbed, tmp_path: Path) -> None:
    """Prometheus has vLLM series (the simulators serve meta-llama/Llama-3.1-8B) but the config
    names another model: exit 3 naming model_name, before any Job starts."""
    install_model_server(testbed)
    wait_for("vLLM series in Prometheus", lambda: bool(vllm_series(testbed)), 60)

    def other_model(doc: dict) -> None:
        short_run(doc)
        doc["model_name"] = "meta-llama/Llama-3.1-70B"
        doc["hpa"]["enabled"] = False

    done = hpa_exp(testbed, *run_args(testbed, derive_config(SHIPPED, tmp_path, other_model)), timeout=300)
    text = done.stdout + done.stderr
    assert done.returncode == 3, f"exit {done.returncode}\n{text[-3000:]}"
    assert "model_name" in text or "Llama-3.1-70B" in text, text[-3000:]


def vllm_series(bed: Testbed) -> list:
    answer = requests.get(
        f"{bed.prometheus_url}/api/v1/series",
        params={"match[]": 'vllm:num_requests_running{namespace="hpa-exp"}'},
        timeout=10,
    )
    return answer.json().get("data", [])
