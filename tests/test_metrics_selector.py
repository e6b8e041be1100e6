"""`metrics.selector`: extra label matchers in every standard query, validated and checked by the preflight.

The preflight test uses kmock's emulator for the Kubernetes side (nothing of the selector
reaches the API server) and the real Prometheus for the series; the twin run checks that the
scoped queries still find the twin's series (pods `vllm-<n>`).
"""

from __future__ import annotations

import csv
import time
from pathlib import Path

import pytest
import yaml

from hpa_experiments.backends.kube.backend import KubeBackend, KubeSettings
from hpa_experiments.backends.kube.preflight import preflight
from hpa_experiments.backends.kube.prom import PromSettings
from hpa_experiments.backends.kube.retry import RetryPolicy
from hpa_experiments.column_queries import MetricNames, run_queries
from hpa_experiments.config import config_from_data
from hpa_experiments.errors import ConfigError
from tests.support import kube_emulator
from tests.test_sim_run import run_sim, small_config

kube_cluster = kube_emulator.kube_cluster
REPO = Path(__file__).resolve().parents[1]


def config(tmp_path: Path, selector: object, **extra: object):
    raw = {
        "name": "sel",
        "namespace": "bench",
        "model_name": "m",
        "hpa": {"enabled": False},
        "jobs": [{"name": "a", "rate": 1, "duration": 10}],
        "metrics": {"selector": selector},
        **extra,
    }
    return config_from_data(raw, tmp_path / "sel.yaml")


def test_every_standard_query_carries_the_matchers_and_dcgm_queries_do_not(tmp_path):
    cfg = config(
        tmp_path,
        ['pod=~"vllm-.*"', 'role="decode"'],
        **{"metrics": {"selector": ['pod=~"vllm-.*"', 'role="decode"'], "prometheus": {"mine": {"query": "sum(up)"}}}},
    )
    assert cfg.metrics.selector == 'pod=~"vllm-.*",role="decode"'
    queries = run_queries(cfg, MetricNames())
    scoped = '{model_name="m",namespace="bench",pod=~"vllm-.*",role="decode"}'
    dcgm = {"gpu_power_w", "gpu_utilization_pct", "gpu_count"}
    for column, promql in queries.items():
        if column in dcgm or column == "query_mine":
            assert 'role="decode"' not in promql, column
        else:
            assert scoped in promql, column
    assert queries["prom_requests_waiting"] == f"sum(vllm:num_requests_waiting{scoped})"


def test_no_selector_leaves_the_queries_as_before(tmp_path):
    queries = run_queries(config(tmp_path, ""), MetricNames())
    assert queries["prom_requests_waiting"] == 'sum(vllm:num_requests_waiting{model_name="m",namespace="bench"})'


@pytest.mark.parametrize(
    ("selector", "message"),
    [
        (
            "pod=~vllm-.*",
            "metrics.selector: not valid PromQL label matchers (unexpected character inside braces: "
            '\'-\'); write them as inside braces, e.g. pod=~"vllm-.*",role="decode"',
        ),
        ('pod=~"(vllm"', "metrics.selector: not valid PromQL label matchers (illegal regex for (vllm)"),
        ('__name__="x"', "metrics.selector: must not match __name__: the standard queries choose the metric names"),
        (
            'a="1" or b="2"',
            'metrics.selector: must be label matchers joined by commas, e.g. pod=~"vllm-.*",role="decode"',
        ),
    ],
)
def test_an_invalid_selector_is_a_config_error_with_its_key_path(tmp_path, selector, message):
    with pytest.raises(ConfigError) as caught:
        config(tmp_path, selector)
    [problem] = caught.value.problems
    assert problem.startswith(message), problem


def test_validate_names_the_file_and_field_and_exits_2(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "bad.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "x",
                "hpa": {"enabled": False},
                "jobs": [{"name": "a", "rate": 1, "duration": 10}],
                "metrics": {"selector": "role=decode"},
            }
        )
    )
    done = subprocess.run(
        [sys.executable, "-m", "hpa_experiments", "validate", str(path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert f"{path}: invalid experiment config: metrics.selector: not valid PromQL label matchers" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_preflight_checks_the_series_with_the_selector(kube_cluster, prometheus, tmp_path):
    """Only prefill pods export the series: a decode selector matches nothing and the role values are named."""
    now = time.time()
    names = ["vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc"]
    prometheus.push(
        [
            (
                {"__name__": n, "model_name": "m", "namespace": "bench", "pod": "vllm-p-0", "role": "prefill"},
                [(now - 5, 1.0), (now, 2.0)],
            )
            for n in names
        ]
    )
    backend = KubeBackend(
        KubeSettings(kubeconfig=str(kube_cluster.kubeconfig)),
        PromSettings(url=prometheus.url),
        namespace="bench",
        deployment="vllm",
        hpa_name="",
        run_id="r1",
        retry=RetryPolicy(max_attempts=2, max_elapsed=2.0, base_delay=0.01, max_delay=0.05),
    )
    cfg = config(tmp_path, 'role="decode"', **{"metrics": {"selector": 'role="decode"', "percentiles": [0.5]}})
    report = preflight(backend, queries=lambda n: run_queries(cfg, n))
    [problem] = report.problems
    assert problem.startswith(
        "column(s) prom_requests_running, prom_requests_waiting, prom_kv_cache_usage_avg, "
        "prom_kv_cache_usage_max: no series of vllm:num_requests_running, "
    )
    assert problem.endswith(
        'match {model_name="m",namespace="bench",role="decode"} (role="decode" matches none of the values '
        'Prometheus has). Prometheus has these metrics with model_name="m"; namespace="bench"; role="prefill"; '
        'pod="vllm-p-0". Fix: correct metrics.selector (or the query in metrics.prometheus) to labels the '
        "series carry"
    )


@pytest.mark.slow
def test_a_twin_run_with_a_selector_matching_every_pod_records_the_same_values(tmp_path):
    """The twin's pods are vllm-<n>: scoped to pod=~"vllm-.*" the columns equal the unscoped run's."""

    def run(selector: str | None, name: str) -> list[dict[str, str]]:
        path = small_config(tmp_path, name=name)
        if selector is not None:
            raw = yaml.safe_load(path.read_text())
            raw["metrics"] = {"selector": selector}
            path.write_text(yaml.safe_dump(raw))
        with (run_sim(path, tmp_path / name) / "metrics.csv").open(newline="") as fh:
            return list(csv.DictReader(fh))

    scoped, plain = run('pod=~"vllm-.*"', "scoped"), run(None, "plain")
    columns = ["ttft_ms", "itl_p90_ms", "prom_requests_running", "prom_requests_waiting", "request_rate_per_min"]
    assert [[r[c] for c in columns] for r in scoped] == [[r[c] for c in columns] for r in plain]
    assert sum(1 for r in scoped if r["ttft_ms"]) > len(scoped) / 3
    nothing = run('pod=~"other-.*"', "nothing")  # and a selector that matches no pod leaves them empty
    assert all(r["prom_requests_running"] == "" for r in nothing)
