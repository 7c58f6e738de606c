"""The findings the flagship section states, as sentences and numbers, from its tables.

Pure pandas on the frames of ``nnlab.report.tables`` (see its conventions): the verdict on the
notes' claim (``nnlab.report.verdict``), the outcome counts and where the unusable runs are, the
best lr per budget, and one line per batch size; every comparison from the bootstrap intervals
of ``nnlab.report.intervals``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from nnlab.report.intervals import METHOD, MIN_SEEDS, Resampled, too_few
from nnlab.report.tables import (
    SHIFT_LEVEL,
    TARGET_FACTOR,
    fmt_epochs,
    fmt_interval,
    fmt_lr,
    fmt_val,
    tied_set,
    varying_params,
)
from nnlab.report.verdict import best_lr_text, judge
from nnlab.tracking.schema import OK_OUTCOMES


@dataclass
class Findings:
    """What the report states, each number traceable to a table."""

    metric: str
    target: float
    max_epochs: int
    n_runs: int
    n_seeds: int
    method: str  # how the intervals are computed (``nnlab.report.intervals.METHOD``)
    outcomes: dict[str, int]
    not_learning: int
    fastest_lr: float | None
    most_accurate_lr: float | None
    reference_lr: float | None  # the swept lr nearest the notes' "small" 0.001
    claim_faster: bool | None
    claim_less_accurate: bool | None
    verdict: str
    claim_intervals: dict = field(default_factory=dict)  # ``verdict.Claim.record``
    sentences: list[str] = field(default_factory=list)


def _where(runs: pd.DataFrame, mask: pd.Series) -> str:
    """'lr=1 (bs 16: 3, bs 64: 1); lr=10 (...)' for the runs under ``mask``."""
    parts = []
    for lr, grp in runs[mask].groupby("lr"):
        by_bs = ", ".join(f"bs {bs}: {n}" for bs, n in grp.groupby("batch_size").size().items())
        total = int((runs["lr"] == lr).sum())
        parts.append(f"lr={fmt_lr(lr)}: {len(grp)}/{total} ({by_bs})")
    return "; ".join(parts)


def _count_sentence(outcomes: dict[str, int], others: dict[str, int]) -> str:
    """'N runs: a completed or early-stopped, b diverged, c failed, d killed[, e running].'"""
    n = sum(outcomes.values())
    done = sum(outcomes.get(o, 0) for o in OK_OUTCOMES)
    text = (
        f"{n} run{'s' if n != 1 else ''}: {done} completed or early-stopped, "
        f"{outcomes.get('diverged', 0)} diverged, {outcomes.get('failed', 0)} failed, "
        f"{outcomes.get('killed', 0)} killed"
    )
    # Outcomes outside the vocabulary (e.g. runs still RUNNING): counted, not silently dropped.
    return text + "".join(f", {v} {k}" for k, v in others.items()) + "."


def _outcome_sentences(
    runs: pd.DataFrame, outcomes: dict[str, int], stuck: pd.Series | None
) -> list[str]:
    """Outcome counts, a caution when other params vary, and where the unusable runs and the
    runs that never learned are (by lr and batch size): counted and located, never dropped."""
    known = {*OK_OUTCOMES, "diverged", "failed", "killed"}
    others = {k: v for k, v in outcomes.items() if k not in known}
    s = [_count_sentence(outcomes, others)]
    mixed = varying_params(runs)
    if mixed:  # comparisons across these are confounded: say so up front
        listed = "; ".join(f"{k}: {', '.join(v[:6])}" for k, v in mixed.items())
        s.append(
            f"Caution: besides lr, batch size, epochs and seed, these params differ between runs "
            f"of this experiment, so the medians below pool different set-ups: {listed}."
        )
    for bad in ("diverged", "failed", "killed", *others):
        mask = runs["outcome"] == bad
        if mask.any():
            s.append(f"{bad.capitalize()} runs by lr: {_where(runs, mask)}.")
    if stuck is not None and stuck.sum():
        s.append(
            f"{int(stuck.sum())} runs ran to the end without learning (training loss never below "
            f"its first-epoch value; not tagged diverged): {_where(runs, stuck.to_numpy())}."
        )
    return s


def _consistency_sentences(consistency: dict | None) -> list[str]:
    """One sentence on whether shorter budgets equal epoch e of the longest runs, if compared."""
    if not consistency or not consistency["compared"]:
        return []
    c = consistency
    return [
        f"Budgets vs histories: {c['identical']} of {c['compared']} shorter-budget trials "
        f"equal epoch e of the longest run with the same lr, batch size and seed exactly "
        f"(largest difference {c['max_abs_diff']:.3g}); with no lr schedule the longest "
        "runs' histories carry every shorter budget."
    ]


def _lr_sentences(t: pd.DataFrame, target: float, metric: str, max_epochs: int) -> list[str]:
    """The target, then per lr (rows of ``t``, the per-lr table indexed by lr) its epochs to
    target and best ``metric``, then the lrs that never reached the target."""
    if np.isfinite(target):
        s = [
            f"Target: {metric} ≤ {target:.4f} ({TARGET_FACTOR:g} × the best median-over-seeds "
            f"{metric} any (lr, batch size) reached); speed and quality are read from the "
            f"{max_epochs}-epoch runs, medians over batch sizes and seeds, each with its 95% "
            f"interval [lo, hi] ({METHOD})."
        ]
    else:
        s = ["Target: none, no run completed, so no speed or quality can be measured."]
    for lr, row in t.iterrows():
        ett = fmt_interval(row["epochs_to_target_lo"], row["epochs_to_target_hi"], fmt_epochs)
        best = fmt_interval(row["best_lo"], row["best_hi"])
        s.append(
            f"lr={fmt_lr(lr)}: epochs to target {fmt_epochs(row['median_epochs_to_target'])} "
            f"{ett} ({int(row['reached_target'])}/{int(row['runs'])} runs reached it), "
            f"lowest {metric} reached {fmt_val(row['median_best'])} {best}."
        )
    never = [fmt_lr(lr) for lr, row in t.iterrows() if row["reached_target"] == 0]
    if never:
        s.append(f"Never reached the target within {max_epochs} epochs: lr={', '.join(never)}.")
    return s


def _caution(n_seeds: int) -> list[str]:
    caution = too_few(n_seeds)
    return [f"Caution: {caution}."] if caution else []


def budget_clause(best_budget: pd.DataFrame | None, shift: pd.DataFrame | None) -> str:
    """' Across budgets ...': per batch size, the best lr at the shortest and the longest
    budget (with the lrs not separated from it) and whether the shorter budget's best lr was
    larger, in how many resamples (``tables.budget_shift``); empty with fewer than two
    budgets."""
    if best_budget is None or shift is None or not len(shift):
        return ""
    parts = []
    enough = best_budget["n_seeds"].max() >= MIN_SEEDS
    for r in shift.itertuples():
        rows = best_budget[best_budget["batch_size"] == r.batch_size].set_index("epochs")
        sets = [sorted(tied_set(rows.at[e, "tied_lrs"])) for e in (r.short, r.long)]
        said = [f" (not separated: {', '.join(map(fmt_lr, s))})" if enough else "" for s in sets]
        parts.append(
            f"batch size {r.batch_size}: {fmt_lr(r.best_short)} at {r.short} epochs{said[0]}, "
            f"{fmt_lr(r.best_long)} at {r.long}{said[1]}; the shorter budget's best lr was "
            f"larger in {r.larger:.0%} of resamples, smaller in {r.smaller:.0%}"
        )
    said = {"larger": "a larger lr", "smaller": "a smaller lr", "unresolved": "not resolved"}
    found = shift["shift"].tolist()
    summary = ", ".join(f"{said[k]} for {found.count(k)} of {len(found)} batch sizes"
                        for k in said if found.count(k))  # fmt: skip
    return (
        f" Across budgets (own trials per budget; the best lr by the median over seeds, chosen "
        f"again in each resample): {'; '.join(parts)}. Shorter budgets favoured (stated where "
        f"{SHIFT_LEVEL:.1%} of resamples agree): {summary}."
    )


def compute_findings(
    runs: pd.DataFrame,
    curves: pd.DataFrame,
    lr_table: pd.DataFrame,
    target: float,
    metric: str,
    best_budget: pd.DataFrame | None = None,
    stuck: pd.Series | None = None,
    consistency: dict | None = None,
    shift: pd.DataFrame | None = None,
) -> Findings:
    """Findings stated in the report, from the tables and the runs (see ``verdict``).

    Parameters
    ----------
    runs : DataFrame
        ``load_runs`` frame, one row per run.
    curves : DataFrame
        ``tables.per_run_curves``, one row per longest-budget run.
    lr_table : DataFrame
        ``tables.per_lr``, one row per lr.
    target : float
        The target of ``curves`` (NaN when no run completed).
    metric : str
    best_budget : DataFrame, optional
        ``tables.best_lr_per_budget``.
    stuck : Series of bool, optional
        ``tables.not_learning``, indexed like ``runs``.
    consistency : dict, optional
        ``tables.budget_consistency``.
    shift : DataFrame, optional
        ``tables.budget_shift``.

    Returns
    -------
    Findings
    """
    outcomes = {k: int(v) for k, v in runs["outcome"].astype(str).value_counts().items()}
    max_epochs = int(curves["epochs"].max())
    claim = judge(curves, target, metric)
    return Findings(
        metric=metric,
        target=float(target),
        max_epochs=max_epochs,
        n_runs=len(runs),
        n_seeds=int(runs["seed"].nunique()),
        method=METHOD,
        outcomes=outcomes,
        not_learning=int(stuck.sum()) if stuck is not None else 0,
        fastest_lr=claim.fastest_lr,
        most_accurate_lr=claim.most_accurate_lr,
        reference_lr=claim.reference_lr,
        claim_faster=claim.faster,
        claim_less_accurate=claim.less_accurate,
        verdict=claim.sentence + best_lr_text(claim, metric) + budget_clause(best_budget, shift),
        claim_intervals=claim.record(),
        sentences=[
            *_caution(int(runs["seed"].nunique())),
            *_outcome_sentences(runs, outcomes, stuck),
            *_consistency_sentences(consistency),
            *_lr_sentences(lr_table.set_index("lr"), target, metric, max_epochs),
        ],
    )


def per_batch_lines(curves: pd.DataFrame, metric: str) -> list[str]:
    """One line per batch size: its fastest lr and its best lr by the median over seeds, with
    their intervals and the lrs the intervals do not separate from the best."""
    lines = []
    seeds = np.sort(curves["seed"].unique())
    for bs, grp in curves.groupby("batch_size"):
        speed = Resampled(grp, ["lr"], "epochs_to_target", seeds)
        quality = Resampled(grp, ["lr"], "best", seeds)
        lrs = speed.keys["lr"].to_numpy(dtype=float)
        g_fast, g_acc = speed.best(), quality.best()
        fast = "no lr reached the target"
        if g_fast is not None:
            iv = speed.interval(g_fast)
            fast = (f"fastest lr {fmt_lr(lrs[g_fast])} ({fmt_epochs(iv.value)} epochs "
                    f"{fmt_interval(iv.lo, iv.hi, fmt_epochs)})")  # fmt: skip
        acc = "no usable run"
        if g_acc is not None:
            iv = quality.interval(g_acc)
            tied = [fmt_lr(lrs[g]) for g in quality.tied(g_acc) if g != g_acc]
            acc = (
                f"best lr (median over {int(quality.n_seeds[g_acc])} seeds) "
                f"{fmt_lr(lrs[g_acc])} (lowest {metric} reached {fmt_val(iv.value)} "
                f"{fmt_interval(iv.lo, iv.hi)}"
                + (f"; not separated from it: {', '.join(tied)})" if tied else ")")
            )
        lines.append(f"batch size {bs}: {fast}; {acc}.")
    return lines
