"""`cluster up` and `cluster down`: the steps run in order, then the wait until the HPA (or the
custom metrics API) has values, with what to check when it does not."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from hpa_experiments.kind_kit.execution import Console, kind_clusters, print_plan, run_step, run_steps
from hpa_experiments.kind_kit.status import describe_current_metrics, hpa_metric_problems
from hpa_experiments.kind_kit.steps import (
    HPA_POLL_INTERVAL_S,
    KEDA_NAMESPACE,
    MONITORING_NAMESPACE,
    NAMESPACE,
    ClusterKitError,
    KitSpec,
    Step,
    down_steps,
    hpa_check_step,
    metrics_check_steps,
    require_tools,
    up_steps,
)


def up(spec: KitSpec, dry_run: bool = False, console: Console | None = None) -> None:
    console = console or Console()
    steps = up_steps(spec)
    if spec.hpa != "none":
        checks = [hpa_check_step(spec)]
    else:  # KEDA serves its metrics only for a ScaledObject: its rollout is the check
        checks = [] if spec.autoscaler == "keda" else metrics_check_steps(spec)
    if dry_run:
        console.write(f"Dry run: the steps of `hpa-exp cluster up` for kind cluster {spec.name} (nothing runs).")
        print_plan(steps, console, spec.name, checks)
        _notes(spec, console)
        return
    require_tools(["docker", "kind", "kubectl"])
    _notes(spec, console)
    total = len(steps) + len(checks)
    run_steps(steps, console, spec.name, total)
    for number, check in enumerate(checks, len(steps) + 1):
        console.write(f"[{number}/{total}] {check.title}")
        if spec.hpa != "none":
            wait_for_hpa_metrics(spec, check, console)
        else:
            wait_for_served_metric(spec, check, console)
    console.write(f"Cluster {spec.name} is ready (kubectl context {spec.context}).")
    console.write("Prometheus: http://127.0.0.1:9090   Next: docs/kind-quickstart.md")


def _notes(spec: KitSpec, console: Console) -> None:
    if not spec.hf_token and spec.variant == "vllm":
        console.write(
            "note: $HF_TOKEN is not set, so no hf-token secret is stored.  Llama models are gated on "
            "Hugging Face (vLLM needs the weights): export HF_TOKEN=hf_... and "
            f"rerun `hpa-exp cluster up`, then `kubectl --context {spec.context} -n {NAMESPACE} "
            "rollout restart deployment/vllm`."
        )
    if spec.hpa != "none":
        console.write(
            f"note: --hpa {spec.hpa} applies {spec.hpa_name}; an experiment that applies another HPA to the "
            f"same Deployment is refused by its preflight (two HPAs disable each other): delete it first with "
            f"`kubectl --context {spec.context} -n {NAMESPACE} delete hpa {spec.hpa_name}`."
        )
    if spec.variant == "vllm":
        console.write("note: the vllm variant needs a GPU on the kind node (e.g. a cluster made with nvkind).")


def down(spec: KitSpec, dry_run: bool = False, console: Console | None = None) -> None:
    console = console or Console()
    steps = down_steps(spec)
    if dry_run:
        print_plan(steps, console, spec.name)
        return
    require_tools(["docker", "kind"])
    if spec.name not in kind_clusters():
        console.write(f"No kind cluster named {spec.name}: nothing to delete.")
        return
    run_steps(steps, console, spec.name)


def hpa_troubleshooting(spec: KitSpec, metric: str) -> list[str]:
    if spec.autoscaler == "keda":
        return [
            "what to check, in order:",
            f"  1. the ScaledObject: kubectl --context {spec.context} -n {NAMESPACE} describe scaledobject "
            f"vllm-keda-{spec.hpa} (Ready, Active, events)",
            f"  2. KEDA's operator: kubectl --context {spec.context} -n {KEDA_NAMESPACE} logs deployment/keda-operator",
            f"  3. the metric KEDA serves: kubectl --context {spec.context} get --raw "
            f'"/apis/external.metrics.k8s.io/v1beta1/namespaces/{NAMESPACE}/{metric}'
            f'?labelSelector=scaledobject.keda.sh%2Fname%3Dvllm-keda-{spec.hpa}"',
            f"  4. HPA events: kubectl --context {spec.context} -n {NAMESPACE} describe hpa {spec.hpa_name}",
        ]
    return [
        "what to check, in order:",
        f"  1. Prometheus has the series: open http://127.0.0.1:9090 and query vllm:{metric}",
        f"  2. the adapter serves it: kubectl --context {spec.context} get --raw "
        f'"/apis/custom.metrics.k8s.io/v1beta1/namespaces/{NAMESPACE}/pods/*/{metric}"',
        f"  3. adapter logs: kubectl --context {spec.context} -n {MONITORING_NAMESPACE} "
        "logs deployment/prometheus-adapter",
        *(
            [f"  4. HPA events: kubectl --context {spec.context} -n {NAMESPACE} describe hpa {spec.hpa_name}"]
            if spec.hpa != "none"
            else []
        ),
        "  (a new adapter discovers metric names on its 1-minute relist: a first <unknown> is normal)",
    ]


def wait_for_hpa_metrics(
    spec: KitSpec, check: Step, console: Console, sleep: Callable[[float], None] = time.sleep
) -> None:
    console.write(f"  $ {check.command()}")
    deadline = time.monotonic() + spec.hpa_timeout_s
    missing_metric = "num_requests_waiting"
    while True:
        result = run_step(check, capture=True)
        if result.returncode == 0:
            hpa = json.loads(result.stdout)
            problems = hpa_metric_problems(hpa)
            if not problems:
                console.write("  HPA metrics: " + ", ".join(describe_current_metrics(hpa)))
                return
            missing_metric = problems[0].split(":")[0]
        else:
            problems = [result.stderr.strip() or f"kubectl exited with {result.returncode}"]
        if time.monotonic() >= deadline:
            break
        console.write(f"  waiting for metrics: {problems[0]}")
        sleep(HPA_POLL_INTERVAL_S)
    raise ClusterKitError(
        f"the HPA {spec.hpa_name} has no metric values after {spec.hpa_timeout_s:g} s:\n"
        + "\n".join(f"  - {p}" for p in problems)
        + "\n"
        + "\n".join(hpa_troubleshooting(spec, missing_metric))
    )


def wait_for_served_metric(
    spec: KitSpec, check: Step, console: Console, sleep: Callable[[float], None] = time.sleep
) -> None:
    """Poll the custom metrics API until it has a value for a model-server pod (the adapter relists
    its metric names every minute, so the first answers may be 404)."""
    metric = check.argv[-1].split("?")[0].rsplit("/", 1)[1]
    console.write(f"  $ {check.command()}")
    deadline = time.monotonic() + spec.hpa_timeout_s
    while True:
        result = run_step(check, capture=True)
        if result.returncode == 0:
            items = json.loads(result.stdout or "{}").get("items") or []
            if items:
                values = ", ".join(f"{i['describedObject']['name']} = {i['value']}" for i in items)
                console.write(f"  {metric}: {values}")
                return
            problem = "no value for any model-server pod yet"
        else:
            problem = result.stderr.strip() or f"kubectl exited with {result.returncode}"
        if time.monotonic() >= deadline:
            break
        console.write(f"  waiting for {metric}: {problem}")
        sleep(HPA_POLL_INTERVAL_S)
    raise ClusterKitError(
        f"the custom metrics API serves no {metric} for the model server after {spec.hpa_timeout_s:g} s: "
        f"{problem}\n" + "\n".join(hpa_troubleshooting(spec, metric))
    )
