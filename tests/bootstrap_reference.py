"""The report's percentile bootstrap over seeds written out plainly, one resample at a time, to
check ``nnlab.report.intervals`` (vectorised) against: the same rule, not the same code.

Rule: draw ``n`` seeds with replacement (``numpy.random.default_rng(0).integers(0, n, (2000,
n))``, seeds sorted), pool every run of the drawn seeds (a seed drawn twice counts twice),
take the median (missing runs left out, +inf kept); the interval is the 2.5th percentile
(lower order statistic) and the 97.5th (higher) of the 2000 medians. A paired gap takes both
medians from the same draw; two equal infinities differ by 0. With fewer than 6 seeds nothing is
decided (every seed agreeing by chance would count: 2 / 2**n).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

RESAMPLES, SEED, MIN_SEEDS = 2000, 0, 6


def draws(n_seeds: int) -> np.ndarray:
    return np.random.default_rng(SEED).integers(0, n_seeds, size=(RESAMPLES, n_seeds))


def medians(runs: pd.DataFrame, value: str, seeds: list) -> np.ndarray:
    """The median of ``value`` over ``runs`` in each resample of ``seeds``, shape (2000,)."""
    by_seed = {s: runs.loc[runs["seed"] == s, value].to_numpy(dtype=float) for s in seeds}
    out = []
    for row in draws(len(seeds)):
        pooled = np.concatenate([by_seed[seeds[i]] for i in row])
        pooled = pooled[~np.isnan(pooled)]
        out.append(np.median(pooled) if len(pooled) else np.nan)
    return np.array(out)


def percentile(samples: np.ndarray) -> tuple[float, float]:
    s = samples[~np.isnan(samples)]
    return (float(np.quantile(s, 0.025, method="lower")),
            float(np.quantile(s, 0.975, method="higher")))  # fmt: skip


def median_interval(runs: pd.DataFrame, value: str, seeds: list | None = None) -> tuple:
    """(median over all runs, lo, hi)."""
    seeds = sorted(runs["seed"].unique()) if seeds is None else seeds
    return (float(np.median(runs[value].dropna())), *percentile(medians(runs, value, seeds)))


def gap_interval(a: pd.DataFrame, b: pd.DataFrame, value: str, seeds: list) -> tuple:
    """(point gap, lo, hi) of median(a) - median(b), paired over the same draws."""
    ma, mb = medians(a, value, seeds), medians(b, value, seeds)
    with np.errstate(invalid="ignore"):
        gap = np.where(ma == mb, 0.0, ma - mb)
    pa, pb = np.median(a[value].dropna()), np.median(b[value].dropna())
    point = 0.0 if pa == pb else pa - pb
    return (float(point), *percentile(gap))
