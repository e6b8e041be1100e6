"""KEDA's External metrics under names a user recognizes.

KEDA names the metrics of the HPA it creates after the trigger's position (`s0-prometheus` for
the first trigger), a name that appears in no file the user wrote.  Both backends report each
reading under its trigger's label instead (`PrometheusTrigger.label`: the trigger's `name`, else
`s<i>_prometheus`), so metrics.csv has one column per trigger.  This module makes the rest agree:
the columns a run declares before KEDA's HPA exists (from the ScaledObject, not from KEDA's raw
names), and the name analysis shows ("prometheus: <name>", or the trigger's query when it has no
name).  The raw metric name stays in metrics.csv's column for unnamed triggers and in summary.json.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from hpa_experiments.backends.base import HpaMetricReading
from hpa_experiments.scaledobject import PrometheusTrigger, ScaledObjectSpec, parse_scaled_object

QUERY_CHARS = 60  # a query longer than this is cut in a legend


def _spec(scaled_object: Mapping[str, Any] | None) -> ScaledObjectSpec | None:
    if not scaled_object:
        return None
    try:
        return parse_scaled_object(scaled_object)
    except (ValueError, KeyError, TypeError):  # an invalid manifest in an old run: raw names stay
        return None


def named_readings(
    readings: Iterable[HpaMetricReading], scaled_object: Mapping[str, Any] | None
) -> tuple[HpaMetricReading, ...]:
    """Readings of KEDA's HPA (`s<i>-prometheus`) under their triggers' labels; others unchanged."""
    spec = _spec(scaled_object)
    out = []
    for reading in readings:
        trigger = spec.trigger_for_metric(reading.name) if spec is not None else None
        out.append(replace(reading, name=trigger.label) if trigger is not None else reading)
    return tuple(out)


def _trigger_of(column: str, spec: ScaledObjectSpec) -> PrometheusTrigger | None:
    name = column.removeprefix("hpa_")
    return next((t for t in spec.triggers if name in (t.label, t.metric_name)), None)


def display_name(column: str, scaled_object: Mapping[str, Any] | None, short: Mapping[str, str]) -> str:
    """What a table or legend calls the metric recorded in `column`.

    `short` names the standard columns ("queue"); a KEDA trigger's column (its label, or KEDA's raw
    `hpa_s<i>-prometheus` in older runs) is "prometheus: <trigger name>", or "prometheus: <query>"
    when the trigger has no name; any other column is its name without the `hpa_` prefix."""
    if column in short:
        return short[column]
    spec = _spec(scaled_object)
    trigger = _trigger_of(column, spec) if spec is not None else None
    if trigger is None:
        return column.removeprefix("hpa_")
    if trigger.name:
        return f"prometheus: {trigger.name}"
    query = " ".join(trigger.query.split())
    return f"prometheus: {query if len(query) <= QUERY_CHARS else query[: QUERY_CHARS - 3] + '...'}"
