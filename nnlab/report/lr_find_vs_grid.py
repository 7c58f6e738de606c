"""The LR finder section (``+experiment=lr_find_vs_grid``): does the LR range test's suggestion
land within one grid step of the grid's best lr at each budget? The numbers are
``nnlab.report.finder_study``'s.

It speaks when the experiment holds LR range tests (runs tagged ``nnlab.role=lr_find``: the
sweep's ``nnlab.lr_find_sweep.GridFinders``, or ``python -m nnlab.lr_find`` into the same
experiment) for set-ups its grid trained at two or more lrs.
"""

from __future__ import annotations

import math

import pandas as pd

from nnlab.report import finder_study as fs
from nnlab.report.content import (
    Bullets,
    FigureSpec,
    InlineTable,
    Link,
    Paragraph,
    Section,
    Strong,
    TableSpec,
)
from nnlab.report.context import Context, say
from nnlab.report.intervals import METHOD

__all__ = ["section", "sentences", "display"]

RULE_NAMES = {"valley": "valley", "minimum": "minimum/10", "steep": "steepest slope"}
CAPTION = (
    "Rows: epoch budgets; columns: the suggestion rules. One point per dataset (marker), "
    "optimizer (colour) and batch size (hollow: the larger): the grid's best lr (lowest median "
    "{m} over seeds) against the rule's suggestion (median over the LR range tests' seeds), "
    "bars: 95% bootstrap intervals over seeds. Grey band: within one grid step of the diagonal. "
    "Arrows at a panel's edge: a suggestion more than a decade beyond the grid's best lrs."
)


def sentences(summary: pd.DataFrame, grid_step: float) -> list[str]:
    """One sentence per rule: its verdict counts over all comparisons and per optimizer, and
    which way it misses (median signed distance)."""
    out = []
    for rule, g in summary.groupby("rule", sort=False):
        total = g[g["optimizer"] == "all"].iloc[0]
        per = g[g["optimizer"] != "all"]
        parts = [
            f"{o['optimizer']}: {o['within one step']} of {o['comparisons']} within"
            for o in per.to_dict("records")
        ]
        off = total["median_steps_off"]
        way = (
            "on the grid's best lr"
            if abs(off) < 0.5
            else f"{abs(off):.1f} steps {'below' if off < 0 else 'above'} the best lr"
        )
        out.append(
            f"{RULE_NAMES.get(rule, rule)}: within one grid step (×{10**grid_step:.3g}) of the "
            f"best lr in {total['within one step']} of {total['comparisons']} comparisons, "
            f"more than a step off in {total['more than one step off']}, unresolved by the "
            f"intervals in {total['unresolved']} ({'; '.join(parts)}); its median suggestion "
            f"sits {way}."
        )
    return out


def _lr(x: float) -> str:
    return "n/a" if not math.isfinite(x) else f"{x:.3g}"


def display(table: pd.DataFrame) -> pd.DataFrame:
    """The comparison as the page shows it: one row per (set-up, budget), a column per rule."""
    keys = [*fs.SETUP, "budget"]
    rows = []
    for key, g in table.groupby(keys, sort=False):
        first = g.iloc[0]
        row = dict(zip(keys, key, strict=True))
        row["best lr (95% CI)"] = (
            f"{_lr(first['best_lr'])} ({_lr(first['best_lr_lo'])}–{_lr(first['best_lr_hi'])})"
        )
        for r in g.to_dict("records"):
            row[RULE_NAMES.get(r["rule"], r["rule"])] = (
                f"{_lr(r['suggested_lr'])}: {r['distance']:.1f} steps "
                f"({r['distance_lo']:.1f}–{r['distance_hi']:.1f}), {r['verdict']}"
            )
        rows.append(row)
    return pd.DataFrame(rows)


def section(ctx: Context) -> Section | None:
    """The LR finder against the grid, or None when the experiment holds no LR range test of a
    set-up its grid swept."""
    from nnlab.analysis import load_runs
    from nnlab.figures.lr_find import suggestion_vs_best

    runs = ctx.grid_runs
    if not len(runs) or runs["lr"].nunique() < 2 or "data.name" not in runs:
        return None
    try:
        finders = load_runs(ctx.experiment, ctx.uri, role="lr_find")
    except ValueError:  # no LR range test in this experiment
        return None
    finders = finders[finders["status"] == "FINISHED"]
    if not len(finders):
        return None
    say(ctx.progress, f"LR finder: {len(finders)} range tests against the grid ({METHOD}) …")
    grid = fs.at_budgets(runs, ctx.grid_hist, ctx.metric, fs.budgets(int(runs["epochs"].max())))
    table = fs.compare(grid, fs.suggestions(finders))
    if table.empty:
        return None
    summary = fs.summary(table)
    step = float(table["grid_step"].median())
    blocks = [
        Paragraph(
            [
                Strong("Method. "),
                f"At each budget the grid's best lr is the one with the lowest median {ctx.metric} "
                "over seeds (a run read at that epoch of its history); each rule's suggestion is "
                "the median over the LR range tests' seeds (one test per dataset, optimizer, "
                "batch size and seed; fastai's defaults: a ramp from 1e-7 to 10 over 100 steps, "
                "smoothing 0.98, stop at 4× the best loss). A suggestion is within one grid step "
                "when the whole 95% interval of its distance to the best lr is at most one step, "
                "more than a step off when the whole interval lies beyond, and unresolved "
                "otherwise. Intervals: ",
                METHOD,
                ". The numbers: ",
                Link("lr_find_vs_grid.csv", "lr_find_vs_grid.csv"),
                " (counts: ",
                Link("lr_find_summary.csv", "lr_find_summary.csv"),
                ").",
            ]
        ),
        Bullets(sentences(summary, step), id="lr-find-findings"),
        InlineTable(display(table)),
    ]
    figure = FigureSpec(
        "lr_find_vs_grid",
        "LR finder suggestions against the grid's best lr",
        CAPTION.format(m=ctx.metric),
        lambda: suggestion_vs_best(table),
    )
    return Section(
        key="lr-find-vs-grid",
        title="The LR range test against the grid",
        blocks=blocks,
        figures=[figure],
        tables=[TableSpec("lr_find_vs_grid", table), TableSpec("lr_find_summary", summary)],
        findings={"lr_find_vs_grid": summary.to_dict("records")},
    )
