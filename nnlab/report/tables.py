"""The numbers behind the report: summary tables computed from the analysis frames.

Pure pandas functions (no plotting, no MLflow) so a study script or a test can recompute every
number the report states. Conventions, used everywhere:

- A run that diverged, failed or was killed has no usable result: its final metric and its best
  metric count as +inf, and it never reaches the target. It is counted, never dropped.
- Over seeds we take the median, so a setting counts as reaching the target (or as having a
  finite result) only if most of its seeds do.
- Speed and quality come from the runs with the longest epoch budget of each (lr, batch_size):
  without an lr schedule, epoch ``e`` of that run is what an ``e``-epoch budget gives.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

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


def _seed_std(curves: pd.DataFrame) -> pd.Series:
    """Seed-to-seed std of ``best`` within each (lr, batch_size), finite runs only."""
    fin = curves[np.isfinite(curves["best"])]
    return fin.groupby(["lr", "batch_size"])["best"].std(ddof=0).fillna(0.0)


def _summarise(curves: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    g = curves.groupby(by)
    out = pd.DataFrame(
        {
            "runs": g.size(),
            "epochs_budget": g["epochs"].max(),
            "reached_target": g["epochs_to_target"].apply(lambda s: int(np.isfinite(s).sum())),
            "median_epochs_to_target": g["epochs_to_target"].median(),
            "median_best": g["best"].median(),
            "not_usable": g["outcome"].apply(lambda s: int((~s.isin(OK_OUTCOMES)).sum())),
            "not_learning": g["not_learning"].sum().astype(int),
        }
    )
    # Seed noise: std over seeds within each (lr, batch size), pooled (RMS) over batch sizes,
    # so differences between batch sizes do not count as noise.
    var = (
        _seed_std(curves).pow(2).groupby(level=by).mean()
        if by != ["lr", "batch_size"]
        else (_seed_std(curves).pow(2))
    )
    out["seed_std_best"] = np.sqrt(var.reindex(out.index)).fillna(0.0)
    return out.reset_index()


def per_lr(curves: pd.DataFrame) -> pd.DataFrame:
    """Speed and quality per lr, pooled over batch sizes and seeds (medians), one row per lr."""
    return _summarise(curves, ["lr"])


def per_lr_batch(curves: pd.DataFrame) -> pd.DataFrame:
    """Speed and quality per (lr, batch_size), medians over seeds."""
    return _summarise(curves, ["lr", "batch_size"])


def final_by_budget(
    runs: pd.DataFrame, metric: str, stuck: pd.Series | None = None
) -> pd.DataFrame:
    """Median over seeds of the final ``metric`` of each (batch_size, lr, epochs) trial setting.

    Columns ``batch_size, lr, epochs, runs, not_usable, not_learning, median_final`` (inf when
    most seeds diverged or failed; ``not_learning`` counts runs flagged by :func:`not_learning`)."""
    final = runs[f"final_{metric}"].where(usable(runs), np.inf).fillna(np.inf)
    stuck = pd.Series(False, index=runs.index) if stuck is None else stuck
    frame = runs.assign(final=final, stuck=stuck.to_numpy())
    g = frame.groupby(["batch_size", "lr", "epochs"])
    out = pd.DataFrame(
        {
            "runs": g.size(),
            "not_usable": g["outcome"].apply(lambda s: int((~s.isin(OK_OUTCOMES)).sum())),
            "not_learning": g["stuck"].sum().astype(int),
            "median_final": g["final"].median(),
        }
    )
    return out.reset_index()


def best_lr_per_budget(budget: pd.DataFrame) -> pd.DataFrame:
    """For each (batch_size, epochs) the lr with the lowest median final metric.

    Columns ``batch_size, epochs, best_lr, median_final`` (no row when every lr failed)."""
    finite = budget[np.isfinite(budget["median_final"])]
    idx = finite.groupby(["batch_size", "epochs"])["median_final"].idxmin()
    out = finite.loc[idx, ["batch_size", "epochs", "lr", "median_final"]]
    return out.rename(columns={"lr": "best_lr"}).reset_index(drop=True)


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
    return "n/a (diverged/failed)" if not np.isfinite(v) else f"{v:.4f}"


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
