"""The numbers of the two studies that test the notes' claim beyond the flagship's one set-up.

The notes say: *a large learning rate trains faster but less accurately; a small one (~0.001)
is more accurate but needs more epochs*. Two tables answer it where one sweep varies the set-up
(``data.name``, ``optimizer.name`` or ``schedule.name``; see :data:`SETUP_PARAMS`):

- **The claim per set-up** (``+experiment=claim_across_datasets``): the flagship's verdict
  (``nnlab.report_tables``: ``per_run_curves``, ``per_lr``, ``_claim_verdict``) computed for each
  set-up on its own runs with its own target. :func:`claim_per_lr` gives one row per (set-up, lr),
  :func:`claim_table` one row per set-up, from that table alone.
- **Schedules against the best constant rate** (``+experiment=lr_schedules``): at each epoch
  budget, the best (lr, batch size) of each decaying schedule against the best of the constant
  rate, by median final metric over seeds, with the seed-to-seed spread as the bar a gap must
  clear (:func:`schedule_by_budget`, :func:`schedule_vs_constant`).

Pure pandas (no plotting, no MLflow), so a test recomputes every finding from the saved CSVs.
The conventions are ``nnlab.report_tables``'s: diverged or failed runs count as +inf, medians over
seeds, a gap within the seed-to-seed spread is no difference.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from nnlab import report_tables as rt
from nnlab.tracking.schema import OK_OUTCOMES

__all__ = [
    "SETUP_PARAMS",
    "SETUP_COLS",
    "VERDICTS",
    "setup_labels",
    "varying_setups",
    "claim_per_lr",
    "claim_table",
    "claim_findings",
    "schedule_by_budget",
    "best_settings",
    "schedule_vs_constant",
    "schedule_findings",
]

# Run param -> column naming the set-up in the study tables.
SETUP_PARAMS = {"data.name": "dataset", "optimizer.name": "optimizer", "schedule.name": "schedule"}
SETUP_COLS = tuple(SETUP_PARAMS.values())
# Head of ``report_tables._claim_verdict``'s sentence -> the verdict key of the claim table.
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
    """``report_tables.per_lr`` of each set-up, each with its own target.

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
    """The key (a value of :data:`VERDICTS`) of a ``_claim_verdict`` sentence, by its head."""
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
    fastest, accurate, reference = rt._headline_lrs(t)
    sentence, faster, less = rt._claim_verdict(t, fastest, reference, target, metric, max_epochs)
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
        "reason": sentence + rt._most_accurate_clause(t, accurate, metric),
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


def _plain(value):
    """A JSON-safe scalar: NaN -> None, numpy scalars -> Python, inf stays (json writes it)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value.item() if hasattr(value, "item") else value


def claim_findings(table: pd.DataFrame) -> list[dict]:
    """``findings.json``'s ``claim`` list: one object per row of :func:`claim_table`."""
    return [{k: _plain(v) for k, v in row.items()} for row in table.to_dict("records")]


# ------------------------------------------------------------- schedules vs the constant rate


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
        ``report_tables.not_learning`` flags, indexed like ``runs`` (counted, not dropped).

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
    objects = [{k: _plain(v) for k, v in row.items()} for row in vs.to_dict("records")]
    sentences = [
        _schedule_sentence(key, grp, metric)
        for key, grp in vs.groupby(["dataset", "optimizer", "schedule"], sort=True)
    ]
    return objects, sentences


# ------------------------------------------------------------------ the report's study section


@dataclass
class Study:
    """What a report adds when its runs vary the set-up (see :func:`study`).

    Attributes
    ----------
    axes : list of str
        The set-up columns that vary (``dataset``, ``optimizer``, ``schedule``).
    tables : dict of str to DataFrame
        ``claim``, ``claim_per_lr`` and, when schedules vary, ``schedule_vs_constant`` and
        ``schedule_by_budget``: saved as CSV beside the report.
    findings : dict
        Added to ``findings.json``: ``setups`` (= ``axes``), ``claim`` (:func:`claim_findings`)
        and, when schedules vary, ``schedules`` (:func:`schedule_findings`).
    sentences : list of str
        One per (dataset, optimizer, schedule) against the constant rate.
    figures : tuple of (key, title)
        The study figures, drawn by ``nnlab.figures.studies``.
    """

    axes: list[str]
    tables: dict[str, pd.DataFrame]
    findings: dict
    sentences: list[str] = field(default_factory=list)
    figures: tuple[tuple[str, str], ...] = ()


CLAIM_FIGURE = ("claim", "The notes' claim per set-up: speed and quality against lr")
SCHEDULE_FIGURE = ("schedules", "Decaying schedules against the best constant rate, per budget")
CAPTIONS = {
    "claim": "One column per dataset, one line per set-up. Top: epochs the runs needed to reach "
    "the set-up's target (median over seeds; hollow marks at the top: not reached within the "
    "budget). Bottom: best {m} reached (median over seeds; crosses at the top: most seeds "
    "diverged or failed). Rings: the fastest lr (top) and the most accurate lr (bottom); dotted "
    "line: the notes' small lr, 0.001. The claim holds where the fastest lr is larger than "
    "0.001 and sits higher than 0.001 in the bottom row by more than the seed spread.",
    "schedules": "One panel per dataset, optimizer and epoch budget (each budget its own "
    "trials): the median final {m} over seeds of each schedule's best lr (bars: seed std; the "
    "lr and the result under each), against the best constant lr (dashed line; grey band: its "
    "seed std). Filled points beat the constant rate by more than the larger seed std of the "
    "two; hollow ones did not.",
}


def study(
    runs: pd.DataFrame, hist: pd.DataFrame, metric: str, stuck: pd.Series | None = None
) -> Study | None:
    """The study tables and findings of an experiment whose runs vary the set-up, else None.

    Parameters
    ----------
    runs, hist : DataFrame
        ``load_runs`` / ``load_histories`` frames (``hist`` holding ``metric`` and ``loss``).
    metric : str
    stuck : Series of bool, optional
        ``report_tables.not_learning`` flags, indexed like ``runs``.
    """
    axes = varying_setups(runs)
    if not axes:
        return None
    per_lr = claim_per_lr(runs, hist, metric)
    claim = claim_table(per_lr, metric)
    tables = {"claim": claim, "claim_per_lr": per_lr}
    findings = {"setups": axes, "claim": claim_findings(claim)}
    figures, sentences = [CLAIM_FIGURE], []
    if "schedule" in axes:
        by_budget = schedule_by_budget(runs, metric, stuck)
        vs = schedule_vs_constant(by_budget)
        tables |= {"schedule_vs_constant": vs, "schedule_by_budget": by_budget}
        findings["schedules"], sentences = schedule_findings(vs, metric)
        figures.insert(0, SCHEDULE_FIGURE)
    return Study(axes, tables, findings, sentences, tuple(figures))


def _fmt(value: float, digits: int = 4) -> str:
    return "not reached" if value == np.inf else "n/a" if pd.isna(value) else f"{value:.{digits}g}"


def claim_display(claim: pd.DataFrame, axes: list[str]) -> pd.DataFrame:
    """The claim table as the page shows it: one row per set-up, numbers as text."""
    shown = claim[[c for c in SETUP_COLS if c in axes or c == "dataset"]].copy()
    lr = lambda v: "none" if pd.isna(v) else rt.fmt_lr(v)  # noqa: E731
    shown["fastest lr (epochs)"] = [
        f"{lr(a)} ({_fmt(b)})" for a, b in zip(claim["fastest_lr"], claim["fastest_epochs"],
                                               strict=True)
    ]  # fmt: skip
    shown["most accurate lr (best)"] = [
        f"{lr(a)} ({_fmt(b)})"
        for a, b in zip(claim["most_accurate_lr"], claim["most_accurate_best"], strict=True)
    ]
    shown["lr ≈ 0.001: epochs, best"] = [
        f"{lr(a)}: {_fmt(b)}, {_fmt(c)}"
        for a, b, c in zip(claim["reference_lr"], claim["reference_epochs"],
                           claim["reference_best"], strict=True)
    ]  # fmt: skip
    shown["gap (spread)"] = [
        f"{g:+.4f} ({s:.4f})" if np.isfinite(g) else "n/a"
        for g, s in zip(claim["gap"], claim["seed_spread"], strict=True)
    ]
    shown["verdict"] = claim["verdict"]
    return shown


def schedule_display(vs: pd.DataFrame) -> pd.DataFrame:
    """:func:`schedule_vs_constant` as the page shows it: one row per (dataset, optimizer,
    budget, schedule), numbers as text."""
    shown = vs[["dataset", "optimizer", "epochs", "schedule"]].copy()
    shown["best lr: final ± seed std"] = [
        f"{rt.fmt_lr(lr)}: {m:.4f} ± {sd:.4f}"
        for lr, m, sd in zip(vs["lr"], vs["median_final"], vs["seed_std_final"], strict=True)
    ]
    shown["constant: best lr, final ± std"] = [
        "none usable" if pd.isna(lr) else f"{rt.fmt_lr(lr)}: {m:.4f} ± {sd:.4f}"
        for lr, m, sd in zip(vs["constant_lr"], vs["constant_median_final"],
                             vs["constant_seed_std"], strict=True)
    ]  # fmt: skip
    shown["gap"] = [f"{g:+.4f}" if np.isfinite(g) else "n/a" for g in vs["gap"]]
    shown["result"] = vs["result"]
    return shown


def _claim_html(s: Study, metric: str, table_html) -> list[str]:
    """The claim-per-set-up part of the study section."""
    from html import escape as e

    claim = s.tables["claim"]
    epochs = ", ".join(str(v) for v in sorted(claim["epochs"].unique()))
    return [
        f"<h2 id='claim-per-setup'>The notes' claim per set-up ({e(', '.join(s.axes))})</h2>",
        f"<p>Each set-up is judged on its own runs, with its own target (1.25 × the best "
        f"median-over-seeds {e(metric)} it reached), from its {e(epochs)}-epoch runs: the "
        "fastest lr against the swept lr nearest 0.001; a gap within the seed-to-seed spread is "
        "no difference. The same numbers: <a href='claim.csv'>claim.csv</a> (per lr: "
        "<a href='claim_per_lr.csv'>claim_per_lr.csv</a>).</p>",
        table_html(claim_display(claim, s.axes)),
        "<ul id='claim-reasons'>",
        *[
            f"<li><b>{e(' / '.join(str(r[c]) for c in SETUP_COLS))}</b>: {e(r['reason'])}</li>"
            for r in claim.to_dict("records")
        ],
        "</ul>",
    ]


def _schedule_html(s: Study, metric: str, table_html) -> list[str]:
    """The schedules-against-the-constant-rate part of the study section."""
    from html import escape as e

    return [
        "<h2 id='schedules-vs-constant'>Decaying schedules against the best constant rate</h2>",
        f"<p>At each epoch budget (its own trials), the best lr of each schedule against the best "
        f"constant lr, by median final {e(metric)} over seeds; “better” or “worse” only when the "
        "gap exceeds the larger seed std of the two. The same numbers: "
        "<a href='schedule_vs_constant.csv'>schedule_vs_constant.csv</a> (every setting: "
        "<a href='schedule_by_budget.csv'>schedule_by_budget.csv</a>).</p>",
        "<ul id='schedule-findings'>",
        *[f"<li>{e(x)}</li>" for x in s.sentences],
        "</ul>",
        table_html(schedule_display(s.tables["schedule_vs_constant"])),
    ]


def study_html(s: Study, metric: str, table_html) -> list[str]:
    """The page's study section (HTML lines), the study's own question first: schedules when
    they vary, then the claim per set-up. ``table_html`` renders a frame as an HTML table."""
    claim = _claim_html(s, metric, table_html)
    if "schedule_vs_constant" not in s.tables:
        return claim
    return _schedule_html(s, metric, table_html) + claim
