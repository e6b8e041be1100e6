"""Reading the user's YAML and JSON files (configs, suites, manifests) safely, in one place.

* Only regular files, and at most `MAX_INPUT_BYTES`: a FIFO, /dev/zero or a directory is
  refused after `fstat`, before anything is read, and a larger file is never read whole.
* A key given twice in one mapping is an error with both line numbers (PyYAML and `json`
  otherwise keep the last one silently, so a second `jobs:` would replace the first).
* Aliases may not expand a document beyond `MAX_VALUES` values ("billion laughs"), nor
  refer to a node that contains them.  PyYAML shares aliased objects, so parsing is cheap;
  the expansion happens later, when the data is validated, dumped or walked.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import ComposerError
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

MAX_INPUT_BYTES = 16 * 1024 * 1024
MAX_VALUES = 1_000_000
_MERGE_TAG = "tag:yaml.org,2002:merge"


class InputFileError(ValueError):
    """The file cannot be used as input; the message names the problem, not the file."""


def read_input_text(path: Path, limit: int = MAX_INPUT_BYTES) -> str:
    """The UTF-8 text of a regular file of at most `limit` bytes."""
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused just below.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise InputFileError("file not found") from None
    except OSError as exc:
        raise InputFileError(f"cannot read the file: {exc.strerror}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise InputFileError(f"is {_kind(mode)}, not a regular file")
    with os.fdopen(fd, "rb") as fh:
        try:
            data = fh.read(limit + 1)
        except OSError as exc:
            raise InputFileError(f"cannot read the file: {exc.strerror}") from None
    if len(data) > limit:
        raise InputFileError(f"is larger than {limit // (1024 * 1024)} MiB; not read")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputFileError(f"is not UTF-8 text (byte {exc.start})") from None


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a special file"


class StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys and alias expansion beyond MAX_VALUES."""

    def compose_document(self) -> Node | None:
        node = super().compose_document()
        _check_expansion(node)
        return node

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, MappingNode):
            first: dict[Any, Node] = {}
            for key_node, _ in node.value:
                if not isinstance(key_node, ScalarNode) or key_node.tag == _MERGE_TAG:
                    continue  # merged (<<) keys may be overridden; complex keys fail in the base class
                key = self.construct_object(key_node)
                if key in first:
                    raise ConstructorError(
                        None,
                        None,
                        f"duplicate key {key!r} (first at line {first[key].start_mark.line + 1}); "
                        "each key may appear once",
                        key_node.start_mark,
                    )
                first[key] = key_node
        return super().construct_mapping(node, deep=deep)


def _check_expansion(root: Node | None) -> None:
    """Raise ComposerError if the node graph is cyclic or expands to more than MAX_VALUES values."""
    sizes: dict[int, int] = {}  # by node identity: each shared (anchored) node is counted once
    open_nodes: set[int] = set()

    def size(node: Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in open_nodes:
            raise ComposerError(None, None, "an alias refers to a node that contains it", node.start_mark)
        open_nodes.add(key)
        children: list[Node] = []
        if isinstance(node, SequenceNode):
            children = list(node.value)
        elif isinstance(node, MappingNode):
            children = [part for pair in node.value for part in pair]
        total = 1
        for child in children:
            total += size(child)
            if total > MAX_VALUES:
                raise ComposerError(
                    None,
                    None,
                    f"the document expands to more than {MAX_VALUES:,} values (through &anchor/*alias references)",
                    node.start_mark,
                )
        open_nodes.discard(key)
        sizes[key] = total
        return total

    if root is not None:
        size(root)


def load_yaml(text: str) -> Any:
    """One YAML document; raises yaml.YAMLError (with `problem_mark` where known) on any problem."""
    try:
        return yaml.load(text, Loader=StrictLoader)  # StrictLoader is a SafeLoader
    except RecursionError:
        raise yaml.YAMLError("the document is nested too deeply") from None


def load_yaml_all(text: str) -> list[Any]:
    """Every YAML document of a stream (a manifest file may hold several)."""
    try:
        return list(yaml.load_all(text, Loader=StrictLoader))  # StrictLoader is a SafeLoader
    except RecursionError:
        raise yaml.YAMLError("the document is nested too deeply") from None


def describe_yaml_error(exc: yaml.YAMLError) -> str:
    """'line L, column C: problem' (1-based), as people count lines in an editor."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}" if mark else problem


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}; each key may appear once")
        result[key] = value
    return result


def load_json(text: str) -> Any:
    """A JSON document; json.JSONDecodeError on bad syntax, ValueError on a duplicate key or deep nesting."""
    try:
        return json.loads(text, object_pairs_hook=_unique_pairs)
    except RecursionError:
        raise ValueError("the document is nested too deeply") from None
