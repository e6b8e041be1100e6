"""Helpers for the test-bed tests: install the kit's manifests, derive short configs, run the CLI."""

from __future__ import annotations

import copy
import csv
import json
import os
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from tests.support.testbed import REPO, Testbed

NAMESPACE = "hpa-exp"
KIT = REPO / "manifests"
MODEL_SERVER_SELECTOR = "app.kubernetes.io/name=vllm,app.kubernetes.io/part-of=hpa-exp"  # the kit Deployment's


def install_model_server(bed: Testbed, sim_args: Mapping[str, str] | None = None) -> None:
    """The kit's namespace, emulator Deployment and Service, as `hpa-exp cluster up` applies them.

    `sim_args` replaces simulator flags (e.g. a smaller --max-num-seqs so that one pod saturates
    at a rate a 2-core machine can generate); every other line is the kit's.
    """
    bed.apply_file(KIT / "namespace.yaml")
    with open(KIT / "model-server" / "emulator.yaml") as f:
        deployment = yaml.safe_load(f)
    if sim_args:
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        args = [a for a in container["args"] if a.split("=", 1)[0] not in sim_args]
        container["args"] = args + [f"{k}={v}" for k, v in sim_args.items()]
    bed.apply([deployment])
    bed.apply_file(KIT / "model-server" / "service.yaml")
    wait_for(f"Deployment {NAMESPACE}/vllm rolled out", lambda: rolled_out(bed), 90)
    # as `hpa-exp cluster up` waits: until the adapter serves the HPAs' metric for the new pods
    # (Prometheus has scraped them and the adapter has relisted); before that a preflight refuses
    # the run, rightly: the HPA would see <unknown>.  The KEDA test bed has no prometheus-adapter:
    # KEDA's HPA reads External metrics, served once the run has applied its ScaledObject.
    if bed.autoscaler != "keda":
        wait_for("the custom metrics API serves num_requests_waiting for the model server", lambda: served(bed), 90)
    else:  # the preflight refuses a Prometheus without vLLM series: wait for the first scrape of the pod
        wait_for("Prometheus has scraped the model server", lambda: scraped(bed), 90)


def scraped(bed: Testbed, metric: str = "vllm:num_requests_waiting") -> bool:
    """Prometheus has at least one `metric` series of the kit's namespace."""
    query = urllib.parse.urlencode({"query": f'count({metric}{{namespace="{NAMESPACE}"}})'})
    try:
        with urllib.request.urlopen(f"{bed.prometheus_url}/api/v1/query?{query}", timeout=5) as answer:
            return bool(json.load(answer)["data"]["result"])
    except (OSError, ValueError, KeyError):
        return False


def served(bed: Testbed, metric: str = "num_requests_waiting") -> bool:
    path = f"/apis/custom.metrics.k8s.io/v1beta1/namespaces/{NAMESPACE}/pods/*/{metric}"
    answer = bed.request("GET", path, params={"labelSelector": MODEL_SERVER_SELECTOR})
    return answer.status_code == 200 and bool(answer.json().get("items"))


def rolled_out(bed: Testbed, name: str = "vllm") -> bool:
    """As `kubectl rollout status`: every replica updated and available, no old pod left."""
    found = bed.request("GET", f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/{name}").json()
    want, status = found["spec"].get("replicas", 1), found.get("status", {})
    return (
        status.get("observedGeneration", 0) >= found["metadata"]["generation"]
        and status.get("updatedReplicas") == want
        and status.get("replicas") == want
        and status.get("availableReplicas") == want
    )


def wait_for(what: str, check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise AssertionError(f"{what}: not reached within {timeout:.0f} s")


def derive_config(source: Path, out_dir: Path, changes: Callable[[dict[str, Any]], None]) -> Path:
    """A copy of a shipped config with `changes` applied and its relative paths made absolute."""
    with open(source) as f:
        doc = yaml.safe_load(f)
    doc = copy.deepcopy(doc)
    if doc.get("hpa", {}).get("manifest"):
        doc["hpa"]["manifest"] = str((source.parent / doc["hpa"]["manifest"]).resolve())
    for job in doc.get("jobs", []):
        if job.get("manifest"):
            job["manifest"] = str((source.parent / job["manifest"]).resolve())
    doc.setdefault("output", {})["base_dir"] = str(out_dir / "runs")
    changes(doc)
    path = out_dir / source.name
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def hpa_exp(bed: Testbed, *args: str, timeout: float = 900, **popen: Any) -> subprocess.CompletedProcess[str]:
    """Run the CLI as a person would, pointed at the test bed."""
    return subprocess.run(
        [sys.executable, "-m", "hpa_experiments", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **bed.env(), "HPA_EXP_DEBUG": "1"},
        cwd=REPO,
        **popen,
    )


def run_args(bed: Testbed, config: Path) -> list[str]:
    return [
        "run",
        str(config),
        "--backend",
        "kubernetes",
        "--kubeconfig",
        str(bed.kubeconfig),
        "--prometheus-url",
        bed.prometheus_url,
        "--plain",
    ]


def read_metrics(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def only_run_dir(base: Path) -> Path:
    runs = [p for p in (base / "runs").iterdir() if p.is_dir()]
    assert len(runs) == 1, f"expected one run directory in {base / 'runs'}, found {runs}"
    return runs[0]


def number(value: str) -> float | None:
    return float(value) if value not in ("", None) else None


def job_objects(bed: Testbed, label: str = "app.kubernetes.io/managed-by=hpa-exp") -> tuple[list, list]:
    """(Jobs, their pods) in the namespace with `label`."""
    jobs = (
        bed.request("GET", f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs", params={"labelSelector": label})
        .json()
        .get("items", [])
    )
    pods = (
        bed.request("GET", f"/api/v1/namespaces/{NAMESPACE}/pods", params={"labelSelector": label})
        .json()
        .get("items", [])
    )
    return jobs, pods


def delete_run_jobs(bed: Testbed) -> None:
    """Delete every hpa-exp Job (admin), e.g. after a run that was not allowed to delete its own."""
    bed.request(
        "DELETE",
        f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs",
        {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"},
        params={"labelSelector": "app.kubernetes.io/managed-by=hpa-exp"},
    )
