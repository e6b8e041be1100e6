"""The test bed's Job pods: the kit's `vllm bench serve` Job runs to completion and its log,
read through the API server (`pods/log`, what `kubectl logs` uses), has vllm's result block.

Real test bed, not the emulator: the Job controller, the garbage collector and the API server's
log proxy to the (kwok) kubelet are what is exercised.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hpa_experiments.config import load_config
from hpa_experiments.plan import build_plan
from hpa_experiments.workloads import new_run_id, render_job
from tests.support.testbed import REPO, Testbed
from tests.support.testbed_kit import NAMESPACE, derive_config, install_model_server, wait_for

pytestmark = pytest.mark.testbed

SHIPPED = REPO / "experiment-configs" / "high-load-hpa.yaml"


def test_bench_job_completes_and_its_log_has_the_result_block(testbed: Testbed, tmp_path: Path) -> None:
    """A Job rendered from workloads/vllm-bench-serve.yaml (4 req/s for 3 s = 12 prompts) against
    the kit's Service: the Job reaches Complete and its pod log reports 12 successful requests."""
    install_model_server(testbed)

    def change(doc: dict) -> None:
        doc["jobs"] = [{"name": "log-check", "rate": 4, "duration": 3}]
        doc["values"]["output_len"] = 8

    config = load_config(derive_config(SHIPPED, tmp_path, change))
    job = render_job(config, build_plan(config).jobs[0], new_run_id(1_900_000_000.0))
    name = job["metadata"]["name"]
    answer = testbed.request("POST", f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs", job)
    assert answer.status_code == 201, answer.text

    def complete() -> bool:
        found = testbed.request("GET", f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs/{name}").json()
        conditions = found.get("status", {}).get("conditions") or []
        assert not any(c["type"] == "Failed" and c["status"] == "True" for c in conditions), found["status"]
        return any(c["type"] == "Complete" and c["status"] == "True" for c in conditions)

    wait_for(f"Job {name} Complete", complete, 120)
    pods = testbed.request(
        "GET", f"/api/v1/namespaces/{NAMESPACE}/pods", params={"labelSelector": f"job-name={name}"}
    ).json()["items"]
    assert len(pods) == 1 and pods[0]["status"]["phase"] == "Succeeded", [p["status"] for p in pods]
    log = testbed.request(
        "GET", f"/api/v1/namespaces/{NAMESPACE}/pods/{pods[0]['metadata']['name']}/log", params={"container": "bench"}
    )
    assert log.status_code == 200, log.text
    assert "============ Serving Benchmark Result ============" in log.text, log.text
    assert re.search(r"^Successful requests:\s+12\s*$", log.text, re.M), log.text
    assert re.search(r"^Request rate configured \(RPS\):\s+4\.00\s*$", log.text, re.M), log.text
    testbed.request(
        "DELETE",
        f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs/{name}",
        {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"},
    )
