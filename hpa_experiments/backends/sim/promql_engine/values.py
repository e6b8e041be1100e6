"""Value types shared by the evaluator: label sets, samples, vectors, range vectors.

A label set is a tuple of (name, value) pairs sorted by name: hashable, so it serves
directly as a key for grouping and vector matching, and one tuple per series is
shared by every result that carries that series' labels.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from hpa_experiments.backends.sim.promql_engine.errors import PromQLError

Labels = tuple[tuple[str, str], ...]
Sample = tuple[Labels, float]
Vector = list[Sample]

METRIC_NAME = "__name__"


@dataclass(frozen=True)
class RangeSample:
    """Samples of one series in the window [start_ms, end_ms], both ends inclusive as in Prometheus 2.x."""

    labels: Labels
    times: list[int]  # milliseconds
    values: list[float]
    start_ms: int
    end_ms: int
    eval_ms: int  # the evaluation instant (before offset/@), which predict_linear() extrapolates to


Matrix = list[RangeSample]


def make_labels(pairs: Iterable[tuple[str, str]]) -> Labels:
    """Canonical label set: sorted by name, empty values dropped (Prometheus treats them as absent)."""
    return tuple(sorted((k, v) for k, v in pairs if v != ""))


def drop_metric_name(labels: Labels) -> Labels:
    for index, (name, _) in enumerate(labels):  # sorted: stop at the first name after __name__
        if name == METRIC_NAME:
            return labels[:index] + labels[index + 1 :]
        if name > METRIC_NAME:
            break
    return labels


def label_value(labels: Labels, name: str) -> str:
    for key, value in labels:
        if key == name:
            return value
    return ""


def ensure_unique_labelsets(vector: Vector) -> Vector:
    """Prometheus refuses a vector in which two samples have the same label set."""
    if len(vector) > 1 and len({labels for labels, _ in vector}) < len(vector):
        raise PromQLError("vector cannot contain metrics with the same labelset")
    return vector


def ensure_unique_labels(labels: list[Labels]) -> None:
    """ensure_unique_labelsets() for a vector given by its label sets."""
    if len(labels) > 1 and len(set(labels)) < len(labels):
        raise PromQLError("vector cannot contain metrics with the same labelset")


def format_labels(labels: Labels) -> str:
    return "{" + ", ".join(f'{k}="{v}"' for k, v in labels) + "}"
