"""Decaying schedules against the best constant rate (``+experiment=lr_schedules``).

At each epoch budget, the best (lr, batch size) of each decaying schedule against the best of
the constant rate, by median final metric over seeds, with the seed-to-seed spread as the bar a
gap must clear (:func:`schedule_by_budget`, :func:`schedule_vs_constant`).

Pure pandas (no plotting, no MLflow), so a test recomputes every finding from the saved CSVs.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from nnlab.report import tables as rt
from nnlab.report.claim import CONSTANT, SETUP_COLS, plain, setup_labels
from nnlab.tracking.schema import OK_OUTCOMES


def schedule_by_budget(
    runs: pd.DataFrame, metric: str, stuck: pd.Series | None = None
) -> pd.DataFrame:
    """Median and seed-to-seed spread of the final ``metric`` of each trial setting.

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
        seeds diverged or failed) and ``seed_std_final`` (std over the seeds with a finite
        result, ddof 0).
    """
    final = runs[f"final_{metric}"].where(rt.usable(runs), np.inf).fillna(np.inf)
    stuck = pd.Series(False, index=runs.index) if stuck is None else stuck
    frame = pd.concat([setup_labels(runs), runs[["batch_size", "lr", "epochs", "outcome"]]], axis=1)
    frame = frame.assign(final=final.to_numpy(), stuck=stuck.to_numpy())
    by = [*SETUP_COLS, "batch_size", "lr", "epochs"]
    g = frame.groupby(by, sort=True)
    finite = frame[np.isfinite(frame["final"])].groupby(by, sort=True)["final"]
    out = pd.DataFrame(
        {
            "runs": g.size(),
            "not_usable": g["outcome"].apply(lambda s: int((~s.isin(OK_OUTCOMES)).sum())),
            "not_learning": g["stuck"].sum().astype(int),
            "median_final": g["final"].median(),
        }
    )
    out["seed_std_final"] = finite.std(ddof=0).reindex(out.index).fillna(0.0)
    return out.reset_index()


def best_settings(by_budget: pd.DataFrame) -> pd.DataFrame:
    """The best (batch_size, lr) of each (set-up, epochs) by median final; no row when every
    setting diverged or failed."""
    finite = by_budget[np.isfinite(by_budget["median_final"])]
    idx = finite.groupby([*SETUP_COLS, "epochs"], sort=True)["median_final"].idxmin()
    return finite.loc[idx]


def _compare(best: pd.Series, const: pd.Series | None) -> dict:
    """One schedule's best setting at one budget against the constant rate's best."""
    if const is None:
        return {"constant_lr": None, "constant_batch_size": None,
                "constant_median_final": math.nan, "constant_seed_std": math.nan,
                "gap": math.nan, "spread": math.nan, "result": "no constant rate"}  # fmt: skip
    gap = float(best["median_final"] - const["median_final"])
    spread = float(max(best["seed_std_final"], const["seed_std_final"]))
    result = "better" if gap < -spread else "worse" if gap > spread else "no difference"
    return {
        "constant_lr": float(const["lr"]),
        "constant_batch_size": int(const["batch_size"]),
        "constant_median_final": float(const["median_final"]),
        "constant_seed_std": float(const["seed_std_final"]),
        "gap": gap,
        "spread": spread,
        "result": result,
    }


def schedule_vs_constant(by_budget: pd.DataFrame) -> pd.DataFrame:
    """Each decaying schedule's best setting against the best constant rate, per budget.

    Parameters
    ----------
    by_budget : DataFrame
        :func:`schedule_by_budget` (or its CSV read back).

    Returns
    -------
    DataFrame
        One row per (dataset, optimizer, epochs, schedule other than ``constant``): ``lr,
        batch_size, median_final, seed_std_final`` of the schedule's best setting,
        ``constant_lr, constant_batch_size, constant_median_final, constant_seed_std`` of the
        constant rate's, ``gap`` (schedule minus constant; negative = the schedule is better),
        ``spread`` (the larger seed std of the two) and ``result``: ``better`` (gap below
        -spread), ``worse`` (above spread), ``no difference``, or ``no constant rate`` (none
        usable at that budget). Empty when no schedule other than ``constant`` was run.
    """
    best = best_settings(by_budget)
    keys = ["dataset", "optimizer", "epochs"]
    rows = []
    for key, grp in best.groupby(keys, sort=True):
        const = grp[grp["schedule"] == CONSTANT]
        for _, row in grp[grp["schedule"] != CONSTANT].iterrows():
            rows.append({
                **dict(zip(keys, key, strict=True)),
                "schedule": row["schedule"], "lr": float(row["lr"]),
                "batch_size": int(row["batch_size"]), "median_final": float(row["median_final"]),
                "seed_std_final": float(row["seed_std_final"]),
                **_compare(row, const.iloc[0] if len(const) else None),
            })  # fmt: skip
    return pd.DataFrame(rows, columns=[*keys, "schedule", "lr", "batch_size", "median_final",
                                       "seed_std_final", "constant_lr", "constant_batch_size",
                                       "constant_median_final", "constant_seed_std", "gap",
                                       "spread", "result"])  # fmt: skip


def _schedule_sentence(setup: tuple, grp: pd.DataFrame, metric: str) -> str:
    """'On digits with adam, exponential beat the best constant rate at 2 of 3 budgets (...)'."""
    dataset, optimizer, schedule = setup
    n_better = int((grp["result"] == "better").sum())
    parts = [
        f"{int(r.epochs)} epochs: {r.median_final:.4f} (lr {rt.fmt_lr(r.lr)}) vs "
        f"{r.constant_median_final:.4f} (lr {rt.fmt_lr(r.constant_lr)}), {r.result}"
        if r.result != "no constant rate"
        else f"{int(r.epochs)} epochs: no usable constant rate"
        for r in grp.sort_values("epochs").itertuples()
    ]
    return (
        f"On {dataset} with {optimizer}, {schedule} beat the best constant rate by more than "
        f"the seed-to-seed spread at {n_better} of {len(grp)} budgets (median final {metric}, "
        f"best lr of each): {'; '.join(parts)}."
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
