"""The suite file: its models, `key.path[0]` overrides, and loading it with every run validated."""

from __future__ import annotations

import copy
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from hpa_experiments.backends.factory import normalize_backend
from hpa_experiments.config import (
    RUN_NAME,
    ExperimentConfig,
    Seconds,
    config_from_data,
    load_config,
    read_config_data,
)
from hpa_experiments.errors import (
    ConfigError,
    HpaExpError,
)
from hpa_experiments.plan import build_plan
from hpa_experiments.validation_messages import describe_error


class SuiteError(ConfigError):
    """The suite file, or a config it names, is invalid. Nothing has run."""

    def render(self) -> str:
        head = f"{self.source}: invalid suite" if self.source else "invalid suite"
        if len(self.problems) == 1:
            return f"{head}: {self.problems[0]}"
        return head + "\n" + "\n".join(f"  - {p}" for p in self.problems)


# --- the suite file --------------------------------------------------------------------------


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SettleConfig(_Section):
    timeout: Seconds = Field(600.0, ge=0)
    poll: Seconds = Field(10.0, gt=0)


class SuiteEntry(_Section):
    config: Path
    repeats: int = Field(1, ge=1)
    overrides: dict[str, Any] = Field(default_factory=dict)


class SuiteConfig(_Section):
    name: str
    description: str = ""
    backend: str | None = None
    output_dir: Path = Path("experiment-data/suites")
    settle: SettleConfig = Field(default_factory=SettleConfig)
    max_retries: int = Field(2, ge=0)
    retry_backoff: Seconds = Field(30.0, ge=0)
    # Kubernetes: an existing HPA/ScaledObject that differs from a run's manifest is taken over
    # (and restored after the run) instead of refused, as `hpa-exp run --take-over`
    take_over: bool = False
    entries: list[SuiteEntry] = Field(min_length=1)

    @field_validator("name")
    @classmethod
    def _folder_name(cls, v: str) -> str:
        if not RUN_NAME.match(v) or len(v) > 80:
            raise ValueError("must be letters, digits, '.', '_' or '-' (it names the suite's folder)")
        return v

    @field_validator("backend")
    @classmethod
    def _backend(cls, v: str | None) -> str | None:
        if v is None:
            return None
        try:
            return normalize_backend(v)
        except HpaExpError as exc:
            raise ValueError(str(exc)) from None


# --- overrides -------------------------------------------------------------------------------

_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*|\[\d+\])*\Z")
_PART = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]")


def parse_override_key(key: str) -> list[str | int]:
    """'jobs[0].rate' -> ['jobs', 0, 'rate']; ValueError for anything else."""
    if not _KEY.match(key):
        raise ValueError("not a key path such as 'jobs[0].rate' or 'simulation.seed'")
    return [int(index) if index else name for name, index in _PART.findall(key)]


def apply_override(raw: dict[str, Any], key: str, value: Any) -> None:
    """Set `key` (a dotted path with [i] list indices) in the parsed config; missing mappings are
    created (validation then reports unknown keys), list indices must exist."""
    parts = parse_override_key(key)
    node: Any = raw
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        where = _render(parts[:depth]) or "the top level"
        if isinstance(part, int):
            if not isinstance(node, list):
                raise ValueError(f"{where} is not a list")
            if part >= len(node):
                raise ValueError(f"{where} has {len(node)} item(s), there is no [{part}]")
        elif not isinstance(node, dict):
            raise ValueError(f"{where} is not a mapping of keys")
        if last:
            node[part] = copy.deepcopy(value)
        else:
            if isinstance(part, str) and node.get(part) is None:
                node[part] = {}
            node = node[part]


def _render(parts: list[str | int]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else ("." if out else "") + part
    return out


# --- loading and validating ------------------------------------------------------------------


@dataclass
class SuiteRun:
    """One run of the suite: entry, repeat, and the validated config for it."""

    entry: int  # 0-based index in `entries`
    repeat: int  # 1-based
    config: ExperimentConfig
    backend: str
    fingerprint: str

    @property
    def key(self) -> str:
        return f"{self.entry}/{self.repeat}/{self.fingerprint}"

    @property
    def label(self) -> str:
        name = self.config.source.name if self.config.source else self.config.name
        return f"entry {self.entry + 1} ({name}) repeat {self.repeat}"


@dataclass
class Suite:
    path: Path
    config: SuiteConfig
    runs: list[SuiteRun]
    folder: Path


def load_suite(path: Path, *, backend: str | None = None, output_dir: Path | None = None) -> Suite:
    """Read the suite and validate every config with its overrides; ConfigError lists all problems."""
    source = str(path)
    try:
        raw = read_config_data(path)  # YAML, or JSON for a .json suite
    except ConfigError as exc:
        raise SuiteError(exc.problems, source) from None
    if not isinstance(raw, dict):
        raise SuiteError("the top level must be a mapping of keys (name, entries, ...)", source)
    try:
        suite = SuiteConfig.model_validate(raw)
    except ValidationError as exc:
        raise SuiteError([describe_error(err, SuiteConfig) for err in exc.errors()], source) from None
    base = path.resolve().parent
    chosen_backend = normalize_backend(backend) if backend else suite.backend
    runs: list[SuiteRun] = []
    problems: list[str] = []
    for i, entry in enumerate(suite.entries):
        config_path = entry.config if entry.config.is_absolute() else base / entry.config
        try:
            config = _entry_config(config_path, entry, f"entries[{i}]")
        except ConfigError as exc:
            problems += [f"entries[{i}] ({exc.source or config_path}): {p}" for p in exc.problems]
            continue
        kind = chosen_backend or normalize_backend(config.backend)
        fingerprint = _fingerprint(config_path, entry, kind)
        for repeat in range(1, entry.repeats + 1):
            runs.append(SuiteRun(i, repeat, _for_repeat(config, kind, repeat), kind, fingerprint))
    if problems:
        raise SuiteError(problems, source)
    out = output_dir or (suite.output_dir if suite.output_dir.is_absolute() else base / suite.output_dir)
    folder = out.resolve() / suite.name
    for candidate in (out, folder):
        if candidate.exists() and not candidate.is_dir():
            raise SuiteError(f"output folder {candidate} exists and is not a folder", source)
    return Suite(path, suite, runs, folder)


def _entry_config(config_path: Path, entry: SuiteEntry, where: str) -> ExperimentConfig:
    config = load_config(config_path)  # the file as it is, with its own messages
    if not entry.overrides:
        build_plan(config)
        return config
    raw = read_config_data(config_path)
    problems = []
    for key, value in entry.overrides.items():
        try:
            apply_override(raw, key, value)
        except ValueError as exc:
            problems.append(f"overrides[{key!r}]: {exc}")
    if problems:
        raise ConfigError(problems, str(config_path))
    config = config_from_data(raw, config_path, source=f"{config_path} with its overrides")
    build_plan(config)
    return config


def _for_repeat(config: ExperimentConfig, backend: str, repeat: int) -> ExperimentConfig:
    copied = config.model_copy(deep=True)
    if backend == "simulation":
        copied.simulation.seed = config.simulation.seed + repeat - 1
    return copied


def _fingerprint(config_path: Path, entry: SuiteEntry, backend: str) -> str:
    """Changes when the config file, the overrides or the backend change (then the run is redone)."""
    digest = hashlib.sha256(config_path.read_bytes())
    digest.update(json.dumps([entry.overrides, backend], sort_keys=True, default=str).encode())
    return digest.hexdigest()[:12]
