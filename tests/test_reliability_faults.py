"""Fault injection during full `hpa-exp run`s on Kubernetes (emulator over HTTP, real Prometheus).

1. The API answers with intermittent 500/503, 429 with Retry-After, and dropped connections, also
   after a Job create or delete was processed: the run completes and every Job is created and
   deleted exactly once (a create whose answer was lost is adopted through a 409, not duplicated).
2. Prometheus is stopped for 20 s mid-run and restarted on the same port and data: the run
   completes, the gap is marked in events.csv, and the final range queries fill exactly what
   Prometheus had stored.
"""

from __future__ import annotations

import csv
import json
import subprocess
import threading
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest

from hpa_experiments.column_queries import MetricNames, standard_queries
from tests.support.kube_emulator import JOBS, KubeEmulator
from tests.support.prometheus import PrometheusServer
from tests.support.vllm_exporter import VllmExporter, scrape_config
from tests.test_run_kubernetes_e2e import (  # noqa: F401 - `prom` is a fixture
    NS,
    hpa_exp,
    prom,
    read_csv,
    run_dir,
    wait_for_run_start,
    write_config,
)

pytestmark = pytest.mark.slow  # every test here takes seconds (benchmarks/README.md: the fast loop)


def test_api_faults_every_job_created_once_and_deleted_once(
    kube_cluster: KubeEmulator,
    prom: PrometheusServer,  # noqa: F811 - the imported fixture
    tmp_path: Path,
) -> None:
    """Emulator: faults are injected per request, which a real API server cannot do on demand.

    The create and delete faults aim at one Job each (by name), armed before the run, so they hit
    their request whatever the machine's load; arming them when an earlier Job appeared raced the
    run under load (the armed fault hit the next Job, or came after the request it aimed at).
    """
    config = write_config(
        tmp_path,
        [
            {"name": "a", "rate": 2, "duration": 5},
            {"name": "b", "rate": 2, "duration": 4, "start_delay": 2.5},
            {"name": "c", "rate": 2, "duration": 3, "start_delay": 4},
        ],
        output={"results_grace": 0},  # Jobs deleted on plan, so every Job is deleted by the run itself
    )
    out = tmp_path / "out"
    faults = [  # nothing but the run POSTs or DELETEs Jobs
        kube_cluster.fail_next(1, 500, method="POST", path="/jobs$", name="^a-"),
        kube_cluster.fail_next(1, 429, retry_after=0.5, method="POST", path="/jobs$", name="^a-"),
        kube_cluster.fail_next(1, 503, method="DELETE", path="/jobs/a-"),
        # b's create is applied but its answer lost (adopted after its 409); c's is lost before it is applied
        kube_cluster.drop_next(1, method="POST", path="/jobs$", name="^b-", after_processing=True),
        kube_cluster.drop_next(1, method="POST", path="/jobs$", name="^c-"),
        # b's delete is applied but its answer lost (the retry then finds it gone: 404)
        kube_cluster.drop_next(1, method="DELETE", path="/jobs/b-", after_processing=True),
    ]
    expected_posts = {"a": 3, "b": 2, "c": 2}
    expected_deletes = {"a": 2, "b": 2, "c": 1}

    stdout, stderr = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    with stdout.open("w") as out_fh, stderr.open("w") as err_fh:
        process = subprocess.Popen(
            hpa_exp(str(config), kube=kube_cluster, prom_url=prom.url, out=out), stdout=out_fh, stderr=err_fh, text=True
        )
        try:
            # Reads at tick time (any tick will do), armed once the run directory exists: preflight makes
            # the same reads.  No timeout here: on a loaded machine preflight can take longer than any
            # fixed wait, and a wait that timed out armed these faults into preflight.
            while not out.exists() and process.poll() is None:
                time.sleep(0.02)
            faults.append(kube_cluster.fail_next(3, 500, method="GET", path="horizontalpodautoscalers"))
            faults.append(kube_cluster.fail_next(2, 429, retry_after=0.3, method="GET", path="/jobs$"))
            faults.append(kube_cluster.drop_next(2, method="GET", path="deployments"))
            returncode = process.wait(timeout=180)
        finally:
            process.kill()
    output = stderr.read_text() + stdout.read_text()
    assert returncode == 0, output
    assert len(faults) == 9 and all(f.remaining == 0 for f in faults), [f for f in faults if f.remaining]

    run = run_dir(out)
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "completed", info["reason"]
    suffix = "-" + info["id"]
    posts = Counter(
        r.data["metadata"]["name"].removesuffix(suffix) for r in kube_cluster.requests_to("POST", r"/jobs$")
    )
    deletes = Counter(
        r.path.rsplit("/", 1)[1].removesuffix(suffix) for r in kube_cluster.requests_to("DELETE", "/jobs/")
    )
    assert posts == expected_posts
    assert deletes == expected_deletes
    assert "adopted, not recreated" in output, output  # b: 409 with our labels
    assert kube_cluster.names(JOBS, NS) == []
    phases = {p["job"]: p for p in read_csv(run / "phases.csv")}
    assert {p["outcome"] for p in phases.values()} == {"completed"}
    # every tick of the 7 s plan was recorded despite the faults
    rows = read_csv(run / "metrics.csv")
    assert [float(r["elapsed_s"]) for r in rows] == [float(k) for k in range(8)]
    # HPA reads were retried: a row whose tick could not read in time (the loop held up by the retries
    # before it, a read longer than the interval, or one still unanswered from an earlier tick) has an
    # empty cell, counted in run.json, and the state is obtained again once the faults are consumed
    assert {r["replicas"] for r in rows} <= {"1", ""} and rows[-1]["replicas"] == "1"
    held = info["sampling"]["answers_late"].get("hpa", 0) + info["sampling"]["cells_skipped"].get("hpa", 0)
    assert held <= sum(r["replicas"] == "" for r in rows)
    details = [e["detail"] for e in read_csv(run / "events.csv") if e["kind"] == "warning"]
    lost = sum(d.startswith("HPA/Deployment state: not obtained") for d in details)
    assert lost == sum(d.startswith("hpa: obtained again") for d in details)


def test_prometheus_outage_is_marked_and_filled_from_what_prometheus_stored(
    kube_cluster: KubeEmulator, tmp_path_factory: pytest.TempPathFactory
) -> None:
    exporter = VllmExporter(model_name="m").start()
    server = PrometheusServer(tmp_path_factory.mktemp("prom-outage"), [scrape_config(exporter, NS)]).start()
    tmp_path = tmp_path_factory.mktemp("outage-run")
    try:
        server.wait_for('sum(rate(vllm:time_to_first_token_seconds_count{namespace="bench"}[10s])) > 0')
        config = write_config(tmp_path, [{"name": "steady", "rate": 5, "duration": 38}])
        out = tmp_path / "out"
        outage: dict[str, float] = {}

        def stop_and_restart() -> None:
            wait_for_run_start(out)
            time.sleep(8)
            outage["stop"] = time.time()
            server.stop()
            time.sleep(20)
            outage["start"] = time.time()
            server.start()
            outage["ready"] = time.time()

        chaos = threading.Thread(target=stop_and_restart, daemon=True)
        chaos.start()
        done = subprocess.run(
            hpa_exp(str(config), kube=kube_cluster, prom_url=server.url, out=out),
            capture_output=True,
            text=True,
            timeout=120,
        )
        chaos.join(30)
        assert done.returncode == 0, done.stderr[-3000:]
        run = run_dir(out)
        info = json.loads((run / "run.json").read_text())
        assert info["status"] == "completed"

        events = read_csv(run / "events.csv")
        warnings = [e for e in events if e["kind"] == "warning"]
        started = [e for e in warnings if e["detail"].startswith("ttft_ms: not obtained")]
        recovered = [e for e in warnings if e["detail"].startswith("ttft_ms: obtained again after")]
        assert len(started) == 1 and len(recovered) == 1, warnings
        gap_from, gap_to = float(started[0]["elapsed_s"]), float(recovered[0]["elapsed_s"])
        t0 = info["t0_unix"]
        assert abs(t0 + gap_from - outage["stop"]) < 2.0
        assert outage["start"] - 1.0 < t0 + gap_to < outage["ready"] + 3.0
        missed_ticks = int(recovered[0]["detail"].split("after ")[1].split(" ")[0])
        assert 19 <= missed_ticks <= 30
        (fill,) = [e for e in events if e["kind"] == "range_fill"]
        filled, missed = (int(x) for x in fill["detail"].split("filled ")[1].split(" missed")[0].split(" of "))
        assert missed >= 19 * 13  # the 13 PromQL columns missed every outage tick

        # Each cell of the outage holds exactly what Prometheus (restarted, same data) answers for
        # that instant: gauges through the 5-minute lookback, rates only near the edges of the gap.
        queries = standard_queries(MetricNames(**info["config"]["metric_names"]), "m", NS, "10s", [0.5, 0.9, 0.99])
        rows = read_csv(run / "metrics.csv")
        outage_rows = [r for r in rows if gap_from <= float(r["elapsed_s"]) < gap_to]
        assert len(outage_rows) == missed_ticks
        present = 0
        for row in outage_rows[1:-1]:  # at the edges some queries of a tick were answered live, earlier
            at = datetime.fromisoformat(row["timestamp"].replace("Z", "+00:00")).timestamp()
            for column, promql in queries.items():
                answer = server.query(promql, at)
                value = float(answer[0]["value"][1]) if answer else float("nan")
                if value != value:  # no data (or NaN): the cell stays empty
                    assert row[column] == "", (row["elapsed_s"], column, row[column])
                else:
                    assert float(row[column]) == pytest.approx(value, rel=1e-6), (row["elapsed_s"], column)
                    present += 1
        # the fill wrote these cells (give or take the ticks at the edges, where some queries of a tick
        # were answered live)
        assert filled > 0 and abs(filled - present) <= 3 * len(queries)
        print(f"outage: {missed_ticks} ticks missed live, range queries filled {filled} of {missed} cells")
        # gauges were stored before the stop, so every outage row has them
        assert all(float(r["prom_requests_running"]) == 12 for r in outage_rows)
        # and the rows are complete apart from that: HPA and Deployment state on every tick
        assert all(r["replicas"] == "1" and r["ready_replicas"] == "1" for r in rows)
        with (run / "metrics.csv").open(newline="") as fh:
            assert all(len(r) == len(rows[0]) for r in csv.DictReader(fh))
    finally:
        server.stop()
        exporter.stop()
