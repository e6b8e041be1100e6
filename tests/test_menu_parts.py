"""Parts of `hpa-exp menu` that need no terminal: the config writer, the chart helpers, the
kubeconfig context, the end-of-run message, and the refusal to start without a terminal."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from hpa_experiments.config import load_config
from hpa_experiments.dashboard import DashboardObserver, Pace, bar, sparkline
from hpa_experiments.menu.config_writer import Answers, JobAnswer, render_config
from hpa_experiments.menu.kube_context import NO_CLUSTER, current_context, describe
from hpa_experiments.menu.live_run import Outcome
from hpa_experiments.menu.run_screen import outcome_text
from hpa_experiments.plan import build_plan
from hpa_experiments.runner import RunResult

REPO = Path(__file__).resolve().parents[1]
SHIPPED = sorted((REPO / "experiment-configs").glob("*.yaml"))


@pytest.mark.parametrize("source", SHIPPED, ids=lambda p: p.name)
@pytest.mark.parametrize("delays", [(0, 0), (0, 45)], ids=["sequential", "parallel"])
def test_written_config_validates_and_keeps_the_answers(
    source: Path, delays: tuple[float, float], tmp_path: Path
) -> None:
    base = load_config(source)
    answers = Answers(
        "my-run",
        "two: steps [test]",
        (JobAnswer("warm-up", 4, 60, delays[0]), JobAnswer("burst", 12.5, 150, delays[1])),
        20,
        75,
    )
    destination = tmp_path / "configs" / "my-run.yaml"
    destination.parent.mkdir()
    destination.write_text(render_config(base, answers, destination), encoding="utf-8")

    config = load_config(destination)
    plan = build_plan(config)
    assert (config.name, config.description) == ("my-run", "two: steps [test]")
    assert [(j.name, j.rate, j.duration, j.start_delay) for j in config.jobs] == [
        ("warm-up", 4.0, 60.0, delays[0]),
        ("burst", 12.5, 150.0, delays[1]),
    ]
    assert (config.cooldown.enabled, config.cooldown.duration) == (True, 75.0)
    if delays[1]:
        assert (plan.mode, plan.load_end, plan.peak_rps) == ("parallel", 195.0, 16.5)
    else:
        assert (plan.mode, plan.load_end, plan.peak_rps) == ("sequential", 230.0, 12.5)
    # Everything not asked is the base's, with paths still pointing at the same files.
    assert config.hpa_manifest == base.hpa_manifest
    assert config.output.base_dir == base.output.base_dir
    assert config.metrics == base.metrics and config.slo == base.slo and config.values == base.values
    assert config.simulation == base.simulation
    text = destination.read_text()
    assert "# Sequential mode (every start_delay is 0)" in text
    assert f"This file is in {plan.mode} mode." in text


def test_no_cooldown_answer_disables_the_cooldown(tmp_path: Path) -> None:
    base = load_config(SHIPPED[0])
    destination = tmp_path / "x.yaml"
    answers = Answers("x", "", (JobAnswer("only", 3, 30, 0),), 0, 0)
    destination.write_text(render_config(base, answers, destination), encoding="utf-8")
    config = load_config(destination)
    assert not config.cooldown.enabled
    assert build_plan(config).total == 30


def test_bar_and_sparkline() -> None:
    assert bar(0.5, 10) == "█████░░░░░"
    assert bar(2.0, 4) == "████" and bar(-1, 4) == "░░░░"
    assert sparkline([0, 4, 8, None, 8], top=8, width=10) == "▁▅█ █"
    assert sparkline(list(range(20)), top=19, width=5) == sparkline(list(range(15, 20)), top=19, width=5)


def _kubeconfig(path: Path, current: str) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": current,
                "clusters": [{"name": "c1", "cluster": {"server": "https://127.0.0.1:1"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "ctx-a", "context": {"cluster": "c1", "user": "u"}}],
            }
        )
    )
    return path


def test_current_context_from_the_kubeconfig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECONFIG", str(_kubeconfig(tmp_path / "config", "ctx-a")))
    context = current_context()
    assert context is not None and (context.name, context.cluster) == ("ctx-a", "c1")
    assert "kubernetes context ctx-a" in describe(context)


@pytest.mark.parametrize("content", [None, "::: not yaml", "apiVersion: v1\nkind: Config\n"])
def test_no_usable_kubeconfig_means_simulation_only(
    content: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "config"
    if content is not None:
        path.write_text(content)
    monkeypatch.setenv("KUBECONFIG", str(path))
    assert current_context() is None
    assert describe(None) == NO_CLUSTER == "no cluster: simulation available"


def test_end_of_run_messages(tmp_path: Path) -> None:
    stopped = RunResult(tmp_path / "r", "interrupted", 130, "interrupted from the menu")
    assert outcome_text(Outcome(stopped, None, 2)).plain == (
        f"stopped: 2 job(s) deleted, partial run kept in {tmp_path / 'r'}"
    )
    stuck = RunResult(tmp_path / "r", "interrupted", 130, "x", leftover_jobs=["job-a"])
    assert "Jobs are still present: job-a" in outcome_text(Outcome(stuck, None, 0)).plain
    failed = RunResult(tmp_path / "r", "failed", 1, "job x failed: OOMKilled")
    assert outcome_text(Outcome(failed, None, 0)).plain.startswith("failed: job x failed: OOMKilled")
    assert "could not start: boom" in outcome_text(Outcome(None, "boom", 0)).plain


@pytest.mark.slow
def test_not_a_terminal_exits_2_with_a_pointer_to_run() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "hpa_experiments", "menu"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert done.returncode == 2
    assert "hpa-exp menu needs an interactive terminal" in done.stderr
    assert "hpa-exp run experiment-configs/high-load-hpa.yaml --backend sim" in done.stderr
    assert "Traceback" not in done.stderr


class _VirtualClock:
    virtual = True


class _RunnerStub:
    clock = _VirtualClock()


def test_pace_replays_rows_at_the_chosen_speed() -> None:
    observer = DashboardObserver(pace=Pace("test", speed=500.0))
    observer.on_start(_RunnerStub())  # type: ignore[arg-type]
    started = time.monotonic()
    for k in range(21):  # 100 s of experiment at 500x: about 0.2 s
        observer.on_row({"elapsed_s": 5.0 * k, "replicas": 1})
    took = time.monotonic() - started
    assert 0.19 <= took < 2.0
    assert len(observer.snapshot()[0]) == 21


def test_full_speed_does_not_pause() -> None:
    observer = DashboardObserver(pace=Pace("full speed", speed=None))
    observer.on_start(_RunnerStub())  # type: ignore[arg-type]
    started = time.monotonic()
    for k in range(200):
        observer.on_row({"elapsed_s": 5.0 * k})
    assert time.monotonic() - started < 0.5
