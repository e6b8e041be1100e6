"""A dead Kubernetes API at the first contact: `cleanup` and `run` fail in seconds, naming the server.

Neither the emulator nor the test bed: the point is that NO API server answers, so the
kubeconfig points at a closed local port (connection refused) or at a name that cannot resolve
(`.invalid` is reserved, RFC 2606).  Outages during a run are tests/test_reliability_outage.py's.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
import yaml

from hpa_experiments.cli import main
from tests.support.cli import REPO

# before the first-contact check, cleanup waited out the run's 120 s retry budget
BOUND_S = 30.0


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def kubeconfig(path: Path, server: str) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "gone",
                "clusters": [{"name": "gone", "cluster": {"server": server, "insecure-skip-tls-verify": True}}],
                "users": [{"name": "me", "user": {"token": "x"}}],
                "contexts": [{"name": "gone", "context": {"cluster": "gone", "user": "me", "namespace": "hpa-exp"}}],
            }
        )
    )
    return path


def cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, float]:
    started = time.monotonic()
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    out, err = capsys.readouterr()
    return int(exit_info.value.code or 0), out + err, time.monotonic() - started


@pytest.fixture(params=["refused", "unknown-host"])
def dead_server(request: pytest.FixtureRequest) -> str:
    return f"https://127.0.0.1:{closed_port()}" if request.param == "refused" else "https://api.hpa-exp.invalid:6443"


def test_cleanup_fails_fast_naming_the_server_and_context(dead_server: str, tmp_path: Path, capsys) -> None:
    config = kubeconfig(tmp_path / "kubeconfig", dead_server)
    code, text, elapsed = cli(["cleanup", "--all", "-n", "hpa-exp", "--kubeconfig", str(config)], capsys)
    assert code == 3, text
    assert f"Kubernetes API {dead_server} (context gone) is not reachable" in text, text
    assert "Nothing was done" in text
    assert elapsed < BOUND_S, f"{elapsed:.1f} s"


def test_run_preflight_fails_fast_naming_the_server_and_context(dead_server: str, tmp_path: Path, capsys) -> None:
    config = kubeconfig(tmp_path / "kubeconfig", dead_server)
    args = ["run", str(REPO / "experiment-configs" / "high-load-hpa.yaml"), "--backend", "kubernetes"]
    args += ["--kubeconfig", str(config), "--prometheus-url", f"http://127.0.0.1:{closed_port()}"]
    code, text, elapsed = cli([*args, "-o", str(tmp_path / "out")], capsys)
    assert code == 3, text
    assert f"Kubernetes API {dead_server} (context gone) is not reachable" in text, text
    assert elapsed < BOUND_S, f"{elapsed:.1f} s"
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("metrics.csv"))
