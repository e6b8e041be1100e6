"""label_replace() and the labels of absent(), as Prometheus 2.x computes them."""

from __future__ import annotations

import re

from hpa_experiments.backends.sim.promql_engine.errors import PromQLError
from hpa_experiments.backends.sim.promql_engine.tsdb import LabelMatcher, MatchType
from hpa_experiments.backends.sim.promql_engine.values import METRIC_NAME, Labels, Vector, make_labels

_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_TEMPLATE_NAME = re.compile(r"\w+")


class LabelReplace:
    """label_replace(v, dst, replacement, src, regex) with Go's `$1` / `${name}` expansion."""

    def __init__(self, dst: str, replacement: str, src: str, regex: str):
        try:
            self.regex = re.compile(f"(?:{regex})")
        except re.error as exc:
            raise PromQLError(f"invalid regular expression in label_replace(): {regex}") from exc
        if not _LABEL_NAME.fullmatch(dst):
            raise PromQLError(f"invalid destination label name in label_replace(): {dst}")
        self.dst, self.replacement, self.src = dst, replacement, src

    def apply(self, vector: Vector) -> Vector:
        out: Vector = []
        for labels, value in vector:
            match = self.regex.fullmatch(dict(labels).get(self.src, ""))
            if match is None:
                out.append((labels, value))
                continue
            replaced = {**dict(labels), self.dst: expand_go_template(self.replacement, match)}
            out.append((make_labels(replaced.items()), value))
        return out


def expand_go_template(template: str, match: re.Match[str]) -> str:
    """Go's Regexp.ExpandString: `$1`, `${1}`, `$name`, `${name}`, `$$`; unknown groups give ""."""
    out: list[str] = []
    while True:
        before, dollar, template = template.partition("$")
        out.append(before)
        if not dollar:
            return "".join(out)
        if template.startswith("$"):
            out.append("$")
            template = template[1:]
            continue
        braced = template.startswith("{")
        name_match = _TEMPLATE_NAME.match(template, 1 if braced else 0)
        if name_match is None or (braced and not template.startswith("}", name_match.end())):
            out.append("$")  # malformed: the dollar stays as text
            continue
        name = name_match.group()
        template = template[name_match.end() + (1 if braced else 0) :]
        out.append(_group_text(match, name))


def _group_text(match: re.Match[str], name: str) -> str:
    if name.isdigit():
        if (len(name) > 1 and name.startswith("0")) or len(name) > 8:
            return ""
        number = int(name)
        return (match.group(number) or "") if number <= match.re.groups else ""
    return (match.group(name) or "") if name in match.re.groupindex else ""


def absent_labels(matchers: list[LabelMatcher]) -> Labels:
    """Labels of absent(selector): its equality matchers, except names matched in other ways too."""
    labels: dict[str, str] = {}
    dropped: list[str] = []
    for matcher in matchers:
        if matcher.name == METRIC_NAME:
            continue
        if matcher.type is MatchType.EQUAL and matcher.name not in labels:
            labels[matcher.name] = matcher.value
        else:
            dropped.append(matcher.name)
    for name in dropped:
        labels.pop(name, None)
    return make_labels(labels.items())
