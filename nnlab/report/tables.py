"""The numbers behind the report: summary tables computed from the analysis frames.

Pure pandas functions (no plotting, no MLflow) so a study script or a test can recompute every
number the report states. Conventions, used everywhere:

- A run that diverged, failed or was killed has no usable result: its final metric and its best
  metric count as +inf, and it never reaches the target. It is counted, never dropped.
- Over seeds we take the median, so a setting counts as reaching the target (or as having a
  finite result) only if most of its seeds do. Every median comes with its 95% percentile
  bootstrap interval over seeds (``nnlab.report.intervals``), and "best" always means the best
  by the median over seeds, with the lrs its interval does not separate from it.
- Speed and quality come from the runs with the longest epoch budget of each (lr, batch_size):
  without an lr schedule, epoch ``e`` of that run is what an ``e``-epoch budget gives.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from nnlab.report.intervals import MIN_SEEDS, Resampled
from nnlab.tracking.schema import NO_EFFECT, OK_OUTCOMES, excluded

TARGET_FACTOR = 1.25  # default target: 25% above the best (median-over-seeds) result reached


def usable(runs: pd.DataFrame) -> pd.Series:
    """True for runs whose numbers count (completed or early-stopped)."""
    return runs["outcome"].isin(OK_OUTCOMES)


def longest_budget_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs with the largest ``epochs`` of their (lr, batch_size) group, shape (k, n_cols)."""
    top = runs.groupby(["lr", "batch_size"])["epochs"].transform("max")
    return runs[runs["epochs"] == top]


def not_learning(runs: pd.DataFrame, hist: pd.DataFrame, metric: str = "loss") -> pd.Series:
    """True for usable runs (completed / early-stopped) whose training ``loss`` never went below
    its first-epoch value: they ran to the end without learning, e.g. an lr so large that the
    network saturated within the first steps (the divergence guard compares against epoch 1,
    which was already bad). Uses ``loss`` when ``hist`` has it (a rising ``val_loss`` may be
    over-fitting, not failure to learn), else ``metric``. Indexed like ``runs``."""
    key = "loss" if (hist["metric"] == "loss").any() else metric
    h = hist[hist["metric"] == key].sort_values("epoch")
    g = h.groupby("run_id")["value"]
    first = g.first()
    later = h[h["epoch"] > h.groupby("run_id")["epoch"].transform("min")]
    best_later = later.groupby("run_id")["value"].min()
    stuck = ~(best_later < first.reindex(best_later.index))  # NaN-safe: NaN counts as stuck
    flag = runs["run_id"].isin(stuck.index[stuck.to_numpy(dtype=bool)])
    return flag & usable(runs)


def per_run_curves(
    runs: pd.DataFrame, hist: pd.DataFrame, metric: str, target: float | None = None
) -> tuple[pd.DataFrame, float]:
    """Best value, epoch of best and epochs-to-target of each longest-budget run.

    Parameters
    ----------
    runs : DataFrame from ``load_runs``.
    hist : DataFrame from ``load_histories`` holding ``metric``.
    metric : str
    target : float, optional
        Absolute target value of ``metric``; default ``TARGET_FACTOR`` x the lowest
        median-over-seeds best value of any (lr, batch_size).

    Returns
    -------
    (curves, target) : DataFrame with one row per longest-budget run: ``run_id, lr, batch_size,
        epochs, seed, outcome, best, best_epoch, epochs_to_target`` (inf if never reached);
        and the target used.
    """
    longest = longest_budget_runs(runs)
    h = hist[(hist["metric"] == metric) & hist["run_id"].isin(longest["run_id"])]
    h = h[np.isfinite(h["value"])]
    best = h.loc[h.groupby("run_id")["value"].idxmin(), ["run_id", "value", "epoch"]]
    best = best.rename(columns={"value": "best", "epoch": "best_epoch"})
    cols = ["run_id", "lr", "batch_size", "epochs", "seed", "outcome"]
    curves = longest[cols].merge(best, on="run_id", how="left")
    stuck_ids = runs.loc[not_learning(runs, hist, metric).to_numpy(), "run_id"]
    curves["not_learning"] = curves["run_id"].isin(stuck_ids)
    ok = curves["outcome"].isin(OK_OUTCOMES)
    curves.loc[~ok | curves["best"].isna(), "best"] = np.inf

    if target is None:
        per_setting = curves.groupby(["lr", "batch_size"])["best"].median()
        finite = per_setting[np.isfinite(per_setting)]
        target = float(finite.min() * TARGET_FACTOR) if len(finite) else math.nan
    hit = h[h["value"] <= target].groupby("run_id")["epoch"].min()
    curves["epochs_to_target"] = curves["run_id"].map(hit).astype("float64")
    curves.loc[~ok | curves["epochs_to_target"].isna(), "epochs_to_target"] = np.inf
    return curves, float(target)


def _summarise(curves: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Per group of ``by``: counts, and the median epochs to target and best value over its
    runs (all batch sizes and seeds of the group) with their bootstrap intervals."""
    g = curves.groupby(by)
    out = pd.DataFrame(
        {
            "runs": g.size(),
            "epochs_budget": g["epochs"].max(),
            "reached_target": g["epochs_to_target"].apply(lambda s: int(np.isfinite(s).sum())),
            "not_usable": g["outcome"].apply(lambda s: int((~s.isin(OK_OUTCOMES)).sum())),
            "not_learning": g["not_learning"].sum().astype(int),
        }
    ).reset_index()
    seeds = np.sort(curves["seed"].unique())
    for col, name in (("epochs_to_target", "epochs_to_target"), ("best", "best")):
        r = Resampled(curves, by, col, seeds)
        lo, hi = r.intervals()
        stats = r.keys.assign(**{f"median_{name}": r.point, f"{name}_lo": lo, f"{name}_hi": hi})
        out = out.merge(stats, on=by, how="left")
    out["n_seeds"] = Resampled(curves, by, "best", seeds).n_seeds
    return out


def per_lr(curves: pd.DataFrame) -> pd.DataFrame:
    """Speed and quality per lr, pooled over batch sizes and seeds, one row per lr.

    Columns ``lr, runs, epochs_budget, reached_target, not_usable, not_learning,
    median_epochs_to_target, epochs_to_target_lo, epochs_to_target_hi, median_best, best_lo,
    best_hi, n_seeds``: medians over the group's runs (inf: most never reached the target, or
    were not usable), with their 95% intervals (``nnlab.report.intervals``)."""
    return _summarise(curves, ["lr"])


def per_lr_batch(curves: pd.DataFrame) -> pd.DataFrame:
    """:func:`per_lr` per (lr, batch_size): medians over seeds, with their intervals."""
    return _summarise(curves, ["lr", "batch_size"])


def _finals(runs: pd.DataFrame, metric: str, stuck: pd.Series | None) -> pd.DataFrame:
    """``runs`` with ``final`` (the final ``metric``, +inf when not usable) and ``stuck``."""
    final = runs[f"final_{metric}"].where(usable(runs), np.inf).fillna(np.inf)
    stuck = pd.Series(False, index=runs.index) if stuck is None else stuck
    return runs.assign(final=final.to_numpy(), stuck=stuck.to_numpy())


def _main_bad_outcome(outcomes: pd.Series) -> str:
    """The most common outcome among a group's unusable runs ("" when all are usable)."""
    bad = outcomes[~outcomes.isin(OK_OUTCOMES)].astype(str)
    return bad.value_counts().index[0] if len(bad) else ""


BUDGET_KEYS = ["batch_size", "lr", "epochs"]


def final_by_budget(
    runs: pd.DataFrame, metric: str, stuck: pd.Series | None = None
) -> pd.DataFrame:
    """Median over seeds of the final ``metric`` of each (batch_size, lr, epochs) trial setting.

    Columns ``batch_size, lr, epochs, runs, not_usable, bad_outcome`` (the most common outcome
    of its unusable runs, e.g. ``diverged``), ``not_learning`` (runs flagged by
    :func:`not_learning`), ``median_final`` (inf when most seeds were not usable), ``lo, hi``
    (its 95% interval) and ``n_seeds``."""
    frame = _finals(runs, metric, stuck)
    g = frame.groupby(BUDGET_KEYS)
    out = pd.DataFrame(
        {
            "runs": g.size(),
            "not_usable": g["outcome"].apply(lambda s: int((~s.isin(OK_OUTCOMES)).sum())),
            "bad_outcome": g["outcome"].apply(_main_bad_outcome),
            "not_learning": g["stuck"].sum().astype(int),
        }
    ).reset_index()
    r = Resampled(frame, BUDGET_KEYS, "final")
    lo, hi = r.intervals()
    stats = r.keys.assign(median_final=r.point, lo=lo, hi=hi, n_seeds=r.n_seeds)
    return out.merge(stats, on=BUDGET_KEYS, how="left")


def best_lr_per_budget(
    runs: pd.DataFrame, metric: str, stuck: pd.Series | None = None
) -> pd.DataFrame:
    """For each (batch_size, epochs) the best lr by the median over seeds of the final metric.

    Columns ``batch_size, epochs, best_lr, median_final, lo, hi`` (its 95% interval),
    ``n_seeds``, ``tied_lrs`` (the lrs the intervals do not separate from it, best included,
    as text ``"0.01 0.03"``) and ``share`` (the fraction of resamples in which it is best). No
    row when every lr of a budget was unusable."""
    frame = _finals(runs, metric, stuck)
    seeds = np.sort(frame["seed"].unique())
    rows = []
    for (bs, ep), grp in frame.groupby(["batch_size", "epochs"], sort=True):
        r = Resampled(grp, ["lr"], "final", seeds)
        best = r.best()
        if best is None:
            continue
        lrs = r.keys["lr"].to_numpy(dtype=float)
        iv = r.interval(best)
        rows.append({"batch_size": bs, "epochs": ep, "best_lr": lrs[best],
                     "median_final": iv.value, "lo": iv.lo, "hi": iv.hi,
                     "n_seeds": int(r.n_seeds[best]),
                     "tied_lrs": " ".join(fmt_lr(lrs[g]) for g in r.tied(best)),
                     "share": float(r.share()[best])})  # fmt: skip
    cols = ["batch_size", "epochs", "best_lr", "median_final", "lo", "hi", "n_seeds", "tied_lrs",
            "share"]  # fmt: skip
    return pd.DataFrame(rows, columns=cols)


def tied_set(text: str) -> set[float]:
    """The lrs of a ``tied_lrs`` cell (``"0.01 0.03"``)."""
    return {float(x) for x in str(text).split()}


SHIFT_LEVEL = 0.975  # a shift is stated when this share of resamples agrees (two-sided 95%)
SHIFT_COLUMNS = ["batch_size", "short", "long", "best_short", "best_long", "larger", "smaller",
                 "shift"]  # fmt: skip


def budget_shift(runs: pd.DataFrame, metric: str, stuck: pd.Series | None = None) -> pd.DataFrame:
    """Per batch size: does the best lr move from the shortest to the longest epoch budget?

    In each resample of the seeds (the same draws at both budgets) the best lr of each budget
    is chosen again, by the lowest median final ``metric``; the shift is stated only when at
    least :data:`SHIFT_LEVEL` of the resamples agree.

    Returns
    -------
    DataFrame
        One row per batch size with both budgets: ``batch_size, short, long`` (epochs),
        ``best_short, best_long`` (the best lr by the median over all seeds), ``larger`` and
        ``smaller`` (the share of resamples in which the short budget's best lr is larger /
        smaller than the long one's) and ``shift``: ``larger``, ``smaller`` or ``unresolved``.
        Empty with fewer than two budgets.
    """
    frame = _finals(runs, metric, stuck)
    seeds = np.sort(frame["seed"].unique())
    short, long = frame["epochs"].min(), frame["epochs"].max()
    rows = []
    for bs, grp in frame.groupby("batch_size", sort=True):
        if short == long or not {short, long} <= set(grp["epochs"]):
            continue
        best, won = {}, {}
        for ep in (short, long):
            r = Resampled(grp[grp["epochs"] == ep], ["lr"], "final", seeds)
            lrs = r.keys["lr"].to_numpy(dtype=float)
            b = r.best()
            best[ep] = lrs[b] if b is not None else np.nan
            won[ep] = lrs[r.winners()]
        larger, smaller = float(np.mean(won[short] > won[long])), float(
            np.mean(won[short] < won[long]))  # fmt: skip
        decide = len(seeds) >= MIN_SEEDS  # fewer seeds: shown, not decided
        shift = ("larger" if decide and larger >= SHIFT_LEVEL else "smaller" if decide
                 and smaller >= SHIFT_LEVEL else "unresolved")  # fmt: skip
        rows.append([bs, short, long, best[short], best[long], larger, smaller, shift])
    return pd.DataFrame(rows, columns=SHIFT_COLUMNS)


def outcome_counts(runs: pd.DataFrame, stuck: pd.Series | None = None) -> pd.DataFrame:
    """Runs per (lr, batch_size) and outcome: columns ``lr, batch_size, <outcome>...,
    not_learning`` (usable runs flagged by :func:`not_learning`, counted inside their outcome)
    and ``total``."""
    table = pd.crosstab([runs["lr"], runs["batch_size"]], runs["outcome"].astype(str))
    table["total"] = table.sum(axis=1)
    if stuck is not None:
        flagged = runs[stuck.to_numpy()].groupby(["lr", "batch_size"]).size()
        table["not_learning"] = flagged.reindex(table.index).fillna(0).astype(int)
    return table.reset_index()


def fmt_lr(lr: float) -> str:
    return f"{lr:g}"


def fmt_epochs(e: float) -> str:
    return "not reached" if not np.isfinite(e) else f"{e:g}"


def fmt_val(v: float) -> str:
    return "n/a (no usable run)" if not np.isfinite(v) else f"{v:.4f}"


def fmt_end(v: float) -> str:
    """One end of an interval of a loss: ``0.1102``, ``∞`` (most resampled seeds unusable)."""
    return "∞" if v == np.inf else "n/a" if not np.isfinite(v) else f"{v:.4f}"


def fmt_interval(lo: float, hi: float, fmt=fmt_end) -> str:
    """``[0.1102, 0.1250]`` (``fmt`` formats each end: :func:`fmt_end`, or :func:`fmt_epochs`
    for epochs to the target)."""
    return f"[{fmt(lo)}, {fmt(hi)}]"


# Params that follow the sweep axes (the ones that do not change a result: schema.NO_EFFECT).
_AXIS_COPIES = {"optimizer.learning_rate", "trainer.batch_size", "trainer.epochs", "model.seed"}


def varying_params(runs: pd.DataFrame) -> dict[str, list]:
    """Params other than the sweep axes that differ between runs (e.g. two sweeps with different
    data filed under one experiment): ``{param: sorted values}``."""
    out = {}
    for col in runs.columns:
        if "." not in col or col in _AXIS_COPIES or excluded(col, NO_EFFECT):
            continue
        values = runs[col].dropna().astype(str).unique()
        if len(values) > 1:
            out[col] = sorted(values)
    return out


def budget_consistency(runs: pd.DataFrame, hist: pd.DataFrame, metric: str) -> dict:
    """Does a shorter-budget trial equal epoch ``e`` of the longest run with the same lr, batch
    size and seed? (It should: without an lr schedule the first ``e`` epochs are the same work.)

    Returns ``{"compared": n, "identical": k, "max_abs_diff": d}`` over usable trial pairs."""
    # Pairs only within one set-up: a sweep that also varies e.g. data or schedule pairs each
    # trial with the longest run of its own set-up, not of every set-up.
    keys = ["lr", "batch_size", "seed", *varying_params(runs)]
    top = runs.groupby(keys, dropna=False)["epochs"].transform("max")
    longest = runs[(runs["epochs"] == top) & usable(runs)]
    shorter = runs[(runs["epochs"] < top) & usable(runs)]
    h = hist[hist["metric"] == metric].set_index(["run_id", "epoch"])["value"]
    pairs = shorter.merge(longest[[*keys, "run_id"]], on=keys, suffixes=("", "_long"))
    if pairs.empty:
        return {"compared": 0, "identical": 0, "max_abs_diff": math.nan}
    at_e = h.reindex(list(zip(pairs["run_id_long"], pairs["epochs"], strict=True))).to_numpy()
    diff = np.abs(pairs[f"final_{metric}"].to_numpy(dtype=float) - at_e)
    return {
        "compared": len(pairs),
        "identical": int((diff == 0).sum()),
        "max_abs_diff": float(np.nanmax(diff)) if np.isfinite(diff).any() else math.nan,
    }
