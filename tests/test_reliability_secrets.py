"""No credential reaches a file or a stream of a run (issue 16, item 6).

Distinct secrets are planted in every place a config, a flag or the environment can hold one:
user and password in `prometheus.url`, a credential query parameter, `prometheus.headers`
values, the bearer token in an environment variable (`token_env`) and in a file
(`token_file`), the password in `--prometheus-url` and in `$HPA_EXP_PROMETHEUS_URL`, and the
kubeconfig's user token.  Then runs on the twin, a Kubernetes dry run, Kubernetes runs
against the emulator with a real Prometheus, a failing preflight and `hpa-exp report`; every
file of each run directory and both output streams of every command are searched.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.support.cli import hpa_exp
from tests.support.kube_emulator import KubeEmulator
from tests.support.prometheus import PrometheusServer
from tests.support.vllm_exporter import scraped_prometheus

pytestmark = pytest.mark.slow  # every test here takes seconds (benchmarks/README.md: the fast loop)

REPO = Path(__file__).resolve().parents[1]
JOB = REPO / "workloads" / "vllm-bench-serve.yaml"
NS = "bench"


def secret(kind: str) -> str:
    """A value that cannot occur by chance in any output (digits alone could: plots, timings)."""
    return f"{kind}-{secrets.token_hex(8)}"


class Planted:
    """All secrets of one test, and the places they go."""

    def __init__(self) -> None:
        self.config_user, self.config_password = secret("cfguser"), secret("cfgpass")
        self.query_token = secret("querytok")
        self.header_a, self.header_b = secret("headera"), secret("headerb")
        self.env_token, self.file_token = secret("envtoken"), secret("filetoken")
        self.flag_password, self.env_url_password = secret("flagpass"), secret("envurlpass")
        self.kube_token = secret("kubetoken")

    def all(self) -> list[str]:
        return [v for k, v in vars(self).items() if not k.startswith("_")]


def cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return hpa_exp(*args, cwd=cwd, timeout=120, env={**os.environ, **(env or {})})


def assert_nothing_leaked(planted: Planted, streams: list[str], folders: list[Path]) -> None:
    places = {f"stream {i}": text for i, text in enumerate(streams)}
    for folder in folders:
        files = [p for p in folder.rglob("*") if p.is_file()]
        assert files, f"{folder} is empty: nothing was checked"
        places.update({str(p): p.read_bytes().decode("utf-8", "replace") for p in files})
    leaks = [(where, s) for where, text in places.items() for s in planted.all() if s in text]
    assert leaks == []


def write_config(folder: Path, planted: Planted, **changes: object) -> Path:
    token_file = folder / "token"
    token_file.write_text(planted.file_token + "\n")
    doc = {
        "name": "secrets",
        "namespace": NS,
        "deployment": "vllm",
        "model_name": "m",
        "backend": "simulation",
        "hpa": {"enabled": True, "name": "vllm-hpa", "apply": False},
        "jobs": [{"name": "load", "rate": 5, "duration": 2, "manifest": str(JOB)}],
        "metrics": {"interval": 1, "rate_window": "10s"},
        "prometheus": {
            "url": f"https://{planted.config_user}:{planted.config_password}@prom.example:9090/"
            f"?access_token={planted.query_token}",
            "headers": {"X-Scope-OrgID": planted.header_a, "X-Api-Key": planted.header_b},
            "token_env": "HPA_EXP_TEST_TOKEN",
        },
        **changes,
    }
    path = folder / "secrets.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_twin_run_dry_run_validate_and_report_leak_nothing(tmp_path: Path) -> None:
    planted = Planted()
    twin_hpa = yaml.safe_load((REPO / "manifests" / "hpa-vllm-combined.yaml").read_text())
    twin_hpa["metadata"]["namespace"] = NS
    (tmp_path / "hpa.yaml").write_text(yaml.safe_dump(twin_hpa))
    config = write_config(tmp_path, planted, hpa={"manifest": str(tmp_path / "hpa.yaml")})
    env = {"HPA_EXP_TEST_TOKEN": planted.env_token}
    out = tmp_path / "out"
    twin = cli("run", str(config), "-b", "sim", "-o", str(out), "--plain", cwd=tmp_path, env=env)
    assert twin.returncode == 0, twin.stderr
    (run,) = out.iterdir()
    report = cli("report", str(run), cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    assert (run / "report.html").exists()
    flag_url = f"http://someone:{planted.flag_password}@127.0.0.1:9"
    dry = cli("run", str(config), "-b", "kubernetes", "--prometheus-url", flag_url, "--dry-run", cwd=tmp_path, env=env)
    assert dry.returncode == 0, dry.stderr
    checks = cli("validate", str(config), cwd=tmp_path), cli("plan", str(config), cwd=tmp_path)
    streams = [p.stdout + p.stderr for p in (twin, report, dry, *checks)]
    assert_nothing_leaked(planted, streams, [run])
    # the run still says where Prometheus was and that credentials were there
    copy = yaml.safe_load((run / "experiment-config.yaml").read_text())
    assert copy["prometheus"]["url"] == "https://***@prom.example:9090/?access_token=***"
    assert copy["prometheus"]["headers"] == {"X-Scope-OrgID": "***", "X-Api-Key": "***"}


@pytest.fixture(scope="module")
def prom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    with scraped_prometheus(tmp_path_factory.mktemp("prom"), NS) as server:
        yield server


@pytest.mark.parametrize("url_from", ["flag", "environment"])
def test_kubernetes_runs_leak_nothing(
    kube_cluster: KubeEmulator, prom: PrometheusServer, tmp_path: Path, url_from: str
) -> None:
    """Emulator (Kubernetes API) and a real Prometheus, which ignores the credentials it is sent:
    the point is what hpa-exp writes and prints while it uses them, not how a server checks them."""
    planted = Planted()
    with_password = prom.url.replace("http://", f"http://someone:{planted.flag_password}@")
    env = {"HPA_EXP_TEST_TOKEN": planted.env_token}
    args = ["--prometheus-url", with_password]
    changes: dict[str, object] = {"backend": "kubernetes"}
    if url_from == "environment":  # no flag, no config url: $HPA_EXP_PROMETHEUS_URL, token from a file
        env["HPA_EXP_PROMETHEUS_URL"] = prom.url.replace("http://", f"http://someone:{planted.env_url_password}@")
        args = []
        changes["prometheus"] = {
            "headers": {"X-Scope-OrgID": planted.header_a, "X-Api-Key": planted.header_b},
            "token_file": str(tmp_path / "token"),
        }
    config = write_config(tmp_path, planted, **changes)
    kubeconfig = kube_cluster.write_kubeconfig(tmp_path / "kubeconfig", token=planted.kube_token)
    out = tmp_path / "out"
    done = cli(
        "run", str(config), *args, "--kubeconfig", str(kubeconfig), "-o", str(out), "--plain", cwd=tmp_path, env=env
    )
    assert done.returncode == 0, done.stderr
    assert "preflight passed" in done.stderr and "someone" not in done.stderr
    (run,) = out.iterdir()
    report = cli("report", str(run), cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    # the secrets were really used: Prometheus answered, so the rows have its values
    metrics = (run / "metrics.csv").read_text().splitlines()
    ttft = metrics[0].split(",").index("ttft_ms")
    assert all(line.split(",")[ttft] for line in metrics[1:])
    # and a preflight that fails on Prometheus (nothing listens on port 9) names it without credentials
    unreachable = f"http://someone:{planted.flag_password}@127.0.0.1:9"
    failed = cli(
        "run", str(config), "--prometheus-url", unreachable, "--kubeconfig", str(kubeconfig), "-o",
        str(tmp_path / "never"), "--plain", cwd=tmp_path, env=env,
    )  # fmt: skip
    assert failed.returncode == 3 and "http://***@127.0.0.1:9" in failed.stderr, failed.stderr
    streams = [p.stdout + p.stderr for p in (done, report, failed)]
    assert_nothing_leaked(planted, streams, [run])
