"""csv_columns.format_rows against Python's `%`-format, row by row and byte for byte.

The inputs are the ones a column formatter gets wrong first: exact decimal ties and values one ulp
either side of a half (where the scaled double and the exact product round differently), -0.0,
negatives, non-finite values, numbers too large for the int64 digits, ragged widths, empty cells.
Each test also checks which rows went to the Python fallback: all the hard ones, none of the rest.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from hpa_experiments.backends.sim.csv_columns import Column, Fixed, Integers, Labels, Text, format_rows


def reference_row(columns: Sequence[Column], i: int) -> str:
    """Row `i` as `%`-formatting writes it, one cell at a time."""
    cells = []
    for column in columns:
        if isinstance(column, Fixed):
            present = column.present is None or bool(column.present[i])
            cell = "%.*f" % (column.digits, float(column.values[i]))  # noqa: UP031 (the format under test)
            cells.append(cell if present else "")
        elif isinstance(column, Integers):
            cells.append("%d" % int(column.values[i]))  # noqa: UP031
        elif isinstance(column, Labels):
            cells.append(column.table[int(column.codes[i])])
        else:
            cells.append(column.value)
    return ",".join(cells) + "\n"


def formatted(columns: Sequence[Column], n: int) -> tuple[str, list[int]]:
    """`format_rows`'s text and the rows it asked the fallback for, in the order asked."""
    asked: list[int] = []

    def python_row(i: int) -> str:
        asked.append(i)
        return reference_row(columns, i)

    return format_rows(columns, n, python_row), asked


def check(columns: Sequence[Column], n: int) -> list[int]:
    """Asserts the text is the reference's, byte for byte; returns the fallback rows."""
    text, asked = formatted(columns, n)
    want = [reference_row(columns, i) for i in range(n)]
    got = text.splitlines(keepends=True)
    assert len(got) == n
    bad = [(i, g, w) for i, (g, w) in enumerate(zip(got, want, strict=True)) if g != w]
    assert not bad, bad[:10]
    assert text == "".join(want)
    assert asked == sorted(set(asked))  # each at most once, in row order
    return asked


def ties(digits: int) -> np.ndarray:
    """Exact binary values whose scaled value is exactly a half: k/16, k/1024, 0.0625 and friends."""
    scale = 10**digits
    values = [0.0625, 0.5 / scale, 1.5 / scale, 2.5 / scale, 1 / 32, 3 / 64, 0.5, 1.5]
    values += [k / 16 for k in range(1, 64)] + [k / 1024 for k in range(1, 2048, 7)]
    values += [k / 2**20 for k in range(1, 4096, 97)]
    arr = np.array(values)
    scaled = arr * scale
    return arr[scaled - np.floor(scaled) == 0.5]  # keep only the exact ties


def decimal_halves(digits: int, count: int, seed: int) -> np.ndarray:
    """Values written as d.ddd5 (one more digit than kept): a binary double is a little above or
    below such a half, so the scaled double often lands exactly on .5 while the exact value does not."""
    rng = np.random.default_rng(seed)
    whole = rng.integers(0, 10**7, count)
    frac = rng.integers(0, 10**digits, count)
    return np.array([float(f"{w}.{f:0{digits}d}5") for w, f in zip(whole.tolist(), frac.tolist(), strict=True)])


@pytest.mark.parametrize("digits", [3, 6])
def test_exact_ties_and_values_one_ulp_from_a_half_all_go_to_python(digits: int) -> None:
    exact = ties(digits)
    assert len(exact) > 20
    halves = decimal_halves(digits, 2000, seed=digits)
    hard = np.concatenate(
        (
            exact,
            np.nextafter(exact, np.inf),
            np.nextafter(exact, -np.inf),
            halves,
            np.nextafter(halves, np.inf),
            np.nextafter(halves, -np.inf),
        )
    )
    hard = hard[hard > 0]
    # the arrays would round some of these wrongly: the fallback is what makes them right
    scaled = hard * 10.0**digits
    python = np.array([float(f"{v:.{digits}f}") * 10.0**digits for v in hard.tolist()])
    assert (np.rint(scaled) != np.rint(python)).any()
    asked = check([Fixed(hard, digits)], len(hard))
    assert asked == list(range(len(hard)))


@pytest.mark.parametrize("digits", [0, 1, 3, 6])
def test_ordinary_values_never_use_the_fallback(digits: int) -> None:
    rng = np.random.default_rng(100 + digits)
    # tenths of the last digit at least 0.2 from a half, over many widths; scaled values stay
    # below 10**13 (a time of ~115 days to 6 decimals), where the slack allowed is under 0.04
    top = min(9, 13 - digits)
    whole = rng.integers(0, 10**top, 3000) // 10 ** rng.integers(0, top, 3000)
    offset = rng.choice([0.0, 0.1, 0.2, 0.3, 0.7, 0.8, 0.9], 3000) / 10**digits
    values = np.concatenate(([0.0, 1.0, 9.0, 10.0, 99.0, 100.0, 5e-324, 1e-300], whole + offset))
    assert check([Fixed(values, digits)], len(values)) == []


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # numpy on nan and inf, as expected
def test_zero_negative_zero_negatives_and_non_finite_values() -> None:
    values = np.array([0.0, -0.0, -1e-9, -0.0004, -0.0005, -2.5, -123.456789, np.nan, np.inf, -np.inf, 1.25, 7.0])
    for digits in (0, 3, 6):
        asked = check([Fixed(values, digits)], len(values))
        # 0.0 and the last two are easy; -0.0 prints "-0.000", and the rest are negative or not finite
        assert asked == list(range(1, 10)), digits


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning", "ignore:invalid value:RuntimeWarning")
def test_values_around_the_int64_limit_of_the_scaled_value() -> None:
    """Scaled values near 2**52: the arrays stop there, and Python writes the exact binary value."""
    for digits in (0, 3, 6):
        edge = 2.0**52 / 10**digits
        values = np.array(
            [
                edge,
                np.nextafter(edge, 0),
                np.nextafter(edge, np.inf),
                edge * 0.999,
                edge * 1.001,
                edge * 16,
                2.0**47 / 10**digits,
                2.0**53,
                1e17,
                1.7976931348623157e308,
                123.0,
            ]
        )
        asked = check([Fixed(values, digits)], len(values))
        assert 10 not in asked  # the ordinary row
        big = np.abs(np.rint(values * 10.0**digits)) >= 2.0**52
        assert set(np.flatnonzero(big).tolist()) <= set(asked)


def test_integers_of_every_width_including_zero_large_and_negative() -> None:
    powers = [10**k for k in range(19)]
    values = np.array(
        [0, 1, 9, *powers, *(p - 1 for p in powers[1:]), *(p + 1 for p in powers), 2**62, 2**63 - 1, -1, -(2**63), 42],
        dtype=np.int64,
    )
    asked = check([Integers(values)], len(values))
    assert [int(values[i]) for i in asked] == [-1, -(2**63)]


def test_an_optional_column_has_empty_cells_where_absent_and_ignores_their_values() -> None:
    """Absent cells hold junk (nan, negatives, ties): they are empty and send no row to Python."""
    values = np.array([1.5, np.nan, -3.0, 0.0625, 2.25, 0.0625, 1e300, 4.0, -0.0])
    present = np.array([True, False, False, False, True, True, False, True, True])
    columns = [Integers(np.arange(len(values))), Fixed(values, 3, present=present), Text("x")]
    asked = check(columns, len(values))
    assert asked == [5, 8]  # the present tie and the present -0.0
    text, _ = formatted(columns, len(values))
    assert text.splitlines()[1] == "1,,x"
    nobody = np.zeros(len(values), dtype=bool)
    assert check([Fixed(values, 6, present=nobody), Text("end")], len(values)) == []


def test_labels_with_entries_of_different_lengths_and_text() -> None:
    table = ["vllm-0", "", "a", "vllm-autoscaled-7f9c-xyz12", "b" * 40, "unused"]
    rng = np.random.default_rng(7)
    n = 500
    codes = rng.integers(0, 5, n)
    columns = [
        Labels(codes, table),
        Text("completed"),
        Text(""),
        Labels(codes[::-1].copy(), table),
    ]
    assert check(columns, n) == []
    assert check([Labels(np.array([1, 0]), ["x", ""])], 2) == []


def test_a_label_column_of_empty_cells_only() -> None:
    """Every cell empty (e.g. requests without a client have job ""): the table is all padding."""
    n = 100
    columns = [Integers(np.arange(n)), Labels(np.zeros(n, dtype=np.intp), [""]), Text("completed")]
    assert check(columns, n) == []
    assert formatted(columns, n)[0].splitlines()[3] == "3,,completed"


def test_fallback_rows_at_the_edges_and_in_runs_are_spliced_in_place() -> None:
    values = np.array([-1.0, -2.0, 3.0, 0.0005, 0.0015, 4.0, 5.0, -6.0, 7.0, np.nan])
    columns = [Integers(np.arange(10) * 1000), Labels(np.arange(10) % 3, ["p", "pod-1", ""]), Fixed(values, 3)]
    assert check(columns, 10) == [0, 1, 3, 4, 7, 9]
    assert check([Integers(np.array([5])), Fixed(np.array([-0.0]), 3)], 1) == [0]
    assert check([Integers(np.array([5])), Fixed(np.array([0.25]), 3)], 1) == []
    assert format_rows([Integers(np.zeros(0, dtype=np.int64))], 0, lambda i: pytest.fail("no rows")) == ""


def test_a_request_row_of_every_column_kind() -> None:
    """The shape of requests.csv's completed rows: every kind side by side, some rows hard."""
    rng = np.random.default_rng(3)
    n = 4000
    sent = rng.uniform(0, 90_000, n)
    multi = rng.random(n) > 0.1
    itl = np.where(multi, rng.exponential(30, n), 0.0)
    e2e = rng.exponential(5000, n)
    e2e[::97] = decimal_halves(3, len(e2e[::97]), seed=5) / 1000  # ties hidden among the others
    columns = [
        Integers(np.arange(1, n + 1)),
        Labels(rng.integers(0, 3, n), ["phase-1-high-load", "b", "phase-3"]),
        Labels(rng.integers(0, 12, n), [f"vllm-{k}" for k in range(12)]),
        Fixed(sent, 6),
        Fixed(sent + e2e / 1000, 6),
        Fixed(rng.exponential(10, n), 3),
        Fixed(rng.exponential(200, n), 3),
        Fixed(itl, 3, present=multi),
        Fixed(e2e, 3),
        Integers(rng.integers(4, 1025, n)),
        Integers(rng.integers(1, 2049, n)),
        Text("completed"),
        Fixed(np.zeros(n), 3),
    ]
    asked = check(columns, n)
    assert 0 < len(asked) < n // 20


@pytest.mark.parametrize("seed", [1, 2])
def test_random_doubles_of_mixed_magnitudes(seed: int) -> None:
    """150,000 doubles per seed and digits: random bit patterns over twenty-four decades, uniform
    values over twenty, and decimal halves.  Every row must match Python; the fallback must take
    every scaled value of 2**52 or more, and otherwise only values close to a half."""
    rng = np.random.default_rng(seed)
    n = 50_000
    spread = rng.random(n) * 10.0 ** rng.uniform(-8, 12, n)
    bits = rng.integers(0x3E00000000000000, 0x4300000000000000, n, dtype=np.int64).view(np.float64)  # 2**-31..2**49
    for digits in (3, 6):
        halves = decimal_halves(digits, 5000, seed=seed * 10 + digits)
        values = np.concatenate((spread, bits[: n - 5000], halves))
        asked = set(check([Fixed(values, digits)], len(values)))
        scaled = values * 10.0**digits
        required = scaled >= 2.0**52
        # 8x the slack the module allows itself for the scaled double's rounding error
        allowed = required | (np.abs(scaled % 1 - 0.5) <= scaled * 2.0**-45 + 2.0**-57)
        assert asked >= set(np.flatnonzero(required).tolist())
        assert asked <= set(np.flatnonzero(allowed).tolist())
        small = set(np.flatnonzero(scaled < 2.0**40).tolist())
        assert len(asked & small) <= len(halves) + len(small) // 1000


def test_random_integers_and_labels_together() -> None:
    rng = np.random.default_rng(9)
    n = 100_000
    widths = rng.integers(0, 19, n)
    values = rng.integers(0, 10**18, n) // 10**widths
    table = [f"job-{'x' * k}" for k in range(9)]
    columns = [Integers(values), Labels(rng.integers(0, 9, n), table), Integers(values[::-1].copy())]
    assert check(columns, n) == []
