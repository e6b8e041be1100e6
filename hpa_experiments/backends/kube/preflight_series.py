"""Preflight: the series each PromQL column reads exist, for the exact selector its query uses.

A query whose selector matches nothing returns an empty result, not an error: without this
check a typo in `model_name`, another namespace, or a relabelling difference
(`exported_namespace`) gives a run with empty latency columns and no warning.  The
selectors are taken from the queries themselves (parsed with promql-parser), so the check
covers the standard columns, `metrics.selector` and the user's `metrics.prometheus` alike.
When a selector matches nothing, the message names the label values Prometheus does have
for those metrics, so the mismatch is obvious.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

import promql_parser

from hpa_experiments.backends.base import QueryError
from hpa_experiments.backends.kube.prom import PromClient

SHOWN_LABELS = ("model_name", "namespace", "pod")
MAX_VALUES = 8
_OPS = {"MatchOp.Equal": "=", "MatchOp.NotEqual": "!=", "MatchOp.Re": "=~", "MatchOp.NotRe": "!~"}


@dataclass(frozen=True)
class Selector:
    """One vector selector of a query: metric name, label matchers (label, op, value), PromQL text."""

    name: str
    matchers: tuple[tuple[str, str, str], ...]
    text: str


def query_selectors(promql: str) -> list[Selector]:
    """The vector selectors a query reads (an unparsable query has none: the server check reports it)."""
    try:
        expr = promql_parser.parse(promql)
    except ValueError:
        return []
    found: list[Selector] = []

    def visit(node: object) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            matchers = tuple(
                (m.name, _OPS.get(str(m.op), str(m.op)), m.value)
                for m in node.matchers.matchers
                if m.name != "__name__"
            )
            found.append(Selector(node.name or "", matchers, str(node)))

    promql_parser.walk(expr, visit)
    return found


def matches(op: str, wanted: str, value: str) -> bool:
    """Whether a label value satisfies one matcher (regexes are anchored, as in PromQL)."""
    if op == "=":
        return value == wanted
    if op == "!=":
        return value != wanted
    try:
        hit = re.fullmatch(wanted, value) is not None
    except re.error:
        return True  # a regex Python cannot read: do not claim it matches nothing
    return hit if op == "=~" else not hit


def _show(values: list[str]) -> str:
    shown = ", ".join(f'"{v}"' for v in values[:MAX_VALUES])
    more = f" and {len(values) - MAX_VALUES} more" if len(values) > MAX_VALUES else ""
    return (shown + more) if values else "none"


def _columns(columns: Iterable[str]) -> str:
    return ", ".join(dict.fromkeys(columns))


class SeriesCheck:
    """Runs the check for a set of columns; collects problems and warnings.

    `traffic_born`: metric names a vLLM-compatible server creates only with its first request
    (llm-d-inference-sim's histograms and counters): absent altogether, they are a warning.
    `optional_columns`: columns whose missing series are a warning, not a problem.
    """

    def __init__(
        self,
        prom: PromClient,
        available: Collection[str],
        traffic_born: Collection[str],
        optional_columns: Collection[str] = (),
    ):
        self.prom = prom
        self.available = set(available)
        self.traffic_born = set(traffic_born)
        self.optional = set(optional_columns)
        self.problems: list[str] = []
        self.warnings: list[str] = []

    def run(self, queries: Mapping[str, str]) -> None:
        by_selector: dict[str, tuple[Selector, list[str]]] = {}
        for column, promql in queries.items():
            for sel in query_selectors(promql):
                by_selector.setdefault(sel.text, (sel, []))[1].append(column)
        missing: dict[tuple[tuple[str, str, str], ...], list[tuple[Selector, list[str]]]] = {}
        for sel, columns in by_selector.values():
            try:
                found = self.prom.query(f"count({sel.text})")
            except QueryError as exc:
                self.problems.append(f"cannot check the series of {_columns(columns)}: {exc}")
                continue
            if not found:
                missing.setdefault(sel.matchers, []).append((sel, columns))
        for matchers, group in missing.items():
            self._report(matchers, group)

    def _report(self, matchers: tuple[tuple[str, str, str], ...], group: list[tuple[Selector, list[str]]]) -> None:
        absent = [(s, c) for s, c in group if s.name and s.name not in self.available]
        elsewhere = [(s, c) for s, c in group if (s, c) not in absent]
        soft = [(s, c) for s, c in absent if s.name in self.traffic_born or self._optional(c)]
        hard = [(s, c) for s, c in absent if (s, c) not in soft]
        if soft:
            names = ", ".join(s.name for s, _ in soft)
            self.warnings.append(
                f"Prometheus has no {names} yet (column(s) {_columns(c for _, cs in soft for c in cs)}); a vLLM "
                "server may create such series with its first request: the run warns if they stay empty under load"
                + self._close_names(s.name for s, _ in soft)
            )
        if hard:
            names = ", ".join(s.name for s, _ in hard)
            self.problems.append(
                f"column(s) {_columns(c for _, cs in hard for c in cs)} need {names}, which Prometheus does not have "
                "at all. Fix: check that the model server is scraped (Prometheus targets page; "
                "manifests/monitoring/prometheus.yaml) and exports these names"
                + self._close_names(s.name for s, _ in hard)
            )
        if elsewhere:
            self._mismatch(matchers, elsewhere)

    def _optional(self, columns: list[str]) -> bool:
        """Optional columns and the user's own queries: a metric absent altogether may still appear."""
        return all(c in self.optional or c.startswith("query_") for c in columns)

    def _close_names(self, names: Iterable[str]) -> str:
        hints = []
        for name in names:
            close = difflib.get_close_matches(name, self.available, n=1, cutoff=0.92)  # typos, not siblings
            if close:
                hints.append(f"{name} -> did you mean {close[0]}?")
        return (" (" + "; ".join(hints) + ")") if hints else ""

    def _mismatch(self, matchers: tuple[tuple[str, str, str], ...], group: list[tuple[Selector, list[str]]]) -> None:
        """The metrics exist, but not with these labels: show the values Prometheus has."""
        names = [s.name for s, _ in group if s.name]
        columns = _columns(c for _, cs in group for c in cs)
        selector = "{" + ",".join(f'{label}{op}"{value}"' for label, op, value in matchers) + "}"
        labels = list(dict.fromkeys([*(m[0] for m in matchers), *SHOWN_LABELS]))
        match = [f'{{__name__="{n}"}}' for n in names] or ['{__name__!=""}']
        facts, failing = [], []
        for label in labels:
            try:
                values = self._label_values(label, match)
            except QueryError as exc:
                facts.append(f"{label}: unknown ({exc})")
                continue
            facts.append(f"{label}={_show(values)}")
            for m_label, op, wanted in matchers:
                if m_label == label and not any(matches(op, wanted, v) for v in values or [""]):
                    failing.append(f'{label}{op}"{wanted}"')
        if not failing and names and all(n in self.traffic_born for n in names):
            # every matcher matches values these metrics have had: they are not current, as on a
            # server restarted since its last request (it creates them again with the next one)
            self.warnings.append(
                f"column(s) {columns}: no current series of {', '.join(names)} match {selector}, though "
                f"Prometheus has had them with these labels ({'; '.join(facts)}); a vLLM server creates them "
                "with its first request: the run warns if they stay empty under load"
            )
            return
        problem = (
            f"column(s) {columns}: no series of {', '.join(names) or 'any metric'} match {selector}"
            + (f" ({', '.join(failing)} matches none of the values Prometheus has)" if failing else "")
            + f". Prometheus has these metrics with {'; '.join(facts)}. Fix: "
            + _fix(failing)
        )
        if all(c in self.optional for _, cs in group for c in cs):
            self.warnings.append(problem)
        else:
            self.problems.append(problem)

    def _label_values(self, label: str, match: list[str]) -> list[str]:
        return self.prom.label_values(label, match)


def _fix(failing: list[str]) -> str:
    labels = {f.split("=")[0].rstrip("!~") for f in failing}
    parts = []
    if "model_name" in labels:
        parts.append("set model_name in the config to the served model name")
    if "namespace" in labels:
        parts.append(
            "set namespace to where the model server runs (behind some ServiceMonitors the label is exported_namespace)"
        )
    if labels - {"model_name", "namespace"} or not labels:
        parts.append("correct metrics.selector (or the query in metrics.prometheus) to labels the series carry")
    return "; ".join(parts)
