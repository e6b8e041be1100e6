"""Every file under manifests/ is valid and the pieces fit together.

Kubernetes objects are validated against the OpenAPI schemas of a pinned Kubernetes
version (kubernetes-validate, strict: unknown fields fail).  The kind cluster config and
the prometheus-adapter rules are not Kubernetes objects; they are checked structurally.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import promql_parser
import pytest
import yaml

from tests.support.prometheus import VLLM_RELABEL

KUBERNETES_VERSION = "1.34.0"
ROOT = Path(__file__).resolve().parents[1]
MANIFESTS = ROOT / "manifests"
ADAPTER_RULES = MANIFESTS / "monitoring" / "adapter-rules.yaml"
KIND_CONFIG = MANIFESTS / "kind" / "cluster.yaml"
NAMESPACE = "hpa-exp"
SERVED_MODEL = "meta-llama/Llama-3.1-8B"
ADAPTER_METRICS = {"num_requests_waiting", "kv_cache_usage_perc", "num_requests_running"}


def load_docs(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def kubernetes_objects() -> list[tuple[str, dict[str, Any]]]:
    """(id, object) for every Kubernetes object in manifests/, whoever wrote the file."""
    found = []
    for path in sorted(MANIFESTS.rglob("*.yaml")):
        if path in (ADAPTER_RULES, KIND_CONFIG):
            continue
        for doc in load_docs(path):
            if str(doc.get("apiVersion", "")).startswith("keda.sh/"):
                continue  # a CRD: no schema in kubernetes-validate; tests/test_keda_config.py checks them
            found.append((f"{path.relative_to(MANIFESTS)}:{doc.get('kind')}/{_name(doc)}", doc))
    return found


def _name(doc: dict[str, Any]) -> str:
    return (doc.get("metadata") or {}).get("name", "?")


def find(path: Path, kind: str, name: str | None = None) -> dict[str, Any]:
    matches = [d for d in load_docs(path) if d["kind"] == kind and (name is None or _name(d) == name)]
    assert len(matches) == 1, f"expected one {kind} {name or ''} in {path}, found {len(matches)}"
    return matches[0]


def go_template_replacement(template: str) -> str:
    """Go regexp replacement ("${1}") in Python re syntax ("\\g<1>")."""
    return re.sub(r"\$\{?(\w+)\}?", r"\\g<\1>", template)


def adapter_rules() -> list[dict[str, Any]]:
    return yaml.safe_load(ADAPTER_RULES.read_text())["rules"]


def exposed_name(rule: dict[str, Any], series_name: str) -> str | None:
    match = re.search(rule["name"]["matches"], series_name)
    return match.expand(go_template_replacement(rule["name"]["as"])) if match else None


def series_name(rule: dict[str, Any]) -> str:
    return re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", rule["seriesQuery"]).group(0)


# --- schema validation ---------------------------------------------------------------

OBJECTS = kubernetes_objects()


@pytest.mark.parametrize("doc", [d for _, d in OBJECTS], ids=[i for i, _ in OBJECTS])
def test_kubernetes_object_validates_against_openapi_schema(doc):
    try:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = ".".join(str(p) for p in exc.absolute_path)
        pytest.fail(f"{doc['kind']}/{_name(doc)} at {path or '<root>'}: {exc.message}")


def test_every_expected_manifest_is_present_and_validated():
    ids = {i.split(":")[0] for i, _ in OBJECTS}
    expected = {
        "namespace.yaml",
        "model-server/vllm.yaml",
        "model-server/emulator.yaml",
        "model-server/service.yaml",
        "monitoring/prometheus.yaml",
        "monitoring/prometheus-adapter.yaml",
        "rbac/hpa-exp-runner.yaml",
        "in-cluster/hpa-exp-job.yaml",
    }
    assert expected <= ids


def test_strict_validation_rejects_an_unknown_field():
    """Guards the guard: a typo in a manifest must fail, not pass silently."""
    deployment = find(MANIFESTS / "model-server" / "emulator.yaml", "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


# --- non-Kubernetes files --------------------------------------------------------------


def test_kind_cluster_config_is_well_formed_and_exposes_prometheus():
    config = yaml.safe_load(KIND_CONFIG.read_text())
    assert config["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    assert config["kind"] == "Cluster"
    roles = [node["role"] for node in config["nodes"]]
    assert "control-plane" in roles and set(roles) <= {"control-plane", "worker"}
    mapping = config["nodes"][0]["extraPortMappings"][0]
    service = find(MANIFESTS / "monitoring" / "prometheus.yaml", "Service", "prometheus")
    assert mapping["containerPort"] == service["spec"]["ports"][0]["nodePort"]
    assert mapping["hostPort"] == service["spec"]["ports"][0]["port"] == 9090


def test_adapter_rules_expose_the_three_metrics_per_pod():
    rules = adapter_rules()
    names = set()
    for rule in rules:
        assert rule["resources"]["overrides"] == {
            "namespace": {"resource": "namespace"},
            "pod": {"resource": "pod"},
        }
        assert "<<.LabelMatchers>>" in rule["metricsQuery"] and "by (<<.GroupBy>>)" in rule["metricsQuery"]
        name = exposed_name(rule, series_name(rule))
        assert name and ":" not in name, "custom-metrics API names cannot contain ':'"
        names.add(name)
        query = rule["metricsQuery"].replace("<<.LabelMatchers>>", 'pod=~"a|b",namespace="ns"')
        promql_parser.parse(query.replace("<<.GroupBy>>", "pod"))
        promql_parser.parse(rule["seriesQuery"])
    assert names == ADAPTER_METRICS


def test_adapter_configmap_carries_exactly_the_rules_file():
    configmap = find(MANIFESTS / "monitoring" / "prometheus-adapter.yaml", "ConfigMap")
    assert yaml.safe_load(configmap["data"]["config.yaml"]) == yaml.safe_load(ADAPTER_RULES.read_text())


def test_adapter_is_wired_to_prometheus_and_registered_as_custom_metrics_api():
    path = MANIFESTS / "monitoring" / "prometheus-adapter.yaml"
    args = find(path, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--prometheus-url=http://prometheus.monitoring.svc:9090/" in args
    assert "--config=/etc/adapter/config.yaml" in args
    api_service = find(path, "APIService")
    assert _name(api_service) == "v1beta1.custom.metrics.k8s.io"
    expected_service = {"name": "prometheus-adapter", "namespace": "monitoring", "port": 443}
    assert api_service["spec"]["service"] == expected_service
    hpa_binding = find(path, "ClusterRoleBinding", "hpa-controller-custom-metrics")
    assert hpa_binding["subjects"][0]["name"] == "horizontal-pod-autoscaler"


# --- the pieces fit together -------------------------------------------------------------


def _pod_template(path: Path) -> dict[str, Any]:
    deployment = find(path, "Deployment")
    assert _name(deployment) == "vllm" and deployment["metadata"]["namespace"] == NAMESPACE
    assert (
        deployment["spec"]["selector"]["matchLabels"].items()
        <= deployment["spec"]["template"]["metadata"]["labels"].items()
    )
    return deployment["spec"]["template"]


@pytest.mark.parametrize("variant", ["vllm", "emulator"])
def test_model_server_variants_share_one_service_contract(variant):
    template = _pod_template(MANIFESTS / "model-server" / f"{variant}.yaml")
    labels = template["metadata"]["labels"]
    service = find(MANIFESTS / "model-server" / "service.yaml", "Service", "vllm")
    assert service["spec"]["selector"].items() <= labels.items()
    assert labels["app.kubernetes.io/name"] == "vllm" and labels["app.kubernetes.io/part-of"] == "hpa-exp"
    (container,) = template["spec"]["containers"]
    assert {"name": "http", "containerPort": 8000, "protocol": "TCP"} in container["ports"]
    assert service["spec"]["ports"][0]["port"] == 8000 and service["spec"]["ports"][0]["targetPort"] == "http"
    assert f"--served-model-name={SERVED_MODEL}" in container["args"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/health", "port": "http"}


def test_vllm_gets_one_gpu_and_time_to_load_the_model():
    template = _pod_template(MANIFESTS / "model-server" / "vllm.yaml")
    (container,) = template["spec"]["containers"]
    assert container["image"].startswith("vllm/vllm-openai:")
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 15 * 60
    assert f"--model={SERVED_MODEL}" in container["args"]


def test_emulator_is_cpu_only_with_an_h100_latency_profile():
    template = _pod_template(MANIFESTS / "model-server" / "emulator.yaml")
    (container,) = template["spec"]["containers"]
    assert container["image"].startswith("ghcr.io/llm-d/llm-d-inference-sim:")
    assert "nvidia.com/gpu" not in str(container["resources"])
    args = dict(a.removeprefix("--").split("=", 1) for a in container["args"] if "=" in a)
    # since v0.10 latencies are Go durations; a bare number is refused at start-up
    assert 60 <= int(args["time-to-first-token"].removesuffix("ms")) <= 120  # 7-8B on H100, 256-token prompt
    assert 10 <= int(args["inter-token-latency"].removesuffix("ms")) <= 15
    assert all(args[k].endswith("ms") for k in args if k.endswith(("-token", "-latency", "-std-dev")))
    assert float(args["time-factor-under-load"]) > 1
    assert "--enable-kvcache" in container["args"] and int(args["kv-cache-size"]) > 0
    assert "--force-dummy-tokenizer" in container["args"]  # never fetches the gated Llama tokenizer


def test_emulator_image_exports_todays_kv_cache_name():
    """Issue 13, defect 3: llm-d-inference-sim v0.10.x exports vllm:kv_cache_usage_perc (pkg/llm-d-inference-sim/
    metrics.go, KVCacheUsageMetricName), the name the HPAs use; v0.6.0 was pinned before.  The adapter serves
    the old name too (test_adapter_rules.py)."""
    (container,) = _pod_template(MANIFESTS / "model-server" / "emulator.yaml")["spec"]["containers"]
    version = container["image"].rsplit(":", 1)[1]
    major, minor = (int(x) for x in version.removeprefix("v").split(".")[:2])
    assert (major, minor) >= (0, 10), version


def _scrape_config() -> dict[str, Any]:
    configmap = find(MANIFESTS / "monitoring" / "prometheus.yaml", "ConfigMap", "prometheus-config")
    (job,) = yaml.safe_load(configmap["data"]["prometheus.yml"])["scrape_configs"]
    return job


def test_prometheus_discovers_model_server_pods_with_pod_and_namespace_labels():
    job = _scrape_config()
    (sd,) = job["kubernetes_sd_configs"]
    assert sd == {"role": "pod", "namespaces": {"names": [NAMESPACE]}}
    targets = {r.get("target_label"): r["source_labels"] for r in job["relabel_configs"]}
    assert targets["pod"] == ["__meta_kubernetes_pod_name"]
    assert targets["namespace"] == ["__meta_kubernetes_namespace"]
    assert VLLM_RELABEL in job["metric_relabel_configs"]
    # the keep rule admits both model-server variants
    keep = next(r for r in job["relabel_configs"] if r.get("action") == "keep")
    for variant in ("vllm", "emulator"):
        labels = _pod_template(MANIFESTS / "model-server" / f"{variant}.yaml")["metadata"]["labels"]
        assert re.fullmatch(keep["regex"], f"{labels['app.kubernetes.io/name']};http")


HPA_FILES = sorted(MANIFESTS.glob("hpa-vllm-*.yaml"))


@pytest.mark.parametrize("path", HPA_FILES, ids=[p.name for p in HPA_FILES])
def test_hpa_scales_vllm_on_metrics_the_adapter_serves(path):
    hpa = find(path, "HorizontalPodAutoscaler")
    assert hpa["metadata"]["namespace"] == NAMESPACE
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "vllm"}
    names = {m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods"}
    assert names and names <= ADAPTER_METRICS


def test_in_cluster_job_runs_hpa_exp_under_the_runner_account():
    path = MANIFESTS / "in-cluster" / "hpa-exp-job.yaml"
    pod = find(path, "Job")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "hpa-exp-runner"
    assert pod["containers"][0]["command"] == ["hpa-exp"] and pod["containers"][0]["args"][0] == "run"
    runner = find(MANIFESTS / "rbac" / "hpa-exp-runner.yaml", "ServiceAccount")
    assert _name(runner) == "hpa-exp-runner" and runner["metadata"]["namespace"] == NAMESPACE
    binding = find(MANIFESTS / "rbac" / "hpa-exp-runner.yaml", "RoleBinding")
    runner_subject = {"kind": "ServiceAccount", "name": "hpa-exp-runner", "namespace": NAMESPACE}
    assert binding["subjects"] == [runner_subject]
    assert binding["roleRef"]["name"] == _name(find(MANIFESTS / "rbac" / "hpa-exp-runner.yaml", "Role"))


# --- the runner's RBAC against what the Kubernetes backend does --------------------------

RUNNER_RBAC = MANIFESTS / "rbac" / "hpa-exp-runner.yaml"


def _granted(rules: list[dict[str, Any]], namespace_name: str | None = None) -> set[tuple[str, str, str]]:
    """(apiGroup, resource, verb) triples; resourceNames-limited rules only count for that name."""
    granted = set()
    for rule in rules:
        if "resourceNames" in rule and namespace_name not in rule["resourceNames"]:
            continue
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                granted.update((group, resource, verb) for verb in rule["verbs"])
    return granted


def _runner_permissions() -> tuple[set[tuple[str, str, str]], set[tuple[str, str, str]]]:
    role = find(RUNNER_RBAC, "Role")
    assert role["metadata"]["namespace"] == NAMESPACE
    cluster_role = find(RUNNER_RBAC, "ClusterRole")
    binding = find(RUNNER_RBAC, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == _name(cluster_role)
    assert binding["subjects"] == find(RUNNER_RBAC, "RoleBinding")["subjects"]
    return _granted(role["rules"]), _granted(cluster_role["rules"], namespace_name=NAMESPACE)


def _all_api_calls() -> tuple:
    """The requests of `run --backend kubernetes` and of `tune --backend kubernetes`."""
    from hpa_experiments.backends.kube.backend import API_CALLS
    from hpa_experiments.tune.kube_access import TUNE_API_CALLS

    return API_CALLS + TUNE_API_CALLS


def test_role_covers_backend_api_calls():
    """Every request the Kubernetes backend (and tune's Indexed Job runner) makes is granted, so
    the in-cluster Job cannot fail for lack of a permission (GET /version is open to every
    authenticated user)."""
    namespaced, cluster_wide = _runner_permissions()
    missing = [
        f"{call.verb} {call.api_group or 'core'}/{call.resource} ({call.why})"
        for call in _all_api_calls()
        if (call.api_group, call.resource, call.verb)
        not in (cluster_wide if call.resource == "namespaces" else namespaced)
    ]
    assert not missing, "manifests/rbac/hpa-exp-runner.yaml lacks: " + "; ".join(missing)


def test_role_grants_nothing_the_backend_does_not_use():
    namespaced, cluster_wide = _runner_permissions()
    used = {(call.api_group, call.resource, call.verb) for call in _all_api_calls()}
    assert (namespaced | cluster_wide) - used == set()


def test_in_cluster_job_arguments_are_accepted_by_hpa_exp_run():
    """Parse the Job's command line with the real `run` command (nothing runs)."""
    import typer

    from hpa_experiments.cli import app

    pod = find(MANIFESTS / "in-cluster" / "hpa-exp-job.yaml", "Job")["spec"]["template"]["spec"]
    command, *args = pod["containers"][0]["args"]
    run = typer.main.get_command(app).commands[command]
    params = run.make_context(command, list(args)).params
    assert params["backend"] == "kubernetes"
    mounts = {m["mountPath"]: m for m in pod["containers"][0]["volumeMounts"]}
    assert str(Path(pod["containers"][0]["workingDir"]) / params["config_path"]) in mounts
    assert str(params["output_dir"]) in mounts
