"""SLO gates: the upper bounds of `slo.gates` checked against a run's summary.

A gate passes only on a measured value at or under its bound.  A value the run could not
measure fails the gate too ("no data"), so a pipeline never passes on missing data.  Each
gate says where its value came from, because the sources differ in what they mean: the
twin's per-request log is exact, a percentile of one-minute samples is not a percentile of
requests.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Summary = dict[str, Any]
Source = tuple[str, Callable[[Summary], float | None]]

# Outcomes of the twin's requests.csv that are failures seen by a client.  `aborted_job_stopped`
# is not one: the experiment itself stopped that load generator at its planned end.
FAILED_OUTCOMES = ("rejected", "aborted_scale_down")


@dataclass(frozen=True)
class GateResult:
    name: str
    limit: float
    value: float | None
    source: str | None  # where the value came from; None when no source had it

    @property
    def passed(self) -> bool:
        return self.value is not None and self.value <= self.limit

    def detail(self) -> str:
        """'missed: 2,500 > 2,000 (requests.csv)' or 'missed: no data (...)'."""
        if self.value is None:
            return f"missed: no data (the run did not measure it); limit {_num(self.limit)}"
        if self.passed:
            return f"met: {_num(self.value)} <= {_num(self.limit)} ({self.source})"
        return f"missed: {_num(self.value)} > {_num(self.limit)} ({self.source})"

    def line(self) -> str:
        """One line for people: 'ttft_p90_ms missed: 2,500 > 2,000 (requests.csv)'."""
        return f"{self.name} {self.detail()}"

    def to_json(self) -> dict[str, Any]:
        return {
            "gate": self.name,
            "limit": self.limit,
            "value": self.value,
            "source": self.source,
            "passed": self.passed,
        }


def _get(summary: Summary, *path: str) -> float | None:
    node: Any = summary
    for key in path:
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return float(node) if isinstance(node, (int, float)) and not isinstance(node, bool) else None


def _latency_sources(metric: str, percentile: str) -> list[Source]:
    sources: list[Source] = []
    if metric == "ttft":
        sources.append(("requests.csv", lambda s: _get(s, "requests", "ttft_ms", percentile)))
    sources.append(
        (
            f"{metric.upper()} histogram over the run",
            lambda s: _get(s, "latency_over_window", "run", f"{metric}_ms", percentile),
        )
    )
    sources.append((f"percentile of {metric.upper()} samples", lambda s: _get(s, "kpis", f"{metric}_ms", percentile)))
    return sources


def _failed_requests(summary: Summary) -> float | None:
    outcomes = (summary.get("requests") or {}).get("by_outcome")
    if not isinstance(outcomes, dict):
        return None
    return float(sum(int(outcomes.get(name) or 0) for name in FAILED_OUTCOMES))


SOURCES: dict[str, list[Source]] = {
    **{f"{m}_{p}_ms": _latency_sources(m, p) for m in ("ttft", "itl") for p in ("p50", "p90", "p99")},
    "failed_requests": [("requests.csv: " + " + ".join(FAILED_OUTCOMES), _failed_requests)],
    "peak_replicas": [("metrics.csv replicas", lambda s: _get(s, "kpis", "replicas", "peak"))],
    "gpu_hours": [
        ("measured GPU count", lambda s: _get(s, "energy", "run", "gpu_hours")),
        ("replica-seconds", lambda s: _get(s, "kpis", "replicas", "gpu_hours")),
    ],
}


def evaluate_gates(summary: Summary, gates: dict[str, Any]) -> list[GateResult]:
    """Each configured gate (a None bound is not configured) against the first source that has a value."""
    results = []
    for name, limit in gates.items():
        if limit is None or name not in SOURCES:
            continue
        value, source = None, None
        for label, getter in SOURCES[name]:
            value = getter(summary)
            if value is not None:
                source = label
                break
        results.append(GateResult(name, float(limit), value, source))
    return results


def gates_summary(summary: Summary, gates: dict[str, Any]) -> dict[str, Any] | None:
    """summary.json's `slo_gates`: None when the config sets no gate."""
    results = evaluate_gates(summary, gates)
    if not results:
        return None
    return {"passed": all(r.passed for r in results), "gates": [r.to_json() for r in results]}


def gate_results(block: dict[str, Any] | None) -> list[GateResult]:
    """The gates of a summary's `slo_gates` block, missed ones first."""
    if not block:
        return []
    results = [GateResult(g["gate"], g["limit"], g["value"], g["source"]) for g in block.get("gates", [])]
    return sorted(results, key=lambda r: r.passed)


def _num(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
