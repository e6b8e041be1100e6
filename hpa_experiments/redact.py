"""Keeping credentials out of everything a run writes or prints.

A config or flag can hold secrets in two places: a password (and user) in a URL
(`https://user:pass@host`, also `?token=...`) and the values of `prometheus.headers`.  Bearer
tokens are never in the config (only the name of their variable or file); they stay inside the
Prometheus client.  What leaves the process -- run.json, the config copy in the run directory,
messages -- goes through these functions, and each secret becomes `***`.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import yaml

from hpa_experiments.yaml_io import InputFileError, load_json, load_yaml, read_input_text

REDACTED = "***"
# Query parameters that carry credentials in practice (e.g. `?access_token=` behind some proxies).
_SECRET_PARAMS = ("token", "access_token", "api_key", "apikey", "key", "password", "secret", "auth", "sig")


def redact_url(url: str) -> str:
    """The URL with user:password and credential-like query values replaced by ***."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # not a URL we can take apart: show nothing of it that could be secret
        return REDACTED if "@" in url or "?" in url else url
    netloc = parts.netloc
    if parts.username is not None or parts.password is not None:
        host = parts.hostname or ""
        netloc = f"{REDACTED}@{host}" + (f":{port}" if port else "")
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(name.lower() in _SECRET_PARAMS for name, _ in pairs):
            query = urlencode([(n, REDACTED if n.lower() in _SECRET_PARAMS else v) for n, v in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def url_secrets(url: str | None) -> list[str]:
    """The secret parts of a URL (user, password, credential query values), for text redaction."""
    if not url:
        return []
    try:
        parts = urlsplit(url)
    except ValueError:
        return []
    found = [s for s in (parts.username, parts.password) if s]
    found += [v for n, v in parse_qsl(parts.query) if n.lower() in _SECRET_PARAMS and v]
    return found


def redact_config(data: Any) -> Any:
    """A copy of a config mapping (parsed or dumped) with the Prometheus URL and header values redacted."""
    if not isinstance(data, Mapping) or not isinstance(data.get("prometheus"), Mapping):
        return data
    result = copy.deepcopy(dict(data))
    prom = dict(result["prometheus"])
    if isinstance(prom.get("url"), str):
        prom["url"] = redact_url(prom["url"])
    if isinstance(prom.get("headers"), Mapping):
        prom["headers"] = {name: REDACTED for name in prom["headers"]}
    result["prometheus"] = prom
    return result


CONFIG_COPY_NOTE = (
    "# Copy of {source} with its credentials (Prometheus URL password, header values) replaced by ***;\n"
    "# comments and formatting of the original are not kept.\n"
)


def write_config_copy(source: Path, target: Path) -> None:
    """Copy the config file into the run directory: as it is, or re-written with *** when it holds
    credentials.  Raises OSError as shutil.copyfile does."""
    try:
        text = read_input_text(source)
    except InputFileError as exc:
        raise OSError(f"{source}: {exc}") from None
    try:
        data = load_json(text) if source.suffix.lower() == ".json" else load_yaml(text)
    except (ValueError, yaml.YAMLError):
        data = None  # validated before the run; only a file changed meanwhile gets here
    redacted = redact_config(data)
    if redacted == data:
        target.write_text(text, encoding="utf-8")
        return
    note = CONFIG_COPY_NOTE.format(source=source.name)
    target.write_text(note + yaml.safe_dump(redacted, sort_keys=False, allow_unicode=True), encoding="utf-8")
