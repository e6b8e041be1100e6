"""`hpa-exp cluster up | down | status`: the local kind cluster kit (see hpa_experiments/kind_kit/)."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from hpa_experiments.errors import UsageError
from hpa_experiments.kind_kit import lifecycle, steps
from hpa_experiments.kind_kit import status as kit_status

cluster_app = typer.Typer(
    help="A local kind cluster with a model server, Prometheus and prometheus-adapter (an HPA on request).",
    no_args_is_help=True,
)

NAME_OPTION = typer.Option("hpa-exp", "--name", help="kind cluster name (kubectl context kind-NAME).")
DRY_RUN_OPTION = typer.Option(False, "--dry-run", help="Print every command, in order, and run nothing.")


@cluster_app.command()
def up(
    variant: str = typer.Option(
        "emulator", "--variant", help="Model server: emulator (CPU, llm-d-inference-sim) or vllm (GPU)."
    ),
    name: str = NAME_OPTION,
    hpa: str = typer.Option(
        "none",
        "--hpa",
        help="HPA to apply as well: none (default: each experiment applies its own), queue, kvcache or combined.",
    ),
    autoscaler: str = typer.Option(
        "hpa",
        "--autoscaler",
        help="hpa: prometheus-adapter and the --hpa variant; keda: a pinned KEDA release and its ScaledObject.",
    ),
    manifests: Path | None = typer.Option(
        None, "--manifests", help="Manifests folder (default: ./manifests, else the repository's)."
    ),
    hpa_timeout: float = typer.Option(
        steps.HPA_METRICS_TIMEOUT_S,
        "--hpa-timeout",
        min=0,
        help="Seconds to wait for the metric values.",
    ),
    dry_run: bool = DRY_RUN_OPTION,
) -> None:
    """Create the kind cluster and install everything; end when the custom metrics API serves the
    HPAs' metrics for the model server (or, with --hpa, when that HPA sees them).

    Needs docker, kind and kubectl.  Safe to rerun: an existing cluster is reused and
    the manifests are applied again.
    """
    _check_choice("--variant", variant, ("emulator", "vllm"))
    _check_choice("--hpa", hpa, ("queue", "kvcache", "combined", "none"))
    _check_choice("--autoscaler", autoscaler, ("hpa", "keda"))
    spec = steps.KitSpec(
        manifests=steps.find_manifests(manifests),
        name=name,
        variant=variant,  # type: ignore[arg-type]
        hpa=hpa,  # type: ignore[arg-type]
        hpa_timeout_s=hpa_timeout,
        hf_token=bool(os.environ.get("HF_TOKEN")),
        autoscaler=autoscaler,  # type: ignore[arg-type]
    )
    lifecycle.up(spec, dry_run=dry_run)


@cluster_app.command()
def down(name: str = NAME_OPTION, dry_run: bool = DRY_RUN_OPTION) -> None:
    """Delete the kind cluster (and everything in it)."""
    lifecycle.down(steps.KitSpec(manifests=Path("manifests"), name=name), dry_run=dry_run)


@cluster_app.command()
def status(
    name: str = NAME_OPTION,
    context: str | None = typer.Option(
        None, "--context", help="kubectl context of another cluster (default: kind-NAME)."
    ),
) -> None:
    """Show context, nodes, model-server pods, Prometheus/adapter readiness and HPAs."""
    kit_status.status(name, context=context)


def _check_choice(option: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise UsageError(f"{option} must be one of {', '.join(choices)}, not {value!r}")


def register(app: typer.Typer) -> None:
    app.add_typer(cluster_app, name="cluster")
