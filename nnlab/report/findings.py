"""The findings the flagship section states, as sentences and numbers, from its tables.

Pure pandas on the frames of ``nnlab.report.tables`` (see its conventions): the verdict on the
notes' claim, the outcome counts and where the unusable runs are, and one line per batch size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from nnlab.report.tables import (
    TARGET_FACTOR,
    fmt_epochs,
    fmt_lr,
    fmt_val,
    per_lr_batch,
    varying_params,
)
from nnlab.tracking.schema import OK_OUTCOMES


@dataclass
class Findings:
    """What the report states, each number traceable to a table."""

    metric: str
    target: float
    max_epochs: int
    n_runs: int
    outcomes: dict[str, int]
    not_learning: int
    fastest_lr: float | None
    most_accurate_lr: float | None
    reference_lr: float | None  # the swept lr nearest the notes' "small" 0.001
    claim_faster: bool | None
    claim_less_accurate: bool | None
    verdict: str
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
            f"{max_epochs}-epoch runs, medians over batch sizes and seeds."
        ]
    else:
        s = ["Target: none, no run completed, so no speed or quality can be measured."]
    for lr, row in t.iterrows():
        s.append(
            f"lr={fmt_lr(lr)}: epochs to target {fmt_epochs(row['median_epochs_to_target'])} "
            f"({int(row['reached_target'])}/{int(row['runs'])} runs reached it), "
            f"best {metric} {fmt_val(row['median_best'])}."
        )
    never = [fmt_lr(lr) for lr, row in t.iterrows() if row["reached_target"] == 0]
    if never:
        s.append(f"Never reached the target within {max_epochs} epochs: lr={', '.join(never)}.")
    return s


def headline_lrs(t: pd.DataFrame) -> tuple[float | None, float | None, float | None]:
    """(fastest, most accurate, reference) lr of the per-lr table ``t`` (indexed by lr): least
    median epochs to target, lowest median best, and the swept lr nearest 0.001 in log scale."""
    fin_speed = t[np.isfinite(t["median_epochs_to_target"])]
    fin_best = t[np.isfinite(t["median_best"])]
    fastest = float(fin_speed["median_epochs_to_target"].idxmin()) if len(fin_speed) else None
    accurate = float(fin_best["median_best"].idxmin()) if len(fin_best) else None
    lrs = t.index.to_numpy(dtype=float)
    reference = (
        float(lrs[np.argmin(np.abs(np.log10(lrs) - math.log10(1e-3)))]) if len(lrs) else None
    )
    return fastest, accurate, reference


def _speed_clause(
    f_row: pd.Series, r_row: pd.Series, fastest: float, reference: float, max_epochs: int
) -> tuple[bool, str]:
    """(is the fastest lr larger than the reference and faster?, the sentence saying so)."""
    f_ett, r_ett = f_row["median_epochs_to_target"], r_row["median_epochs_to_target"]
    if fastest == reference:
        return False, f"lr={fmt_lr(reference)} itself was the fastest ({fmt_epochs(f_ett)} epochs)"
    faster = bool(fastest > reference and f_ett < r_ett)
    return faster, (
        f"lr={fmt_lr(fastest)} was the fastest to the target ({fmt_epochs(f_ett)} epochs), "
        + (
            f"lr={fmt_lr(reference)} took {fmt_epochs(r_ett)} epochs"
            if np.isfinite(r_ett)
            else f"lr={fmt_lr(reference)} did not reach it within {max_epochs} epochs"
        )
    )


def _accuracy_clause(
    f_row: pd.Series, r_row: pd.Series, fastest: float, reference: float, metric: str,
    max_epochs: int,
) -> tuple[bool, str]:  # fmt: skip
    """(is the fastest lr less accurate than the reference by more than the seed-to-seed
    spread?, the sentence saying so): no claims from noise."""
    gap = f_row["median_best"] - r_row["median_best"]
    noise = max(f_row["seed_std_best"], r_row["seed_std_best"])
    less = bool(np.isfinite(gap) and gap > noise)
    if not np.isfinite(r_row["median_best"]):
        return less, f"lr={fmt_lr(reference)} diverged or failed in most runs"
    how = (
        "less accurate than"
        if less
        else "more accurate than"
        if gap < -noise
        else "about as accurate as"
    )
    return less, (
        f"lr={fmt_lr(fastest)} was {how} lr={fmt_lr(reference)} within {max_epochs} "
        f"epochs: best {metric} {fmt_val(f_row['median_best'])} vs "
        f"{fmt_val(r_row['median_best'])} (gap {gap:+.4f}; seed-to-seed spread "
        f"{noise:.4f})"
    )


def claim_verdict(
    t: pd.DataFrame, fastest: float | None, reference: float | None, target: float,
    metric: str, max_epochs: int,
) -> tuple[str, bool | None, bool | None]:  # fmt: skip
    """The verdict on the notes' claim (a larger lr is faster but less accurate than ~0.001):
    ``(verdict, claim_faster, claim_less_accurate)``, the claims None when it cannot be checked."""
    lrs = t.index.to_numpy(dtype=float)
    if len(lrs) < 2:
        return (
            "Cannot be checked: the sweep has a single learning rate "
            f"({', '.join(map(fmt_lr, lrs))}); sweep lr to compare.",
            None,
            None,
        )
    if not np.isfinite(target):
        return "Cannot be checked: no run completed.", None, None
    if fastest is None or reference is None:
        return (
            "Cannot be checked: no learning rate reached the target "
            f"({metric} ≤ {target:.4f}) within {max_epochs} epochs.",
            None,
            None,
        )
    f_row, r_row = t.loc[fastest], t.loc[reference]
    faster, speed = _speed_clause(f_row, r_row, fastest, reference, max_epochs)
    less, accuracy = _accuracy_clause(f_row, r_row, fastest, reference, metric, max_epochs)
    if fastest == reference:
        head = "Did not hold"
    elif faster and less:
        head = "Held"
    elif faster:
        head = "Held only in part (a larger lr was faster, but not less accurate)"
    else:
        head = "Did not hold"
    return f"{head}: {speed}; {accuracy}.", faster, less


def most_accurate_clause(t: pd.DataFrame, accurate: float | None, metric: str) -> str:
    """' The most accurate lr was ...' and which lrs came within the seed-to-seed spread of it
    (those are not worse); empty when no lr has a usable result."""
    if accurate is None:
        return ""
    fin_best = t[np.isfinite(t["median_best"])]
    a_row = t.loc[accurate]
    close = [
        lr for lr, row in fin_best.iterrows()
        if lr != accurate
        and row["median_best"] - a_row["median_best"]
        <= max(a_row["seed_std_best"], row["seed_std_best"])
    ]  # fmt: skip
    return (
        f" The most accurate lr was {fmt_lr(accurate)} "
        f"(best {metric} {fmt_val(a_row['median_best'])})"
        + (
            f"; {', '.join(map(fmt_lr, close))} came within the seed-to-seed spread "
            f"(std {a_row['seed_std_best']:.4f} for lr={fmt_lr(accurate)}) of it, so the data "
            "do not single out one most accurate lr."
            if close
            else ", clear of the others by more than the seed-to-seed spread."
            if len(fin_best) > 1
            else "."
        )
    )


def _budget_clause(best_budget: pd.DataFrame | None) -> str:
    """' Across budgets ...': the best lr at the shortest and longest budget and which way it
    moves; empty with fewer than two budgets."""
    if best_budget is None or not len(best_budget) or best_budget["epochs"].nunique() <= 1:
        return ""
    lo, hi = best_budget["epochs"].min(), best_budget["epochs"].max()
    at_lo = sorted(best_budget.loc[best_budget["epochs"] == lo, "best_lr"].unique())
    at_hi = sorted(best_budget.loc[best_budget["epochs"] == hi, "best_lr"].unique())
    shift = (
        "shorter budgets favoured larger lrs"
        if np.median(at_lo) > np.median(at_hi)
        else "shorter budgets favoured smaller lrs"
        if np.median(at_lo) < np.median(at_hi)
        else "the best lr did not depend on the budget"
    )
    return (
        f" Across budgets (own trials per budget): the best lr at {lo} epochs was "
        f"{', '.join(map(fmt_lr, at_lo))}, at {hi} epochs {', '.join(map(fmt_lr, at_hi))}, "
        f"so {shift}."
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
) -> Findings:
    """Findings stated in the report, from the tables only (see module docstring for rules).

    Parameters
    ----------
    runs : DataFrame
        ``load_runs`` frame, one row per run.
    curves : DataFrame
        :func:`per_run_curves`, one row per longest-budget run.
    lr_table : DataFrame
        :func:`per_lr`, one row per lr.
    target : float
        The target of ``curves`` (NaN when no run completed).
    metric : str
    best_budget : DataFrame, optional
        :func:`best_lr_per_budget`.
    stuck : Series of bool, optional
        :func:`not_learning`, indexed like ``runs``.
    consistency : dict, optional
        :func:`budget_consistency`.

    Returns
    -------
    Findings
    """
    outcomes = {k: int(v) for k, v in runs["outcome"].astype(str).value_counts().items()}
    max_epochs = int(curves["epochs"].max())
    t = lr_table.set_index("lr")
    fastest, accurate, reference = headline_lrs(t)
    verdict, claim_faster, claim_less = claim_verdict(
        t, fastest, reference, target, metric, max_epochs
    )
    return Findings(
        metric=metric,
        target=float(target),
        max_epochs=max_epochs,
        n_runs=len(runs),
        outcomes=outcomes,
        not_learning=int(stuck.sum()) if stuck is not None else 0,
        fastest_lr=fastest,
        most_accurate_lr=accurate,
        reference_lr=reference,
        claim_faster=claim_faster,
        claim_less_accurate=claim_less,
        verdict=verdict + most_accurate_clause(t, accurate, metric) + _budget_clause(best_budget),
        sentences=[
            *_outcome_sentences(runs, outcomes, stuck),
            *_consistency_sentences(consistency),
            *_lr_sentences(t, target, metric, max_epochs),
        ],
    )


def per_batch_lines(curves: pd.DataFrame, metric: str) -> list[str]:
    """One line per batch size: its fastest lr and its most accurate lr (medians over seeds)."""
    lines = []
    table = per_lr_batch(curves)
    for bs, grp in table.groupby("batch_size"):
        g = grp.set_index("lr")
        speed = g[np.isfinite(g["median_epochs_to_target"])]
        best = g[np.isfinite(g["median_best"])]
        fast = (
            f"fastest lr {fmt_lr(speed['median_epochs_to_target'].idxmin())} "
            f"({fmt_epochs(speed['median_epochs_to_target'].min())} epochs)"
            if len(speed)
            else "no lr reached the target"
        )
        acc = (
            f"most accurate lr {fmt_lr(best['median_best'].idxmin())} "
            f"(best {metric} {best['median_best'].min():.4f})"
            if len(best)
            else "no usable run"
        )
        lines.append(f"batch size {bs}: {fast}; {acc}.")
    return lines
