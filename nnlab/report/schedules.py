"""Decaying schedules against the best constant rate (``+experiment=lr_schedules``).

At each epoch budget, the best (lr, batch size) of each decaying schedule against the best of
the constant rate, by median final metric over seeds (:func:`schedule_by_budget`,
:func:`schedule_vs_constant`). The comparison is a paired percentile bootstrap over seeds
(``nnlab.report.intervals``): in each resample, each side's best setting is chosen again (the
lowest median among its settings) and the gap is taken between the two; "better" or "worse"
only when the whole 95% interval of the gap is below or above 0.

Pure pandas (no plotting, no MLflow).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from nnlab.report import tables as rt
from nnlab.report.claim import CONSTANT, SETUP_COLS, plain, setup_labels
from nnlab.report.intervals import MIN_SEEDS, Resampled, interval
from nnlab.tracking.schema import OK_OUTCOMES

__all__ = ["schedule_by_budget", "best_settings", "schedule_vs_constant", "schedule_findings"]

SETTING = ["batch_size", "lr"]
VS_COLUMNS = [
    "dataset", "optimizer", "epochs", "schedule", "lr", "batch_size", "median_final", "lo", "hi",
    "constant_lr", "constant_batch_size", "constant_median_final", "constant_lo", "constant_hi",
    "gap", "gap_lo", "gap_hi", "n_seeds", "result",
]  # fmt: skip


def _frame(runs: pd.DataFrame, metric: str, stuck: pd.Series | None = None) -> pd.DataFrame:
    """One row per run: its set-up labels, ``batch_size, lr, epochs, seed, outcome``, ``final``
    (+inf when not usable) and ``stuck``."""
    final = runs[f"final_{metric}"].where(rt.usable(runs), np.inf).fillna(np.inf)
    stuck = pd.Series(False, index=runs.index) if stuck is None else stuck
    cols = ["batch_size", "lr", "epochs", "seed", "outcome"]
    frame = pd.concat([setup_labels(runs), runs[cols]], axis=1)
    return frame.assign(final=final.to_numpy(), stuck=stuck.to_numpy())


def schedule_by_budget(
    runs: pd.DataFrame, metric: str, stuck: pd.Series | None = None
) -> pd.DataFrame:
    """Median final ``metric`` over seeds of each trial setting, with its interval.

    Parameters
    ----------
    runs : DataFrame
        ``load_runs`` frame with ``final_<metric>``, one row per run.
    metric : str
    stuck : Series of bool, optional
        ``tables.not_learning`` flags, indexed like ``runs`` (counted, not dropped).

    Returns
    -------
    DataFrame
        One row per (set-up, batch_size, lr, epochs): ``dataset, optimizer, schedule,
        batch_size, lr, epochs, runs, not_usable, not_learning, median_final`` (+inf when most
        seeds diverged or failed), ``lo, hi`` (its 95% interval) and ``n_seeds``.
    """
    frame = _frame(runs, metric, stuck)
    by = [*SETUP_COLS, "batch_size", "lr", "epochs"]
    g = frame.groupby(by, sort=True)
    out = pd.DataFrame(
        {
            "runs": g.size(),
            "not_usable": g["outcome"].apply(lambda s: int((~s.isin(OK_OUTCOMES)).sum())),
            "not_learning": g["stuck"].sum().astype(int),
        }
    ).reset_index()
    r = Resampled(frame, by, "final")
    lo, hi = r.intervals()
    stats = r.keys.assign(median_final=r.point, lo=lo, hi=hi, n_seeds=r.n_seeds)
    return out.merge(stats, on=by, how="left")


def best_settings(by_budget: pd.DataFrame) -> pd.DataFrame:
    """The best (batch_size, lr) of each (set-up, epochs) by median final; no row when every
    setting diverged or failed."""
    finite = by_budget[np.isfinite(by_budget["median_final"])]
    idx = finite.groupby([*SETUP_COLS, "epochs"], sort=True)["median_final"].idxmin()
    return finite.loc[idx]


def _side(r: Resampled, mask: np.ndarray) -> tuple[int | None, np.ndarray]:
    """(the row of the best setting by point median, each resample's best median, shape (B,))
    among the settings under ``mask``."""
    samples = np.where(mask[:, None], np.nan_to_num(r.samples, nan=np.inf), np.inf)
    return r.best(mask), samples.min(axis=0)


def _budget_rows(key: tuple, grp: pd.DataFrame, seeds: np.ndarray) -> list[dict]:
    """The rows of :func:`schedule_vs_constant` for one (dataset, optimizer, epochs)."""
    r = Resampled(grp, ["schedule", *SETTING], "final", seeds)
    schedule = r.keys["schedule"].to_numpy()
    g_const, const = _side(r, schedule == CONSTANT)
    rows = []
    for name in sorted(set(schedule) - {CONSTANT}):
        g, mine = _side(r, schedule == name)
        if g is None:
            continue  # no usable setting: nothing to compare
        lo, hi = interval(mine)
        row = {"dataset": key[0], "optimizer": key[1], "epochs": key[2], "schedule": name,
               "lr": float(r.keys.at[g, "lr"]), "batch_size": int(r.keys.at[g, "batch_size"]),
               "median_final": float(r.point[g]), "lo": float(lo), "hi": float(hi),
               "n_seeds": int(r.n_seeds[g])}  # fmt: skip
        if g_const is None:
            rows.append(row | {"result": "no constant rate"})
            continue
        c_lo, c_hi = interval(const)
        with np.errstate(invalid="ignore"):
            gap = np.where(mine == const, 0.0, mine - const)
        gap_lo, gap_hi = interval(gap)
        decide = len(seeds) >= MIN_SEEDS  # fewer seeds: shown, not decided
        result = ("better" if decide and gap_hi < 0 else "worse" if decide and gap_lo > 0
                  else "no difference")  # fmt: skip
        rows.append(row | {
            "constant_lr": float(r.keys.at[g_const, "lr"]),
            "constant_batch_size": int(r.keys.at[g_const, "batch_size"]),
            "constant_median_final": float(r.point[g_const]), "constant_lo": float(c_lo),
            "constant_hi": float(c_hi), "gap": float(r.point[g] - r.point[g_const]),
            "gap_lo": float(gap_lo), "gap_hi": float(gap_hi), "result": result,
        })  # fmt: skip
    return rows


def schedule_vs_constant(
    runs: pd.DataFrame, metric: str, stuck: pd.Series | None = None
) -> pd.DataFrame:
    """Each decaying schedule's best setting against the best constant rate, per budget.

    Parameters
    ----------
    runs : DataFrame
        ``load_runs`` frame with ``final_<metric>``, one row per run.
    metric : str
    stuck : Series of bool, optional
        ``tables.not_learning`` flags, indexed like ``runs``.

    Returns
    -------
    DataFrame
        One row per (dataset, optimizer, epochs, schedule other than ``constant``): ``lr,
        batch_size, median_final, lo, hi`` of the schedule's best setting (the interval: of the
        best median among its settings, chosen again in each resample), ``constant_lr,
        constant_batch_size, constant_median_final, constant_lo, constant_hi`` of the constant
        rate's, ``gap, gap_lo, gap_hi`` (schedule minus constant, paired; negative = the
        schedule is better), ``n_seeds`` and ``result``: ``better`` (the interval of the gap
        below 0), ``worse`` (above 0), ``no difference``, or ``no constant rate`` (none usable
        at that budget). Empty when no schedule other than ``constant`` was run.
    """
    frame = _frame(runs, metric, stuck)
    rows = []
    for key, grp in frame.groupby(["dataset", "optimizer", "epochs"], sort=True):
        rows += _budget_rows(key, grp, np.sort(grp["seed"].unique()))
    return pd.DataFrame(rows, columns=VS_COLUMNS)


def _part(r) -> str:
    if r.result == "no constant rate":
        return f"{int(r.epochs)} epochs: no usable constant rate"
    return (
        f"{int(r.epochs)} epochs: {r.median_final:.4f} (lr {rt.fmt_lr(r.lr)}) vs "
        f"{r.constant_median_final:.4f} (lr {rt.fmt_lr(r.constant_lr)}), gap "
        f"{r.gap:+.4f} {rt.fmt_interval(r.gap_lo, r.gap_hi)}: {r.result}"
    )


def _schedule_sentence(setup: tuple, grp: pd.DataFrame, metric: str) -> str:
    """'On digits with adam, exponential beat the best constant rate at 2 of 3 budgets (...)'."""
    dataset, optimizer, schedule = setup
    n_better = int((grp["result"] == "better").sum())
    n_worse = int((grp["result"] == "worse").sum())
    parts = [_part(r) for r in grp.sort_values("epochs").itertuples()]
    seeds = int(grp["n_seeds"].max()) if len(grp) else 0
    return (
        f"On {dataset} with {optimizer}, {schedule} beat the best constant rate at {n_better} "
        f"and lost to it at {n_worse} of {len(grp)} budgets, beyond the 95% interval of the gap "
        f"(median final {metric} over {seeds} seeds, each side's best lr): {'; '.join(parts)}."
    )


def schedule_findings(vs: pd.DataFrame, metric: str) -> tuple[list[dict], list[str]]:
    """``findings.json``'s ``schedules`` list (one object per row of
    :func:`schedule_vs_constant`) and one sentence per (dataset, optimizer, schedule)."""
    objects = [{k: plain(v) for k, v in row.items()} for row in vs.to_dict("records")]
    sentences = [
        _schedule_sentence(key, grp, metric)
        for key, grp in vs.groupby(["dataset", "optimizer", "schedule"], sort=True)
    ]
    return objects, sentences
