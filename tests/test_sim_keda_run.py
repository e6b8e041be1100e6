"""Scale to zero on the twin, end to end: KEDA's polls recorded and checked against the run's files.

Pods start fast here (pending 5 s + loading 20 s, readiness from 10 s every 5 s: Ready 25 s after
creation, worked out in `POD_READY_S`), so the whole run is short; a load Job sends its first
request 40 s after it starts, so KEDA's first poll in the run finds no load and scales to zero.
The expected times are derived from the recorded KEDA polls by the rules of docs/keda.md, not
taken from the run's own output.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from hpa_experiments import Experiment
from hpa_experiments.backends.sim.backend import VIRTUAL_EPOCH
from hpa_experiments.backends.sim.keda import KedaOperator

POLL_S, COOLDOWN_S, SCRAPE_S = 15, 60, 1.0
# pod created at c: Running at c + 5; engine up at c + 25; probes from c + 15 every 5 s -> Ready at c + 25
POD_READY_S = 25.0


def scaled_object(*triggers: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": "zero", "namespace": "hpa-exp"},
        "spec": {
            "scaleTargetRef": {"name": "vllm"},
            "pollingInterval": POLL_S,
            "cooldownPeriod": COOLDOWN_S,
            "minReplicaCount": 0,
            "maxReplicaCount": 4,
            "triggers": list(triggers),
        },
    }


def trigger(name: str, query: str, threshold: str) -> dict[str, Any]:
    return {
        "type": "prometheus",
        "name": name,
        "metadata": {"serverAddress": "http://p:9090", "query": query, "threshold": threshold},
    }


IN_FLIGHT = trigger("in_flight", 'sum(hpa_exp_gateway_requests_in_flight{namespace="hpa-exp"})', "200")
RATE = trigger("rate", 'sum(rate(hpa_exp_gateway_requests_total{namespace="hpa-exp"}[1m]))', "10")
QUEUE = trigger("queue", 'sum(vllm:num_requests_waiting{namespace="hpa-exp"})', "5")


def run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, so: dict[str, Any], at_zero: str = "wait"
) -> tuple[list[tuple[float, int, int | None, str]], Any]:
    """Run two 2 req/s jobs 600 s apart; returns KEDA's polls (elapsed s, replicas, KEDA's target, Active)."""
    import yaml

    tmp_path.mkdir(exist_ok=True)
    (tmp_path / "so.yaml").write_text(yaml.safe_dump(so))
    polls: list[tuple[float, int, int | None, str]] = []
    original = KedaOperator.poll

    def recording(self: KedaOperator, t: float, replicas: int) -> int | None:
        target = original(self, t, replicas)
        polls.append((t - VIRTUAL_EPOCH, replicas, target, self.conditions["Active"].status))
        return target

    monkeypatch.setattr(KedaOperator, "poll", recording)
    config = {
        "name": "zero",
        "autoscaler": {"kind": "keda", "manifest": "so.yaml"},
        "jobs": [
            {"name": "a", "rate": 2, "duration": 150, "start_delay": 0},
            {"name": "b", "rate": 2, "duration": 150, "start_delay": 600},
        ],
        "cooldown": {"enabled": True, "duration": 200},
        "simulation": {
            "scrape_interval": SCRAPE_S,
            "parameters": {
                "pod_load_mean_s": 20,
                "pod_load_spread_s": 0,
                "pod_image_cached_share": 1.0,  # no image pulls: the cold start is exact
                "readiness_initial_delay_s": 10,
                "job_start_delay_s": 40,
                "gateway_at_zero": at_zero,
            },
        },
    }
    result = Experiment(config, base_dir=tmp_path).run(backend="sim", output_dir=tmp_path / "runs")
    assert result.status == "completed"
    return polls, result


def test_scale_to_zero_and_back_with_cold_starts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    polls, result = run(tmp_path, monkeypatch, scaled_object(IN_FLIGHT, QUEUE))
    metrics, requests = result.metrics, result.requests
    to_zero = [t for t, replicas, target, _ in polls if target == 0]
    from_zero = [t for t, replicas, target, _ in polls if replicas == 0 and target == 1]
    assert len(to_zero) == 3  # at the start (never active), after job a, after job b (in the cooldown)
    assert len(from_zero) == 2  # once per job
    for t in to_zero[1:]:
        # scaled to zero at the first poll strictly after floor(last active poll) + cooldownPeriod
        last_active = max(p for p, _, _, active in polls if p < t and active == "True")
        deadline = math.floor(VIRTUAL_EPOCH + last_active) + COOLDOWN_S - VIRTUAL_EPOCH
        assert deadline < t <= deadline + POLL_S
        # the replicas column follows at the next HPA sync (<= 15 s) and the next sample (<= 5 s)
        after = metrics[(metrics.elapsed_s >= t) & (metrics.elapsed_s <= t + 20)]
        assert (after.replicas == 0).any() and (after.ready_replicas == 0).any()
    held = requests[requests.gateway_wait_ms > 0].sort_values("arrival_s")
    cold = result.summary["cold_starts"]
    assert cold["episodes"] == 2 and cold["requests_at_zero"] == len(held) and cold["failed_no_replica"] == 0
    for t_up, episode in zip(from_zero, cold["list"], strict=True):
        first = episode["start_s"]
        # KEDA sees the request at the first poll after the first scrape after its arrival
        assert first <= t_up and t_up - POLL_S < first + SCRAPE_S
        # cold start = wait for that poll + pod start (25 s) + the first engine step (a few ms)
        expected = (t_up - first) + POD_READY_S
        assert expected <= episode["cold_start_s"] <= expected + 0.2
        released = held[(held.arrival_s >= first) & (held.arrival_s < t_up + POD_READY_S)]
        assert len(released) == episode["requests"]
        # every held request reached the pod the moment it became Ready
        assert ((released.arrival_s + released.gateway_wait_ms / 1000) - (t_up + POD_READY_S)).abs().max() < 1e-3
    # while at zero: KEDA not active, no GPU power counted as missing
    zero = metrics[(metrics.replicas == 0) & (metrics.ready_replicas == 0)]
    assert len(zero) > 50 and (zero.keda_active.dropna() == 0).all()
    assert result.summary["energy"]["run"]["power_coverage"] > 0.95
    assert cold["zero_replicas_s"] == pytest.approx(5.0 * len(metrics[metrics.replicas == 0]), abs=5.0)
    events = result.events
    assert (events.kind == "scaled_object").sum() >= 4 + 4  # initial conditions, then Active flips
    from hpa_experiments.analysis.plots import standard_figure

    figure = standard_figure(result.run_data)
    labels = [text.get_text() for ax in figure.axes if ax.get_legend() for text in ax.get_legend().get_texts()]
    assert "KEDA active" in labels


def test_refused_at_zero_needs_a_request_counter_to_wake_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A gateway that refuses requests at zero never has one in flight: with in-flight and queue triggers
    # only, nothing ever wakes the Deployment up again ...
    polls, result = run(tmp_path / "1", monkeypatch, scaled_object(IN_FLIGHT, QUEUE), at_zero="fail")
    assert not [t for t, replicas, target, _ in polls if replicas == 0 and target]
    assert (result.requests.outcome == "failed_no_replica").all()
    # ... the request rate does.
    _, result = run(tmp_path / "2", monkeypatch, scaled_object(IN_FLIGHT, RATE, QUEUE), at_zero="fail")
    requests = result.requests
    refused = requests[requests.outcome == "failed_no_replica"]
    cold = result.summary["cold_starts"]
    assert len(refused) > 0 and cold["failed_no_replica"] == len(refused) == cold["requests_at_zero"]
    assert cold["episodes"] == 2
    for episode in cold["list"]:
        assert episode["cold_start_s"] is None  # the first request was refused: it never got a token
        # the first token of a later request: KEDA poll + pod start after the first refusal
        assert POD_READY_S < episode["first_token_after_s"] < POD_READY_S + POLL_S + SCRAPE_S + 60
    assert (refused.gateway_wait_ms == 0).all() and refused.replica.isna().all()
    assert result.summary["requests"]["by_outcome"]["failed_no_replica"] == len(refused)


def test_hpa_runs_keep_their_rows(tmp_path: Path) -> None:
    """An HPA config has no keda_* columns and no cold starts (a Ready pod is always there)."""
    config = {
        "name": "hpa",
        "autoscaler": {
            "kind": "hpa",
            "manifest": str(Path(__file__).resolve().parents[1] / "manifests" / "hpa-vllm-queue.yaml"),
        },
        "jobs": [{"name": "a", "rate": 2, "duration": 120}],
    }
    result = Experiment(config, base_dir=tmp_path).run(backend="sim", output_dir=tmp_path / "runs")
    assert not any(c.startswith("keda_") for c in result.metrics.columns)
    assert result.summary["cold_starts"]["episodes"] == 0
    assert isinstance(result.requests, pd.DataFrame) and (result.requests.gateway_wait_ms == 0).all()


def test_dashboard_says_whether_keda_is_active() -> None:
    from rich.console import Console

    from hpa_experiments.dashboard import _gauges

    def text(row: dict[str, Any]) -> str:
        console = Console(width=120, record=True)
        console.print(_gauges(row))
        return console.export_text()

    assert "KEDA not active" in text({"keda_active": 0, "keda_fallback": 0})
    assert "KEDA active · FALLBACK" in text({"keda_active": 1, "keda_fallback": 1})
    assert "KEDA" not in text({"num_requests_waiting": 3.0})  # an HPA run has no keda_* cells


def test_dashboard_shows_every_metric_the_autoscaler_scales_on() -> None:
    """A KEDA trigger or custom HPA metric (an hpa_<name> column with a target) gets a gauge of its own;
    the other hpa_* columns (ratio, proposal, last scale) have no target and are not gauges."""
    from rich.console import Console

    from hpa_experiments.dashboard import _gauges, other_metrics

    row = {
        "num_requests_waiting": 3.0,
        "num_requests_waiting_target": 20.0,
        "hpa_running_total": 75.0,
        "hpa_running_total_target": 60.0,
        "hpa_running_total_ratio": 1.25,
        "hpa_running_total_proposed": 5,
        "hpa_last_scale_s": 30.0,
    }
    assert other_metrics(row) == ["hpa_running_total"]
    console = Console(width=120, record=True)
    console.print(_gauges(row))
    lines = console.export_text().splitlines()
    assert lines[0].startswith("queue 3.0 / target 20.0")
    assert lines[1] == "running_total 75.00 / target 60.00 ▲ over"
    assert other_metrics({"num_requests_waiting": 1.0, "hpa_last_scale_s": 3.0}) == []
