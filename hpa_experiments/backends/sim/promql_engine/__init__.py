"""In-memory time-series store and PromQL evaluator for the digital twin.

The twin answers the same PromQL strings the Kubernetes backend sends to a real
Prometheus, with Prometheus 2.x semantics (checked against Prometheus 2.42 by
tests/test_promql_engine_vs_prometheus.py):

- selectors with `=`, `!=`, `=~`, `!~` (anchored), also on `__name__`; `offset`; `@`
  (time, `start()`, `end()`); subqueries `expr[range:step]`;
- instant selection takes the newest sample at or before t, at most `lookback_delta`
  old; a range `[d]` holds the samples in [t - d, t] (both ends, as 2.x; 3.x
  excludes the start);
- functions: rate, irate, increase, delta, idelta, {avg,sum,min,max,count,last,
  present,stddev,stdvar,quantile}_over_time, changes, resets, deriv, predict_linear,
  histogram_quantile
  (classic `le` buckets), abs, ceil, floor, round, exp, sqrt, ln, log2, log10, clamp,
  clamp_min, clamp_max, scalar, vector, time, timestamp, sort, sort_desc,
  label_replace, absent, absent_over_time;
- aggregations sum, avg, min, max, count, group, stddev, stdvar, quantile, topk,
  bottomk, count_values with `by` / `without`;
- binary operators + - * / % ^ atan2, comparisons (filtering or `bool`), and, or,
  unless, with on/ignoring and group_left/group_right.

Anything else raises PromQLError naming it.  No staleness markers (a series that
stops being appended disappears after the lookback, as with remote-write) and no
native histograms.
"""

from hpa_experiments.backends.sim.promql_engine.errors import PromQLError
from hpa_experiments.backends.sim.promql_engine.evaluator import PromQLEngine
from hpa_experiments.backends.sim.promql_engine.tsdb import TimeSeriesDB

__all__ = ["PromQLEngine", "PromQLError", "TimeSeriesDB"]
