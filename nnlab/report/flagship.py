"""The flagship section: what a grid over lr, batch size and epoch budget says about the notes'
claim, with its seven figures and its tables.

:func:`compute` gives every table and finding (pure pandas, ``nnlab.report.tables`` and
``nnlab.report.findings``); :func:`section` adds the figures and hands it all to the page writer.
When the runs vary the set-up (dataset, optimizer or schedule) the studies section judges each
set-up on its own; the numbers here are then pooled over set-ups and only the outcomes are drawn.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import partial

import numpy as np
import pandas as pd

from nnlab.report import boundaries
from nnlab.report import findings as fd
from nnlab.report import tables as rt
from nnlab.report.claim import varying_setups
from nnlab.report.content import (
    Bullets,
    FigureSpec,
    Heading,
    InlineTable,
    Paragraph,
    Section,
    Strong,
    TableSpec,
)
from nnlab.report.context import Context
from nnlab.tracking.schema import OK_OUTCOMES

__all__ = ["FIGURES", "CAPTIONS", "Flagship", "compute", "section"]

FIGURES = (
    ("learning_curves", "Learning curves by learning rate"),
    ("heatmap", "Final loss: learning rate × epoch budget"),
    ("speed_quality", "Speed vs quality"),
    ("best_lr", "Best learning rate per epoch budget"),
    ("batch_size", "Batch-size effect"),
    ("outcomes", "Diverged and failed runs"),
    ("decision_boundaries", "Decision boundaries of representative runs"),
)
SHOWN_TABLES = ("per_lr", "best_lr_per_budget")  # shown on the page; the rest: CSV links only

CAPTIONS = {
    "learning_curves": "Median {m} per epoch over seeds (band: its 95% bootstrap interval) for the "
    "longest epoch budget of each (lr, batch size), one panel per batch size. Crosses mark the "
    "last logged epoch of diverged or failed runs; runs that never learned are counted in a note "
    "on their panel instead of drawn; the dashed line is the target.",
    "heatmap": "Median final {m} over seeds of each trial setting (its own run with that "
    "epoch budget); the best lr of each budget (by that median) is boxed. Grey cells: most seeds "
    "diverged, failed or never learned (the label names the most common outcome); '✕' counts "
    "such runs in the other cells.",
    "speed_quality": "Each point is one (lr, batch size): epochs its runs needed to reach the "
    "target (median over seeds) against the lowest {m} they reached. Hollow points never reached "
    "the target within the budget.",
    "best_lr": "The best lr (lowest median final {m} over seeds) for each epoch budget, from the "
    "trials run with that budget, one line per batch size; the pale bar spans the lrs the 95% "
    "intervals do not separate from it.",
    "batch_size": "Final {m} against learning rate at the largest epoch budget, one line per "
    "batch size (median over seeds, band: its 95% bootstrap interval). Crosses at the top: runs "
    "that diverged, failed or never learned.",
    "outcomes": "How many runs of each (lr, batch size) completed, stopped early, diverged, "
    "failed or were killed, over all epoch budgets and seeds; 'no learning': completed runs whose "
    "training loss never fell below its first epoch.",
    "decision_boundaries": "Predicted probability over the input plane of a few runs at the "
    "largest budget (the dataset is regenerated from each run's data params). Black line: p = 0.5.",
}
NOTES_CLAIM = (
    "“a large learning rate trains faster but less accurately; a small one, about 0.001, is more "
    "accurate but needs more epochs”"
)


@dataclass
class Flagship:
    """Every table and finding of the flagship section.

    Attributes
    ----------
    target : float
        The target used (given, or ``TARGET_FACTOR`` x the best reached).
    tables : dict of str to DataFrame
        The CSV tables, by file stem, in the order the page lists them.
    findings : Findings
    per_bs : list of str
        One line per batch size.
    """

    target: float
    tables: dict[str, pd.DataFrame]
    findings: fd.Findings
    per_bs: list[str]


def compute(
    runs: pd.DataFrame, hist: pd.DataFrame, metric: str, target: float | None,
    stuck: pd.Series,
) -> Flagship:  # fmt: skip
    """Every table and finding of the section (pure: ``tables`` and ``findings`` on the frames;
    ``stuck``: ``tables.not_learning`` of ``runs``)."""
    curves, target = rt.per_run_curves(runs, hist, metric, target)
    lr_table = rt.per_lr(curves)
    budget = rt.final_by_budget(runs, metric, stuck)
    best = rt.best_lr_per_budget(runs, metric, stuck)
    shift = rt.budget_shift(runs, metric, stuck)
    consistency = rt.budget_consistency(runs, hist, metric)
    findings = fd.compute_findings(
        runs, curves, lr_table, target, metric, best, stuck, consistency, shift
    )
    tables = {
        "per_lr": lr_table,
        "per_lr_batch": rt.per_lr_batch(curves),
        "final_by_budget": budget,
        "best_lr_per_budget": best,
        "budget_shift": shift,
        "outcomes": rt.outcome_counts(runs, stuck),
        "curves": curves,
        "runs": runs,
    }
    return Flagship(target, tables, findings, fd.per_batch_lines(curves, metric))


def _makers(ctx: Context, f: Flagship) -> dict:
    """Figure key -> a call drawing it from the tables."""
    from nnlab import figures as fg

    runs, hist, metric, stuck, t = ctx.grid_runs, ctx.grid_hist, ctx.metric, ctx.stuck, f.tables
    budget = t["final_by_budget"]
    usable_lrs = budget.loc[np.isfinite(budget["median_final"]), "lr"].unique()
    return {
        "learning_curves": lambda: fg.learning_curves(runs, hist, metric, f.target, stuck),
        "heatmap": lambda: fg.budget_heatmap(budget, metric),
        "speed_quality": lambda: fg.speed_quality(t["per_lr_batch"], metric, f.target),
        "best_lr": lambda: fg.best_lr(t["best_lr_per_budget"], usable_lrs, t["budget_shift"]),
        "batch_size": lambda: fg.batch_size_effect(runs, metric, stuck),
        "outcomes": lambda: fg.outcomes(t["outcomes"]),
        "decision_boundaries": partial(boundaries.draw, runs, metric, ctx.uri, stuck),
    }


def _figures(ctx: Context, f: Flagship, pooled: bool) -> list[FigureSpec]:
    """The section's figures: all seven, or only the outcomes when set-ups are pooled."""
    makers = _makers(ctx, f)
    any_usable = bool(rt.usable(ctx.grid_runs).any())
    specs = []
    for key, title in FIGURES:
        if pooled and key != "outcomes":
            continue  # pooled figures would mix set-ups: the studies section draws its own
        reason = ""
        if key != "outcomes" and not any_usable:
            reason = "no run completed (all diverged, failed or were killed)"
        draw = None if reason else makers[key]
        specs.append(FigureSpec(key, title, CAPTIONS[key].format(m=ctx.metric), draw, reason))
    return specs


def _with(value: float, lo: float, hi: float, fmt=rt.fmt_end) -> str:
    return f"{fmt(value)} {rt.fmt_interval(lo, hi, fmt)}"


def shown(name: str, frame: pd.DataFrame, metric: str) -> pd.DataFrame:
    """A table of :data:`SHOWN_TABLES` as the page shows it: medians with their intervals."""
    rows = frame.to_dict("records")
    e = rt.fmt_epochs
    if name == "per_lr":
        return pd.DataFrame({
            "lr": [rt.fmt_lr(r["lr"]) for r in rows],
            "runs (seeds)": [f"{r['runs']} ({r['n_seeds']})" for r in rows],
            "reached target": frame["reached_target"],
            "epochs to target [95% CI]": [
                _with(r["median_epochs_to_target"], r["epochs_to_target_lo"],
                      r["epochs_to_target_hi"], e) for r in rows],
            f"lowest {metric} reached [95% CI]": [_with(r["median_best"], r["best_lo"],
                                                       r["best_hi"])
                                        for r in rows],
            "not usable": frame["not_usable"],
            "not learning": frame["not_learning"],
        })  # fmt: skip
    return pd.DataFrame({
        "batch size": frame["batch_size"],
        "epochs": frame["epochs"],
        "best lr (median over seeds)": [rt.fmt_lr(r["best_lr"]) for r in rows],
        f"final {metric} [95% CI]": [_with(r["median_final"], r["lo"], r["hi"]) for r in rows],
        "seeds": frame["n_seeds"],
        "not separated from it": frame["tied_lrs"],
        "best in (share of resamples)": [f"{r['share']:.0%}" for r in rows],
    })  # fmt: skip


def _unusable_runs(runs: pd.DataFrame) -> list:
    """The list of runs that diverged, failed or were killed (empty when none)."""
    bad = runs[~runs["outcome"].isin(OK_OUTCOMES)]
    if not len(bad):
        return []
    cols = ["run_name", "outcome", "stopped_epoch", "lr", "batch_size", "epochs", "seed"]
    return [
        Heading("Runs that diverged, failed or were killed", id="unusable-runs"),
        InlineTable(bad[cols]),
    ]


def section(ctx: Context) -> Section | None:
    """The flagship section of ``ctx``'s grid runs (None when the experiment has none)."""
    runs = ctx.grid_runs
    if not len(runs):
        return None
    f = compute(runs, ctx.grid_hist, ctx.metric, ctx.target, ctx.stuck)
    pooled = bool(varying_setups(runs))
    blocks = [
        Paragraph(
            [Strong("The notes' claim"), f" ({NOTES_CLAIM}): {f.findings.verdict}"],
            id="verdict",
            verdict=True,
        ),
        Bullets(list(f.findings.sentences), id="findings"),
        Paragraph("Per batch size:"),
        Bullets(list(f.per_bs), id="per-batch"),
    ]
    return Section(
        key="flagship",
        title="Findings pooled over all set-ups" if pooled else "Findings",
        blocks=blocks,
        figures=_figures(ctx, f, pooled),
        tables=[
            TableSpec(name, frame, shown(name, frame, ctx.metric) if name in SHOWN_TABLES else None)
            for name, frame in f.tables.items()
        ],
        after=_unusable_runs(runs),
        findings=asdict(f.findings),
    )
