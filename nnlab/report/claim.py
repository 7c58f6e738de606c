"""The notes' claim judged per set-up (``+experiment=claim_across_datasets``).

The notes say: *a large learning rate trains faster but less accurately; a small one (~0.001)
is more accurate but needs more epochs*. Where one sweep varies the set-up (``data.name``,
``optimizer.name`` or ``schedule.name``; see :data:`SETUP_PARAMS`), the flagship's verdict
(``nnlab.report.verdict.judge`` on ``nnlab.report.tables.per_run_curves``) is computed for each
set-up on its own runs, with its own target and its own seeds. :func:`claim_per_lr` gives one
row per (set-up, lr), :func:`claim_table` one row per set-up.

Pure pandas (no plotting, no MLflow). The conventions are ``nnlab.report.tables``'s: diverged
or failed runs count as +inf, medians over seeds with percentile bootstrap intervals.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from nnlab.report import tables as rt
from nnlab.report.verdict import best_lr_text, judge

SETUP_PARAMS = {"data.name": "dataset", "optimizer.name": "optimizer", "schedule.name": "schedule"}
SETUP_COLS = tuple(SETUP_PARAMS.values())
CONSTANT = "constant"  # the schedule name of a fixed learning rate
# Shown for a set-up param a run did not log: before the schedule group existed every run
# trained at a constant rate, so that one is known; the others are not.
_MISSING = {"dataset": "?", "optimizer": "?", "schedule": CONSTANT}


def setup_labels(runs: pd.DataFrame) -> pd.DataFrame:
    """The set-up of each run: columns ``dataset, optimizer, schedule`` (strings), indexed like
    ``runs``; a param the run did not log reads ``?`` (``constant`` for the schedule)."""
    out = pd.DataFrame(index=runs.index)
    for param, col in SETUP_PARAMS.items():
        values = runs[param] if param in runs else pd.Series(np.nan, index=runs.index)
        out[col] = values.astype("object").where(values.notna(), _MISSING[col]).astype(str)
    return out


def varying_setups(runs: pd.DataFrame) -> list[str]:
    """The set-up columns (of :data:`SETUP_COLS`) that take more than one value in ``runs``."""
    labels = setup_labels(runs)
    return [c for c in SETUP_COLS if labels[c].nunique() > 1]


# ------------------------------------------------------------------------ the claim per set-up


def setup_curves(runs: pd.DataFrame, hist: pd.DataFrame, metric: str):
    """Each set-up's key, ``tables.per_run_curves`` (its own longest-budget runs) and target.

    Yields
    ------
    (key, curves, target)
        ``key``: the (dataset, optimizer, schedule) of the set-up, in sorted order.
    """
    labels = setup_labels(runs)
    for key, idx in labels.groupby(list(SETUP_COLS), sort=True).groups.items():
        group = runs.loc[idx]
        h = hist[hist["run_id"].isin(group["run_id"])]
        curves, target = rt.per_run_curves(group, h, metric)
        yield key, curves, target


def claim_per_lr(runs: pd.DataFrame, hist: pd.DataFrame, metric: str) -> pd.DataFrame:
    """``tables.per_lr`` of each set-up, each with its own target.

    Parameters
    ----------
    runs : DataFrame
        ``load_runs`` frame, one row per run.
    hist : DataFrame
        ``load_histories`` long frame holding ``metric`` (and ``loss``).
    metric : str
        Lower-is-better per-epoch metric.

    Returns
    -------
    DataFrame
        One row per (set-up, lr): ``dataset, optimizer, schedule, target`` (1.25 x the set-up's
        best median-over-seeds best ``metric``), then ``per_lr``'s columns (medians with their
        95% intervals), read from the longest-budget runs of each set-up.
    """
    frames = []
    for key, curves, target in setup_curves(runs, hist, metric):
        table = rt.per_lr(curves)
        for col, value in zip(SETUP_COLS, key, strict=True):
            table.insert(SETUP_COLS.index(col), col, value)
        table.insert(len(SETUP_COLS), "target", target)
        frames.append(table)
    return pd.concat(frames, ignore_index=True)


def claim_table(runs: pd.DataFrame, hist: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The notes' claim judged per set-up (``verdict.judge`` on each set-up's own runs).

    Returns
    -------
    DataFrame
        One row per set-up: ``dataset, optimizer, schedule, target``, then
        ``verdict.Claim.record``'s columns: ``verdict`` (``held``, ``held in part``, ``did not
        hold``, ``unresolved`` or ``cannot be checked``), ``n_seeds, epochs, reference_lr,
        fastest_lr, most_accurate_lr, claim_faster, claim_less_accurate``, each interval as
        ``<name>, <name>_lo, <name>_hi`` (``fastest_epochs``, ``reference_epochs``,
        ``speed_gap``, ``fastest_best``, ``reference_best``, ``accuracy_gap``,
        ``most_accurate_best``), ``most_accurate_share``, ``tied_lrs`` and ``reason`` (the
        sentence with the deciding numbers).
    """
    rows = []
    for key, curves, target in setup_curves(runs, hist, metric):
        claim = judge(curves, target, metric)
        row = {**dict(zip(SETUP_COLS, key, strict=True)), "target": target, **claim.record()}
        row["reason"] += best_lr_text(claim, metric)
        rows.append(row)
    return pd.DataFrame(rows)


def plain(value):
    """A JSON-safe scalar: NaN -> None, numpy scalars -> Python, inf stays (json writes it)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value.item() if hasattr(value, "item") else value


def claim_findings(table: pd.DataFrame) -> list[dict]:
    """``findings.json``'s ``claim`` list: one object per row of :func:`claim_table`."""
    return [{k: plain(v) for k, v in row.items()} for row in table.to_dict("records")]
