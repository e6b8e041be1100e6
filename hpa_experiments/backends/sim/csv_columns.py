"""CSV rows built from columns with numpy, byte for byte what Python's `%`-format writes.

requests.csv gets millions of rows, and CPython formats about a million floats a second; here a
chunk of rows is written with a few dozen array operations per column instead.  Each column
becomes a matrix of ASCII bytes, one row per CSV row, right-aligned and padded with zero bytes;
the matrices and the separators are laid side by side, and dropping every zero byte leaves the
rows exactly as `%`-formatting them one by one would.

A number is written from the integer `N` = round(x * 10**digits) (digits after the point): that
is `%.<digits>f` exactly whenever the product's rounding error cannot move `N`, i.e. unless the
product lies within its own rounding error of a half (see `rounded_scaled`).  Rows with such a
value, or with a negative, -0.0, non-finite or very large one, are not formatted here: the caller
formats them (`Rows.format`'s `python_row`), so every row comes out right.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

_PAD = 0  # the byte dropped at the end (never part of a row: rows are text)
_LIMIT = 2.0**52  # scaled values at or above this go to the Python fallback


def rounded_scaled(x: np.ndarray, digits: int) -> tuple[np.ndarray, np.ndarray]:
    """`rint(x * 10**digits)` and where that may differ from the correctly rounded decimal.

    The scaled double is within 2**-53 of its own magnitude of the exact product, so its nearest
    integer is the exact product's unless the scaled value is that close to a half (`uncertain`,
    which also marks non-finite values)."""
    scale = 10.0**digits
    scaled = x * scale
    distance = np.trunc(scaled)  # becomes |fraction - 1/2|, in place (arrays of millions of requests)
    np.subtract(scaled, distance, out=distance)
    np.abs(distance, out=distance)
    distance -= 0.5
    np.abs(distance, out=distance)
    tolerance = np.abs(scaled)
    tolerance *= 2.0**-48
    tolerance += 2.0**-60
    uncertain = distance <= tolerance
    del distance, tolerance
    uncertain |= ~np.isfinite(scaled)
    return np.rint(scaled, out=scaled), uncertain


@dataclass(frozen=True)
class Fixed:
    """Floats written as `%.<digits>f`; where `present` is False the cell is empty."""

    values: np.ndarray
    digits: int
    present: np.ndarray | None = None


@dataclass(frozen=True)
class Integers:
    """Non-negative integers written as `%d`."""

    values: np.ndarray


@dataclass(frozen=True)
class Labels:
    """Text cells: `table[codes[i]]` (ASCII, no comma or quote: the caller guarantees plain cells)."""

    codes: np.ndarray
    table: Sequence[str]


@dataclass(frozen=True)
class Text:
    """The same text in every row."""

    value: str


Column = Fixed | Integers | Labels | Text


def format_rows(columns: Sequence[Column], n: int, python_row: Callable[[int], str]) -> str:
    """`n` CSV rows (each ended by a newline) of `columns`; a row with a value these arrays cannot
    write exactly is `python_row(i)` instead."""
    if n == 0:
        return ""
    fallback = np.zeros(n, dtype=bool)
    parts: list[np.ndarray] = []
    comma = np.full((n, 1), ord(","), dtype=np.uint8)
    for i, column in enumerate(columns):
        if i:
            parts.append(comma)
        parts.append(_cells(column, n, fallback))
    parts.append(np.full((n, 1), ord("\n"), dtype=np.uint8))
    matrix = np.concatenate(parts, axis=1)
    kept = matrix != _PAD
    text = matrix[kept].tobytes().decode("ascii")
    if not fallback.any():
        return text
    ends = np.cumsum(kept.sum(axis=1))
    pieces: list[str] = []
    start = 0
    for row in np.flatnonzero(fallback).tolist():
        row_start = int(ends[row - 1]) if row else 0
        pieces.append(text[start:row_start])
        pieces.append(python_row(row))
        start = int(ends[row])
    pieces.append(text[start:])
    return "".join(pieces)


def _cells(column: Column, n: int, fallback: np.ndarray) -> np.ndarray:
    if isinstance(column, Fixed):
        return _fixed(column, fallback)
    if isinstance(column, Integers):
        values = column.values.astype(np.int64, copy=False)
        fallback |= values < 0
        return _digits(np.maximum(values, 0), 1)
    if isinstance(column, Labels):
        encoded = [cell.encode("ascii") for cell in column.table]
        width = max((len(cell) for cell in encoded), default=0)
        table = np.zeros((len(encoded), max(width, 1)), dtype=np.uint8)
        for i, cell in enumerate(encoded):
            if cell:  # an empty cell stays padding (with only empty cells, `width - 0` is past the pad column)
                table[i, width - len(cell) :] = np.frombuffer(cell, dtype=np.uint8)
        return table[column.codes]
    text = np.frombuffer(column.value.encode("ascii"), dtype=np.uint8)
    return np.broadcast_to(text, (n, len(text)))


def _fixed(column: Fixed, fallback: np.ndarray) -> np.ndarray:
    """Cells of `%.<digits>f`: the digits of N with a point before the last `digits` of them."""
    values, digits = column.values, column.digits
    scaled, uncertain = rounded_scaled(values, digits)
    unusable = uncertain | np.signbit(values) | (np.abs(scaled) >= _LIMIT)
    fallback |= unusable if column.present is None else unusable & column.present
    whole = np.where(unusable, 0.0, scaled).astype(np.int64)
    cells = _digits(whole, digits + 1)
    if digits:
        point = np.full((len(whole), 1), ord("."), dtype=np.uint8)
        cells = np.concatenate((cells[:, :-digits], point, cells[:, -digits:]), axis=1)
    if column.present is not None:
        cells[~column.present] = _PAD
    return cells


def _digits(values: np.ndarray, min_digits: int) -> np.ndarray:
    """Right-aligned decimal digits of non-negative int64 `values`, at least `min_digits` of them
    (zero-padded on the left up to that), no leading zeros beyond it (those bytes are padding)."""
    top = int(values.max()) if len(values) else 0
    width = max(min_digits, len(str(top)))
    cells = np.empty((len(values), width), dtype=np.uint8)
    rest = values.copy()
    for position in range(width - 1, -1, -1):
        digit = rest % 10
        rest //= 10
        place = width - 1 - position  # the power of ten this position holds
        if place < min_digits:
            cells[:, position] = digit + 48
        else:
            cells[:, position] = np.where(values >= 10**place, digit + 48, _PAD)
    return cells
