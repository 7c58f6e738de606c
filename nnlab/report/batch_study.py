"""The batch-size study's numbers (``+experiment=critical_batch``): pure pandas and NumPy.

For each set-up (dataset, optimizer) a grid of batch sizes x learning rates x seeds trained for
a fixed number of optimizer steps, logging the training loss and the gradient noise scale
B_simple every epoch (``trainer.noise_scale``). Three questions:

1. **Steps to a target against batch size** (Shallue et al. 2019). A run's *steps to target*
   are the optimizer steps until its training loss first reaches the dataset's target (epochs x
   steps per epoch; +inf when it never does, or diverged). For each batch size the best lr is
   the one with the fewest steps (median over seeds). The target (:func:`targets`) is the
   loosest of the best losses each (optimizer, batch size) reaches within the budget, times
   :data:`TARGET_SLACK` (1.25, the flagship report's margin), so every batch size reaches it at
   its best lr before the end of its budget.
2. **Where larger batches stop paying** against the measured noise scale (McCandlish et al.
   2018). The steps S(B) are fitted with the model of that paper, ``S = S_min (1 + B_crit / B)``
   (least squares in log S, :func:`fit_critical`): below B_crit a doubled batch nearly halves
   the steps, above it the steps approach S_min; at ``B = B_crit`` a run needs twice the
   minimum. B_simple is each run's ``noise_scale`` at the epoch it reached the target (the
   paper's B_noise is a property of the point in training), at each batch size's best lr,
   median over seeds, then over batch sizes; the paper predicts B_crit ~ B_noise.
3. **How the best lr grows with batch size**: the slope k of log(best lr) against log(B)
   (least squares, :func:`fit_exponent`), against the linear rule for SGD (Goyal et al. 2017,
   k = 1) and the square-root rule for Adam (Malladi et al. 2022, k = 1/2). The best lr of a
   batch size is refined between grid points by a parabola through log(steps) at the best grid
   lr and its two neighbours; a best lr at the edge of the grid is censored and left out of the
   fit.

Every number comes with a 95% percentile-bootstrap interval over seeds
(``nnlab.report.intervals``): a resample draws the seeds with replacement, and the whole chain
(medians, best lr, both fits, B_simple) is recomputed from the drawn seeds' runs.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from nnlab.report.intervals import Interval, by_seed, interval, resampled_medians, seed_draws
from nnlab.tracking.schema import OK_OUTCOMES

__all__ = [
    "TARGET_SLACK",
    "RULES",
    "run_table",
    "targets",
    "reach",
    "fit_critical",
    "fit_exponent",
    "best_lr",
    "SetupResult",
    "analyse",
    "results_table",
    "findings",
]

METRIC = "loss"  # the training loss: the study is about optimisation speed
TARGET_SLACK = 1.25  # the target sits 25% above the loosest best loss (the flagship's 1.25)
RULES = {
    "sgd": (1.0, "linear (Goyal et al. 2017)"),
    "adam": (0.5, "square root (Malladi et al. 2022)"),
}
# B_crit candidates of the fit (log-spaced); a fit at either end is outside what the data tell
B_CRIT_GRID = np.logspace(-1, 6, 701)


def run_table(
    runs: pd.DataFrame, hist: pd.DataFrame, n_train: dict[str, int], metric: str = METRIC
) -> pd.DataFrame:
    """One row per run: set-up, batch size, lr, seed, and its per-epoch curves.

    Parameters
    ----------
    runs : DataFrame
        ``nnlab.analysis.load_runs`` rows (``data.name``, ``optimizer.name``, ``batch_size``,
        ``lr``, ``seed``, ``outcome``, ``run_id``).
    hist : DataFrame
        ``load_histories`` long frame holding ``metric`` and ``noise_scale``.
    n_train : dict
        Training samples per dataset name (steps per epoch = ceil(n_train / batch size)).

    Returns
    -------
    DataFrame
        ``run_id, dataset, optimizer, batch_size, lr, seed, usable, steps_per_epoch, curve,
        noise, best`` (``curve``/``noise``: float arrays by epoch; ``best``: the lowest
        ``metric``, +inf when the run is not usable).
    """
    by_run = {
        (rid, m): g.sort_values("epoch")["value"].to_numpy(float)
        for (rid, m), g in hist[hist["metric"].isin([metric, "noise_scale"])].groupby(
            ["run_id", "metric"]
        )
    }
    rows = []
    for r in _renamed(runs).to_dict("records"):
        rid = r["run_id"]
        curve = by_run.get((rid, metric), np.array([]))
        usable = r["outcome"] in OK_OUTCOMES and curve.size > 0
        bs = int(r["batch_size"])
        rows.append(
            {
                "run_id": rid,
                "dataset": str(r["data_name"]),
                "optimizer": str(r["optimizer_name"]),
                "batch_size": bs,
                "lr": float(r["lr"]),
                "seed": int(r["seed"]),
                "usable": usable,
                "steps_per_epoch": math.ceil(n_train[str(r["data_name"])] / bs),
                "curve": curve,
                "noise": by_run.get((rid, "noise_scale"), np.full(curve.size, np.nan)),
                "best": float(np.nanmin(curve)) if usable else math.inf,
            }
        )
    return pd.DataFrame(rows)


def _renamed(runs: pd.DataFrame) -> pd.DataFrame:
    return runs.rename(columns={"data.name": "data_name", "optimizer.name": "optimizer_name"})


def targets(table: pd.DataFrame) -> pd.Series:
    """Per dataset: :data:`TARGET_SLACK` x the loosest best loss, where each (optimizer, batch
    size)'s best loss is the lowest over lrs of the median over seeds of the runs' lowest loss."""
    med = table.groupby(["dataset", "optimizer", "batch_size", "lr"])["best"].median()
    per_bs = med.groupby(level=["dataset", "optimizer", "batch_size"]).min()
    return TARGET_SLACK * per_bs.groupby(level="dataset").max()


def reach(table: pd.DataFrame, target: pd.Series) -> pd.DataFrame:
    """``table`` plus ``target``, ``steps`` (to the target, +inf if never) and ``noise_at_target``
    (the run's noise scale at that epoch, NaN if never)."""
    steps, noise = [], []
    for r in table.itertuples(index=False):
        hit = np.flatnonzero(r.curve <= target[r.dataset]) if r.usable else np.array([], int)
        if hit.size:
            steps.append(float((hit[0] + 1) * r.steps_per_epoch))
            noise.append(float(r.noise[hit[0]]) if hit[0] < r.noise.size else math.nan)
        else:
            steps.append(math.inf)
            noise.append(math.nan)
    return table.assign(
        target=table["dataset"].map(target).to_numpy(float), steps=steps, noise_at_target=noise
    )


# ------------------------------------------------------------------------------- the two fits


def fit_critical(batch: np.ndarray, steps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares fit of ``log S = log S_min + log(1 + B_crit / B)`` over :data:`B_CRIT_GRID`.

    Parameters
    ----------
    batch : ndarray, shape (nB,)
    steps : ndarray, shape (..., nB)
        Steps to target; non-finite entries are left out of their row's fit.

    Returns
    -------
    (b_crit, s_min) : ndarrays, shape (...)
        NaN for a row with fewer than 3 finite points.
    """
    steps = np.asarray(steps, float)
    ok = np.isfinite(steps) & (steps > 0)
    logs = np.where(ok, np.log(np.where(ok, steps, 1.0)), 0.0)[..., None, :]  # (..., 1, nB)
    shape = np.log1p(B_CRIT_GRID[:, None] / batch[None, :])  # (C, nB)
    n = ok.sum(axis=-1)[..., None]  # (..., 1)
    mask = ok[..., None, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        log_smin = np.where(mask, logs - shape, 0.0).sum(axis=-1) / n  # (..., C)
        resid = np.where(mask, (logs - shape - log_smin[..., None]) ** 2, 0.0).sum(axis=-1)
    best = np.argmin(resid, axis=-1)
    b_crit = B_CRIT_GRID[best]
    s_min = np.exp(np.take_along_axis(log_smin, best[..., None], axis=-1)[..., 0])
    few = n[..., 0] < 3
    return np.where(few, np.nan, b_crit), np.where(few, np.nan, s_min)


def fit_exponent(batch: np.ndarray, lrs: np.ndarray) -> np.ndarray:
    """Slope of log(lr) against log(B) by least squares, over the finite entries of each row.

    Parameters
    ----------
    batch : ndarray, shape (nB,)
    lrs : ndarray, shape (..., nB)
        Best lr per batch size; NaN where censored or unknown.

    Returns
    -------
    ndarray, shape (...)
        NaN for a row with fewer than 3 finite points.
    """
    y = np.log(np.asarray(lrs, float))
    ok = np.isfinite(y)
    x = np.broadcast_to(np.log(batch.astype(float)), y.shape)
    n = ok.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mx = np.where(ok, x, 0).sum(axis=-1) / n
        my = np.where(ok, y, 0).sum(axis=-1) / n
        dx = np.where(ok, x - mx[..., None], 0)
        slope = (dx * np.where(ok, y - my[..., None], 0)).sum(axis=-1) / (dx**2).sum(axis=-1)
    return np.where(n >= 3, slope, np.nan)


def best_lr(grid: np.ndarray, steps: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per batch size: the fewest steps, the lr giving them (refined), and whether censored.

    Parameters
    ----------
    grid : ndarray, shape (nL,)
        The lr grid, increasing.
    steps : ndarray, shape (..., nB, nL)
        Steps to target (median over seeds), +inf where not reached.

    Returns
    -------
    (fewest, lr, censored) : ndarrays, shape (..., nB)
        ``lr`` is NaN where no lr reached the target; ``censored`` where the best grid lr is
        the smallest or largest of the grid (the true best may lie beyond it).
    """
    steps = np.asarray(steps, float)
    i = np.argmin(steps, axis=-1)  # the first (smallest) lr on ties
    fewest = np.take_along_axis(steps, i[..., None], axis=-1)[..., 0]
    x = np.log(grid)
    nl = len(grid)
    lo, hi = np.clip(i - 1, 0, nl - 1), np.clip(i + 1, 0, nl - 1)
    y0, y1, y2 = (
        np.log(np.take_along_axis(steps, j[..., None], axis=-1)[..., 0]) for j in (lo, i, hi)
    )
    x0, x1, x2 = x[lo], x[i], x[hi]
    with np.errstate(invalid="ignore", divide="ignore"):
        # the vertex of the parabola through the three points; a minimum when it opens upward
        num = (x1 - x0) ** 2 * (y1 - y2) - (x1 - x2) ** 2 * (y1 - y0)
        den = (x1 - x0) * (y1 - y2) - (x1 - x2) * (y1 - y0)
        vertex = x1 - 0.5 * num / den
        curv = ((y2 - y1) / (x2 - x1) - (y1 - y0) / (x1 - x0)) / (x2 - x0)
    inner = (i > 0) & (i < nl - 1)
    smooth = inner & np.isfinite(y0) & np.isfinite(y2) & (curv > 0)
    half = 0.5 * np.minimum(x1 - x0, x2 - x1)
    refined = np.where(smooth, np.clip(vertex, x1 - half, x1 + half), x1)
    lr = np.where(np.isfinite(fewest), np.exp(refined), np.nan)
    return fewest, lr, np.isfinite(fewest) & ~inner


# ------------------------------------------------------------------------- one set-up, resampled


@dataclass
class SetupResult:
    """The study's numbers for one (dataset, optimizer).

    Attributes
    ----------
    batch_sizes, lr_grid : ndarray
    steps : ndarray, shape (nB, nL)
        Median steps to target over seeds.
    fewest, best_lr : ndarray, shape (nB,)
        At each batch size's best lr; ``censored`` (nB,) marks a best lr at the grid's edge.
    fewest_lo, fewest_hi, lr_lo, lr_hi : ndarray, shape (nB,)
        Their 95% intervals.
    b_simple_by_bs : ndarray, shape (nB,)
        Median noise scale at the target, at each batch size's best lr.
    b_crit, s_min, b_simple, ratio, exponent : Interval
        ``ratio`` = B_simple / B_crit.
    """

    dataset: str
    optimizer: str
    target: float
    n_seeds: int
    batch_sizes: np.ndarray
    lr_grid: np.ndarray
    steps: np.ndarray
    fewest: np.ndarray
    fewest_lo: np.ndarray
    fewest_hi: np.ndarray
    best_lr: np.ndarray
    lr_lo: np.ndarray
    lr_hi: np.ndarray
    censored: np.ndarray
    b_simple_by_bs: np.ndarray
    b_crit: Interval
    s_min: Interval
    b_simple: Interval
    ratio: Interval
    exponent: Interval


def _grid(values: np.ndarray, keys: pd.DataFrame, bss: np.ndarray, lrs: np.ndarray) -> np.ndarray:
    """(G, ...) values of (batch_size, lr) groups -> (nB, nL, ...), +inf where missing."""
    out = np.full((len(bss), len(lrs), *values.shape[1:]), np.inf)
    bi = np.searchsorted(bss, keys["batch_size"].to_numpy())
    li = np.searchsorted(lrs, keys["lr"].to_numpy())
    out[bi, li] = values
    return out


def _pick(values: np.ndarray, grid_lr: np.ndarray, lrs: np.ndarray) -> np.ndarray:
    """values (nB, nL, ...) at the grid lr nearest each ``grid_lr`` (nB, ...); NaN where unknown."""
    idx = np.clip(np.searchsorted(lrs, np.nan_to_num(grid_lr, nan=lrs[0])), 0, len(lrs) - 1)
    picked = np.take_along_axis(np.moveaxis(values, 1, -1), idx[..., None], axis=-1)[..., 0]
    return np.where(np.isfinite(grid_lr), picked, np.nan)


def _nanmedian(x: np.ndarray, axis: int) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmedian(x, axis=axis)


def _interval(point: float, samples: np.ndarray) -> Interval:
    lo, hi = interval(samples)
    return Interval(float(point), float(lo), float(hi))


def analyse_setup(frame: pd.DataFrame) -> SetupResult:
    """:class:`SetupResult` of one (dataset, optimizer)'s :func:`reach` rows."""
    bss = np.sort(frame["batch_size"].unique()).astype(float)
    lrs = np.sort(frame["lr"].unique())
    keys, steps_v, seeds = by_seed(frame, ["batch_size", "lr"], "steps")
    _, noise_v, _ = by_seed(frame, ["batch_size", "lr"], "noise_at_target", seeds)
    draws = seed_draws(len(seeds))
    # point estimates (all seeds) and resamples, both as (nB, nL[, R])
    steps = _grid(_nanmedian(steps_v.reshape(len(keys), -1), 1), keys, bss, lrs)
    steps_r = _grid(resampled_medians(steps_v, draws), keys, bss, lrs)
    noise = _grid(_nanmedian(noise_v.reshape(len(keys), -1), 1), keys, bss, lrs)
    noise_r = _grid(resampled_medians(noise_v, draws), keys, bss, lrs)
    fewest, lr, censored = best_lr(lrs, steps)
    fewest_r, lr_r, censored_r = best_lr(lrs, np.moveaxis(steps_r, -1, 0))  # (R, nB)
    b_crit, s_min = fit_critical(bss, fewest)
    b_crit_r, s_min_r = fit_critical(bss, fewest_r)
    exponent = fit_exponent(bss, np.where(censored, np.nan, lr))
    exponent_r = fit_exponent(bss, np.where(censored_r, np.nan, lr_r))
    # B_simple at each batch size's best grid lr (the lr the fewest steps were read at)
    grid_best = np.where(np.isfinite(fewest), lrs[np.argmin(steps, axis=-1)], np.nan)
    grid_best_r = np.where(
        np.isfinite(fewest_r), lrs[np.argmin(np.moveaxis(steps_r, -1, 0), axis=-1)], np.nan
    )
    by_bs = _pick(noise, grid_best, lrs)
    by_bs_r = np.stack([_pick(noise_r[..., k], grid_best_r[k], lrs) for k in range(len(draws))])
    b_simple, b_simple_r = _nanmedian(by_bs, 0), _nanmedian(by_bs_r, 1)
    fewest_lo, fewest_hi = interval(fewest_r.T)
    lr_lo, lr_hi = interval(lr_r.T)
    first = frame.iloc[0]
    return SetupResult(
        dataset=str(first["dataset"]),
        optimizer=str(first["optimizer"]),
        target=float(first["target"]),
        n_seeds=len(seeds),
        batch_sizes=bss,
        lr_grid=lrs,
        steps=steps,
        fewest=fewest,
        fewest_lo=fewest_lo,
        fewest_hi=fewest_hi,
        best_lr=lr,
        lr_lo=lr_lo,
        lr_hi=lr_hi,
        censored=censored,
        b_simple_by_bs=by_bs,
        b_crit=_interval(b_crit, b_crit_r),
        s_min=_interval(s_min, s_min_r),
        b_simple=_interval(b_simple, b_simple_r),
        ratio=_interval(b_simple / b_crit, b_simple_r / b_crit_r),
        exponent=_interval(exponent, exponent_r),
    )


def analyse(reached: pd.DataFrame) -> list[SetupResult]:
    """:func:`analyse_setup` of every (dataset, optimizer) in :func:`reach`'s table."""
    return [analyse_setup(g) for _, g in reached.groupby(["dataset", "optimizer"], sort=True)]


# ------------------------------------------------------------------------- tables and findings


def _iv(x: Interval) -> dict:
    return {"value": x.value, "lo": x.lo, "hi": x.hi}


def results_table(results: list[SetupResult]) -> pd.DataFrame:
    """One row per (dataset, optimizer, batch size): fewest steps, best lr, B_simple, with their
    intervals; the set-up's fits repeated on each row."""
    rows = []
    for r in results:
        for k, bs in enumerate(r.batch_sizes):
            rows.append({
                "dataset": r.dataset, "optimizer": r.optimizer, "batch_size": int(bs),
                "target_loss": r.target, "steps": r.fewest[k], "steps_lo": r.fewest_lo[k],
                "steps_hi": r.fewest_hi[k], "best_lr": r.best_lr[k], "best_lr_lo": r.lr_lo[k],
                "best_lr_hi": r.lr_hi[k], "best_lr_censored": bool(r.censored[k]),
                "b_simple_at_target": r.b_simple_by_bs[k], "b_crit": r.b_crit.value,
                "b_simple": r.b_simple.value, "lr_exponent": r.exponent.value,
            })  # fmt: skip
    return pd.DataFrame(rows)


def _side(x: Interval, ref: float) -> str:
    """``inside``, ``above`` or ``below``: where the interval lies relative to ``ref``."""
    if not (math.isfinite(x.lo) and math.isfinite(x.hi)):
        return "unknown"
    return "above" if x.lo > ref else "below" if x.hi < ref else "inside"


def findings(results: list[SetupResult]) -> list[dict]:
    """Per set-up: the fits with intervals and the verdicts they support (JSON-ready)."""
    out = []
    for r in results:
        top = float(r.batch_sizes.max())
        rule, rule_name = RULES.get(r.optimizer, (math.nan, "none"))
        out.append({
            "dataset": r.dataset, "optimizer": r.optimizer, "target_loss": r.target,
            "seeds": r.n_seeds, "batch_sizes": [int(b) for b in r.batch_sizes],
            "b_crit": _iv(r.b_crit), "s_min": _iv(r.s_min), "b_simple": _iv(r.b_simple),
            "b_simple_over_b_crit": _iv(r.ratio),
            "knee_in_range": bool(r.b_crit.hi <= top and r.b_crit.lo >= r.batch_sizes.min()),
            "b_simple_vs_b_crit": _side(r.ratio, 1.0),
            "lr_exponent": _iv(r.exponent), "rule": rule_name, "rule_exponent": rule,
            "rule_verdict": _side(r.exponent, rule) if math.isfinite(rule) else "no rule",
            "exponent_vs_linear": _side(r.exponent, 1.0),
            "exponent_vs_sqrt": _side(r.exponent, 0.5),
            "fit_points": int((~r.censored & np.isfinite(r.best_lr)).sum()),
        })  # fmt: skip
    return out
