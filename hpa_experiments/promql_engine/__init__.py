"""In-memory time-series store and PromQL evaluator for the digital twin (Prometheus 2.x semantics)."""

from hpa_experiments.promql_engine.evaluator import PromQLEngine
from hpa_experiments.promql_engine.tsdb import TimeSeriesDB

__all__ = ["PromQLEngine", "TimeSeriesDB"]
