"""The timeline of an experiment, computed from its config alone (pure; no backend).

Sequential mode (no job has `start_delay` > 0): each job starts `gap` seconds after the
previous one ends.  Parallel mode: each job starts at its own `start_delay`.  Then the
cooldown.  Offered load is tallied per segment between consecutive start/end instants.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from hpa_experiments.config import ExperimentConfig
from hpa_experiments.manifests import load_manifest, request_rate_from_job, template_placeholders
from hpa_experiments.manifests import scale_down_stabilization_s as hpa_scale_down_window


@dataclass(frozen=True)
class PlannedJob:
    name: str
    index: int
    start: float  # seconds since t0
    end: float
    rate: float | None  # requests per second, when known
    manifest: Path


@dataclass(frozen=True)
class Segment:
    start: float
    end: float
    offered_rps: float
    active_jobs: tuple[str, ...]


@dataclass(frozen=True)
class Plan:
    mode: str  # "sequential" | "parallel"
    jobs: tuple[PlannedJob, ...]
    segments: tuple[Segment, ...]
    load_end: float  # when the last job ends
    cooldown: float  # seconds of cooldown after load_end
    scale_down_window: float  # the HPA's scale-down stabilization window
    warnings: tuple[str, ...] = field(default=())

    @property
    def total(self) -> float:
        return self.load_end + self.cooldown

    @property
    def peak_rps(self) -> float:
        return max((s.offered_rps for s in self.segments), default=0.0)

    def phase_at(self, t: float) -> str:
        """Label of the experiment phase at `t` seconds: running job names, 'gap' or 'cooldown'."""
        if t >= self.load_end:
            return "cooldown" if t < self.total else "done"
        names = [j.name for j in self.jobs if j.start <= t < j.end]
        return "+".join(names) if names else "gap"

    def offered_rps_at(self, t: float) -> float | None:
        jobs = [j for j in self.jobs if j.start <= t < j.end]
        if any(j.rate is None for j in jobs):
            return None
        return float(sum(j.rate or 0.0 for j in jobs))

    def to_json(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "total_s": self.total,
            "load_end_s": self.load_end,
            "cooldown_s": self.cooldown,
            "peak_rps": self.peak_rps,
            "scale_down_stabilization_s": self.scale_down_window,
            "jobs": [{**asdict(j), "manifest": str(j.manifest)} for j in self.jobs],
            "segments": [asdict(s) for s in self.segments],
            "warnings": list(self.warnings),
        }


def job_rate(config: ExperimentConfig, index: int) -> float | None:
    """The job's offered rate: its `rate`, a `rate` value, or `--request-rate` in a fixed manifest."""
    job = config.jobs[index]
    if job.rate is not None:
        return job.rate
    for values in (job.values, config.values):
        if "rate" in values:
            return float(values["rate"])
    assert job.manifest is not None
    doc = load_manifest(job.manifest)
    return None if template_placeholders(doc) else request_rate_from_job(doc)


def build_plan(config: ExperimentConfig) -> Plan:
    parallel = any(j.start_delay > 0 for j in config.jobs)
    planned: list[PlannedJob] = []
    cursor = 0.0
    for i, job in enumerate(config.jobs):
        start = job.start_delay if parallel else (cursor + config.gap if i else 0.0)
        end = start + job.duration
        cursor = end
        assert job.manifest is not None
        planned.append(PlannedJob(job.name, i, start, end, job_rate(config, i), job.manifest))
    load_end = max(j.end for j in planned)
    cooldown = config.cooldown.duration if config.cooldown.enabled else 0.0
    window = hpa_scale_down_window(config.hpa_manifest)
    segments = _segments(planned)
    plan = Plan(
        mode="parallel" if parallel else "sequential",
        jobs=tuple(planned),
        segments=segments,
        load_end=load_end,
        cooldown=cooldown,
        scale_down_window=window,
    )
    return replace(plan, warnings=tuple(_warnings(config, plan)))


def _segments(jobs: list[PlannedJob]) -> tuple[Segment, ...]:
    edges = sorted({j.start for j in jobs} | {j.end for j in jobs})
    out = []
    for a, b in itertools.pairwise(edges):
        active = [j for j in jobs if j.start <= a and j.end >= b]
        rate = sum(j.rate or 0.0 for j in active)
        out.append(Segment(a, b, rate, tuple(j.name for j in active)))
    return tuple(out)


def _warnings(config: ExperimentConfig, plan: Plan) -> list[str]:
    out = []
    window = plan.scale_down_window
    if plan.mode == "sequential" and len(plan.jobs) > 1 and config.gap < window:
        out.append(
            f"gap {config.gap:g} s is shorter than the HPA's scale-down stabilization window "
            f"({window:g} s): replicas from one job will still be up when the next starts"
        )
    if plan.cooldown < window:
        what = f"cooldown {plan.cooldown:g} s" if plan.cooldown else "no cooldown"
        out.append(
            f"{what} is shorter than the HPA's scale-down stabilization window ({window:g} s): "
            "the run ends before scale-down can be seen"
        )
    if plan.mode == "parallel":
        for seg in plan.segments:
            if not seg.active_jobs:
                out.append(f"no job runs from {seg.start:g} s to {seg.end:g} s (a job ends before the next begins)")
    by_manifest: dict[Path, list[PlannedJob]] = {}
    for job in plan.jobs:
        by_manifest.setdefault(job.manifest, []).append(job)
    for manifest, jobs in by_manifest.items():
        if template_placeholders(load_manifest(manifest)):
            continue  # a template is meant to be shared
        overlapping = sorted(
            {
                n
                for a in jobs
                for b in jobs
                if a.index < b.index and a.start < b.end and b.start < a.end
                for n in (a.name, b.name)
            }
        )
        if overlapping:
            out.append(
                f"{manifest.name} is used by {', '.join(overlapping)} at overlapping times: "
                "fine, each gets its own Job name (the original system would have run it once)"
            )
    unknown = [j.name for j in plan.jobs if j.rate is None]
    if unknown:
        out.append("offered load unknown for: " + ", ".join(unknown) + " (set 'rate' on these jobs)")
    return out


def render_timeline(plan: Plan, width: int = 48) -> str:
    """A text timeline: one bar per job, the load per segment, peak, cooldown and total time."""
    total = plan.total or 1.0
    scale = width / total

    def col(t: float) -> int:
        return min(width, round(t * scale))

    name_w = max([len(j.name) for j in plan.jobs] + [8])
    lines = [f"mode: {plan.mode}   total: {_fmt(plan.total)}   peak load: {plan.peak_rps:g} req/s"]
    for job in plan.jobs:
        a, b = col(job.start), max(col(job.end), col(job.start) + 1)
        bar = " " * a + "█" * (b - a) + " " * (width - b)
        rate = f"{job.rate:g} req/s" if job.rate is not None else "? req/s"
        lines.append(f"{job.name:<{name_w}} |{bar}| {_fmt(job.start)}–{_fmt(job.end)}  {rate}")
    if plan.cooldown:
        a = col(plan.load_end)
        bar = " " * a + "░" * (width - a)
        lines.append(f"{'cooldown':<{name_w}} |{bar}| {_fmt(plan.load_end)}–{_fmt(plan.total)}")
    lines.append("")
    lines.append("load per segment:")
    for seg in plan.segments:
        who = ", ".join(seg.active_jobs) or "(no job)"
        lines.append(f"  {_fmt(seg.start):>7} – {_fmt(seg.end):<7} {seg.offered_rps:>6g} req/s   {who}")
    if plan.cooldown:
        lines.append(f"  {_fmt(plan.load_end):>7} – {_fmt(plan.total):<7} {0:>6g} req/s   cooldown")
    for w in plan.warnings:
        lines.append(f"warning: {w}")
    return "\n".join(lines)


def _fmt(seconds: float) -> str:
    seconds = float(seconds)
    if seconds < 60 or seconds % 60:
        return f"{seconds:g}s"
    return f"{seconds / 60:g}m"
