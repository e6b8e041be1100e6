"""Random YAML documents never produce a traceback: a ConfigError (exit 2) or a valid config."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hpa_experiments.config import load_config
from hpa_experiments.errors import ConfigError

pytestmark = pytest.mark.slow  # every test here takes seconds (benchmarks/README.md: the fast loop)

KEYS = [
    "name",
    "jobs",
    "duration",
    "start_delay",
    "rate",
    "gap",
    "cooldown",
    "enabled",
    "metrics",
    "interval",
    "hpa",
    "manifest",
    "output",
    "base_dir",
    "prometheus",
    "simulation",
    "values",
    "slo",
]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["5m", "1h", "-3", "nan", "../x.yaml", "vllm"]),
)
documents = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=8)), children, max_size=6),
    ),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=documents)
def test_random_documents_never_crash(tmp_path: Path, doc: object) -> None:
    path = tmp_path / "fuzz.yaml"
    path.write_text(yaml.safe_dump(doc))
    try:
        load_config(path)
    except ConfigError as exc:
        assert str(exc).startswith(str(path))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=200))
def test_random_text_never_crashes(tmp_path: Path, text: str) -> None:
    path = tmp_path / "fuzz.yaml"
    path.write_text(text, encoding="utf-8")
    with contextlib.suppress(ConfigError):
        load_config(path)
