"""Running the kit's steps: one at a time, in order, with progress lines; or printing them (dry run)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from hpa_experiments.kind_kit.steps import INSTALL_HINTS, ClusterKitError, Step, StepFailed


@dataclass
class Console:
    """Where progress goes (stdout by default; tests pass a list)."""

    write: Callable[[str], None] = field(default=lambda line: print(line, flush=True))


def run_step(step: Step, capture: bool = False) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            step.argv,
            input=step.stdin() if step.stdin else None,
            capture_output=capture,
            text=True,
            timeout=step.timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise StepFailed(f"{step.title}: timed out after {step.timeout_s:g} s: {step.command()}") from None
    except FileNotFoundError:
        raise ClusterKitError(f"{step.argv[0]} not found on PATH. {INSTALL_HINTS.get(step.argv[0], '')}") from None


def kind_clusters() -> list[str]:
    result = run_step(Step("List kind clusters", ("kind", "get", "clusters")), capture=True)
    return result.stdout.split() if result.returncode == 0 else []


def run_steps(steps: Sequence[Step], console: Console, cluster_name: str, total: int | None = None) -> None:
    """Run steps in order, stopping at the first failure; `total` counts steps that follow."""
    total = total or len(steps)
    for number, step in enumerate(steps, 1):
        console.write(f"[{number}/{total}] {step.title}")
        if step.skip_if_cluster_exists and cluster_name in kind_clusters():
            console.write(f"  kind cluster {cluster_name} already exists: skipped")
            continue
        console.write(f"  $ {step.command()}{step.stdin_note}")
        result = run_step(step)
        if result.returncode != 0:
            hint = f"\n  what to try: {step.hint}" if step.hint else ""
            raise StepFailed(
                f"step {number}/{total} '{step.title}' failed (exit code {result.returncode}):\n"
                f"  {step.command()}{hint}"
            )


def print_plan(steps: Sequence[Step], console: Console, cluster_name: str, checks: Sequence[Step] = ()) -> None:
    everything = [*steps, *checks]
    for number, step in enumerate(everything, 1):
        note = f" (skipped if kind cluster {cluster_name} exists)" if step.skip_if_cluster_exists else ""
        if step in checks:
            note = " (repeated until it has a value)"
        console.write(f"[{number}/{len(everything)}] {step.title}{note}")
        console.write(f"  $ {step.command()}{step.stdin_note}")
