"""Percentile bootstrap over seeds: the 95% intervals every verdict and every "best lr" rests on.

The method, stated once for the whole report:

- **The seed is the unit of replication.** A run's seed sets its initial weights and its
  shuffling; the data split is fixed. One resample draws ``n`` seeds with replacement from the
  ``n`` seeds the runs have, and recomputes the statistic from the runs of the drawn seeds (a
  seed drawn twice counts twice). A median pooled over batch sizes keeps all batch sizes of each
  drawn seed.
- **Percentile interval.** :data:`RESAMPLES` resamples; the interval is the 2.5th and 97.5th
  percentile of the resampled statistic (the lower and the higher order statistic, so a run that
  never reached the target, +inf, never turns into a NaN by interpolation).
- **Paired comparisons.** A gap between two settings (lr A against lr B, a schedule against the
  constant rate) is computed within each resample from the same drawn seeds; it is *resolved*
  only when its whole interval lies on one side of 0.
- **Reproducible.** The draws come from ``numpy.random.default_rng(SEED)``: the same runs give
  the same intervals, report after report.
- **Enough seeds.** With ``n`` seeds a resample draws one seed ``n`` times with probability
  ``n**(1 - n)``; for few seeds the percentile interval is about the range of the seeds, and a
  paired gap is "resolved" whenever every seed agrees on its sign, which chance alone gives
  with probability ``2 / 2**n`` (25% with 3 seeds). So below :data:`MIN_SEEDS` seeds the
  intervals are shown but decide nothing (:attr:`Interval.resolvable` is False).

Runs that diverged, failed or were killed count as +inf (never dropped), as everywhere in the
report; a missing run (a seed a setting does not have) is left out of that setting's median.

Arrays: a statistic is laid out as ``values`` of shape (G, S, R): G groups (e.g. learning
rates), S seeds, R runs of one group and seed (e.g. its batch sizes); NaN where missing.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = [
    "RESAMPLES",
    "LEVEL",
    "SEED",
    "MIN_SEEDS",
    "METHOD",
    "too_few",
    "Interval",
    "seed_draws",
    "by_seed",
    "resampled_medians",
    "interval",
    "Resampled",
]

RESAMPLES = 2000
LEVEL = 0.95
SEED = 0
MIN_SEEDS = 6  # fewer: all seeds agreeing by chance (2 / 2**n >= 6%) would count as resolved
METHOD = (
    f"percentile bootstrap over seeds ({RESAMPLES} resamples of the seeds with replacement, "
    f"{LEVEL:.0%} intervals, paired across settings, seeded; nothing is decided with fewer "
    f"than {MIN_SEEDS} seeds)"
)


def too_few(n_seeds: int) -> str:
    """The caution for ``n_seeds`` below :data:`MIN_SEEDS` ("" when there are enough)."""
    if n_seeds >= MIN_SEEDS:
        return ""
    return (
        f"{n_seeds} seed{'s' if n_seeds != 1 else ''} are too few for a {LEVEL:.0%} interval "
        f"(every seed agreeing by chance alone would count: {2 / 2**n_seeds:.0%}); the "
        f"intervals are shown, but no difference is called resolved below {MIN_SEEDS} seeds"
    )


_CHUNK = 4_000_000  # values resampled at once (memory: 8 bytes each)


@dataclass(frozen=True)
class Interval:
    """A point estimate and its interval (``lo`` <= ``hi``; +inf allowed, NaN when unknown);
    ``resolvable``: from enough seeds (:data:`MIN_SEEDS`) to decide anything."""

    value: float
    lo: float
    hi: float
    resolvable: bool = True

    def above(self, x: float = 0.0) -> bool:
        """Whether the whole interval lies above ``x`` (never, without enough seeds)."""
        return bool(self.resolvable and self.lo > x)

    def below(self, x: float = 0.0) -> bool:
        """Whether the whole interval lies below ``x`` (never, without enough seeds)."""
        return bool(self.resolvable and self.hi < x)

    def excludes(self, x: float = 0.0) -> bool:
        """Whether the whole interval lies strictly on one side of ``x``."""
        return self.above(x) or self.below(x)


def seed_draws(n_seeds: int, resamples: int = RESAMPLES, seed: int = SEED) -> np.ndarray:
    """Indices of drawn seeds, shape (resamples, n_seeds), each row drawn with replacement."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, n_seeds, size=(resamples, n_seeds))


def by_seed(
    frame: pd.DataFrame, groups: Sequence[str], value: str, seeds: Sequence | None = None
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """``frame[value]`` laid out by group, seed and run.

    Parameters
    ----------
    frame : DataFrame
        One row per run, with the ``groups`` columns, ``seed`` and ``value``.
    groups : sequence of str
        The columns that make a group (e.g. ``["lr"]``, ``["batch_size", "lr"]``).
    value : str
    seeds : sequence, optional
        The seeds to lay out (default: those of ``frame``, sorted).

    Returns
    -------
    (keys, values, seeds)
        ``keys``: one row per group (the ``groups`` columns, sorted); ``values``: shape
        (G, S, R), NaN where a group has fewer runs of a seed; ``seeds``: shape (S,).
    """
    groups = list(groups)
    seeds = np.sort(frame["seed"].unique()) if seeds is None else np.asarray(seeds)
    keys = frame[groups].drop_duplicates().sort_values(groups).reset_index(drop=True)
    g = frame[groups].merge(keys.reset_index(), on=groups, how="left")["index"].to_numpy()
    s = np.searchsorted(seeds, frame["seed"].to_numpy())
    r = frame.assign(_g=g, _s=s).groupby(["_g", "_s"]).cumcount().to_numpy()
    values = np.full((len(keys), len(seeds), int(r.max()) + 1 if len(r) else 1), np.nan)
    values[g, s, r] = frame[value].to_numpy(dtype=float)
    return keys, values, seeds


def _median(x: np.ndarray, axis: int) -> np.ndarray:
    if not np.isnan(x).any():
        return np.median(x, axis=axis)
    with warnings.catch_warnings():  # an all-missing resample is NaN, as it should be
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmedian(x, axis=axis)


def resampled_medians(values: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """The median of each group in each resample, shape (G, B).

    Parameters
    ----------
    values : ndarray, shape (G, S, R)
    draws : ndarray of int, shape (B, S)
        :func:`seed_draws`.
    """
    n_groups, _, n_runs = values.shape
    per_group = draws.size * n_runs
    step = max(1, _CHUNK // max(per_group, 1))
    out = np.empty((n_groups, len(draws)))
    for start in range(0, n_groups, step):
        chunk = values[start : start + step][:, draws, :]  # (g, B, S, R)
        out[start : start + step] = _median(chunk.reshape(len(chunk), len(draws), -1), axis=2)
    return out


def interval(samples: np.ndarray, level: float = LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """The percentile interval over the last axis of ``samples`` (NaN samples left out)."""
    a = (1 - level) / 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        lo = np.nanquantile(samples, a, axis=-1, method="lower")
        hi = np.nanquantile(samples, 1 - a, axis=-1, method="higher")
    return lo, hi


def _gap(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a - b``, 0 where both are the same infinity (neither usable: no difference)."""
    with np.errstate(invalid="ignore"):
        return np.where(a == b, 0.0, a - b)


class Resampled:
    """The median of one value per group, over all runs and in each resample of the seeds.

    Parameters
    ----------
    frame : DataFrame
        One row per run, with the ``groups`` columns, ``seed`` and ``value``.
    groups : sequence of str
    value : str
    seeds : sequence, optional
        Seeds to resample (default those of ``frame``); pass the same seeds (and so the same
        draws) to two objects whose groups are compared.

    Attributes
    ----------
    keys : DataFrame
        One row per group, sorted.
    point : ndarray, shape (G,)
        The median over all runs of each group.
    samples : ndarray, shape (G, B)
        The median in each resample.
    n_seeds : ndarray of int, shape (G,)
        Seeds with a run in each group.
    """

    def __init__(
        self, frame: pd.DataFrame, groups: Sequence[str], value: str, seeds: Sequence | None = None
    ) -> None:
        self.keys, values, self.seeds = by_seed(frame, groups, value, seeds)
        self.point = _median(values.reshape(len(self.keys), -1), axis=1)
        self.samples = resampled_medians(values, seed_draws(len(self.seeds)))
        self.n_seeds = (~np.isnan(values)).any(axis=2).sum(axis=1)

    def index(self, **key) -> int:
        """The row of the group whose columns equal ``key``."""
        mask = np.ones(len(self.keys), bool)
        for col, v in key.items():
            mask &= np.isclose(self.keys[col].to_numpy(dtype=float), float(v))
        found = np.flatnonzero(mask)
        if len(found) != 1:
            raise KeyError(f"no single group {key}")
        return int(found[0])

    @property
    def resolvable(self) -> bool:
        """Whether there are enough seeds (:data:`MIN_SEEDS`) to decide anything."""
        return len(self.seeds) >= MIN_SEEDS

    def interval(self, g: int) -> Interval:
        lo, hi = interval(self.samples[g])
        return Interval(float(self.point[g]), float(lo), float(hi), self.resolvable)

    def intervals(self) -> tuple[np.ndarray, np.ndarray]:
        """(lo, hi) of every group, shape (G,) each."""
        return interval(self.samples)

    def gap(self, a: int, b: int) -> Interval:
        """Group ``a`` minus group ``b``, paired over the same resamples."""
        lo, hi = interval(_gap(self.samples[a], self.samples[b]))
        point = _gap(np.array(self.point[a]), np.array(self.point[b]))
        return Interval(float(point), float(lo), float(hi), self.resolvable)

    def best(self, among: np.ndarray | None = None) -> int | None:
        """The group with the lowest finite point median (among a boolean mask), or None."""
        ok = np.isfinite(self.point) & (True if among is None else among)
        return int(np.flatnonzero(ok)[np.argmin(self.point[ok])]) if ok.any() else None

    def tied(self, best: int, among: np.ndarray | None = None) -> list[int]:
        """The groups the intervals do not separate from ``best``: the interval of their gap
        to it reaches 0 or below (``best`` itself included; groups without a finite median,
        e.g. always diverged, never are)."""
        mask = np.isfinite(self.point) & (True if among is None else among)
        rows = np.flatnonzero(mask)
        return [int(g) for g in rows if g == best or not self.gap(int(g), best).above(0)]

    def winners(self, among: np.ndarray | None = None) -> np.ndarray:
        """The group with the lowest median in each resample, shape (B,) (ties: the first)."""
        s = np.where(np.isnan(self.samples), np.inf, self.samples)
        if among is not None:
            s = np.where(among[:, None], s, np.inf)
        return np.argmin(s, axis=0)

    def share(self, among: np.ndarray | None = None) -> np.ndarray:
        """The fraction of resamples in which each group has the lowest median, shape (G,)."""
        winners = self.winners(among)
        return np.bincount(winners, minlength=len(self.keys)) / len(winners)
