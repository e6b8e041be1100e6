"""Energy, GPU-hours and cost of a run, for the whole run and per phase (summary.json's "energy").

Inputs are metrics.csv's energy columns (see `rundir.ENERGY_COLUMNS`): `gpu_power_w` (all the
Deployment's GPUs, from DCGM), `gpu_utilization_pct`, `gpu_count` and `generation_tokens_per_s`.
Conventions are those of kpis.py:
- Each sample holds its value until the next sample, the last one for one interval; energy is
  the area under that step function (W x s = J; 1 kWh = 3.6e6 J), output tokens likewise.
- An empty cell is not 0: the figures cover only the time with data, and `power_coverage` says
  how much of the time that was.  Without any power data every energy figure is None.
- Joules per output token use only the time where both power and the token rate are known.
- Samples with 0 replicas and 0 Ready (scale to zero) count as 0 W, 0 GPUs and 0 tokens/s when the
  run has such data elsewhere: no pod, no DCGM series, nothing drawn.
- GPU-hours: measured from `gpu_count` when present; else replicas x GPUs per replica (the twin's
  profile knows them; otherwise 1 GPU per replica is assumed, and `gpu_hours_basis` says so).
  `kpis.replicas.gpu_hours` stays what it was: replica-hours at 1 GPU per replica.
- Cost = GPU-hours x `cost.price_per_gpu_hour` of the config, when a price is set.
- Phases partition the run by metrics.csv's `phase` column (the jobs running at each sample,
  "gap", "cooldown", "done"), so the phases' energies add up to the run's; a label that comes
  back later (a second "gap") is one row, `duration_s` its total time.  Warm-up is not left out:
  energy is what the run cost.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hpa_experiments.analysis.load import Run
from hpa_experiments.analysis.samples import SampleColumns
from hpa_experiments.analysis.stream import JOULES_PER_KWH, EnergyStats, MetricsDigest, Sums

POWER_COLUMN = "gpu_power_w"
MEASURED_GPU_HOURS = "measured (gpu_count)"  # gpu_hours_basis when the GPUs were counted


class _EnergyColumns(SampleColumns):
    """The columns energy needs, as float arrays (NaN = no value), and each sample's duration."""

    def __init__(self, run: Run):
        super().__init__(run)
        self.power = self.get(POWER_COLUMN)
        self.utilization = self.get("gpu_utilization_pct")
        self.gpu_count = self.get("gpu_count")
        self.tokens_per_s = self.get("generation_tokens_per_s")
        self.replicas = self.get("replicas")
        # Scaled to zero no pod holds a GPU, so no DCGM series exist: that is 0 W and 0 GPUs, not "no
        # data" - in runs that do have power data (a cluster without DCGM stays without).
        no_pods = (self.replicas == 0) & (self.get("ready_replicas") == 0)
        self.power, self.gpu_count, self.tokens_per_s = (
            values if np.isnan(values).all() else np.where(no_pods & np.isnan(values), 0.0, values)
            for values in (self.power, self.gpu_count, self.tokens_per_s)
        )
        phases = run.metrics["phase"] if "phase" in run.metrics.columns else None
        self.phase = None if phases is None else phases.fillna("").astype(str).to_numpy()


def _area(values: np.ndarray, weights: np.ndarray, mask: np.ndarray) -> tuple[float | None, float]:
    """(sum of value x duration over the masked samples that have a value, their total duration)."""
    valid = mask & ~np.isnan(values)
    if not valid.any():
        return None, 0.0
    return float((values[valid] * weights[valid]).sum()), float(weights[valid].sum())


def gpus_per_replica(run: Run) -> int | None:
    """GPUs each replica holds, when the run says (the twin's profile in run.json); else None."""
    profile = (run.info.get("backend_info") or {}).get("profile")
    value = profile.get("gpus_per_replica") if isinstance(profile, dict) else None
    return int(value) if isinstance(value, (int, float)) and value >= 1 else None


def price_per_gpu_hour(run: Run) -> tuple[float | None, str]:
    """`cost.price_per_gpu_hour` and `cost.currency` of the run's config (None: no price set)."""
    cost = run.config.get("cost")
    if not isinstance(cost, dict):
        return None, "USD"
    price = cost.get("price_per_gpu_hour")
    price = float(price) if isinstance(price, (int, float)) and not isinstance(price, bool) and price > 0 else None
    return price, str(cost.get("currency") or "USD")


def window_energy(cols: _EnergyColumns, mask: np.ndarray, gpus: int | None, price: float | None) -> dict[str, Any]:
    """Energy, power, tokens, GPU-hours and cost over the samples selected by `mask`."""
    w = cols.weights
    duration = float(w[mask].sum())
    joules, covered = _area(cols.power, w, mask)
    util, util_time = _area(cols.utilization, w, mask)
    tokens, _ = _area(cols.tokens_per_s, w, mask)
    powered = mask & ~np.isnan(cols.power)
    joules_both, _ = _area(cols.power, w, powered & ~np.isnan(cols.tokens_per_s))
    tokens_both, _ = _area(cols.tokens_per_s, w, powered)
    gpu_hours, basis = _gpu_hours(cols, mask, gpus)
    peak = float(cols.power[powered].max()) if powered.any() else None
    return _energy_summary(
        duration,
        (joules, covered),
        peak,
        (util, util_time),
        tokens,
        (joules_both, tokens_both),
        (gpu_hours, basis),
        price,
    )


def _energy_summary(
    duration: float,
    energy: tuple[float | None, float],
    peak: float | None,
    utilization: tuple[float | None, float],
    tokens: float | None,
    both: tuple[float | None, float | None],
    gpu_hours_basis: tuple[float | None, str | None],
    price: float | None,
) -> dict[str, Any]:
    """The window's energy figures from its areas: (joules, seconds covered), (utilization area, its
    seconds), output tokens, (joules, tokens) where both were known, (GPU-hours, their basis)."""
    joules, covered = energy
    util, util_time = utilization
    joules_both, tokens_both = both
    gpu_hours, basis = gpu_hours_basis
    return {
        "duration_s": duration,
        "energy_kwh": None if joules is None else joules / JOULES_PER_KWH,
        "power_coverage": covered / duration if duration > 0 else None,
        "mean_power_w": joules / covered if joules is not None and covered > 0 else None,
        "peak_power_w": peak,
        "mean_utilization_pct": util / util_time if util is not None and util_time > 0 else None,
        "output_tokens": tokens,
        "joules_per_token": joules_both / tokens_both
        if joules_both is not None and tokens_both is not None and tokens_both > 0
        else None,
        "gpu_hours": gpu_hours,
        "gpu_hours_basis": basis,
        "cost": gpu_hours * price if gpu_hours is not None and price is not None else None,
    }


def _gpu_hours(cols: _EnergyColumns, mask: np.ndarray, gpus: int | None) -> tuple[float | None, str | None]:
    gpu_seconds, _ = _area(cols.gpu_count, cols.weights, mask)
    if gpu_seconds is not None:
        return gpu_seconds / 3600.0, MEASURED_GPU_HOURS
    replica_seconds, _ = _area(cols.replicas, cols.weights, mask)
    return _replica_gpu_hours(replica_seconds, gpus)


def _replica_gpu_hours(replica_seconds: float | None, gpus: int | None) -> tuple[float | None, str | None]:
    if replica_seconds is None:
        return None, None
    if gpus is None:
        return replica_seconds / 3600.0, "replicas x 1 GPU (assumed: no gpu_count data)"
    return replica_seconds * gpus / 3600.0, f"replicas x {gpus} GPU{'s' if gpus > 1 else ''} (profile)"


def energy_kpis(run: Run) -> dict[str, Any]:
    """Run-level and per-phase energy, GPU-hours and cost (JSON-ready; missing values are None)."""
    gpus = gpus_per_replica(run)
    price, currency = price_per_gpu_hour(run)
    if run.digest is not None:
        run_level, phases = _digest_energy(run.digest, gpus, price)
        return _energy_section(run_level, phases, gpus, price, currency)
    cols = _EnergyColumns(run)
    everything = np.ones(len(cols.elapsed), dtype=bool)
    run_level = window_energy(cols, everything, gpus, price)
    phases = []
    if cols.phase is not None:
        for label in dict.fromkeys(cols.phase):  # in order of first appearance
            mask = cols.phase == label
            start = float(cols.elapsed[mask][0])
            phases.append(
                {
                    "phase": label or "(none)",
                    "start_s": start,
                    "end_s": float(cols.elapsed[mask][-1] + cols.weights[mask][-1]),
                    **window_energy(cols, mask, gpus, price),
                }
            )
    return _energy_section(run_level, phases, gpus, price, currency)


def _energy_section(
    run_level: dict[str, Any], phases: list[dict[str, Any]], gpus: int | None, price: float | None, currency: str
) -> dict[str, Any]:
    return {
        "measured": run_level["energy_kwh"] is not None,
        "run": run_level,
        "phases": phases,
        "gpus_per_replica": gpus,
        "price_per_gpu_hour": price,
        "currency": currency,
        "notes": _notes(run_level),
    }


def _digest_energy(
    digest: MetricsDigest, gpus: int | None, price: float | None
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """energy_kpis' run level and phases from a streamed metrics.csv's sums (stream.EnergyStats)."""
    phases = [
        {
            "phase": label or "(none)",
            "start_s": stats.start_s,
            "end_s": stats.end_s,
            **_energy_from_sums(stats, digest.has_data, gpus, price),
        }
        for label, stats in digest.energy_phases.items()
    ]
    return _energy_from_sums(digest.energy_run, digest.has_data, gpus, price), phases


def _energy_from_sums(stats: EnergyStats, has_data: set[str], gpus: int | None, price: float | None) -> dict[str, Any]:
    """window_energy from sums: a column without any value in the run counts as empty (no 0 W filled in)."""

    def sums(name: str) -> Sums:
        return stats.sums.get(name, Sums()) if name in has_data else Sums()

    def area(name: str) -> tuple[float | None, float]:
        found = sums(name)
        return (found.area, found.time) if found.count else (None, 0.0)

    both_known = {POWER_COLUMN, "generation_tokens_per_s"} <= has_data
    duration = stats.duration
    joules, covered = area(POWER_COLUMN)
    util, util_time = area("gpu_utilization_pct")
    tokens, _ = area("generation_tokens_per_s")
    joules_both = stats.joules_both.area if both_known and stats.joules_both.count else None
    tokens_both = stats.tokens_both.area if both_known and stats.tokens_both.count else None
    gpu_seconds, _ = area("gpu_count")
    replica_seconds, _ = area("replicas")
    gpu_hours: float | None
    basis: str | None
    if gpu_seconds is not None:
        gpu_hours, basis = gpu_seconds / 3600.0, MEASURED_GPU_HOURS
    else:
        gpu_hours, basis = _replica_gpu_hours(replica_seconds, gpus)
    power = sums(POWER_COLUMN)
    peak = power.peak if power.count else None
    return _energy_summary(
        duration,
        (joules, covered),
        peak,
        (util, util_time),
        tokens,
        (joules_both, tokens_both),
        (gpu_hours, basis),
        price,
    )


def _notes(run_level: dict[str, Any]) -> list[str]:
    coverage = run_level["power_coverage"]
    if run_level["energy_kwh"] is None:
        return ["no GPU power data (gpu_power_w is empty: no DCGM exporter series for the Deployment's pods)"]
    if coverage is not None and coverage < 1.0:
        return [
            f"GPU power known for {coverage * 100:.1f}% of the run's time: "
            "energy and measured GPU-hours cover that part only"
        ]
    return []
