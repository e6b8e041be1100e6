"""A big metrics.csv read in chunks, keeping only bounded state (issue 16).

A metrics.csv of `load.BIG_METRICS_BYTES` or more is never held whole.  The pass keeps three things:

- **key rows**: the rows where a column that the event analyses read changes (replicas, desired and
  ready replicas, offered load, active jobs, the HPA's lastScaleTime), the first row at and the first
  after each window boundary (phases, warm-up), the first row with a value in each column, the file's
  first and last row, and the row before each of them.  Scale-up and scale-down times, replica
  statistics, scale events and cold-start time read exactly these rows: every dropped row repeats the
  kept row before it in those columns, and a kept row's duration (up to the next kept row) is the sum
  of the dropped rows' durations.  Their number grows with the scale events, not with the samples.
- **window statistics**: what kpis.window_kpis, the data coverage and energy.energy_kpis compute over
  all samples: counts, duration-weighted sums, maxima, and for the latency percentiles a count per
  narrow value bin (1/4096 relative width); a second pass over only `elapsed_s` and the latency
  columns then keeps the values of the few bins that hold the order statistics, so the percentiles
  are numpy's exactly.  Sums are added chunk by chunk, so they can differ from the in-memory path's
  in the last bits (relative 1e-12), never more.
- **plot envelope**: per time bucket (about PLOT_BUCKETS over the run) each column's minimum, maximum
  and last value, as three rows, so that spikes survive in the figures.

Memory grows with the scale events (key rows), the distinct value bins and phase labels, never with
the samples as such; only a run.json without `interval_s` adds a count per distinct sample spacing.
Files the pass cannot read in order (no `elapsed_s` column, or times going back) raise NotStreamable.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from hpa_experiments.hpa_reasons import LAST_SCALE_COLUMN

KEY_COLUMNS = ("replicas", "desired_replicas", "ready_replicas", "offered_rps", "active_jobs", LAST_SCALE_COLUMN)
LATENCY_COLUMNS = ("ttft_ms", "itl_ms")
WAITING_COLUMNS = ("num_requests_waiting", "prom_requests_waiting")
ENERGY_COLUMNS = ("gpu_power_w", "gpu_utilization_pct", "gpu_count", "generation_tokens_per_s")
PLOT_BUCKETS = 2000
# An envelope column of its own: kWh used up to the end of each sample (energy_plots.cumulative_energy_kwh).
CUMULATIVE_KWH = "cumulative_energy_kwh"
JOULES_PER_KWH = 3.6e6
_MERGE_EVERY = 2_000_000  # distinct latency values held unmerged before they are folded together


class NotStreamable(Exception):
    """The file cannot be read in one ordered pass (said why); the caller loads it another way."""


class DistinctCounts:
    """A multiset of floats as sorted distinct values and their counts: exact order statistics."""

    def __init__(self) -> None:
        self.values = np.array([], dtype=float)
        self.counts = np.array([], dtype=np.int64)
        self._pending: list[np.ndarray] = []
        self._pending_size = 0

    def add(self, values: np.ndarray) -> None:
        if len(values):
            self._pending.append(values.astype(float))
            self._pending_size += len(values)
            if self._pending_size >= _MERGE_EVERY:
                self._fold()

    def _fold(self) -> None:
        if not self._pending:
            return
        fresh, fresh_counts = np.unique(np.concatenate(self._pending), return_counts=True)
        self._pending, self._pending_size = [], 0
        merged = np.concatenate((self.values, fresh))
        weights = np.concatenate((self.counts, fresh_counts))
        self.values, inverse = np.unique(merged, return_inverse=True)
        self.counts = np.bincount(inverse, weights=weights, minlength=len(self.values)).astype(np.int64)

    def size(self) -> int:
        self._fold()
        return int(self.counts.sum())

    def percentiles(self, percents: tuple[int, ...]) -> list[float]:
        """numpy.percentile(all values, percents) with its default linear method, term for term."""
        n = self.size()
        ends = np.cumsum(self.counts)  # order statistic k (0-based) is values[searchsorted(ends, k, "right")]
        q = np.true_divide(np.asarray(percents, dtype=float), 100)
        virtual = (n - 1) * q  # numpy's "linear" method
        below = np.floor(virtual)
        gamma = virtual - below
        lower = np.clip(below.astype(np.int64), 0, n - 1)
        upper = np.clip(below.astype(np.int64) + 1, 0, n - 1)
        a = self.values[np.searchsorted(ends, lower, side="right")]
        b = self.values[np.searchsorted(ends, upper, side="right")]
        diff = b - a
        result = a + diff * gamma  # numpy's _lerp
        return [float(v) for v in np.where(gamma >= 0.5, b - diff * (1 - gamma), result)]


BIN_SHIFT = 40  # a bin keeps the top 24 bits of the order-preserving key: sign, exponent, 12 mantissa bits


def value_bins(values: np.ndarray) -> np.ndarray:
    """Each float's narrow bin (as a float, for DistinctCounts), in the floats' order: a bin holds the
    values that share their sign, exponent and first 12 mantissa bits (a 1/4096 relative width)."""
    bits = np.ascontiguousarray(values, dtype=np.float64).view(np.uint64)
    key = np.where(bits >> np.uint64(63) == 1, ~bits, bits | np.uint64(1 << 63))
    return (key >> np.uint64(BIN_SHIFT)).astype(np.float64)


class ExactPercentiles:
    """numpy.percentile of a stream that is read twice, in bounded memory: the first pass counts the
    values per narrow bin, the second keeps only the values of the bins that hold the order
    statistics asked for.  Both passes must see the same values (checked)."""

    def __init__(self) -> None:
        self.bins = DistinctCounts()
        self.wanted = np.array([], dtype=float)  # bin ids the second pass keeps
        self.kept: list[np.ndarray] = []
        self.ranks: list[tuple[float, int]] = []  # per order statistic: its bin id and its rank within the bin
        self.found: list[float] | None = None

    def first(self, values: np.ndarray) -> None:
        self.bins.add(value_bins(values))

    def size(self) -> int:
        return self.bins.size()

    def plan(self, percents: tuple[int, ...]) -> None:
        """After the first pass: which bins the order statistics of `percents` fall in."""
        n = self.size()
        if n == 0:
            return
        self.virtual = (n - 1) * np.true_divide(np.asarray(percents, dtype=float), 100)  # numpy's "linear"
        below = np.floor(self.virtual).astype(np.int64)
        ranks = np.unique(np.clip(np.concatenate((below, below + 1)), 0, n - 1))
        self.rank_index = {int(rank): i for i, rank in enumerate(ranks)}
        ends = np.cumsum(self.bins.counts)
        for rank in ranks:
            index = int(np.searchsorted(ends, rank, side="right"))
            before = int(ends[index - 1]) if index else 0
            self.ranks.append((float(self.bins.values[index]), int(rank) - before))
        self.wanted = np.unique([bin_id for bin_id, _ in self.ranks])

    def second(self, values: np.ndarray) -> None:
        if len(self.wanted) and len(values):
            self.kept.append(values[np.isin(value_bins(values), self.wanted)])

    def percentiles(self) -> list[float]:
        """numpy.percentile(all values, percents) with its default linear method, term for term; raises
        NotStreamable when the second pass did not see the first pass's values."""
        if self.found is None:
            self.found = self._order_statistics()
        return self.found

    def _order_statistics(self) -> list[float]:
        kept = np.sort(np.concatenate(self.kept)) if self.kept else np.array([], dtype=float)
        kept_bins = value_bins(kept)
        found = np.searchsorted(kept_bins, self.wanted, side="right") - np.searchsorted(kept_bins, self.wanted)
        if not np.array_equal(found, self.bins.counts[np.searchsorted(self.bins.values, self.wanted)]):
            raise NotStreamable("metrics.csv changed between the two passes")
        statistic = [float(kept[int(np.searchsorted(kept_bins, bin_id)) + offset]) for bin_id, offset in self.ranks]
        n = self.size()
        below = np.floor(self.virtual)
        gamma = self.virtual - below
        lower = np.clip(below.astype(np.int64), 0, n - 1)
        upper = np.clip(below.astype(np.int64) + 1, 0, n - 1)
        a = np.array([statistic[self.rank_index[int(rank)]] for rank in lower])
        b = np.array([statistic[self.rank_index[int(rank)]] for rank in upper])
        diff = b - a
        result = a + diff * gamma  # numpy's _lerp
        return [float(v) for v in np.where(gamma >= 0.5, b - diff * (1 - gamma), result)]


@dataclass
class Sums:
    """sum(value x duration) and sum(duration) over the samples with a value; their count and maximum."""

    area: float = 0.0
    time: float = 0.0
    count: int = 0
    peak: float = -math.inf

    def add(self, values: np.ndarray, weights: np.ndarray, mask: np.ndarray) -> None:
        valid = mask & ~np.isnan(values)
        if valid.any():
            self.area += float((values[valid] * weights[valid]).sum())
            self.time += float(weights[valid].sum())
            self.count += int(valid.sum())
            self.peak = max(self.peak, float(values[valid].max()))


@dataclass
class _Share:
    """Duration with a condition true over the duration with a value (kpis._weighted_share)."""

    over: float = 0.0
    total: float = 0.0
    any: bool = False

    def add(self, condition: np.ndarray, valid: np.ndarray, weights: np.ndarray) -> None:
        if valid.any():
            self.any = True
            self.total += float(weights[valid].sum())
            self.over += float(weights[valid & condition].sum())

    def share(self) -> float | None:
        return self.over / self.total if self.any and self.total > 0 else None


@dataclass
class WindowStats:
    """kpis.window_kpis over one window [start_s, end_s) after the warm-up, accumulated."""

    start_s: float
    end_s: float
    samples: int = 0
    latency: dict[str, ExactPercentiles] = field(default_factory=dict)
    latency_sum: dict[str, float] = field(default_factory=dict)
    waiting: dict[str, _Share] = field(default_factory=dict)
    replicas: Sums = field(default_factory=Sums)
    slo: dict[str, _Share] = field(default_factory=dict)

    def add(self, block: dict[str, np.ndarray], t: np.ndarray, w: np.ndarray, slo: dict[str, float]) -> None:
        mask = (t >= self.start_s) & (t < self.end_s)
        self.samples += int(mask.sum())
        for column in LATENCY_COLUMNS:
            values = block[column][mask]
            present = values[~np.isnan(values)]
            self.latency.setdefault(column, ExactPercentiles()).first(present)
            self.latency_sum[column] = self.latency_sum.get(column, 0.0) + float(present.sum())
        for column in WAITING_COLUMNS:
            values = block[column]
            self.waiting.setdefault(column, _Share()).add(values > 0, mask & ~np.isnan(values), w)
        self.replicas.add(block["replicas"], w, mask)
        for column, threshold in slo.items():
            values = block[column]
            self.slo.setdefault(column, _Share()).add(values > threshold, mask & ~np.isnan(values), w)

    def add_second(self, block: dict[str, np.ndarray], t: np.ndarray) -> None:
        """The second pass: the same samples again, for the exact percentiles."""
        mask = (t >= self.start_s) & (t < self.end_s)
        for column, percentiles in self.latency.items():
            values = block[column][mask]
            percentiles.second(values[~np.isnan(values)])

    def result(self, waiting_column: str | None, slo: dict[str, float], percents: tuple[int, ...]) -> dict[str, Any]:
        """The dict kpis.window_kpis returns for the same samples."""
        out: dict[str, Any] = {"samples": self.samples}
        for column in LATENCY_COLUMNS:
            counts = self.latency.get(column, ExactPercentiles())
            n = counts.size()
            stats: dict[str, Any] = {"samples": n}
            if n == 0:
                stats["mean"] = None
                stats.update({f"p{q}": None for q in percents})
            else:
                stats["mean"] = self.latency_sum[column] / n
                stats.update({f"p{q}": v for q, v in zip(percents, counts.percentiles(), strict=True)})
            out[column] = stats
        out["waiting_column"] = waiting_column
        out["waiting_share"] = self.waiting[waiting_column].share() if waiting_column else None
        reps = self.replicas
        out["replicas_mean"] = reps.area / reps.time if reps.count and reps.time > 0 else None
        out["replicas_max"] = reps.peak if reps.count else None
        for column in slo:
            out[f"{column.removesuffix('_ms')}_over_slo_share"] = self.slo[column].share()
        return out


@dataclass
class EnergyStats:
    """energy.window_energy's sums over the samples of one label (or the whole run)."""

    duration: float = 0.0
    start_s: float | None = None
    end_s: float | None = None
    sums: dict[str, Sums] = field(default_factory=dict)  # power, utilization, tokens, gpu_count, replicas
    joules_both: Sums = field(default_factory=Sums)  # power where power and tokens are known
    tokens_both: Sums = field(default_factory=Sums)  # tokens where power and tokens are known

    def add(self, cols: dict[str, np.ndarray], t: np.ndarray, w: np.ndarray, mask: np.ndarray) -> None:
        if not mask.any():
            return
        rows = np.flatnonzero(mask)
        if self.start_s is None:
            self.start_s = float(t[rows[0]])
        self.end_s = float(t[rows[-1]] + w[rows[-1]])
        self.duration += float(w[mask].sum())
        for name, values in cols.items():
            self.sums.setdefault(name, Sums()).add(values, w, mask)
        both = mask & ~np.isnan(cols["gpu_power_w"]) & ~np.isnan(cols["generation_tokens_per_s"])
        self.joules_both.add(cols["gpu_power_w"], w, both)
        self.tokens_both.add(cols["generation_tokens_per_s"], w, both)


@dataclass
class MetricsDigest:
    """What the streaming pass over metrics.csv kept (see the module docstring)."""

    rows: int
    key_rows: pd.DataFrame
    envelope: pd.DataFrame
    bucket_s: float
    interval_s: float | None  # run.json's, else the median spacing of all samples
    windows: dict[tuple[float, float], WindowStats]
    coverage_counts: dict[str, int]
    energy_run: EnergyStats
    energy_phases: dict[str, EnergyStats]  # label -> sums, in order of first appearance
    has_data: set[str]  # columns with at least one value

    def window(self, start_s: float, end_s: float) -> WindowStats:
        return self.windows[(start_s, end_s)]


class _Pass:
    """The state of one pass; `feed` takes the rows in file order, `finish` returns the digest."""

    def __init__(
        self,
        columns: list[str],
        text_columns: set[str],
        boundaries: list[float],
        windows: list[tuple[float, float]],
        warm_up_s: float,
        slo: dict[str, float],
        interval_s: float | None,
        bucket_s: float,
    ):
        self.columns, self.text_columns = columns, text_columns
        self.numeric = [c for c in columns if c not in text_columns]
        self.boundaries = np.array(sorted(set(boundaries)), dtype=float)
        self.windows = {(s, e): WindowStats(max(s, warm_up_s), e) for s, e in windows}
        self.slo, self.interval_s, self.bucket_s = slo, interval_s, bucket_s
        self.rows = 0
        self.read_rows = 0  # with the rows without elapsed_s
        self.previous: pd.DataFrame | None = None  # the last row fed, not yet processed (its duration unknown)
        self.before_keys: np.ndarray | None = None  # key values and time of the last processed row
        self.before_t: float | None = None
        self.has_data: set[str] = set()
        self.coverage: dict[str, int] = {}
        self.spacings = DistinctCounts() if interval_s is None else None
        self.kept: list[pd.DataFrame] = []
        self.envelope_parts: list[dict[str, np.ndarray]] = []
        self.envelope_buckets = 0
        self.energy_run = EnergyStats()
        self.energy_phases: dict[str, EnergyStats] = {}
        self.origin: float | None = None
        self.joules = 0.0  # GPU energy up to the last processed sample (missing power as 0, as the figure has it)

    def feed(self, chunk: pd.DataFrame) -> None:
        self.read_rows += len(chunk)
        chunk = chunk[chunk["elapsed_s"].notna()]
        if chunk.empty:
            return
        block = chunk if self.previous is None else pd.concat([self.previous, chunk], ignore_index=True)
        t = block["elapsed_s"].to_numpy(dtype=float)
        spacing = np.diff(t)
        if (spacing < 0).any():
            raise NotStreamable("elapsed_s goes back in time")
        if self.spacings is not None:
            self.spacings.add(spacing)
        self.previous = block.iloc[-1:].reset_index(drop=True)
        self._process(block, t, last=False)

    def _process(self, block: pd.DataFrame, t: np.ndarray, last: bool) -> None:
        """The rows of `block` but its last, whose duration needs the next row (all of them when `last`)."""
        count = len(t) if last else len(t) - 1
        flags = self._key_flags(block, t, count)
        if count == 0:
            return
        keep = flags if last else flags[:-1] | flags[1:]  # a flagged row and the row before it
        if last:
            keep[-1] = True
        if self.origin is None:
            self.origin = float(t[0])
        self.kept.append(block.iloc[np.flatnonzero(keep)])
        rows = block.iloc[:count]
        w = np.array([self.interval_s or 0.0]) if last else np.diff(t)
        t = t[:count]
        numbers = {c: rows[c].to_numpy(dtype=float, na_value=np.nan) for c in self.numeric}
        nan = np.full(count, np.nan)
        wanted = (*KEY_COLUMNS, *LATENCY_COLUMNS, *WAITING_COLUMNS, *ENERGY_COLUMNS, *self.slo)
        cols = {c: numbers.get(c, nan) for c in wanted}
        self.rows += count
        for column in self.numeric:
            self.coverage[column] = self.coverage.get(column, 0) + int((~np.isnan(numbers[column])).sum())
        for stats in self.windows.values():
            stats.add(cols, t, w, self.slo)
        self._energy(rows, cols, t, w)
        joules = self.joules + np.cumsum(np.nan_to_num(cols["gpu_power_w"]) * w)
        self.joules = float(joules[-1])
        numbers[CUMULATIVE_KWH] = joules / JOULES_PER_KWH
        self.envelope_parts.append(self._envelope(rows, numbers, t))
        self.envelope_buckets += len(self.envelope_parts[-1]["bucket"])
        if self.envelope_buckets > 4 * PLOT_BUCKETS:  # the span was underestimated: wider buckets
            while self.envelope_buckets > 2 * PLOT_BUCKETS:
                self.bucket_s *= 2
                self.envelope_parts = [self._joined_buckets()]
                self.envelope_buckets = len(self.envelope_parts[0]["bucket"])

    def _key_flags(self, block: pd.DataFrame, t: np.ndarray, count: int) -> np.ndarray:
        """Rows with a new value in a key column, the first at or after a boundary, the first with a
        value in a column (among the `count` processed ones)."""
        names = [c for c in KEY_COLUMNS if c in block.columns]
        keys = block[names].to_numpy(dtype=float, na_value=np.nan) if names else np.zeros((len(block), 0))
        before = self.before_keys
        reference = np.vstack([keys[:1] if before is None else before, keys[:-1]])
        same = (keys == reference) | (np.isnan(keys) & np.isnan(reference))
        flags = ~same.all(axis=1)
        if before is None:
            flags[0] = True
        previous_t = np.concatenate(([-math.inf if self.before_t is None else self.before_t], t[:-1]))
        for side in ("right", "left"):  # the first row at or after each boundary, and the first after it
            if len(self.boundaries):
                passed = np.searchsorted(self.boundaries, t, side=side)
                flags |= passed > np.searchsorted(self.boundaries, previous_t, side=side)
        for column in block.columns:
            if column not in self.has_data:
                present = block[column].iloc[:count].notna().to_numpy()
                if present.any():
                    self.has_data.add(column)
                    flags[int(np.argmax(present))] = True
        if count:  # the next block starts with the row after the last processed one
            self.before_keys, self.before_t = keys[count - 1 : count].copy(), float(t[count - 1])
        return flags

    def _energy(self, rows: pd.DataFrame, cols: dict[str, np.ndarray], t: np.ndarray, w: np.ndarray) -> None:
        no_pods = (cols["replicas"] == 0) & (cols["ready_replicas"] == 0)
        energy = {
            name: np.where(no_pods & np.isnan(cols[name]), 0.0, cols[name])
            if name in ("gpu_power_w", "gpu_count", "generation_tokens_per_s")
            else cols[name]
            for name in (*ENERGY_COLUMNS, "replicas")
        }
        everything = np.ones(len(t), dtype=bool)
        self.energy_run.add(energy, t, w, everything)
        if "phase" not in rows.columns:
            return
        labels = rows["phase"].astype(object).where(rows["phase"].notna(), "").astype(str).to_numpy()
        for label in dict.fromkeys(labels):
            self.energy_phases.setdefault(label, EnergyStats()).add(energy, t, w, labels == label)

    def _envelope(self, rows: pd.DataFrame, numbers: dict[str, np.ndarray], t: np.ndarray) -> dict[str, np.ndarray]:
        """Per bucket of this block: t_first, t_last, and min / max / last of each column."""
        bucket = np.floor((t - (self.origin or 0.0)) / self.bucket_s).astype(np.int64)
        starts = np.concatenate(([0], np.flatnonzero(np.diff(bucket)) + 1))
        ends = np.concatenate((starts[1:], [len(t)])) - 1
        part: dict[str, np.ndarray] = {"bucket": bucket[starts], "t_first": t[starts], "t_last": t[ends]}
        with np.errstate(invalid="ignore"):
            for column, values in numbers.items():
                part[f"{column}\tmin"] = np.fmin.reduceat(values, starts)
                part[f"{column}\tmax"] = np.fmax.reduceat(values, starts)
                part[f"{column}\tlast"] = values[ends]
        for column in self.text_columns & set(rows.columns):
            part[f"{column}\tlast"] = rows[column].to_numpy(dtype=object)[ends]
        return part

    def _median_spacing(self) -> float | None:
        """load.Run.interval_s without a declared interval: the median spacing of the samples."""
        if self.spacings is None or not self.spacings.size():
            return None
        median = self.spacings.percentiles((50,))[0]
        return median if median > 0 else None

    def finish(self) -> MetricsDigest:
        if self.previous is None and self.read_rows:
            raise NotStreamable("elapsed_s is empty: the times come from the timestamps")
        if self.previous is not None:
            block, t = self.previous, self.previous["elapsed_s"].to_numpy(dtype=float)
            if self.interval_s is None:
                self.interval_s = self._median_spacing()
            self._process(block, t, last=True)
        key_rows = pd.concat(self.kept, ignore_index=True) if self.kept else pd.DataFrame(columns=self.columns)
        return MetricsDigest(
            rows=self.rows,
            key_rows=key_rows.reset_index(drop=True),
            envelope=self._envelope_frame(),
            bucket_s=self.bucket_s,
            interval_s=self.interval_s,
            windows=self.windows,
            coverage_counts=self.coverage,
            energy_run=self.energy_run,
            energy_phases=self.energy_phases,
            has_data=self.has_data,
        )

    def _joined_buckets(self) -> dict[str, np.ndarray]:
        """The envelope parts as one, bucketed by the current `bucket_s` (a bucket cut by a chunk
        boundary, or merged by a wider width, joined: min of minima, max of maxima, the last last)."""
        parts = {key: np.concatenate([p[key] for p in self.envelope_parts]) for key in self.envelope_parts[0]}
        bucket = np.floor((parts["t_first"] - (self.origin or 0.0)) / self.bucket_s).astype(np.int64)
        starts = np.concatenate(([0], np.flatnonzero(np.diff(bucket)) + 1))
        ends = np.concatenate((starts[1:], [len(bucket)])) - 1
        joined: dict[str, np.ndarray] = {}
        for key, values in parts.items():
            if key.endswith("\tmin"):
                joined[key] = np.fmin.reduceat(values, starts)
            elif key.endswith("\tmax"):
                joined[key] = np.fmax.reduceat(values, starts)
            elif key == "t_first":
                joined[key] = values[starts]
            else:  # t_last, the last values
                joined[key] = values[ends]
        joined["bucket"] = bucket[starts]
        return joined

    def _envelope_frame(self) -> pd.DataFrame:
        """Three rows per bucket: its minimum at its first time, maximum at its middle, last value at
        its last time."""
        if not self.envelope_parts:
            return pd.DataFrame(columns=self.columns)
        with np.errstate(invalid="ignore"):
            parts = self._joined_buckets()
        t_first, t_last = parts["t_first"], parts["t_last"]
        times = np.column_stack((t_first, (t_first + t_last) / 2, t_last)).ravel()
        frame: dict[str, Any] = {}
        for column in [*self.columns, CUMULATIVE_KWH]:
            if column == "elapsed_s":
                frame[column] = times
            elif column in self.numeric or column == CUMULATIVE_KWH:
                low, high, last = parts[f"{column}\tmin"], parts[f"{column}\tmax"], parts[f"{column}\tlast"]
                frame[column] = np.column_stack((low, high, last)).ravel()
            elif f"{column}\tlast" in parts:
                frame[column] = pd.array(np.repeat(parts[f"{column}\tlast"], 3), dtype="string")
        envelope = pd.DataFrame(frame)
        return envelope[~envelope["elapsed_s"].duplicated(keep="last")].reset_index(drop=True)


def digest_metrics(
    open_lines: Callable[[], Any],
    *,
    columns: list[str],
    text_columns: tuple[str, ...],
    boundaries: list[float],
    windows: list[tuple[float, float]],
    warm_up_s: float,
    slo: dict[str, float],
    interval_s: float | None,
    span_s: float,
    percents: tuple[int, ...],
    chunk_rows: int,
) -> MetricsDigest:
    """Read metrics.csv's complete lines (`open_lines()` opens them) in chunks of `chunk_rows`: once
    whole, and a second time only its times and latencies for the exact percentiles (module docstring)."""
    if "elapsed_s" not in columns:
        raise NotStreamable("no elapsed_s column")
    texts = set(text_columns) & set(columns)
    state = _Pass(
        columns,
        texts,
        boundaries,
        windows,
        warm_up_s,
        slo,
        interval_s,
        bucket_s=max(span_s / PLOT_BUCKETS, 1e-9),
    )
    for chunk in _chunks(open_lines, columns, texts, chunk_rows):
        state.feed(chunk)
    digest = state.finish()
    for stats in digest.windows.values():
        for percentiles in stats.latency.values():
            percentiles.plan(percents)
    if any(len(p.wanted) for stats in digest.windows.values() for p in stats.latency.values()):
        latency = [c for c in LATENCY_COLUMNS if c in columns]
        for chunk in _chunks(open_lines, ["elapsed_s", *latency], set(), chunk_rows):
            chunk = chunk[chunk["elapsed_s"].notna()]
            block = {c: chunk[c].to_numpy(dtype=float, na_value=np.nan) for c in latency}
            t = chunk["elapsed_s"].to_numpy(dtype=float)
            for stats in digest.windows.values():
                stats.add_second(block, t)
    for stats in digest.windows.values():  # here, so that a file changed meanwhile is said while loading
        for percentiles in stats.latency.values():
            if percentiles.size():
                percentiles.percentiles()
    return digest


def csv_chunks(source: Any, columns: list[str], texts: Iterable[str], chunk_rows: int) -> Iterator[pd.DataFrame]:
    """A metrics.csv's rows in chunks as our readers take them: only `columns`, `texts` as strings,
    an empty cell as NaN (never a text like "NA"), a malformed line skipped."""
    return pd.read_csv(
        source,
        usecols=columns,
        dtype={c: "string" for c in texts},
        keep_default_na=False,
        na_values=[""],
        on_bad_lines="skip",
        chunksize=chunk_rows,
    )


def _chunks(
    open_lines: Callable[[], Any], columns: list[str], texts: set[str], chunk_rows: int
) -> Iterator[pd.DataFrame]:
    """The file's rows in chunks: text columns as strings, the others as numbers (NaN when empty or not one)."""
    source = open_lines()
    try:
        for chunk in csv_chunks(source, columns, texts, chunk_rows):
            for column in chunk.columns:
                if column not in texts and not pd.api.types.is_numeric_dtype(chunk[column]):
                    chunk[column] = pd.to_numeric(chunk[column], errors="coerce")
            yield chunk
    finally:
        if hasattr(source, "close"):
            source.close()
