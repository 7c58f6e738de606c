"""The numbers behind the report: summary tables and findings computed from the analysis frames.

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
from dataclasses import dataclass, field

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


# ----------------------------------------------------------------------------------- findings


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


def fmt_lr(lr: float) -> str:
    return f"{lr:g}"


def fmt_epochs(e: float) -> str:
    return "not reached" if not np.isfinite(e) else f"{e:g}"


def fmt_val(v: float) -> str:
    return "n/a (diverged/failed)" if not np.isfinite(v) else f"{v:.4f}"


def _where(runs: pd.DataFrame, mask: pd.Series) -> str:
    """'lr=1 (bs 16: 3, bs 64: 1); lr=10 (...)' for the runs under ``mask``."""
    parts = []
    for lr, grp in runs[mask].groupby("lr"):
        by_bs = ", ".join(f"bs {bs}: {n}" for bs, n in grp.groupby("batch_size").size().items())
        total = int((runs["lr"] == lr).sum())
        parts.append(f"lr={fmt_lr(lr)}: {len(grp)}/{total} ({by_bs})")
    return "; ".join(parts)


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


def _headline_lrs(t: pd.DataFrame) -> tuple[float | None, float | None, float | None]:
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


def _claim_verdict(
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


def _most_accurate_clause(t: pd.DataFrame, accurate: float | None, metric: str) -> str:
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
    fastest, accurate, reference = _headline_lrs(t)
    verdict, claim_faster, claim_less = _claim_verdict(
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
        verdict=verdict + _most_accurate_clause(t, accurate, metric) + _budget_clause(best_budget),
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
