"""Write a new experiment config as a commented YAML file: the answers, plus the base's other settings.

The comments teach the format (what each key means, sequential vs parallel jobs, durations,
relative paths), so the file is a good starting point for editing by hand.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from hpa_experiments.config import DEFAULT_JOB_TEMPLATE, ExperimentConfig


@dataclass(frozen=True)
class JobAnswer:
    name: str
    rate: float
    duration: float
    start_delay: float


@dataclass(frozen=True)
class Answers:
    name: str
    description: str
    jobs: tuple[JobAnswer, ...]
    gap: float
    cooldown: float


def _autoscaler_lines(base: ExperimentConfig, folder: Path) -> list[str]:
    """The `hpa:` section, or `autoscaler:` for a KEDA ScaledObject (docs/keda.md)."""
    auto = base.autoscaler
    if auto is not None and auto.kind == "keda":
        lines = [
            "autoscaler:",
            "  kind: keda           # a KEDA ScaledObject (docs/keda.md)",
            f"  enabled: {_scalar(auto.enabled)}",
        ]
        if auto.manifest is not None:
            lines.append(f"  manifest: {_relative(auto.manifest, folder)}   # the ScaledObject to apply or simulate")
        if auto.name:
            lines.append(f"  name: {auto.name}")
        return [
            *lines,
            f"  apply: {_scalar(auto.apply)}          # kubernetes backend: apply it before the run ...",
            f"  remove_after: {_scalar(auto.remove_after)}   # ... and delete it afterwards if this run created it",
        ]
    lines = ["hpa:", f"  enabled: {_scalar(base.hpa.enabled)}"]
    if base.hpa.manifest is not None:
        lines.append(
            f"  manifest: {_relative(base.hpa.manifest, folder)}   # the HPA to apply (kubernetes) or to simulate"
        )
    if base.hpa.name:
        lines.append(f"  name: {base.hpa.name}")
    return [
        *lines,
        f"  apply: {_scalar(base.hpa.apply)}          # kubernetes backend: apply the manifest before the run ...",
        f"  remove_after: {_scalar(base.hpa.remove_after)}   # ... and delete it afterwards if this run created it",
    ]


def _num(value: float) -> str:
    return f"{value:g}" if value != int(value) else str(int(value))


def _relative(path: Path, folder: Path) -> str:
    return Path(os.path.relpath(path, folder)).as_posix()


def _scalar(value: Any) -> str:
    """A YAML scalar on one line (quoted when needed)."""
    return yaml.safe_dump(value, default_flow_style=True, width=10_000).removesuffix("\n...\n").strip()


def _tidy(value: Any) -> Any:
    """Whole floats as integers (2000, not 2000.0), as people write them."""
    if isinstance(value, dict):
        return {k: _tidy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_tidy(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _block(key: str, value: Any, indent: int = 0) -> list[str]:
    """`key:` followed by `value` as block YAML, indented."""
    dumped = yaml.safe_dump({key: _tidy(value)}, sort_keys=False, default_flow_style=False, width=100)
    return [" " * indent + line for line in dumped.rstrip("\n").splitlines()]


def render_config(base: ExperimentConfig, answers: Answers, destination: Path) -> str:
    """The YAML text of the new config; paths are made relative to `destination`'s folder."""
    folder = destination.resolve().parent
    parallel = any(job.start_delay > 0 for job in answers.jobs)
    source = base.source.name if base.source else "a shipped config"
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"# {answers.name}: created with `hpa-exp menu` from {source} ({stamp}).",
        "#",
        f"#   hpa-exp validate {destination.name}     # check it",
        f"#   hpa-exp plan {destination.name}         # see the timeline",
        f"#   hpa-exp run {destination.name} --backend sim",
        "#",
        '# Durations are seconds (360) or strings such as "90s", "6m", "1h30m".',
        "# Paths are relative to this file's folder.",
        "",
        f"name: {_scalar(answers.name):<30} # names the run folder: <name>-<UTC yyyymmdd-HHMMSS>",
        f"description: {_scalar(answers.description)}",
        f"namespace: {base.namespace:<25} # where the model server, HPA and load Jobs live",
        f"deployment: {base.deployment:<24} # the Deployment the HPA scales",
        f"model_name: {_scalar(base.model_name):<24} # served model name, used in PromQL and by the load Jobs",
        f"backend: {base.backend:<27} # simulation (the digital twin) | kubernetes; --backend overrides",
        f"on_job_failure: {base.on_job_failure:<20} # abort: a failed load Job stops the run; continue: keep going",
        "",
        *_autoscaler_lines(base, folder),
        "",
        "# Sequential mode (every start_delay is 0): each job starts `gap` seconds after the previous",
        "# one ends.  Parallel mode (any start_delay > 0): every job starts at its own start_delay,",
        f"# so jobs may overlap and their rates add up.  This file is in {'parallel' if parallel else 'sequential'} "
        "mode.",
        f"gap: {_num(answers.gap):<5} # seconds between sequential jobs (ignored in parallel mode)",
        "jobs:",
    ]
    default_template = (folder / DEFAULT_JOB_TEMPLATE).resolve()
    for i, job in enumerate(answers.jobs):
        base_job = base.jobs[min(i, len(base.jobs) - 1)]
        lines += [
            f"  - name: {job.name}",
            f"    rate: {_num(job.rate):<11} # requests per second; fills ${{rate}} in the workload template",
            f"    duration: {_num(job.duration):<7} # seconds; the runner deletes the Job at its planned end",
            f"    start_delay: {_num(job.start_delay):<4} # seconds after the start (parallel mode)",
        ]
        if base_job.manifest is not None and base_job.manifest.resolve() != default_template:
            lines.append(f"    manifest: {_relative(base_job.manifest, folder)}")
        if base_job.values:
            lines += _block("values", base_job.values, indent=4)
    lines.append(f"# A job without `manifest` uses {DEFAULT_JOB_TEMPLATE}; `values` (here or per job)")
    lines.append("# fill further template placeholders such as base_url or max_concurrency.")
    if base.values:
        lines += _block("values", base.values)
    lines += [
        "",
        "cooldown:",
        f"  enabled: {_scalar(answers.cooldown > 0)}",
        f"  duration: {_num(answers.cooldown):<6} # seconds after the last job ends, to watch scale-down",
        "",
        "metrics:",
        f"  interval: {_num(base.metrics.interval):<6} # seconds between samples (an exact grid t0 + k * interval)",
        f"  rate_window: {base.metrics.rate_window:<4} # window of rate() in the TTFT/ITL/request-rate queries",
        f"  percentiles: {_scalar(base.metrics.percentiles)}",
    ]
    if base.metrics.prometheus:
        lines += _block("prometheus", {n: q.model_dump() for n, q in base.metrics.prometheus.items()}, indent=2)
    prometheus = base.prometheus.model_dump(mode="json", exclude_defaults=True)
    for key in ("token_file", "ca_file"):
        if prometheus.get(key):
            prometheus[key] = _relative(Path(prometheus[key]), folder)
    lines += ["", "# Prometheus (or thanos-querier) for the kubernetes backend; --prometheus-url overrides."]
    lines += _block("prometheus", prometheus) if prometheus else ["prometheus: {}"]
    slo = base.slo.model_dump(exclude_none=True)
    lines += ["", "# Service-level objectives: the report shows the share of time above them."]
    lines += _block("slo", slo) if slo else ["slo: {}"]
    simulation = base.simulation.model_dump(mode="json", exclude_defaults=True)
    simulation = {"seed": base.simulation.seed, "profile": base.simulation.profile, **simulation}
    lines += ["", "# The digital twin: same config + seed -> byte-identical metrics.csv."]
    lines += _block("simulation", simulation)
    lines += [
        "",
        "output:",
        f"  base_dir: {_relative(base.output.base_dir, folder)}   # run folders are created here",
    ]
    return "\n".join(lines) + "\n"
