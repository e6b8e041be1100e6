"""`hpa-exp cluster up | down | status` without Docker: dry-run output, missing tools,
and full runs against stand-in `docker`, `kind` and `kubectl` executables that record
their argument lists and answer from a table.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from hpa_experiments.kind_kit.lifecycle import down, up
from hpa_experiments.kind_kit.status import describe_current_metrics, hpa_metric_problems, status
from hpa_experiments.kind_kit.steps import KEDA_VERSION, ClusterKitError, KitSpec, StepFailed, find_manifests

ROOT = Path(__file__).resolve().parents[1]
CTX = ["kubectl", "--context", "kind-hpa-exp"]

EXPECTED_UP_EMULATOR = [
    ["docker", "info", "--format", "{{.ServerVersion}}"],
    ["kind", "create", "cluster", "--name", "hpa-exp", "--config", "manifests/kind/cluster.yaml", "--wait", "120s"],
    [*CTX, "apply", "-f", "manifests/namespace.yaml"],
    [*CTX, "apply", "-f", "manifests/model-server/service.yaml", "-f", "manifests/model-server/emulator.yaml"],
    [*CTX, "apply", "-f", "manifests/monitoring/prometheus.yaml"],
    [*CTX, "apply", "-f", "manifests/monitoring/prometheus-adapter.yaml"],
    [*CTX, "apply", "-f", "manifests/rbac/hpa-exp-runner.yaml"],
    [*CTX, "-n", "monitoring", "rollout", "status", "deployment/prometheus", "--timeout=180s"],
    [*CTX, "-n", "monitoring", "rollout", "status", "deployment/prometheus-adapter", "--timeout=180s"],
    [*CTX, "wait", "--for=condition=Available", "apiservice/v1beta1.custom.metrics.k8s.io", "--timeout=120s"],
    [*CTX, "-n", "hpa-exp", "rollout", "status", "deployment/vllm", "--timeout=300s"],
    *[
        [
            *CTX,
            "get",
            "--raw",
            f"/apis/custom.metrics.k8s.io/v1beta1/namespaces/hpa-exp/pods/*/{metric}"
            "?labelSelector=app.kubernetes.io/name=vllm",
        ]
        for metric in ("num_requests_waiting", "kv_cache_usage_perc")
    ],
]
SERVED = {
    "kind": "MetricValueList",
    "items": [{"describedObject": {"kind": "Pod", "name": "vllm-7d9f-abcde"}, "metricName": "x", "value": "0"}],
}

HPA_WITH_METRICS = {
    "spec": {"metrics": [{"type": "Pods", "pods": {"metric": {"name": "num_requests_waiting"}}}]},
    "status": {
        "currentReplicas": 1,
        "desiredReplicas": 1,
        "currentMetrics": [
            {"type": "Pods", "pods": {"metric": {"name": "num_requests_waiting"}, "current": {"averageValue": "0"}}}
        ],
    },
}
HPA_WITHOUT_METRICS = {
    "spec": HPA_WITH_METRICS["spec"],
    "status": {
        "currentReplicas": 1,
        "desiredReplicas": 1,
        "conditions": [
            {"type": "AbleToScale", "status": "True", "reason": "SucceededGetScale"},
            {
                "type": "ScalingActive",
                "status": "False",
                "reason": "FailedGetPodsMetric",
                "message": "unable to get metric num_requests_waiting: no metrics returned from custom metrics API",
            },
        ],
    },
}

FAKE_TOOL = """\
#!{python}
# Stand-in for docker/kind/kubectl: records argv, answers from FAKE_RESPONSES.
import json, os, sys
argv = [os.path.basename(sys.argv[0]), *sys.argv[1:]]
stdin = sys.stdin.read() if argv[-2:] == ["-f", "-"] else None
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(json.dumps(argv) + "\\n")
    if stdin is not None:
        log.write(json.dumps({"stdin": stdin}) + "\\n")
command = " ".join(argv)
responses = json.load(open(os.environ["FAKE_RESPONSES"]))
for needle, answer in responses:
    if needle in command:
        sys.stdout.write(answer.get("stdout", ""))
        sys.stderr.write(answer.get("stderr", ""))
        sys.exit(answer.get("rc", 0))
"""


def run_cli(*args: str, path: str, cwd: Path = ROOT, env: dict[str, str] | None = None):
    return subprocess.run(
        [sys.executable, "-m", "hpa_experiments", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={"PATH": path, "HOME": str(cwd), **(env or {})},
        timeout=60,
    )


def dry_run_commands(output: str) -> list[list[str]]:
    lines = [line.strip()[2:] for line in output.splitlines() if line.strip().startswith("$ ")]
    return [shlex.split(line.split("   (stdin:")[0]) for line in lines]


def touches_an_hpa(argv: list[str]) -> bool:
    return any("hpa-vllm" in arg for arg in argv) or "hpa" in argv


@pytest.fixture
def fake_tools(tmp_path, monkeypatch):
    """Put stand-in tools first on PATH; returns (set_responses, recorded_calls)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("docker", "kind", "kubectl"):
        script = bin_dir / tool
        script.write_text(FAKE_TOOL.replace("{python}", sys.executable))
        script.chmod(0o755)
    log, responses = tmp_path / "calls.jsonl", tmp_path / "responses.json"
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv("FAKE_LOG", str(log))
    monkeypatch.setenv("FAKE_RESPONSES", str(responses))
    monkeypatch.chdir(ROOT)

    def respond(table: list[tuple[str, dict[str, Any]]]) -> None:
        responses.write_text(json.dumps(table))

    def calls() -> list[list[str]]:
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    respond([])
    return respond, calls


class Lines:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def write(self, line: str) -> None:
        self.lines.append(line)

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def spec(**kwargs: Any) -> KitSpec:
    return KitSpec(manifests=Path("manifests"), **kwargs)


# --- through the command line (subprocess) -----------------------------------------------


@pytest.mark.slow
def test_dry_run_prints_every_command_in_order_and_needs_no_tools(tmp_path):
    result = run_cli("cluster", "up", "--dry-run", path=str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert dry_run_commands(result.stdout) == EXPECTED_UP_EMULATOR
    titles = [line for line in result.stdout.splitlines() if line.startswith("[")]
    assert titles[0] == "[1/13] Check that Docker is running"
    assert "(skipped if kind cluster hpa-exp exists)" in titles[1]
    assert titles[-1].startswith("[13/13] Check that the custom metrics API serves kv_cache_usage_perc")
    assert not any(touches_an_hpa(c) for c in dry_run_commands(result.stdout))  # issue 13: no HPA by default


@pytest.mark.slow
def test_an_hpa_is_applied_only_on_request_with_a_note_about_a_second_one(tmp_path):
    result = run_cli("cluster", "up", "--dry-run", "--hpa", "queue", path=str(tmp_path))
    assert result.returncode == 0, result.stderr
    commands = dry_run_commands(result.stdout)
    assert commands[-2:] == [
        [*CTX, "-n", "hpa-exp", "apply", "-f", "manifests/hpa-vllm-queue.yaml"],
        [*CTX, "-n", "hpa-exp", "get", "hpa", "vllm-hpa-queue", "-o", "json"],
    ]
    assert (
        "note: --hpa queue applies vllm-hpa-queue; an experiment that applies another HPA to the same "
        "Deployment is refused by its preflight (two HPAs disable each other)"
    ) in result.stdout


@pytest.mark.slow
def test_dry_run_with_keda_installs_the_pinned_release_instead_of_the_adapter(tmp_path):
    result = run_cli("cluster", "up", "--dry-run", "--autoscaler", "keda", "--hpa", "kvcache", path=str(tmp_path))
    assert result.returncode == 0, result.stderr
    commands = dry_run_commands(result.stdout)
    joined = [" ".join(c) for c in commands]
    assert not any("prometheus-adapter" in c or "custom.metrics" in c for c in joined)
    url = f"https://github.com/kedacore/keda/releases/download/v{KEDA_VERSION}/keda-{KEDA_VERSION}.yaml"
    assert ["kubectl", "--context", "kind-hpa-exp", "apply", "--server-side", "-f", url] in commands
    waits = [c for c in joined if "rollout status" in c and "-n keda" in c]
    assert [w.split("deployment/")[1].split()[0] for w in waits] == ["keda-operator", "keda-operator-metrics-apiserver"]
    assert any("apiservice/v1beta1.external.metrics.k8s.io" in c for c in joined)
    # the ScaledObject after the model server is up, then KEDA's HPA is the one checked
    assert commands[-2][-1] == "manifests/keda/scaledobject-vllm-kvcache.yaml"
    assert commands[-1][-4:] == ["hpa", "keda-hpa-vllm-keda-kvcache", "-o", "json"]
    bad = run_cli("cluster", "up", "--dry-run", "--autoscaler", "kedda", path=str(tmp_path))
    assert bad.returncode == 2 and "--autoscaler must be one of hpa, keda" in bad.stdout + bad.stderr


def test_dry_run_for_vllm_without_hpa_waits_longer_and_applies_no_hpa(tmp_path):
    result = run_cli(
        "cluster", "up", "--dry-run", "--variant", "vllm", "--hpa", "none", "--name", "gpu", path=str(tmp_path)
    )
    assert result.returncode == 0, result.stderr
    commands = dry_run_commands(result.stdout)
    assert commands[1][:5] == ["kind", "create", "cluster", "--name", "gpu"]
    assert "manifests/model-server/vllm.yaml" in commands[3]
    assert commands[-3][-2:] == ["deployment/vllm", "--timeout=1800s"]
    assert [c[3:5] for c in commands[-2:]] == [["get", "--raw"]] * 2  # then the metrics API is asked
    assert not any(touches_an_hpa(c) for c in commands)
    assert all(c[:3] == ["kubectl", "--context", "kind-gpu"] for c in commands[2:])


@pytest.mark.slow
def test_hf_token_goes_to_a_secret_through_stdin_never_the_command_line(tmp_path):
    result = run_cli("cluster", "up", "--dry-run", path=str(tmp_path), env={"HF_TOKEN": "hf_secret_value"})
    assert result.returncode == 0, result.stderr
    assert "hf_secret_value" not in result.stdout + result.stderr
    commands = dry_run_commands(result.stdout)
    assert commands[3] == [*CTX, "apply", "-f", "-"]
    assert "(stdin: Secret hf-token built from $HF_TOKEN)" in result.stdout
    assert commands[:3] + commands[4:] == EXPECTED_UP_EMULATOR
    without = run_cli("cluster", "up", "--dry-run", path=str(tmp_path))
    assert "note: $HF_TOKEN is not set" not in without.stdout  # the emulator needs no Hugging Face access
    gpu = run_cli("cluster", "up", "--dry-run", "--variant", "vllm", path=str(tmp_path))
    assert "note: $HF_TOKEN is not set" in gpu.stdout


def test_down_dry_run(tmp_path):
    result = run_cli("cluster", "down", "--dry-run", path=str(tmp_path))
    assert result.returncode == 0
    assert dry_run_commands(result.stdout) == [["kind", "delete", "cluster", "--name", "hpa-exp"]]


def test_a_negative_hpa_timeout_is_refused(tmp_path):
    result = run_cli("cluster", "up", "--hpa-timeout", "-5", "--dry-run", path=str(tmp_path))
    assert result.returncode == 2
    assert "Invalid value for '--hpa-timeout'" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_tools_are_named_with_install_hints_and_exit_3(tmp_path):
    result = run_cli("cluster", "up", path=str(tmp_path))
    assert result.returncode == 3
    assert result.stdout == ""
    for tool, url in [
        ("docker", "https://docs.docker.com/get-docker/"),
        ("kind", "https://kind.sigs.k8s.io/"),
        ("kubectl", "https://kubernetes.io/docs/tasks/tools/"),
    ]:
        assert f"{tool} not found on PATH" in result.stderr and url in result.stderr
    assert "Traceback" not in result.stderr


def test_only_the_missing_tool_is_reported(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("docker", "kubectl"):
        (bin_dir / tool).write_text("#!/bin/sh\nexit 0\n")
        (bin_dir / tool).chmod(0o755)
    result = run_cli("cluster", "up", path=str(bin_dir))
    assert result.returncode == 3
    assert "kind not found on PATH" in result.stderr
    assert "docker not found" not in result.stderr and "kubectl not found" not in result.stderr


def test_status_without_a_cluster_says_how_to_create_one(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "kind").write_text('#!/bin/sh\necho "No kind clusters found." >&2\nexit 0\n')
    (bin_dir / "kubectl").write_text("#!/bin/sh\nexit 0\n")
    for tool in ("kind", "kubectl"):
        (bin_dir / tool).chmod(0o755)
    result = run_cli("cluster", "status", path=str(bin_dir))
    assert result.returncode == 3
    assert "no kind cluster named hpa-exp (existing kind clusters: none)" in result.stderr
    assert "hpa-exp cluster up --name hpa-exp" in result.stderr


def test_status_without_kubectl_names_it(tmp_path):
    result = run_cli("cluster", "status", path=str(tmp_path))
    assert result.returncode == 3
    assert "kubectl not found on PATH" in result.stderr


# --- the library, with stand-in tools -----------------------------------------------------


@pytest.mark.slow
def test_up_runs_exactly_the_dry_run_commands(fake_tools):
    respond, calls = fake_tools
    respond([("get --raw", {"stdout": json.dumps(SERVED)})])
    out = Lines()
    up(spec(), console=out)
    ran = [c for c in calls() if c != ["kind", "get", "clusters"]]
    assert ran == EXPECTED_UP_EMULATOR
    assert calls()[1] == ["kind", "get", "clusters"]  # asked before creating
    assert "  num_requests_waiting: vllm-7d9f-abcde = 0" in out.lines
    assert "  kv_cache_usage_perc: vllm-7d9f-abcde = 0" in out.lines
    assert out.lines[-2] == "Cluster hpa-exp is ready (kubectl context kind-hpa-exp)."


@pytest.mark.slow
def test_up_reuses_an_existing_cluster(fake_tools):
    respond, calls = fake_tools
    respond(
        [
            ("kind get clusters", {"stdout": "other\nhpa-exp\n"}),
            ("get --raw", {"stdout": json.dumps(SERVED)}),
        ]
    )
    out = Lines()
    up(spec(), console=out)
    assert not any(c[:3] == ["kind", "create", "cluster"] for c in calls())
    assert "  kind cluster hpa-exp already exists: skipped" in out.lines


@pytest.mark.slow
def test_up_stops_at_a_failed_step_and_says_what_to_try(fake_tools):
    respond, calls = fake_tools
    respond([("rollout status deployment/vllm", {"rc": 1, "stderr": "error: timed out waiting"})])
    with pytest.raises(StepFailed) as failure:
        up(spec(), console=Lines())
    message = str(failure.value)
    assert "step 11/13 'Wait for deployment/vllm in hpa-exp' failed (exit code 1)" in message
    assert "describe pod -l app.kubernetes.io/name=vllm" in message
    assert failure.value.exit_code == 1
    assert not any(touches_an_hpa(c) for c in calls())  # stopped there


@pytest.mark.slow
def test_up_explains_an_hpa_without_metric_values(fake_tools):
    respond, _ = fake_tools
    respond([("get hpa", {"stdout": json.dumps(HPA_WITHOUT_METRICS)})])
    with pytest.raises(ClusterKitError) as failure:
        up(spec(hpa="queue", hpa_timeout_s=0), console=Lines())
    message = str(failure.value)
    assert failure.value.exit_code == 3
    assert "num_requests_waiting: no current value (kubectl shows <unknown>)" in message
    assert "ScalingActive: FailedGetPodsMetric" in message
    assert '/apis/custom.metrics.k8s.io/v1beta1/namespaces/hpa-exp/pods/*/num_requests_waiting"' in message


@pytest.mark.slow
def test_up_explains_a_metric_the_adapter_does_not_serve(fake_tools):
    """Issue 13, defect 3 as `cluster up` sees it: the adapter has no kv_cache_usage_perc for the pods."""
    respond, _ = fake_tools
    respond(
        [
            (
                "kv_cache_usage_perc",
                {
                    "rc": 1,
                    "stderr": "Error from server (NotFound): the server could not "
                    "find the metric kv_cache_usage_perc for pods",
                },
            ),
            ("get --raw", {"stdout": json.dumps(SERVED)}),
        ]
    )
    with pytest.raises(ClusterKitError) as failure:
        up(spec(hpa_timeout_s=0), console=Lines())
    message = str(failure.value)
    assert failure.value.exit_code == 3
    assert message.startswith(
        "the custom metrics API serves no kv_cache_usage_perc for the model server after "
        "0 s: Error from server (NotFound): the server could not find the metric"
    )
    assert "query vllm:kv_cache_usage_perc" in message and "describe hpa" not in message


@pytest.mark.slow
def test_up_stores_the_hf_token_secret_from_stdin(fake_tools, monkeypatch):
    respond, calls = fake_tools
    respond([("get --raw", {"stdout": json.dumps(SERVED)})])
    monkeypatch.setenv("HF_TOKEN", "hf_secret_value")
    up(spec(hf_token=True), console=Lines())
    recorded = calls()
    position = recorded.index([*CTX, "apply", "-f", "-"])
    secret = json.loads(recorded[position + 1]["stdin"])
    assert secret["metadata"] == {"name": "hf-token", "namespace": "hpa-exp"}
    assert secret["stringData"] == {"token": "hf_secret_value"}
    assert all("hf_secret_value" not in arg for call in recorded if isinstance(call, list) for arg in call)
    # before the model server, whose pods read it at start
    assert "manifests/model-server/emulator.yaml" in recorded[position + 2]


def test_down_without_the_cluster_does_nothing(fake_tools):
    _, calls = fake_tools
    out = Lines()
    down(spec(), console=out)
    assert calls() == [["kind", "get", "clusters"]]
    assert out.lines == ["No kind cluster named hpa-exp: nothing to delete."]


def test_status_reports_nodes_pods_monitoring_and_hpa(fake_tools):
    respond, _ = fake_tools
    node = {
        "metadata": {"name": "hpa-exp-control-plane"},
        "status": {"conditions": [{"type": "Ready", "status": "True"}], "nodeInfo": {"kubeletVersion": "v1.34.0"}},
    }
    pod = {
        "metadata": {"name": "vllm-7d9-abc", "labels": {"hpa-exp/model-server": "emulator"}},
        "status": {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [{"restartCount": 2}],
        },
    }
    deployment = {"metadata": {"name": "prometheus"}, "spec": {"replicas": 1}, "status": {"readyReplicas": 1}}
    hpa = {"metadata": {"name": "vllm-hpa-queue"}, **HPA_WITH_METRICS}
    respond(
        [
            ("kind get clusters", {"stdout": "hpa-exp\n"}),
            ("config get-contexts", {"stdout": "kind-hpa-exp\n"}),
            ("get nodes", {"stdout": json.dumps({"items": [node]})}),
            ("get pods", {"stdout": json.dumps({"items": [pod]})}),
            ("get deployments", {"stdout": json.dumps({"items": [deployment]})}),
            ("get apiservice", {"rc": 1, "stderr": "NotFound"}),
            ("get hpa", {"stdout": json.dumps({"items": [hpa]})}),
        ]
    )
    out = Lines()
    status("hpa-exp", console=out)
    assert out.text == textwrap.dedent(
        """\
        context: kind-hpa-exp
        nodes:
          hpa-exp-control-plane: Ready, v1.34.0
        model server pods (hpa-exp):
          vllm-7d9-abc (emulator): Running, ready, 2 restarts
        monitoring (monitoring):
          prometheus: 1/1 ready
          prometheus-adapter: not installed
          custom metrics API: not registered
        HPAs (hpa-exp):
          vllm-hpa-queue: 1 replicas (desired 1); num_requests_waiting = 0"""
    )


def test_status_of_an_unreachable_cluster(fake_tools):
    respond, _ = fake_tools
    respond(
        [
            ("config get-contexts", {"stdout": "prod\n"}),
            ("get nodes", {"rc": 1, "stderr": "Unable to connect to the server: dial tcp 10.0.0.1:6443"}),
        ]
    )
    with pytest.raises(ClusterKitError, match="Unable to connect to the server"):
        status("hpa-exp", context="prod", console=Lines())


# --- the HPA check itself -----------------------------------------------------------------


def test_hpa_metric_problems():
    assert hpa_metric_problems(HPA_WITH_METRICS) == []
    problems = hpa_metric_problems(HPA_WITHOUT_METRICS)
    assert problems[0] == "num_requests_waiting: no current value (kubectl shows <unknown>)"
    assert problems[1].startswith("ScalingActive: FailedGetPodsMetric: unable to get metric")
    assert len(problems) == 2  # conditions that are True are not problems


def test_a_missing_manifests_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ClusterKitError, match=r"no manifests folder found .*pass --manifests DIR"):
        find_manifests(tmp_path / "nowhere")
    assert find_manifests(ROOT / "manifests") == ROOT / "manifests"


def test_an_unknown_variant_is_a_usage_error(tmp_path):
    result = run_cli("cluster", "up", "--dry-run", "--variant", "tpu", path=str(tmp_path))
    assert result.returncode == 2
    assert "--variant must be one of emulator, vllm, not 'tpu'" in result.stderr


def test_current_metrics_of_every_metric_type_are_described():
    hpa = {
        "spec": {
            "metrics": [
                {"type": "Pods", "pods": {"metric": {"name": "kv_cache_usage_perc"}}},
                {"type": "ContainerResource", "containerResource": {"name": "cpu", "container": "vllm"}},
            ]
        },
        "status": {
            "currentMetrics": [
                {
                    "type": "Pods",
                    "pods": {"metric": {"name": "kv_cache_usage_perc"}, "current": {"averageValue": "250m"}},
                },
                {
                    "type": "ContainerResource",
                    "containerResource": {"name": "cpu", "container": "vllm", "current": {"averageUtilization": 40}},
                },
            ]
        },
    }
    assert describe_current_metrics(hpa) == ["kv_cache_usage_perc = 250m", "cpu = 40%"]
    assert hpa_metric_problems(hpa) == []
