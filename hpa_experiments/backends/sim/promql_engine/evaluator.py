"""PromQL evaluation over a TimeSeriesDB, with Prometheus 2.x semantics.

A query string is parsed once by `promql_parser` and compiled into a small tree of
nodes (cached per query string); evaluating a node at a time gives a scalar, a
vector, a range vector or a string.  A range query is an instant evaluation at
every step, as in Prometheus.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections import OrderedDict
from collections.abc import Callable
from datetime import timedelta
from operator import attrgetter, getitem
from typing import Any, TypeVar

import numpy as np
import promql_parser as pp

from hpa_experiments.backends.base import InstantSample, RangeSeries
from hpa_experiments.backends.sim.promql_engine import aggregation, binary, functions
from hpa_experiments.backends.sim.promql_engine.errors import PromQLError
from hpa_experiments.backends.sim.promql_engine.label_functions import LabelReplace, absent_labels
from hpa_experiments.backends.sim.promql_engine.series_columns import (
    TIMES,
    Latest,
    SelectedSeries,
    distinct_lists,
    latest_samples,
)
from hpa_experiments.backends.sim.promql_engine.tsdb import LabelMatcher, MatchType, Series, TimeSeriesDB, seconds_to_ms
from hpa_experiments.backends.sim.promql_engine.values import (
    METRIC_NAME,
    Labels,
    Matrix,
    RangeSample,
    Vector,
    drop_metric_name,
    ensure_unique_labels,
    ensure_unique_labelsets,
)

T = TypeVar("T")


class Context:
    """One evaluation instant, plus the query's start/end for `@ start()` / `@ end()`.

    `results` memoizes subexpression results by (text, instant) while the data cannot
    change, so the queries of one monitor tick share e.g. `sum by (le) (rate(...))`.
    """

    __slots__ = ("db", "end_ms", "lookback_ms", "results", "start_ms", "t_ms")

    def __init__(
        self,
        db: TimeSeriesDB,
        t_ms: int,
        start_ms: int,
        end_ms: int,
        lookback_ms: int,
        results: dict[tuple[str, int], Any] | None = None,
    ):
        self.db = db
        self.t_ms = t_ms
        self.start_ms = start_ms
        self.end_ms = end_ms
        self.lookback_ms = lookback_ms
        self.results = results

    def at(self, t_ms: int) -> Context:
        return Context(self.db, t_ms, self.start_ms, self.end_ms, self.lookback_ms, self.results)


class Node:
    kind: str  # "scalar" | "vector" | "matrix" | "string"

    def evaluate(self, ctx: Context) -> Any:
        raise NotImplementedError


class Memoized(Node):
    """An expensive subexpression whose result is shared through Context.results."""

    def __init__(self, node: Node, text: str):
        self.node = node
        self.text = text
        self.kind = node.kind

    def evaluate(self, ctx: Context) -> Any:
        if ctx.results is None:
            return self.node.evaluate(ctx)
        key = (self.text, ctx.t_ms)
        result = ctx.results.get(key)
        if result is None:
            result = self.node.evaluate(ctx)
            ctx.results[key] = result
        return result


# --- leaves -----------------------------------------------------------------------------


class Constant(Node):
    def __init__(self, value: float | str):
        self.value = value
        self.kind = "string" if isinstance(value, str) else "scalar"

    def evaluate(self, ctx: Context) -> float | str:
        return self.value


class TimeShift:
    """`offset` and `@` of a selector or subquery: which instant it is evaluated at."""

    def __init__(self, offset: timedelta | None, at: Any):
        self.offset_ms = _duration_ms(offset) if offset is not None else 0
        self.at_kind: str | None = None
        self.at_ms = 0
        if at is not None:
            if at.type == pp.AtModifierType.Start:
                self.at_kind = "start"
            elif at.type == pp.AtModifierType.End:
                self.at_kind = "end"
            else:
                self.at_kind = "at"
                self.at_ms = seconds_to_ms(at.at.timestamp())

    def reference_ms(self, ctx: Context) -> int:
        if self.at_kind is None:
            base = ctx.t_ms
        elif self.at_kind == "start":
            base = ctx.start_ms
        elif self.at_kind == "end":
            base = ctx.end_ms
        else:
            base = self.at_ms
        return base - self.offset_ms


class Selection:
    """The series a selector matches, cached until the database creates or drops a series."""

    def __init__(self, node: pp.VectorSelector):
        if node.matchers.or_matchers:
            raise PromQLError("unsupported PromQL: 'or' inside a label selector")
        matchers = [_compile_matcher(m) for m in node.matchers.matchers]
        if node.name:
            matchers.insert(0, LabelMatcher(METRIC_NAME, MatchType.EQUAL, node.name))
        if all(m.matches("") for m in matchers):
            raise PromQLError("vector selector must contain at least one non-empty matcher")
        self.matchers = matchers
        self.one_name = any(m.name == METRIC_NAME and m.type is MatchType.EQUAL for m in matchers)
        self.shift = TimeShift(node.offset, node.at)
        self._cache_key: tuple[int, int] | None = None
        self._series: list[Series] = []

    def series(self, db: TimeSeriesDB) -> list[Series]:
        key = (id(db), db.generation)
        if key != self._cache_key:
            self._series = db.select(self.matchers)
            self._cache_key = key
        return self._series


class VectorSelectorNode(Node):
    kind = "vector"

    def __init__(self, node: pp.VectorSelector):
        self.selection = Selection(node)
        self._selected: SelectedSeries | None = None
        self._latest: Latest | None = None

    def evaluate(self, ctx: Context) -> Vector:
        """Each series' latest sample (Series.latest_at).  The result is kept, and given again (the same
        list: vectors are never changed in place) while it holds: between scrapes, the monitor's
        ticks select the same samples."""
        t_ms = self.selection.shift.reference_ms(ctx)
        db = ctx.db
        latest = self._latest
        if latest is None or not latest.holds(db, t_ms, ctx.lookback_ms):
            series = self.selection.series(db)
            if self._selected is None or self._selected.series is not series:
                self._selected = SelectedSeries(series)
            latest = self._latest = latest_samples(db, self._selected, t_ms, ctx.lookback_ms)
        return latest.vector

    def sample_times(self, ctx: Context) -> Vector:
        """Like evaluate(), with each sample's own timestamp (seconds) as the value: timestamp()."""
        t_ms = self.selection.shift.reference_ms(ctx)
        out: Vector = []
        for series in self.selection.series(ctx.db):
            sample_ms = series.latest_time_at(t_ms, ctx.lookback_ms)
            if sample_ms is not None:
                out.append((series.labels, sample_ms / 1000))
        return out


class MatrixSelectorNode(Node):
    kind = "matrix"

    def __init__(self, node: pp.MatrixSelector):
        self.selection = Selection(node.vector_selector)
        self.range_ms = _duration_ms(node.range)

    def evaluate(self, ctx: Context) -> Matrix:
        end_ms = self.selection.shift.reference_ms(ctx)
        start_ms = end_ms - self.range_ms
        out: Matrix = []
        for series in self.selection.series(ctx.db):
            times, values = series.window(start_ms, end_ms)
            if times:
                out.append(RangeSample(series.labels, times, values, start_ms, end_ms, ctx.t_ms))
        return out


class SubqueryNode(Node):
    """`expr[range:step]`: the inner expression at step-aligned instants inside the window."""

    kind = "matrix"

    def __init__(self, node: pp.SubqueryExpr, default_step_ms: int):
        self.inner = _compile(node.expr, default_step_ms)
        if self.inner.kind not in ("vector", "scalar"):
            raise PromQLError("subquery is only allowed on instant vector or scalar expressions")
        self.shift = TimeShift(node.offset, node.at)
        assert node.range is not None  # the parser rejects `[:step]`; its stub still says Optional
        self.range_ms = _duration_ms(node.range)
        self.step_ms = _duration_ms(node.step) if node.step else default_step_ms

    def evaluate(self, ctx: Context) -> Matrix:
        end_ms = self.shift.reference_ms(ctx)
        start_ms = end_ms - self.range_ms
        first = -(-start_ms // self.step_ms) * self.step_ms  # first step-aligned instant >= start
        collected: dict[Labels, tuple[list[int], list[float]]] = {}
        for t_ms in range(first, end_ms + 1, self.step_ms):
            for labels, value in _as_vector(self.inner.evaluate(ctx.at(t_ms))):
                times, values = collected.setdefault(labels, ([], []))
                times.append(t_ms)
                values.append(value)
        return [RangeSample(labels, ts, vs, start_ms, end_ms, ctx.t_ms) for labels, (ts, vs) in collected.items()]


# --- operators ------------------------------------------------------------------------


class UnaryMinusNode(Node):
    def __init__(self, operand: Node):
        self.operand = operand
        self.kind = operand.kind

    def evaluate(self, ctx: Context) -> float | Vector:
        value = self.operand.evaluate(ctx)
        if isinstance(value, float):
            return -value
        return ensure_unique_labelsets([(drop_metric_name(labels), -v) for labels, v in value])


class BinaryNode(Node):
    def __init__(self, node: pp.BinaryExpr, default_step_ms: int):
        self.op = str(node.op)
        if self.op not in binary.ARITHMETIC.keys() | binary.COMPARISON.keys() | binary.SET_OPERATORS:
            raise PromQLError(f"unsupported PromQL binary operator {self.op!r}")
        self.lhs = _compile(node.lhs, default_step_ms)
        self.rhs = _compile(node.rhs, default_step_ms)
        modifier = node.modifier
        self.return_bool = bool(modifier and modifier.return_bool)
        self.matching = _matching(modifier, self.op)
        self.kind = "scalar" if self.lhs.kind == "scalar" and self.rhs.kind == "scalar" else "vector"

    def evaluate(self, ctx: Context) -> float | Vector:
        lhs = self.lhs.evaluate(ctx)
        rhs = self.rhs.evaluate(ctx)
        if isinstance(lhs, float) and isinstance(rhs, float):
            return binary.scalar_binop(self.op, lhs, rhs)
        if isinstance(rhs, float):
            return binary.vector_scalar_binop(self.op, lhs, rhs, False, self.return_bool)
        if isinstance(lhs, float):
            return binary.vector_scalar_binop(self.op, rhs, lhs, True, self.return_bool)
        if self.op in binary.SET_OPERATORS:
            return binary.set_binop(self.op, lhs, rhs, self.matching)
        return binary.vector_binop(self.op, lhs, rhs, self.matching, self.return_bool)


class AggregateNode(Node):
    kind = "vector"

    def __init__(self, node: pp.AggregateExpr, default_step_ms: int):
        self.op = str(node.op)
        if self.op not in aggregation.SUPPORTED:
            raise PromQLError(f"unsupported PromQL aggregation {self.op!r}")
        self.expr = _compile(node.expr, default_step_ms)
        self.param = _compile(node.param, default_step_ms) if node.param is not None else None
        self._generation: int | None = None
        modifier = node.modifier
        if modifier is None:
            self.grouping = aggregation.Grouping(False, frozenset())
        else:
            self.grouping = aggregation.Grouping(
                modifier.type == pp.AggModifierType.Without, frozenset(modifier.labels)
            )
        # sum of rate/increase/delta over a selector (the monitor's latency and request-rate queries):
        # summed from the range function's columns, without a vector of (labels, value) in between.
        inner = self.expr.node if isinstance(self.expr, Memoized) else self.expr
        self._columns: RangeFunctionNode | None = None
        if self.op == "sum" and isinstance(inner, RangeFunctionNode) and inner.extrapolated is not None:
            self._columns = inner
            self._column_sum = aggregation.ColumnSum(self.grouping)
        self._last: tuple[Vector | None, Vector] = (None, [])  # the last input without a parameter, its result

    def evaluate(self, ctx: Context) -> Vector:
        if ctx.db.generation != self._generation:
            self.grouping.forget()
            self._generation = ctx.db.generation
        if self._columns is not None:
            labels, values = self._columns.columns(ctx)
            return self._column_sum(labels, values) if labels else []
        vector = self.expr.evaluate(ctx)
        param = self.param.evaluate(ctx) if self.param is not None else None
        if not vector:
            return []
        if param is None and vector is self._last[0]:  # a kept selector result (vectors are never changed)
            return self._last[1]
        result = aggregation.aggregate(self.op, vector, self.grouping, param)
        if param is None:
            self._last = (vector, result)  # holding the input keeps its identity unique
        return result


# --- function calls ---------------------------------------------------------------------


class RangeFunctionNode(Node):
    """rate(), increase(), *_over_time() ...: one value per series window."""

    kind = "vector"

    def __init__(self, name: str, args: list[Node]):
        self.function, self.keeps_name = functions.RANGE_FUNCTIONS[name]
        self.matrix = next(arg for arg in args if arg.kind == "matrix")
        self.scalars = [arg for arg in args if arg.kind == "scalar"]
        # rate/increase/delta straight over a selector (the monitor's and the adapter's queries,
        # over every pod's series at every tick) are computed from the stored samples in place.
        self.extrapolated = _EXTRAPOLATED.get(name) if isinstance(self.matrix, MatrixSelectorNode) else None
        self._windows: _Windows | None = None
        self._selected: SelectedSeries | None = None

    def evaluate(self, ctx: Context) -> Vector:
        if self.extrapolated is not None:
            return self._extrapolated(ctx, *self.extrapolated)
        scalars = [arg.evaluate(ctx) for arg in self.scalars]
        out: Vector = []
        for window in self.matrix.evaluate(ctx):
            value = self.function(window, scalars)
            if value is not None:
                out.append((window.labels if self.keeps_name else drop_metric_name(window.labels), value))
        return ensure_unique_labelsets(out)

    def _extrapolated(self, ctx: Context, is_counter: bool, is_rate: bool) -> Vector:
        """What evaluate() gives for these functions, from columns()."""
        labels, values = self.columns(ctx)
        return list(zip(labels, values.tolist(), strict=True))

    def columns(self, ctx: Context) -> tuple[list[Labels], np.ndarray]:
        """For rate/increase/delta over a selector: evaluate()'s result as its label sets and a column
        of values.  Each series' window is located in place (no window objects), then all of them
        are extrapolated at once.  The located windows are kept for the next evaluation: while the
        store is unchanged and no sample lies between the old and the new window bounds, every
        series' window is the same (_Windows.holds), so only the extrapolation, which depends on the
        bounds, is done again (the monitor's ticks every 5 s between scrapes every 15 s); the label
        list is then the same object as before."""
        assert self.extrapolated is not None
        is_counter, is_rate = self.extrapolated
        matrix = self.matrix
        assert isinstance(matrix, MatrixSelectorNode)
        selection = matrix.selection
        end_ms = selection.shift.reference_ms(ctx)
        start_ms = end_ms - matrix.range_ms
        db = ctx.db
        windows = self._windows
        if windows is None or not windows.holds(db, start_ms, end_ms):
            series = selection.series(db)
            if self._selected is None or self._selected.series is not series:
                self._selected = SelectedSeries(series)
            windows = self._windows = _locate_windows(db, self._selected, start_ms, end_ms, is_counter)
        if not windows.labels:
            return windows.labels, windows.results
        if not windows.unique:
            if not selection.one_name:  # one metric name: dropping it cannot make two label sets equal
                ensure_unique_labels(windows.labels)
            windows.unique = True
        extrapolated = functions.extrapolate(
            windows.results,
            windows.firsts,
            windows.first_ms,
            windows.last_ms,
            windows.counts,
            start_ms,
            end_ms,
            is_counter,
            is_rate,
        )
        return windows.labels, extrapolated


class _Windows:
    """Each selected series' window [start_ms, end_ms] as extrapolate() takes it (series with fewer
    than 2 samples in it left out), and how far the bounds may move with every window unchanged:
    the start within (start_after, start_until], the end within [end_from, end_before)."""

    def __init__(self, db: TimeSeriesDB) -> None:
        self.db = db
        self.version = db.version
        self.labels: list[Labels] = []
        self.unique = False  # the label sets were checked to be unique
        self.results = self.firsts = np.zeros(0)
        self.first_ms = self.last_ms = self.counts = np.zeros(0, dtype=np.int64)
        self.start_after: float = -math.inf  # the newest sample before the start, over all series
        self.start_until: float = math.inf  # the oldest sample at or after the start
        self.end_from: float = -math.inf  # the newest sample at or before the end
        self.end_before: float = math.inf  # the oldest sample after the end

    def holds(self, db: TimeSeriesDB, start_ms: int, end_ms: int) -> bool:
        """These are the windows of [start_ms, end_ms] in `db` as it is now."""
        return (
            db is self.db
            and db.version == self.version
            and self.start_after < start_ms <= self.start_until
            and self.end_from <= end_ms < self.end_before
        )


def _locate_windows(
    db: TimeSeriesDB, selected: SelectedSeries, start_ms: int, end_ms: int, is_counter: bool
) -> _Windows:
    """The windows of the selected series in place (see _Windows), counter resets added for counters.

    Series scraped together share their timestamp list (tsdb.Series), so a window is located once
    per distinct list; each series then only gives its first and last value in it, gathered by
    C-level map() calls.  `last - first` is subtracted by numpy (the same IEEE subtraction as on
    Python floats), and the counter resets of the few series that ever dropped are added one by one
    as before.  When every series is kept, the label list is the SelectedSeries's own (the same object
    at every scrape)."""
    windows = _Windows(db)
    series = selected.series
    if not series:
        return windows
    lists = list(map(TIMES, series))
    where, inverse = distinct_lists(lists)
    los, his = np.zeros(len(where), dtype=np.int64), np.zeros(len(where), dtype=np.int64)
    first_t, last_t = np.zeros(len(where), dtype=np.int64), np.zeros(len(where), dtype=np.int64)
    start_after, start_until = windows.start_after, windows.start_until
    end_from, end_before = windows.end_from, windows.end_before
    for k, index in enumerate(where):
        times = lists[index]
        n = len(times)
        lo = bisect_left(times, start_ms)
        # usually every sample is at or before the end (evaluated at the newest scrape or after)
        hi = n if n and times[-1] <= end_ms else bisect_right(times, end_ms)
        if lo and times[lo - 1] > start_after:
            start_after = times[lo - 1]
        if lo < n and times[lo] < start_until:
            start_until = times[lo]
        if hi and times[hi - 1] > end_from:
            end_from = times[hi - 1]
        if hi < n and times[hi] < end_before:
            end_before = times[hi]
        los[k], his[k] = lo, hi
        if hi - lo >= 2:
            first_t[k], last_t[k] = times[lo], times[hi - 1]
    windows.start_after, windows.start_until = start_after, start_until
    windows.end_from, windows.end_before = end_from, end_before
    counts = (his - los)[inverse]
    kept = counts >= 2  # fewer samples: no rate
    values, unnamed = selected.values, selected.unnamed
    if not kept.all():
        chosen = np.flatnonzero(kept)
        if not len(chosen):
            return windows
        series = [series[i] for i in chosen.tolist()]
        values = [values[i] for i in chosen.tolist()]
        unnamed = [unnamed[i] for i in chosen.tolist()]
        inverse, counts = inverse[chosen], counts[chosen]
    lo_list, last_list = los[inverse].tolist(), (his[inverse] - 1).tolist()
    firsts = np.fromiter(map(getitem, values, lo_list), dtype=np.float64, count=len(lo_list))
    with np.errstate(invalid="ignore", over="ignore"):  # inf - inf is NaN, as on Python floats
        results = np.fromiter(map(getitem, values, last_list), dtype=np.float64, count=len(lo_list)) - firsts
    if is_counter and not selected.never_dropped(db):
        never_dropped = np.fromiter(map(attrgetter("never_dropped"), series), dtype=bool, count=len(series))
        if not never_dropped.all():
            add_resets = functions.add_resets
            for i in np.flatnonzero(~never_dropped).tolist():
                results[i] = add_resets(float(results[i]), values[i], lo_list[i], last_list[i] + 1)
    windows.labels = unnamed
    windows.results = results
    windows.firsts = firsts
    windows.first_ms = first_t[inverse]
    windows.last_ms = last_t[inverse]
    windows.counts = counts
    return windows


# function -> (is_counter, is_rate) of extrapolatedRate
_EXTRAPOLATED = {"rate": (True, True), "increase": (True, False), "delta": (False, False)}


class InstantFunctionNode(Node):
    """Functions of an instant vector and scalar parameters."""

    kind = "vector"

    def __init__(self, name: str, args: list[Node]):
        self.name = name
        self.args = args

    def evaluate(self, ctx: Context) -> Vector:
        values = [arg.evaluate(ctx) for arg in self.args]
        if self.name == "histogram_quantile":
            result = functions.histogram_quantile(values[0], values[1])
        elif self.name == "sort":
            return sorted(values[0], key=lambda s: (not math.isnan(s[1]), s[1]))
        elif self.name == "sort_desc":
            return sorted(values[0], key=lambda s: (not math.isnan(s[1]), s[1]), reverse=True)
        else:
            result = functions.apply_elementwise(self.name, values[0], values[1:])
        return ensure_unique_labelsets(result)


class LabelReplaceNode(Node):
    kind = "vector"

    def __init__(self, args: list[Node]):
        self.vector = args[0]
        strings = [arg.value for arg in args[1:] if isinstance(arg, Constant) and isinstance(arg.value, str)]
        if len(strings) != 4:
            raise PromQLError("label_replace() needs four string literal arguments")
        self.replace = LabelReplace(*strings)

    def evaluate(self, ctx: Context) -> Vector:
        return ensure_unique_labelsets(self.replace.apply(self.vector.evaluate(ctx)))


class AbsentNode(Node):
    """absent(v) / absent_over_time(m): 1 when the argument is empty, with labels from its selector."""

    kind = "vector"

    def __init__(self, raw_argument: Any, argument: Node):
        self.argument = argument
        selector = raw_argument.vector_selector if isinstance(raw_argument, pp.MatrixSelector) else raw_argument
        self.labels = (
            absent_labels(argument.selection.matchers)
            if isinstance(argument, VectorSelectorNode | MatrixSelectorNode) and isinstance(selector, pp.VectorSelector)
            else ()
        )

    def evaluate(self, ctx: Context) -> Vector:
        return [] if self.argument.evaluate(ctx) else [(self.labels, 1.0)]


class TimestampNode(Node):
    """timestamp(v): a selector's own sample times; the evaluation time for computed vectors."""

    kind = "vector"

    def __init__(self, argument: Node):
        self.argument = argument

    def evaluate(self, ctx: Context) -> Vector:
        if isinstance(self.argument, VectorSelectorNode):
            vector = self.argument.sample_times(ctx)
        else:
            vector = [(labels, ctx.t_ms / 1000) for labels, _ in self.argument.evaluate(ctx)]
        return ensure_unique_labelsets([(drop_metric_name(labels), t) for labels, t in vector])


class ScalarFunctionNode(Node):
    """scalar(v), time() and vector(s)."""

    def __init__(self, name: str, args: list[Node]):
        self.name = name
        self.args = args
        self.kind = "vector" if name == "vector" else "scalar"

    def evaluate(self, ctx: Context) -> float | Vector:
        if self.name == "time":
            return ctx.t_ms / 1000
        value = self.args[0].evaluate(ctx)
        if self.name == "vector":
            return [((), value)]
        return value[0][1] if len(value) == 1 else math.nan


_INSTANT_FUNCTIONS = frozenset(functions.ELEMENTWISE_FUNCTIONS) | {
    "clamp",
    "histogram_quantile",
    "sort",
    "sort_desc",
}


def _compile_call(node: pp.Call, default_step_ms: int) -> Node:
    name = node.func.name
    args = [_compile(arg, default_step_ms) for arg in node.args]
    if name in functions.RANGE_FUNCTIONS:
        return RangeFunctionNode(name, args)
    if name in _INSTANT_FUNCTIONS:
        return InstantFunctionNode(name, args)
    if name in ("scalar", "vector", "time"):
        return ScalarFunctionNode(name, args)
    if name == "label_replace":
        return LabelReplaceNode(args)
    if name in ("absent", "absent_over_time"):
        return AbsentNode(node.args[0], args[0])
    if name == "timestamp":
        return TimestampNode(args[0])
    raise PromQLError(f"unsupported PromQL function {name!r}")


# --- compilation ----------------------------------------------------------------------


def _compile(node: Any, default_step_ms: int) -> Node:
    compilers: dict[type, Callable[[Any], Node]] = {
        pp.NumberLiteral: lambda n: Constant(float(n.val)),
        pp.StringLiteral: lambda n: Constant(str(n.val)),
        pp.VectorSelector: VectorSelectorNode,
        pp.MatrixSelector: MatrixSelectorNode,
        pp.ParenExpr: lambda n: _compile(n.expr, default_step_ms),
        pp.UnaryExpr: lambda n: UnaryMinusNode(_compile(n.expr, default_step_ms)),
        pp.BinaryExpr: lambda n: BinaryNode(n, default_step_ms),
        pp.AggregateExpr: lambda n: Memoized(AggregateNode(n, default_step_ms), n.prettify()),
        pp.Call: lambda n: Memoized(_compile_call(n, default_step_ms), n.prettify()),
        pp.SubqueryExpr: lambda n: SubqueryNode(n, default_step_ms),
    }
    compiler = compilers.get(type(node))
    if compiler is None:
        raise PromQLError(f"unsupported PromQL expression {type(node).__name__}")
    return compiler(node)


def _compile_matcher(matcher: pp.Matcher) -> LabelMatcher:
    match_type = _translate(
        matcher.op,
        (
            (pp.MatchOp.Equal, MatchType.EQUAL),
            (pp.MatchOp.NotEqual, MatchType.NOT_EQUAL),
            (pp.MatchOp.Re, MatchType.REGEX),
            (pp.MatchOp.NotRe, MatchType.NOT_REGEX),
        ),
    )
    try:
        return LabelMatcher(matcher.name, match_type, matcher.value)
    except Exception as exc:  # re.error and friends
        raise PromQLError(f"invalid label matcher {matcher}: {exc}") from exc


def _matching(modifier: Any, op: str) -> binary.Matching:
    if modifier is None:
        return binary.Matching(cardinality="many-to-many" if op in binary.SET_OPERATORS else "one-to-one")
    cardinality = _translate(
        modifier.card,
        (
            (pp.VectorMatchCardinality.OneToOne, "one-to-one"),
            (pp.VectorMatchCardinality.ManyToOne, "many-to-one"),
            (pp.VectorMatchCardinality.OneToMany, "one-to-many"),
            (pp.VectorMatchCardinality.ManyToMany, "many-to-many"),
        ),
    )
    matching = modifier.matching
    return binary.Matching(
        on=matching is not None and matching.type == pp.LabelModifierType.Include,
        labels=frozenset(matching.labels) if matching is not None else frozenset(),
        cardinality=cardinality,
        include=tuple(modifier.group_labels or ()),
    )


def _translate(value: Any, table: tuple[tuple[Any, T], ...]) -> T:
    """Look up a promql_parser enum member (they compare equal but are not hashable)."""
    for member, result in table:
        if value == member:
            return result
    raise PromQLError(f"unsupported PromQL construct {value}")


def _duration_ms(delta: timedelta) -> int:
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def _as_vector(value: float | Vector) -> Vector:
    return [((), value)] if isinstance(value, float) else value


# --- public engine ----------------------------------------------------------------------


class PromQLEngine:
    """Answers PromQL strings from a TimeSeriesDB the way Prometheus 2.x would."""

    _PLAN_CACHE_SIZE = 128  # least recently used plans are dropped (they hold their selected series)

    def __init__(self, db: TimeSeriesDB, lookback_delta: float = 300.0, default_subquery_step: float = 60.0):
        self.db = db
        self.lookback_ms = seconds_to_ms(lookback_delta)
        self.default_step_ms = seconds_to_ms(default_subquery_step)
        self._plans: OrderedDict[str, Node] = OrderedDict()
        self._results: dict[tuple[str, int], Any] = {}
        self._results_stamp: tuple[int, int] | None = None

    def compile(self, query: str) -> Node:
        plan = self._plans.get(query)
        if plan is not None:
            self._plans.move_to_end(query)
            return plan
        try:
            ast = pp.parse(query)
        except ValueError as exc:
            raise PromQLError(f"cannot parse PromQL {query!r}: {exc}") from exc
        plan = _compile(ast, self.default_step_ms)
        self._plans[query] = plan
        if len(self._plans) > self._PLAN_CACHE_SIZE:
            self._plans.popitem(last=False)
        return plan

    def instant(self, query: str, t: float) -> list[InstantSample]:
        plan = self.compile(query)
        t_ms = seconds_to_ms(t)
        stamp = (self.db.version, t_ms)
        if stamp != self._results_stamp:  # new data or another instant: forget shared results
            self._results = {}
            self._results_stamp = stamp
        value = self._evaluate(plan, Context(self.db, t_ms, t_ms, t_ms, self.lookback_ms, self._results))
        return [InstantSample(dict(labels), v) for labels, v in value]

    def range(self, query: str, start: float, end: float, step: float) -> list[RangeSeries]:
        plan = self.compile(query)
        start_ms, end_ms, step_ms = seconds_to_ms(start), seconds_to_ms(end), seconds_to_ms(step)
        if step_ms <= 0:
            raise PromQLError("zero or negative query resolution step widths are not accepted")
        if end_ms < start_ms:
            raise PromQLError("end timestamp must not be before start time")
        points: dict[Labels, list[tuple[float, float]]] = {}
        ctx = Context(self.db, start_ms, start_ms, end_ms, self.lookback_ms)
        for t_ms in range(start_ms, end_ms + 1, step_ms):
            ctx.t_ms = t_ms
            for labels, value in self._evaluate(plan, ctx):
                points.setdefault(labels, []).append((t_ms / 1000, value))
        return [RangeSeries(dict(labels), series_points) for labels, series_points in points.items()]

    @staticmethod
    def _evaluate(plan: Node, ctx: Context) -> Vector:
        if plan.kind == "matrix":
            raise PromQLError("a range vector cannot be the result of a query here; apply a function to it")
        if plan.kind == "string":
            raise PromQLError("string results are not supported")
        return _as_vector(plan.evaluate(ctx))
