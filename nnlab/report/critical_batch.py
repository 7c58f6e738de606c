"""The batch-size study section (``+experiment=critical_batch``): steps to a target loss against
batch size, where larger batches stop paying against the measured gradient noise scale, and how
the best learning rate grows with batch size. The numbers are ``nnlab.report.batch_study``'s.

It speaks when the runs logged ``noise_scale`` (``trainer.noise_scale=true``) and swept at least
three batch sizes and two learning rates.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from nnlab.report import batch_study as bs
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
from nnlab.report.intervals import METHOD, Interval

__all__ = ["section", "sentences", "display"]

TITLES = {
    "critical_batch_steps": "Steps to the target loss against batch size",
    "critical_batch_lr": "The best learning rate against batch size",
}
CAPTIONS = {
    "critical_batch_steps": "One panel per dataset, log-log. Points: the steps each batch size "
    "needed to reach the target training loss at its best lr (median over seeds; band: 95% "
    "bootstrap interval over seeds). Dashed: the fit S_min (1 + B_crit / B); solid vertical "
    "line: B_crit, where a run needs twice the minimum steps; dotted: the measured noise scale "
    "B_simple at the target (shaded: their intervals). Grey: perfect scaling from the smallest "
    "batch (steps halve as the batch doubles).",
    "critical_batch_lr": "One panel per dataset, log-log. Points: each batch size's best lr "
    "(fewest steps to the target; refined between grid points; bars: 95% bootstrap interval "
    "over seeds; hollow: at the edge of the lr grid, left out of the fit). Dashed: the fitted "
    "power law lr ~ B^k; grey: slopes 1 (linear rule) and 1/2 (square-root rule).",
}


def _num(x: float) -> str:
    if not math.isfinite(x):
        return "n/a"
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.3g}"


def _iv(x: Interval) -> str:
    return f"{_num(x.value)} (95% CI {_num(x.lo)}–{_num(x.hi)})"


def _knee(r: bs.SetupResult) -> str:
    """Where larger batches stopped paying, as far as the batch sizes tried tell."""
    lo, hi = r.batch_sizes.min(), r.batch_sizes.max()
    b = r.b_crit
    if not math.isfinite(b.value):
        return "the steps could not be fitted (fewer than three batch sizes reached the target)"
    if b.value > hi:
        return (
            f"the steps still fell nearly in proportion up to B = {hi:g}: the fit puts B_crit at "
            f"{_iv(b)}, beyond the batch sizes tried (an extrapolation)"
        )
    where = f"larger batches stopped paying at about B_crit = {_iv(b)}"
    if b.hi > hi:
        where += f", the interval reaching past the largest batch tried ({hi:g})"
    if b.lo < lo:
        where += f", and below the smallest ({lo:g})"
    return where


def sentences(results: list[bs.SetupResult]) -> list[str]:
    """One sentence per set-up: the steps, the knee against B_simple, the lr exponent; each
    verdict only where the interval supports it."""
    out = []
    for r, f in zip(results, bs.findings(results), strict=True):
        ok = np.isfinite(r.fewest)
        steps = (
            f"steps to loss {r.target:.3g} went from {_num(r.fewest[ok][0])} at B = "
            f"{r.batch_sizes[ok][0]:g} to {_num(r.fewest[ok][-1])} at B = {r.batch_sizes[ok][-1]:g}"
            if ok.any()
            else f"no batch size reached loss {r.target:.3g}"
        )
        vs = {
            "inside": "consistent with B_crit ≈ B_noise (McCandlish et al.): the ratio's "
            "interval contains 1",
            "above": "B_simple overestimates where larger batches stop paying (the ratio's "
            "interval lies above 1)",
            "below": "B_simple underestimates where larger batches stop paying (the ratio's "
            "interval lies below 1)",
            "unknown": "no comparison (a fit or the noise scale is missing)",
        }[f["b_simple_vs_b_crit"]]
        rule = f["rule"]
        verdict = {
            "inside": f"consistent with the {rule} rule (k = {f['rule_exponent']:g} lies in the interval)",
            "above": f"faster than the {rule} rule (k = {f['rule_exponent']:g} lies below the interval)",
            "below": f"slower than the {rule} rule (k = {f['rule_exponent']:g} lies above the interval)",
            "unknown": "not enough batch sizes with a best lr inside the grid to fit",
            "no rule": "no scaling rule to compare with",
        }[f["rule_verdict"]]
        out.append(
            f"{r.dataset}, {r.optimizer}: {steps}; {_knee(r)}. The measured B_simple was "
            f"{_iv(r.b_simple)}; B_simple / B_crit = {_iv(r.ratio)}: {vs}. The best lr grew as "
            f"B^k with k = {_iv(r.exponent)} over {f['fit_points']} batch sizes: {verdict}."
        )
    return out


def display(table: pd.DataFrame) -> pd.DataFrame:
    """``batch_study.csv`` as the page shows it: one row per (dataset, optimizer, batch size)."""
    shown = table[["dataset", "optimizer", "batch_size"]].copy()
    shown["steps to target (95% CI)"] = [
        "not reached" if not math.isfinite(s) else f"{s:.0f} ({lo:.0f}–{hi:.0f})"
        for s, lo, hi in zip(table["steps"], table["steps_lo"], table["steps_hi"], strict=True)
    ]
    shown["best lr (95% CI)"] = [
        "n/a" if not math.isfinite(v) else f"{v:.3g} ({lo:.3g}–{hi:.3g})" + (" edge" if c else "")
        for v, lo, hi, c in zip(table["best_lr"], table["best_lr_lo"], table["best_lr_hi"],
                                table["best_lr_censored"], strict=True)
    ]  # fmt: skip
    shown["B_simple at target"] = [_num(v) for v in table["b_simple_at_target"]]
    return shown


def applies(runs: pd.DataFrame) -> bool:
    """Whether ``runs`` are a batch-size study: noise scale logged, >= 3 batch sizes, >= 2 lrs."""
    return (
        "final_noise_scale" in runs
        and runs["final_noise_scale"].notna().any()
        and runs["batch_size"].nunique() >= 3
        and runs["lr"].nunique() >= 2
    )


def _train_sizes(runs: pd.DataFrame) -> dict[str, int]:
    """Training samples per dataset, from the data each dataset's first run trained on."""
    from nnlab.data import load_dataset
    from nnlab.report.boundaries import dataset_params

    sizes = {}
    for name, group in runs.groupby("data.name"):
        _, params = dataset_params(group.iloc[0])
        sizes[str(name)] = len(load_dataset(str(name), **params).x_train)
    return sizes


def section(ctx: Context) -> Section | None:
    """The batch-size study of ``ctx``'s grid runs, or None when they are not one."""
    from nnlab.analysis import load_histories
    from nnlab.figures import critical_batch as cfg

    runs = ctx.grid_runs
    if not len(runs) or not applies(runs):
        return None
    say(ctx.progress, "batch-size study: loading the noise scale histories …")
    noise = load_histories(ctx.experiment, ["noise_scale"], ctx.uri, runs=runs)
    hist = pd.concat([ctx.grid_hist, noise], ignore_index=True)
    table = bs.run_table(runs, hist, _train_sizes(runs))
    reached = bs.reach(table, bs.targets(table))
    say(ctx.progress, f"batch-size study: bootstrap over seeds ({METHOD}) …")
    results = bs.analyse(reached)
    out = bs.results_table(results)
    blocks = [
        Paragraph(
            [
                Strong("Method. "),
                "Each run trained a fixed budget of optimizer steps. Its steps to the target are "
                "the steps until its training loss first reached the dataset's target (the "
                "loosest of the best losses each optimizer and batch size reached, plus "
                f"{bs.TARGET_SLACK - 1:.0%}); each batch size is read at its best lr (fewest "
                "steps, median over seeds). The critical batch size B_crit comes from fitting "
                "S_min (1 + B_crit / B) (McCandlish et al. 2018); B_simple = tr(Σ)/|G|² is the "
                "gradient noise scale the runs logged, read at the epoch they reached the "
                "target. Intervals: ",
                METHOD,
                ". The numbers: ",
                Link("batch_study.csv", "batch_study.csv"),
                ".",
            ]
        ),
        Bullets(sentences(results), id="critical-batch-findings"),
        InlineTable(display(out)),
    ]
    figures = [
        FigureSpec("critical_batch_steps", TITLES["critical_batch_steps"],
                   CAPTIONS["critical_batch_steps"], lambda: cfg.steps_vs_batch(results)),
        FigureSpec("critical_batch_lr", TITLES["critical_batch_lr"],
                   CAPTIONS["critical_batch_lr"], lambda: cfg.best_lr_vs_batch(results)),
    ]  # fmt: skip
    return Section(
        key="critical-batch",
        title="Batch size: steps to target, the critical batch size and the lr scaling rules",
        blocks=blocks,
        figures=figures,
        tables=[TableSpec("batch_study", out)],
        findings={"critical_batch": bs.findings(results)},
    )
