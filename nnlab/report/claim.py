"""The notes' claim judged per set-up (``+experiment=claim_across_datasets``).

The notes say: *a large learning rate trains faster but less accurately; a small one (~0.001)
is more accurate but needs more epochs*. Where one sweep varies the set-up (``data.name``,
``optimizer.name`` or ``schedule.name``; see :data:`SETUP_PARAMS`), the flagship's verdict
(``nnlab.report.tables.per_run_curves``, ``per_lr``, ``nnlab.report.findings.claim_verdict``) is
computed for each set-up on its own runs with its own target. :func:`claim_per_lr` gives one row
per (set-up, lr), :func:`claim_table` one row per set-up, from that table alone.

Pure pandas (no plotting, no MLflow), so a test recomputes every finding from the saved CSVs.
The conventions are ``nnlab.report.tables``'s: diverged or failed runs count as +inf, medians
over seeds.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from nnlab.report import findings as fd
from nnlab.report import tables as rt

SETUP_PARAMS = {"data.name": "dataset", "optimizer.name": "optimizer", "schedule.name": "schedule"}
SETUP_COLS = tuple(SETUP_PARAMS.values())
# Head of ``findings.claim_verdict``'s sentence -> the verdict key of the claim table.
VERDICTS = {
    "Held": "held",
    "Held only in part": "held in part",
    "Did not hold": "did not hold",
    "Cannot be checked": "cannot be checked",
}
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
        best median-over-seeds best ``metric``), then ``per_lr``'s columns (``lr, runs,
        epochs_budget, reached_target, median_epochs_to_target, median_best, not_usable,
        not_learning, seed_std_best``), read from the longest-budget runs of each set-up.
    """
    labels = setup_labels(runs)
    frames = []
    for key, idx in labels.groupby(list(SETUP_COLS), sort=True).groups.items():
        group = runs.loc[idx]
        h = hist[hist["run_id"].isin(group["run_id"])]
        curves, target = rt.per_run_curves(group, h, metric)
        table = rt.per_lr(curves)
        for col, value in zip(SETUP_COLS, key, strict=True):
            table.insert(SETUP_COLS.index(col), col, value)
        table.insert(len(SETUP_COLS), "target", target)
        frames.append(table)
    return pd.concat(frames, ignore_index=True)


def verdict_key(sentence: str) -> str:
    """The key (a value of :data:`VERDICTS`) of a ``claim_verdict`` sentence, by its head."""
    head = sentence.split(":")[0]
    # Longest prefix first: "Held only in part (...)" also starts with "Held".
    for prefix, key in sorted(VERDICTS.items(), key=lambda kv: -len(kv[0])):
        if head == prefix or head.startswith(prefix + " "):
            return key
    raise ValueError(f"not a claim verdict: {sentence!r}")


def _at(t: pd.DataFrame, lr: float | None, col: str) -> float:
    return float(t.at[lr, col]) if lr is not None else math.nan


def _claim_row(t: pd.DataFrame, target: float, metric: str) -> dict:
    """The claim's verdict on one set-up's per-lr table ``t`` (indexed by lr) and its numbers."""
    max_epochs = int(t["epochs_budget"].max())
    fastest, accurate, reference = fd.headline_lrs(t)
    sentence, faster, less = fd.claim_verdict(t, fastest, reference, target, metric, max_epochs)
    return {
        "target": target,
        "epochs": max_epochs,
        "fastest_lr": fastest,
        "fastest_epochs": _at(t, fastest, "median_epochs_to_target"),
        "fastest_best": _at(t, fastest, "median_best"),
        "most_accurate_lr": accurate,
        "most_accurate_best": _at(t, accurate, "median_best"),
        "reference_lr": reference,
        "reference_epochs": _at(t, reference, "median_epochs_to_target"),
        "reference_best": _at(t, reference, "median_best"),
        "gap": _at(t, fastest, "median_best") - _at(t, reference, "median_best"),
        "seed_spread": max(_at(t, fastest, "seed_std_best"), _at(t, reference, "seed_std_best")),
        "claim_faster": faster,
        "claim_less_accurate": less,
        "verdict": verdict_key(sentence),
        "reason": sentence + fd.most_accurate_clause(t, accurate, metric),
    }


def claim_table(per_lr: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The notes' claim judged per set-up, from :func:`claim_per_lr` alone.

    Parameters
    ----------
    per_lr : DataFrame
        :func:`claim_per_lr` (or its CSV read back).
    metric : str

    Returns
    -------
    DataFrame
        One row per set-up: ``dataset, optimizer, schedule, target, epochs`` (the budget the
        speed and quality are read from), ``fastest_lr, fastest_epochs, fastest_best`` (least
        median epochs to the target), ``most_accurate_lr, most_accurate_best``,
        ``reference_lr, reference_epochs, reference_best`` (the swept lr nearest 0.001),
        ``gap`` (fastest minus reference best), ``seed_spread`` (the larger seed std of the
        two), ``claim_faster, claim_less_accurate`` (None when it cannot be checked),
        ``verdict`` (``held``, ``held in part``, ``did not hold`` or ``cannot be checked``) and
        ``reason`` (the sentence with the deciding numbers).
    """
    rows = []
    for key, grp in per_lr.groupby(list(SETUP_COLS), sort=True):
        t = grp.set_index("lr").sort_index()
        row = dict(zip(SETUP_COLS, key, strict=True))
        row.update(_claim_row(t, float(grp["target"].iloc[0]), metric))
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
