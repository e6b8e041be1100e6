"""One search from start to report: load and validate, skip the points done before, run the
others (local processes or a Kubernetes Indexed Job), then the front and the outputs."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpa_experiments.config import load_config
from hpa_experiments.errors import HpaExpError
from hpa_experiments.tune.attainment import require_slo
from hpa_experiments.tune.evaluate import base_experiment
from hpa_experiments.tune.plan import TunePlan, plan_search
from hpa_experiments.tune.report import Outcome, analyse, write_outputs
from hpa_experiments.tune.space import load_space

Say = Callable[[str], None]


@dataclass
class KubeOptions:
    image: str
    namespace: str | None = None
    kubeconfig: str | None = None
    context: str | None = None
    parallelism: int | None = None
    cpu: str = "1"
    timeout_s: float = 6 * 3600.0


@dataclass
class SearchResult:
    plan: TunePlan
    outcome: Outcome
    skipped: int
    paths: dict[str, Path]


def load_plan(config_path: Path, space_path: Path, output_dir: Path | None) -> TunePlan:
    """Everything checked before a run: the experiment (twin), its `slo`, the space, every point."""
    config = load_config(config_path)
    if config.backend != "simulation":
        config.backend = "simulation"  # a search always runs on the twin; the cluster only hosts the work
    require_slo(config)
    space = load_space(space_path)
    base = base_experiment(config)
    out = output_dir if output_dir is not None else config.output.base_dir
    return plan_search(base, space, Path(out))


def run_search(
    plan: TunePlan,
    say: Say,
    *,
    processes: int | None = None,
    kube: KubeOptions | None = None,
) -> SearchResult:
    skipped = len(plan.done)
    pending = plan.pending
    plan.folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(plan.space.source, plan.folder / "space.yaml")
    say(
        f"tune {plan.space.name}: {len(plan.points)} points x {len(plan.seeds)} seeds, "
        f"{skipped} done before, {len(pending)} to run -> {plan.folder}"
    )
    finished = 0

    def on_point(result: dict[str, Any]) -> None:
        nonlocal finished
        plan.save(result)
        finished += 1
        a, g = result["attainment"], result["gpu_hours"]
        score = (
            "no completed seed"
            if a["median"] is None or g["median"] is None
            else f"GPU-hours {g['median']:.3f}, attainment {a['median'] * 100:.1f}%"
        )
        say(f"[{finished}/{len(pending)}] point {result['index']}: {score}")

    if pending and kube is not None:
        from hpa_experiments.tune.runner_kube import run_kube

        run_kube(plan, pending, kube, on_point, say)
    elif pending:
        from hpa_experiments.tune.runner_local import run_local

        run_local(pending, plan.seeds, plan.folder / "runs", on_point, processes)
    missing = [p.point.index for p in plan.points if p.point.index not in plan.done]
    if missing:
        raise HpaExpError(f"no result for points {missing}: run the same command again to resume")
    outcome = analyse(plan)
    paths = write_outputs(plan, outcome)
    return SearchResult(plan, outcome, skipped, paths)
