"""SIGTERM at 20 moments and SIGKILL at 5 during `hpa-exp run` on Kubernetes, then `hpa-exp cleanup`.

Each time: zero Jobs left, every complete CSV line parses (a SIGKILL may cut the last line), no
tick is missing before the end, and run.json tells the truth ("interrupted" after SIGTERM; after
SIGKILL "running" until cleanup marks it, shown by `hpa-exp runs` as incomplete).  Runs are short
(2.5 s plans, 0.5 s interval) and five run at a time against the same emulator and Prometheus.
"""

from __future__ import annotations

import csv
import io
import json
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from hpa_experiments.analysis.load import TEXT_COLUMNS as METRICS_TEXT_COLUMNS
from hpa_experiments.cli import main
from tests.support.kube_emulator import JOBS, KubeEmulator
from tests.support.prometheus import PrometheusServer
from tests.test_run_kubernetes_e2e import NS, hpa_exp, prom, write_config  # noqa: F401 - `prom` is a fixture

pytestmark = pytest.mark.slow  # every test here takes seconds (benchmarks/README.md: the fast loop)

# text, not numbers: metrics.csv's own (the reader's list) and those of events.csv and phases.csv
TEXT_COLUMNS = {*METRICS_TEXT_COLUMNS, "time", "kind", "detail", "job", "resource_name", "outcome"}
SIGTERM_DELAYS = [round(i * 2.9 / 19, 2) for i in range(20)]  # 0 .. 2.9 s after the run directory appears
SIGKILL_DELAYS = [0.1, 0.6, 1.1, 1.6, 2.1]
BATCH = 5


@dataclass
class Outcome:
    sig: signal.Signals
    delay: float
    returncode: int
    run: Path
    jobs_before_cleanup: int
    partial_lines: int
    rows: int


def run_json_path(out: Path) -> Path | None:
    found = list(out.glob("*/run.json")) if out.exists() else []
    return found[0] if found else None


def signal_after_start(process: subprocess.Popen, out: Path, delay: float, sig: signal.Signals) -> None:
    deadline = time.monotonic() + 60
    while run_json_path(out) is None and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.01)
    time.sleep(delay)
    if process.poll() is None:
        process.send_signal(sig)


def complete_rows(path: Path) -> tuple[list[dict[str, str]], int]:
    """The rows of every complete line (all must parse) and the number of partial trailing lines."""
    text = path.read_text(encoding="utf-8")
    complete, rest = text[: text.rfind("\n") + 1], text[text.rfind("\n") + 1 :]
    lines = list(csv.reader(io.StringIO(complete)))
    header, rows = lines[0], lines[1:]
    parsed = []
    for cells in rows:
        assert len(cells) == len(header), (path, cells)
        row = dict(zip(header, cells, strict=True))
        for column, value in row.items():
            if value and column not in TEXT_COLUMNS:
                float(value)  # raises if a number was cut or garbled
        parsed.append(row)
    return parsed, int(bool(rest))


def jobs_of(kube: KubeEmulator, run_id: str) -> list[str]:
    return [n for n in kube.names(JOBS, NS) if n.endswith(run_id)]


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    out, err = capsys.readouterr()
    return int(exit_info.value.code or 0), out + err


def run_and_signal(
    cases: list[tuple[signal.Signals, float]], kube: KubeEmulator, prom_url: str, tmp_path: Path
) -> list[tuple[signal.Signals, float, subprocess.Popen, Path]]:
    started = []
    for sig, delay in cases:
        folder = tmp_path / f"{sig.name}-{delay}"
        folder.mkdir()
        config = write_config(
            folder,
            [{"name": "a", "rate": 1, "duration": 1.5}, {"name": "b", "rate": 1, "duration": 1.5, "start_delay": 0.5}],
            cooldown={"enabled": True, "duration": 0.5},
            metrics={"interval": 0.5, "rate_window": "10s"},
        )
        out = folder / "out"
        process = subprocess.Popen(
            hpa_exp(str(config), kube=kube, prom_url=prom_url, out=out),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        threading.Thread(target=signal_after_start, args=(process, out, delay, sig), daemon=True).start()
        started.append((sig, delay, process, out))
    for _, _, process, _ in started:
        process.wait(timeout=120)
    return started


def check_one(
    sig: signal.Signals, delay: float, process: subprocess.Popen, out: Path, kube: KubeEmulator, capsys
) -> Outcome:
    stderr = process.stderr.read() if process.stderr else ""
    path = run_json_path(out)
    assert path is not None, f"{sig.name} at {delay}: no run directory ({stderr[-500:]})"
    run = path.parent
    info = json.loads(path.read_text())
    jobs_before = len(jobs_of(kube, info["id"]))
    if sig == signal.SIGTERM:
        assert "Traceback" not in stderr
        if process.returncode == 130 and "while computing the summary" in stderr:  # the run had ended
            assert info["status"] == "completed"
        elif process.returncode == 130:
            assert info["status"] == "interrupted" and info["reason"] == "interrupted by SIGTERM"
        else:  # the signal came after the run had ended
            assert process.returncode in (0, -signal.SIGTERM) and info["status"] == "completed", (delay, stderr[-800:])
        assert jobs_before == 0  # the run cleaned up itself
    else:
        assert process.returncode == -signal.SIGKILL
        assert info["status"] == "running"
        code, listing = cli(capsys, "runs", "-d", str(out))
        assert code == 0 and "incomplete" in listing, listing
    metrics, partial = complete_rows(run / "metrics.csv")
    events, partial_events = complete_rows(run / "events.csv")
    if (run / "phases.csv").exists():
        complete_rows(run / "phases.csv")
    # no tick lost: rows are exactly k * interval for k = 0 .. n-1
    assert [float(r["elapsed_s"]) for r in metrics] == [k * 0.5 for k in range(len(metrics))]
    assert events and events[0]["kind"] == "run_started"

    code, text = cli(capsys, "cleanup", str(run), "--kubeconfig", str(kube.kubeconfig))
    assert code == 0, text
    assert jobs_of(kube, info["id"]) == []
    after = json.loads(path.read_text())
    if sig == signal.SIGKILL:
        assert after["status"] == "interrupted"
        assert after["reason"].startswith("process ended without cleanup;")
    else:
        assert after["status"] == info["status"]  # already true; cleanup leaves it
    return Outcome(sig, delay, process.returncode, run, jobs_before, partial + partial_events, len(metrics))


def test_sigterm_and_sigkill_at_many_moments_then_cleanup(
    kube_cluster: KubeEmulator,
    prom: PrometheusServer,  # noqa: F811 - the imported fixture
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cases = [(signal.SIGTERM, d) for d in SIGTERM_DELAYS] + [(signal.SIGKILL, d) for d in SIGKILL_DELAYS]
    outcomes: list[Outcome] = []
    for first in range(0, len(cases), BATCH):
        for sig, delay, process, out in run_and_signal(cases[first : first + BATCH], kube_cluster, prom.url, tmp_path):
            outcomes.append(check_one(sig, delay, process, out, kube_cluster, capsys))
    assert kube_cluster.names(JOBS, NS) == []
    terms = [o for o in outcomes if o.sig == signal.SIGTERM]
    kills = [o for o in outcomes if o.sig == signal.SIGKILL]
    interrupted = [o for o in terms if o.returncode == 130]
    assert len(terms) == 20 and len(kills) == 5
    assert len(interrupted) >= 15  # most signals land while the run is going
    assert any(o.jobs_before_cleanup for o in kills)  # some kills did leave Jobs for cleanup to delete
    with capsys.disabled():
        print(
            f"\nSIGTERM: {len(interrupted)}/20 interrupted (others after the end), 0 Jobs left; "
            f"SIGKILL: 5, Jobs left before cleanup {sum(o.jobs_before_cleanup for o in kills)}, after 0; "
            f"partial trailing lines {sum(o.partial_lines for o in outcomes)}; rows {sum(o.rows for o in outcomes)}"
        )
