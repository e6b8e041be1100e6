"""`hpa-exp tune`: search autoscaler settings on the twin; the Pareto front of cost vs SLO attainment."""

from __future__ import annotations

import re
from pathlib import Path

import typer


def tune(
    config_path: Path | None = typer.Argument(
        None, metavar="CONFIG", help="Experiment config file (YAML or JSON).", show_default=False
    ),
    space_path: Path | None = typer.Argument(
        None, metavar="SPACE", help="Search space file (YAML, see docs/tune.md).", show_default=False
    ),
    output_dir: Path | None = typer.Option(
        None,
        "--output-dir",
        "-o",
        help="The search goes to <this>/tunes/<name>. Default: the config's output.base_dir.",
    ),
    backend: str = typer.Option(
        "local", "--backend", "-b", help="local (processes on this machine) or kubernetes (one Indexed Job)."
    ),
    processes: int | None = typer.Option(None, "--processes", help="Local: parallel runs. Default: every core."),
    image: str | None = typer.Option(None, "--image", help="Kubernetes: the hpa-exp image (the Dockerfile's)."),
    namespace: str | None = typer.Option(None, "--namespace", "-n", help="Kubernetes: default the config's namespace."),
    kubeconfig: str | None = typer.Option(None, help="kubeconfig file. Default: $KUBECONFIG, then ~/.kube/config."),
    context: str | None = typer.Option(None, help="kubeconfig context. Default: the current context."),
    parallelism: int | None = typer.Option(
        None, "--parallelism", help="Kubernetes: pods at once. Default: all points."
    ),
    cpu: str = typer.Option("1", "--cpu", help="Kubernetes: CPU request (and limit) of each pod."),
    check: bool = typer.Option(False, "--check", help="Only validate and list the points."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only the outcome."),
    worker: bool = typer.Option(False, "--worker", help="Inside a Job pod: run one point of --bundle."),
    bundle: Path = typer.Option(Path("/tune/bundle.json"), "--bundle", help="Worker: the bundle file."),
    index: int | None = typer.Option(None, "--index", help="Worker: the entry. Default: $JOB_COMPLETION_INDEX."),
) -> int:
    """Search HPA or KEDA settings on the digital twin and recommend one.

    Each point of the search space (grid or seeded random) is the experiment with its autoscaler
    manifest changed, run under the space's `seeds` seeds.  A point's cost is its median GPU-hours,
    its quality the median share of requests within the config's `slo` thresholds.  Outputs in
    <output>/tunes/<name>/: tune.json, tune.csv, front.png, tune.html and recommended-*.yaml (the
    cheapest front point meeting target_attainment).  Rerunning skips the points already done.

    Exit codes: 0 done, 1 some point has no result or no completed seed (run again to resume; see
    the runs), 2 invalid config or space, 3 the cluster cannot be used (kubernetes backend).

    Example:  hpa-exp tune experiment-configs/high-load-hpa.yaml experiment-configs/tune/high-load-grid.yaml
    """
    from hpa_experiments.errors import UsageError

    if worker:
        from hpa_experiments.tune.worker import run_worker

        run_worker(bundle, index, processes)
        return 0
    if config_path is None or space_path is None:
        raise UsageError("give CONFIG and SPACE: hpa-exp tune EXPERIMENT.yaml SPACE.yaml")
    if backend not in ("local", "kubernetes", "k8s"):
        raise UsageError(f"--backend {backend}: local or kubernetes")
    from hpa_experiments.cli.analysis import output_console
    from hpa_experiments.tune.report import summary_lines, terminal_table
    from hpa_experiments.tune.search import KubeOptions, load_plan, run_search

    plan = load_plan(config_path, space_path, output_dir)
    if check:
        typer.echo(f"tune {plan.space.name}: {len(plan.points)} points x {len(plan.seeds)} seeds -> {plan.folder}")
        for planned in plan.points:
            done = " (done before)" if planned.point.index in plan.done else ""
            typer.echo(f"  point {planned.point.index}: {planned.point.label}{done}")
        return 0
    kube = None
    if backend != "local":
        if not image:
            raise UsageError("--backend kubernetes needs --image (an image built from the Dockerfile)")
        if parallelism is not None and parallelism < 1:
            raise UsageError(f"--parallelism {parallelism}: at least 1")
        if not re.fullmatch(r"[0-9]+(\.[0-9]+)?m?", cpu) or float(cpu.rstrip("m")) == 0:
            raise UsageError(f"--cpu {cpu}: a CPU quantity such as 1, 2 or 500m")
        kube = KubeOptions(image, namespace, kubeconfig, context, parallelism, cpu)

    def say(line: str) -> None:
        if not quiet:
            typer.echo(line)

    result = run_search(plan, say, processes=processes, kube=kube)
    output_console().print(terminal_table(result.plan, result.outcome))
    for line in summary_lines(result.plan, result.outcome, result.skipped):
        typer.echo(line)
    for label, path in result.paths.items():
        typer.echo(f"{label + ':':10}{path}")
    incomplete = result.outcome.unscored or result.outcome.recommendation is None
    return 1 if incomplete else 0


def register(app: typer.Typer) -> None:
    app.command()(tune)
