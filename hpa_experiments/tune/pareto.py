"""The Pareto front of cost (lower is better) against SLO attainment (higher is better), and the
recommendation rule.

A point dominates another when it costs no more and attains no less, and is strictly better in
one of the two.  The front is every point nobody dominates, sorted by cost; points with equal
cost and attainment are all kept (they are equally good).

Recommendation: the cheapest front point whose attainment is at least the target (on a cost tie,
the higher attainment).  When no point reaches the target, the front point with the highest
attainment, flagged as not meeting it, so the user sees how far the space falls short.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Scored:
    index: int
    cost: float
    attainment: float


@dataclass(frozen=True)
class Recommendation:
    index: int
    meets_target: bool


def dominates(a: Scored, b: Scored) -> bool:
    return a.cost <= b.cost and a.attainment >= b.attainment and (a.cost < b.cost or a.attainment > b.attainment)


def pareto_front(points: Sequence[Scored]) -> list[Scored]:
    """The non-dominated points by cost, then attainment descending (one sweep after a sort)."""
    ordered = sorted(points, key=lambda p: (p.cost, -p.attainment, p.index))
    front: list[Scored] = []
    best: Scored | None = None  # highest attainment among the cheaper points seen
    for point in ordered:
        if best is None or point.attainment > best.attainment:
            front.append(point)
            best = point
        elif point.attainment == best.attainment and point.cost == best.cost:
            front.append(point)  # an exact tie with a front point
    return front


def recommend(front: Sequence[Scored], target: float) -> Recommendation | None:
    """See the module docstring; None only for an empty front."""
    if not front:
        return None
    meeting = [p for p in front if p.attainment >= target]
    if meeting:
        chosen = min(meeting, key=lambda p: (p.cost, -p.attainment, p.index))
        return Recommendation(chosen.index, True)
    chosen = max(front, key=lambda p: (p.attainment, -p.cost, -p.index))
    return Recommendation(chosen.index, False)
