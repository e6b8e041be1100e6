"""A 30 s Kubernetes API outage in the middle of a `hpa-exp run` (emulator over HTTP, real Prometheus).

Emulator, not the test bed: the outage is every request's connection dropped for 30 s, which the
emulator does on demand; stopping a real API server mid-run is not something the test bed offers.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.kube_emulator import JOBS, KubeEmulator
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

OUTAGE_FROM, OUTAGE_S = 6.0, 30.0  # seconds after t0, and how long


def test_a_30_s_api_outage_is_survived_and_jobs_are_deleted_once_the_api_is_back(
    kube_cluster: KubeEmulator,
    prom: PrometheusServer,  # noqa: F811 - the imported fixture
    tmp_path: Path,
) -> None:
    config = write_config(
        tmp_path,
        [
            {"name": "a", "rate": 2, "duration": 10},  # planned end inside the outage
            {"name": "b", "rate": 2, "duration": 22, "start_delay": 15},  # planned start inside it
            {"name": "c", "rate": 2, "duration": 4, "start_delay": 40},  # all after it
        ],
        output={"results_grace": 0},
    )
    out = tmp_path / "out"
    stdout, stderr = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    with stdout.open("w") as out_fh, stderr.open("w") as err_fh:
        process = subprocess.Popen(
            hpa_exp(str(config), kube=kube_cluster, prom_url=prom.url, out=out), stdout=out_fh, stderr=err_fh
        )
        try:
            while not out.exists() and process.poll() is None:
                time.sleep(0.02)
            while not list(out.glob("*/run.json")) and process.poll() is None:
                time.sleep(0.02)
            t0 = json.loads(next(out.glob("*/run.json")).read_text())["t0_unix"]
            time.sleep(max(0.0, t0 + OUTAGE_FROM - time.time()))
            outage = kube_cluster.drop_next(10**9)  # every request, whatever its method and path
            began = time.time()
            time.sleep(OUTAGE_S)
            outage.remaining = 0
            ended = time.time()
            returncode = process.wait(timeout=120)
        finally:
            process.kill()
    output = stderr.read_text() + stdout.read_text()
    assert returncode == 0, output[-4000:]
    assert ended - began >= OUTAGE_S

    run = run_dir(out)
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "completed", info["reason"]
    assert kube_cluster.names(JOBS, NS) == []
    phases = {p["job"]: p for p in read_csv(run / "phases.csv")}
    assert {p["outcome"] for p in phases.values()} == {"completed"}
    back = ended - t0  # the API's return, in seconds since t0
    # a's delete and b's create were due during the outage: done within 5 s of the API's return
    # (the retry delay is capped at 4 s), not given up
    a_end, b_start = float(phases["a"]["actual_end_s"]), float(phases["b"]["actual_start_s"])
    assert back <= a_end <= back + 5.0, (a_end, back)
    assert back <= b_start <= back + 5.0, (b_start, back)
    # the plan went on: what was due after the outage happened on its plan, never early (measured
    # 0.1-0.7 s late; up to 4.5 s late allowed: a retry sleeping its 4 s cap on a loaded machine)
    due_after = (("b", "actual_end_s", 37.0), ("c", "actual_start_s", 40.0), ("c", "actual_end_s", 44.0))
    for job, field, planned in due_after:
        actual = float(phases[job][field])
        assert planned - 0.5 <= actual <= planned + 4.5, (job, field, actual)
    # the outage shows as warnings: retries, and the HPA state missed then obtained again
    events = read_csv(run / "events.csv")
    warnings = [e["detail"] for e in events if e["kind"] == "warning"]
    retries = [w for w in warnings if "connection problem" in w and "(for up to 120 s)" in w]
    assert any(w.startswith("list pods ") for w in retries)  # a's end: its pods' logs, then its delete
    # reads at tick time give up within the tick (the next tick reads again); nothing else gave up
    gave_up = [w for w in warnings if "gave up" in w]
    assert gave_up and all(w.startswith(("HPA/Deployment state: not", "Job states: not")) for w in gave_up), gave_up
    assert not [e for e in events if e["kind"] == "error"]
    assert any(w.startswith("HPA/Deployment state: not obtained") for w in warnings), warnings
    assert any(w.startswith("hpa: obtained again after") for w in warnings), warnings
    rows = read_csv(run / "metrics.csv")
    assert [float(r["elapsed_s"]) for r in rows] == [float(k) for k in range(45)]
    print(
        f"API outage {ended - began:.1f} s (t0+{began - t0:.1f} to t0+{back:.1f}): a deleted at +{a_end - back:.1f} s "
        f"and b created at +{b_start - back:.1f} s after the API's return; b ended at {phases['b']['actual_end_s']} "
        f"(planned 37), c at {phases['c']['actual_start_s']}-{phases['c']['actual_end_s']} (planned 40-44)"
    )
