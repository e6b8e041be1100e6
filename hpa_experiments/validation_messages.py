"""Pydantic validation errors as one plain line each, for experiment configs and suites alike.

Each line names the key path (`jobs[0].rate`), says what is wrong in words, shows the value
given, and for an unknown key suggests the closest known key of that section.
"""

from __future__ import annotations

import difflib
from typing import Any

from pydantic import BaseModel
from pydantic_core import ErrorDetails


def _path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _fields_at(root: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Known keys of the section a location points into (for 'did you mean')."""
    model: Any = root
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) if hasattr(model, "model_fields") else None
        if field is None:
            return []
        annotation = field.annotation
        args = getattr(annotation, "__args__", ())
        candidates = [annotation, *args]
        model = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if model is None:
            return []
    return [n for n, f in model.model_fields.items() if not f.exclude]


def show_value(value: Any) -> str:
    """Numbers as written (5, not 5.0); anything else as its repr."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return repr(value)


def describe_error(err: ErrorDetails, root: type[BaseModel]) -> str:
    """One line for one pydantic error: the key path, then the problem in plain words."""
    loc, kind, given = tuple(err["loc"]), err["type"], err.get("input")
    where = _path(loc)
    ctx = err.get("ctx") or {}
    if kind == "extra_forbidden":
        close = difflib.get_close_matches(str(loc[-1]), _fields_at(root, loc), n=1, cutoff=0.6)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        return f"{where}: unknown key{hint}"
    if kind == "missing":
        return f"{where}: is required"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        op = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}[kind]
        bound = next(iter(ctx.values()))
        return f"{where}: must be {op} {show_value(bound)} (got {show_value(given)})"
    if kind == "finite_number":
        return f"{where}: must be a finite number (got {given!r})"
    if kind in ("float_parsing", "float_type", "int_parsing", "int_type", "int_from_float"):
        return f"{where}: must be a number (got {given!r})"
    if kind in ("bool_parsing", "bool_type"):
        return f"{where}: must be true or false (got {given!r})"
    if kind in ("string_type",):
        return f"{where}: must be a text string (got {given!r})"
    if kind in ("list_type",):
        return f"{where}: must be a list (got {type(given).__name__})"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"{where}: must be a mapping of keys (got {type(given).__name__})"
    if kind == "too_short":
        return f"{where}: must not be empty"
    if kind == "literal_error":
        return f"{where}: must be one of {ctx.get('expected')} (got {given!r})"
    if kind == "value_error":
        return f"{where}: {ctx.get('error', err['msg'])!s}"
    if kind == "path_type":
        return f"{where}: must be a file path (got {given!r})"
    return f"{where}: {err['msg']}"
