"""The search space file: which autoscaler fields to vary, over which values, and how to search.

```yaml
name: high-load-grid      # the search's folder: <output>/tunes/<name>
search: grid              # grid (every combination) | random (`samples` points, seeded)
samples: 10               # random only
seed: 1                   # random only: the sampler's seed
seeds: 3                  # twin seeds per point (an ensemble from the experiment's simulation.seed)
target_attainment: 0.95   # the recommendation: the cheapest front point at or above this
parameters:               # paths under the manifest's `spec`
  metrics[num_requests_waiting].target: [10, 20, 40]
  maxReplicas: {min: 4, max: 10, step: 3}
  behavior.scaleDown.stabilizationWindowSeconds: [0, 120, 300]
```

A path is dotted keys with `[n]` (a list index) or `[name]` (the HPA metric or KEDA trigger of
that name).  `metrics[<name>].target` sets whichever of averageValue / value /
averageUtilization the metric's target has; on a KEDA trigger `threshold` and
`activationThreshold` are its `metadata` fields.  A key the manifest lacks is added only when it
is an optional HPA / ScaledObject field (a stabilization window on an HPA without `behavior`),
so a typo is an error; list entries must exist.  A range
`{min, max, step}` lists min, min+step, ... up to max; `{min, max}` without step is for random
search (uniform; whole numbers when both bounds are).  Every point is validated like the
experiment's own manifest before anything runs.
"""

from __future__ import annotations

import copy
import difflib
import itertools
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from hpa_experiments.config import RUN_NAME
from hpa_experiments.errors import ConfigError
from hpa_experiments.yaml_io import InputFileError, describe_yaml_error, load_yaml, read_input_text

MAX_POINTS = 10_000
SPACE = "search space"  # what ConfigError calls the file
Number = int | float
SEGMENT = re.compile(r"([A-Za-z][A-Za-z0-9_]*)(?:\[([^\[\]]+)\])?")
# fields written as Kubernetes quantities (strings), as the API server stores them
QUANTITY_FIELDS = ("averageValue", "value", "threshold", "activationThreshold")
TARGET_FIELDS = ("averageValue", "value", "averageUtilization")
# optional HPA / ScaledObject keys a point may add when the manifest leaves them out
ADDABLE_SECTIONS = frozenset(
    {"behavior", "scaleUp", "scaleDown", "advanced", "horizontalPodAutoscalerConfig", "fallback"}
)
ADDABLE_FIELDS = frozenset(
    {
        "minReplicas", "stabilizationWindowSeconds", "selectPolicy", "tolerance",
        "pollingInterval", "cooldownPeriod", "initialCooldownPeriod", "minReplicaCount",
        "maxReplicaCount", "idleReplicaCount", "failureThreshold", "replicas",
    }
)  # fmt: skip


class Range(BaseModel):
    model_config = ConfigDict(extra="forbid")
    min: float
    max: float
    step: float | None = Field(None, gt=0)


class SpaceFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    search: Literal["grid", "random"] = "grid"
    samples: int | None = Field(None, ge=1, le=MAX_POINTS)
    seed: int = Field(0, ge=0)
    seeds: int = Field(3, ge=2, le=1000, description="twin seeds per point")
    target_attainment: float = Field(0.95, gt=0, le=1)
    parameters: dict[str, list[Number | str] | Range] = Field(min_length=1)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not RUN_NAME.match(v) or len(v) > 60:
            raise ValueError("letters, digits, '.', '_' or '-', at most 60, starting and ending with a letter or digit")
        return v


@dataclass(frozen=True)
class Point:
    index: int
    values: dict[str, Number | str]

    @property
    def label(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.values.items())


@dataclass
class SearchSpace:
    source: Path
    spec: SpaceFile
    points: list[Point]

    @property
    def name(self) -> str:
        return self.spec.name


def load_space(path: Path) -> SearchSpace:
    """Read and check a space file; its points in a fixed order (random ones from its seed)."""
    source = str(path)
    try:
        raw = load_yaml(read_input_text(path))
    except InputFileError as exc:
        raise ConfigError(str(exc), source, kind=SPACE) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML: {describe_yaml_error(exc)}", source, kind=SPACE) from None
    if not isinstance(raw, dict):
        raise ConfigError("the top level must be a mapping (name, search, parameters, ...)", source, kind=SPACE)
    try:
        spec = SpaceFile.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError([_describe(err) for err in exc.errors()], source, kind=SPACE) from None
    problems = []
    for key in spec.parameters:
        problem = path_problem(key)
        if problem:
            problems.append(f"parameters.{key}: {problem}")
    if spec.search == "grid" and spec.samples is not None:
        problems.append("samples: only for search: random (a grid runs every combination)")
    if spec.search == "random" and spec.samples is None:
        problems.append("samples: required for search: random (how many points to draw)")
    choices: dict[str, list[Number | str] | Range] = {}
    for key, values in spec.parameters.items():
        problem = _values_problem(values, spec.search)
        if problem:
            problems.append(f"parameters.{key}: {problem}")
        choices[key] = values
    if problems:
        raise ConfigError(problems, source, kind=SPACE)
    points = _points(spec, choices)
    if not points:
        raise ConfigError("parameters: the space has no point", source, kind=SPACE)
    if len(points) > MAX_POINTS:
        raise ConfigError(
            f"parameters: {len(points)} points; at most {MAX_POINTS} (use search: random)", source, kind=SPACE
        )
    return SearchSpace(path.resolve(), spec, points)


def _describe(err: Any) -> str:
    where = ".".join(str(p) for p in err["loc"] if not str(p).startswith(("list[", "Range", "function")))
    return f"{where or '(top level)'}: {err['msg']}"


def path_problem(key: str) -> str | None:
    try:
        parse_path(key)
    except ValueError as exc:
        return str(exc)
    return None


def parse_path(key: str) -> list[tuple[str, str | None]]:
    """'metrics[kv].target' -> [('metrics', 'kv'), ('target', None)]."""
    parts = []
    for segment in key.split("."):
        match = SEGMENT.fullmatch(segment)
        if not match:
            raise ValueError(f"'{segment}' is not a key or key[index] / key[name] (path under the manifest's spec)")
        parts.append((match.group(1), match.group(2)))
    return parts


def _range_values(r: Range) -> list[Number]:
    assert r.step is not None
    count = int((r.max - r.min) / r.step + 1e-9) + 1
    whole = all(float(x).is_integer() for x in (r.min, r.max, r.step))
    values = [r.min + i * r.step for i in range(count)]
    return [int(v) if whole else round(v, 9) for v in values]


def _values_problem(values: list[Number | str] | Range, search: str) -> str | None:
    if isinstance(values, list):
        if not values:
            return "give at least one value"
        if len({repr(v) for v in values}) != len(values):
            return "values repeat"
        return None
    if values.min > values.max:
        return f"min {values.min} is above max {values.max}"
    if values.step is None and search == "grid":
        return "a grid needs a list or {min, max, step} (a range without step is for search: random)"
    if values.step is not None and (values.max - values.min) / values.step > MAX_POINTS:
        return f"more than {MAX_POINTS} values"
    return None


def _points(spec: SpaceFile, choices: dict[str, list[Number | str] | Range]) -> list[Point]:
    keys = list(choices)
    if spec.search == "grid":
        lists = [v if isinstance(v, list) else _range_values(v) for v in choices.values()]
        combos = list(itertools.islice(itertools.product(*lists), MAX_POINTS + 1))
        return [Point(i, dict(zip(keys, combo, strict=True))) for i, combo in enumerate(combos)]
    rng = random.Random(spec.seed)
    assert spec.samples is not None
    points: list[Point] = []
    seen: set[str] = set()
    attempts = 0
    while len(points) < spec.samples and attempts < spec.samples * 100:
        attempts += 1
        values = {key: _draw(rng, choice) for key, choice in choices.items()}
        fingerprint = repr(sorted(values.items()))
        if fingerprint not in seen:  # a discrete space smaller than `samples` gives fewer points
            seen.add(fingerprint)
            points.append(Point(len(points), values))
    return points


def _draw(rng: random.Random, choice: list[Number | str] | Range) -> Number | str:
    if isinstance(choice, list):
        return choice[rng.randrange(len(choice))]
    if choice.step is not None:
        return rng.choice(_range_values(choice))
    if float(choice.min).is_integer() and float(choice.max).is_integer():
        return rng.randint(int(choice.min), int(choice.max))
    return round(rng.uniform(choice.min, choice.max), 6)


def apply_point(manifest: dict[str, Any], values: dict[str, Number | str]) -> dict[str, Any]:
    """A copy of the HPA or ScaledObject manifest with the point's values set under `spec`.
    Raises ValueError naming the path part that does not exist."""
    doc = copy.deepcopy(manifest)
    keda = doc.get("kind") == "ScaledObject"
    for key, value in values.items():
        _set(doc.setdefault("spec", {}), parse_path(key), value, keda)
    return doc


def _set(spec: dict[str, Any], parts: list[tuple[str, str | None]], value: Number | str, keda: bool) -> None:
    node: Any = spec
    trail = "spec"
    for i, (name, selector) in enumerate(parts):
        last = i == len(parts) - 1
        if not isinstance(node, dict):
            raise ValueError(f"{trail} is not a mapping")
        if last and selector is None:
            _set_leaf(node, name, value, trail, keda)
            return
        if selector is None:
            if name not in node:
                _check_new(name, ADDABLE_SECTIONS, node, trail)
                node[name] = {}
            node = node[name]
            trail += f".{name}"
            continue
        items = node.get(name)
        if not isinstance(items, list):
            raise ValueError(f"{trail}.{name} is not a list in the manifest")
        node = _select(items, selector, f"{trail}.{name}")
        trail += f".{name}[{selector}]"
        if last:
            raise ValueError(f"{trail}: name a field of this entry (e.g. .target)")


def _select(items: list[Any], selector: str, where: str) -> Any:
    if selector.isdigit():
        index = int(selector)
        if index >= len(items):
            raise ValueError(f"{where} has {len(items)} entries; [{index}] does not exist")
        return items[index]
    for item in items:
        if isinstance(item, dict) and selector in _entry_names(item):
            return item
    names = sorted({n for item in items if isinstance(item, dict) for n in _entry_names(item)})
    raise ValueError(f"{where} has no entry named '{selector}' (names: {', '.join(names) or 'none'})")


def _entry_names(item: dict[str, Any]) -> set[str]:
    """An HPA metric's name (pods/object/external metric.name, resource name) or a KEDA trigger's `name`."""
    names = {str(item["name"])} if "name" in item else set()
    for kind in ("pods", "object", "external", "containerResource", "resource"):
        block = item.get(kind)
        if isinstance(block, dict):
            metric = block.get("metric")
            if isinstance(metric, dict) and metric.get("name"):
                names.add(str(metric["name"]))
            if block.get("name"):
                names.add(str(block["name"]))
    return names


def _set_leaf(node: dict[str, Any], name: str, value: Number | str, trail: str, keda: bool) -> None:
    if name == "target" and "type" in node and isinstance(_target_block(node), dict):
        block = _target_block(node)
        assert block is not None
        field = next((f for f in TARGET_FIELDS if f in block), None)
        if field is None:
            raise ValueError(f"{trail}: its target has none of {', '.join(TARGET_FIELDS)}")
        block[field] = _quantity(value) if field in QUANTITY_FIELDS else value
        return
    if keda and name in ("threshold", "activationThreshold") and isinstance(node.get("metadata"), dict):
        node["metadata"][name] = _quantity(value)
        return
    if name not in node:
        _check_new(name, ADDABLE_FIELDS, node, trail)
    node[name] = _quantity(value) if name in QUANTITY_FIELDS and trail.endswith(".target") else value


def _check_new(name: str, allowed: frozenset[str], node: dict[str, Any], trail: str) -> None:
    """A key the manifest lacks is added only when it is an optional field of an HPA or
    ScaledObject, so a typo (`maxReplica`) is an error, not a point that changes nothing."""
    if name in allowed:
        return
    close = difflib.get_close_matches(name, [*node, *allowed], n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    raise ValueError(f"{trail}.{name} is not in the manifest and is not an optional field tune adds{hint}")


def _target_block(metric: dict[str, Any]) -> dict[str, Any] | None:
    kind = str(metric.get("type", ""))
    block = metric.get(kind[:1].lower() + kind[1:])  # type Pods -> pods, ContainerResource -> containerResource
    target = block.get("target") if isinstance(block, dict) else None
    return target if isinstance(target, dict) else None


def _quantity(value: Number | str) -> str:
    """A Kubernetes quantity string: 20 -> '20', 0.5 -> '0.5' (never '20.0')."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
