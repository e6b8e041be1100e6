"""`hpa-exp tune`'s Pareto front (cost down, SLO attainment up) and its recommendation rule."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from hpa_experiments.tune.pareto import Scored, dominates, pareto_front, recommend

# few distinct values, so that ties in cost and in attainment are common
points = st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6)), min_size=0, max_size=25).map(
    lambda pairs: [Scored(i, cost / 2, att / 6) for i, (cost, att) in enumerate(pairs)]
)


@given(points)
def test_the_front_is_exactly_the_points_nobody_dominates(scored: list[Scored]) -> None:
    front = pareto_front(scored)
    on_front = {p.index for p in front}
    for p in scored:
        dominated = any(dominates(q, p) for q in scored)
        assert (p.index in on_front) == (not dominated), (p, front)


@given(points)
def test_the_front_is_sorted_by_cost_with_attainment_rising(scored: list[Scored]) -> None:
    front = pareto_front(scored)
    for a, b in itertools.pairwise(front):
        assert a.cost <= b.cost
        assert a.attainment < b.attainment or (a.cost, a.attainment) == (b.cost, b.attainment)


@given(points, st.integers(0, 6).map(lambda t: t / 6))
def test_the_recommendation_is_the_cheapest_front_point_meeting_the_target(scored: list[Scored], target: float) -> None:
    front = pareto_front(scored)
    choice = recommend(front, target)
    if not scored:
        assert choice is None
        return
    assert choice is not None
    chosen = next(p for p in front if p.index == choice.index)
    meeting = [p for p in scored if p.attainment >= target]
    if meeting:
        assert choice.meets_target
        assert chosen.cost == min(p.cost for p in meeting)
        assert chosen.attainment == max(p.attainment for p in meeting if p.cost == chosen.cost)
    else:
        assert not choice.meets_target
        assert chosen.attainment == max(p.attainment for p in scored)


def test_a_worked_example() -> None:
    scored = [
        Scored(0, 1.0, 0.70),
        Scored(1, 2.0, 0.90),
        Scored(2, 2.0, 0.80),
        Scored(3, 3.0, 0.90),
        Scored(4, 4.0, 0.99),
    ]
    assert [p.index for p in pareto_front(scored)] == [0, 1, 4]  # 2 and 3 are dominated by 1
    assert recommend(pareto_front(scored), 0.85) is not None
    assert recommend(pareto_front(scored), 0.85).index == 1  # type: ignore[union-attr]
    assert recommend(pareto_front(scored), 1.0).index == 4  # type: ignore[union-attr]
