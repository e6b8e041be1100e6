"""KEDA runs: each trigger's metric is recorded from the first row, and the why analysis names it
as the user wrote it ("prometheus: <trigger name or query>"), not as KEDA's HPA does (s0-prometheus).

On the twin, not the emulator or the test bed: the columns are declared by the runner from the
ScaledObject before KEDA's HPA exists, whatever the backend (both backends report KEDA's readings
under their triggers' names), so no API server behaviour is involved; the twin plays KEDA's
operator creating its HPA only once the run has applied the ScaledObject, as a cluster does.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from hpa_experiments.analysis.load import load_run
from hpa_experiments.analysis.why import scale_events
from hpa_experiments.cli import main
from hpa_experiments.keda_names import display_name
from tests.support.cli import REPO

CONFIG = REPO / "experiment-configs" / "high-load-keda.yaml"
COMBINED = REPO / "manifests" / "keda" / "scaledobject-vllm-combined.yaml"
QUEUE_QUERY = 'sum(vllm:num_requests_waiting{namespace="hpa-exp"})'


def combined(named: bool) -> dict[str, Any]:
    doc = yaml.safe_load(COMBINED.read_text())
    if not named:
        for trigger in doc["spec"]["triggers"]:
            trigger.pop("name", None)
    return doc


def keda_run(folder: Path, scaled_object: dict[str, Any]) -> Path:
    folder.mkdir()
    (folder / "so.yaml").write_text(yaml.safe_dump(scaled_object))
    doc = yaml.safe_load(CONFIG.read_text())
    doc["autoscaler"]["manifest"] = str(folder / "so.yaml")
    doc["jobs"] = [{"name": "only", "rate": 40, "duration": 240}]
    doc["cooldown"]["duration"] = 30
    (folder / "exp.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(SystemExit) as exit_info:
        main(["run", str(folder / "exp.yaml"), "-o", str(folder / "out")])
    assert exit_info.value.code in (0, None)
    [run_dir] = (folder / "out").iterdir()
    return run_dir


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("keda-names")
    return {name: keda_run(base / name, combined(name == "named")) for name in ("named", "unnamed")}


def test_unnamed_triggers_are_recorded_and_shown_by_their_query(runs: dict[str, Path]) -> None:
    frame = pd.read_csv(runs["unnamed"] / "metrics.csv")
    assert not [c for c in frame.columns if "s0-prometheus" in c], "KEDA's raw name is not a column"
    for column in ("hpa_s0_prometheus", "hpa_s0_prometheus_target", "hpa_s0_prometheus_ratio"):
        assert frame[column].notna().any(), f"{column} never filled"
    events = scale_events(load_run(runs["unnamed"]))
    assert events, "the run scales up"
    names = {m["metric"]: m["name"] for m in events[0]["metrics"]}
    assert names["hpa_s0_prometheus"] == f"prometheus: {QUEUE_QUERY}"  # the raw column stays beside it
    assert "prometheus: sum(vllm:" in events[0]["line"] and "s1_prometheus" not in events[0]["line"]


def test_named_triggers_fill_the_why_columns_under_their_names(runs: dict[str, Path]) -> None:
    frame = pd.read_csv(runs["named"] / "metrics.csv")
    assert not [c for c in frame.columns if "prometheus" in c], list(frame.columns)
    for column in ("num_requests_waiting_ratio", "kv_cache_usage_perc_proposed"):
        assert frame[column].notna().any(), f"{column} never filled"
    events = scale_events(load_run(runs["named"]))
    assert {m["name"] for m in events[0]["metrics"]} == {"queue", "KV cache"}
    assert all(m["ratio"] is not None for e in events for m in e["metrics"]), "recorded, not recomputed"


def test_display_names() -> None:
    unnamed, named = combined(False), combined(True)
    named["spec"]["triggers"][0]["name"] = "waiting_total"
    short = {"num_requests_waiting": "queue"}
    assert display_name("num_requests_waiting", named, short) == "queue"
    assert display_name("hpa_waiting_total", named, short) == "prometheus: waiting_total"
    assert display_name("hpa_s0-prometheus", named, short) == "prometheus: waiting_total"  # an older run's column
    assert display_name("hpa_s0_prometheus", unnamed, short) == f"prometheus: {QUEUE_QUERY}"
    long = copy.deepcopy(unnamed)
    long["spec"]["triggers"][0]["metadata"]["query"] = "sum(" + "x" * 100 + ")"
    assert display_name("hpa_s0_prometheus", long, short).endswith("...")
    assert display_name("hpa_other", None, short) == "other"
