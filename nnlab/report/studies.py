"""The studies section: what a report adds when its runs vary the set-up.

When one sweep varies ``data.name``, ``optimizer.name`` or ``schedule.name``
(``nnlab.report.claim.SETUP_PARAMS``), the flagship's pooled numbers would mix set-ups. This
section judges the notes' claim per set-up (``nnlab.report.claim``) and, when the schedule
varies, each decaying schedule against the best constant rate (``nnlab.report.schedules``):
:func:`study` computes the tables and findings (pure pandas), :func:`section` gives them, with
the study figures, to the page writer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from nnlab.report import tables as rt
from nnlab.report.claim import (
    SETUP_COLS,
    claim_findings,
    claim_per_lr,
    claim_table,
    varying_setups,
)
from nnlab.report.content import (
    Bullets,
    FigureSpec,
    Heading,
    InlineTable,
    Link,
    Paragraph,
    Section,
    Strong,
    TableSpec,
)
from nnlab.report.context import Context
from nnlab.report.intervals import METHOD
from nnlab.report.schedules import schedule_by_budget, schedule_findings, schedule_vs_constant

__all__ = ["Study", "study", "section", "claim_display", "schedule_display"]


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
    """

    axes: list[str]
    tables: dict[str, pd.DataFrame]
    findings: dict
    sentences: list[str] = field(default_factory=list)


TITLES = {
    "claim": "The notes' claim per set-up: speed and quality against lr",
    "schedules": "Decaying schedules against the best constant rate, per budget",
}
CAPTIONS = {
    "claim": "One column per dataset, one line per set-up. Top: epochs the runs needed to reach "
    "the set-up's target (median over seeds, band: its 95% bootstrap interval; hollow marks at "
    "the top: not reached within the budget). Bottom: lowest {m} reached (median over seeds, "
    "band: its interval; crosses at the top: most seeds diverged or failed). Rings: the fastest "
    "lr (top) and the best lr by the median (bottom); dotted line: the notes' small lr, 0.001. "
    "The claim holds where the fastest lr is larger than 0.001 and the paired intervals put it "
    "faster (top) and worse (bottom) than 0.001.",
    "schedules": "One panel per dataset, optimizer and epoch budget (each budget its own "
    "trials): the median final {m} over seeds of each schedule's best lr (bars: 95% bootstrap "
    "interval; the lr and the result under each), against the best constant lr (dashed line; "
    "grey band: its interval). Filled points beat the constant rate beyond the paired interval "
    "of the gap; hollow ones did not.",
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
        ``nnlab.report.tables.not_learning`` flags, indexed like ``runs``.
    """
    axes = varying_setups(runs)
    if not axes:
        return None
    per_lr = claim_per_lr(runs, hist, metric)
    claim = claim_table(runs, hist, metric)
    tables = {"claim": claim, "claim_per_lr": per_lr}
    findings = {"setups": axes, "claim": claim_findings(claim)}
    sentences = []
    if "schedule" in axes:
        by_budget = schedule_by_budget(runs, metric, stuck)
        vs = schedule_vs_constant(runs, metric, stuck)
        tables = {"schedule_vs_constant": vs, "schedule_by_budget": by_budget, **tables}
        findings["schedules"], sentences = schedule_findings(vs, metric)
    return Study(axes, tables, findings, sentences)


def _lr(v: float) -> str:
    return "none" if pd.isna(v) else rt.fmt_lr(v)


def _with(value: float, lo: float, hi: float, fmt=rt.fmt_end) -> str:
    """``0.1203 [0.1190, 0.1220]``."""
    return f"{fmt(value)} {rt.fmt_interval(lo, hi, fmt)}"


def claim_display(claim: pd.DataFrame, axes: list[str]) -> pd.DataFrame:
    """The claim table as the page shows it: one row per set-up, numbers as text with their
    95% intervals."""
    shown = claim[[c for c in SETUP_COLS if c in axes or c == "dataset"]].copy()
    e = rt.fmt_epochs
    rows = claim.to_dict("records")
    shown["seeds"] = claim["n_seeds"]
    shown["fastest lr: epochs"] = [
        f"{_lr(r['fastest_lr'])}: "
        + _with(r["fastest_epochs"], r["fastest_epochs_lo"], r["fastest_epochs_hi"], e)
        for r in rows
    ]
    shown["lr ≈ 0.001: epochs"] = [
        f"{_lr(r['reference_lr'])}: "
        + _with(r["reference_epochs"], r["reference_epochs_lo"], r["reference_epochs_hi"], e)
        for r in rows
    ]
    shown["gap in lowest value, fastest − 0.001"] = [
        "n/a" if pd.isna(r["accuracy_gap"])
        else f"{r['accuracy_gap']:+.4f} " + rt.fmt_interval(r["accuracy_gap_lo"],
                                                             r["accuracy_gap_hi"])
        for r in rows
    ]  # fmt: skip
    shown["best lr (median over seeds)"] = [
        f"{_lr(r['most_accurate_lr'])}: "
        + _with(r["most_accurate_best"], r["most_accurate_best_lo"], r["most_accurate_best_hi"])
        for r in rows
    ]
    shown["verdict"] = claim["verdict"]
    return shown


def schedule_display(vs: pd.DataFrame) -> pd.DataFrame:
    """:func:`schedule_vs_constant` as the page shows it: one row per (dataset, optimizer,
    budget, schedule), numbers as text with their 95% intervals."""
    shown = vs[["dataset", "optimizer", "epochs", "schedule", "n_seeds"]].copy()
    rows = vs.to_dict("records")
    shown["its best lr (median over seeds): final"] = [
        f"{_lr(r['lr'])}: " + _with(r["median_final"], r["lo"], r["hi"]) for r in rows
    ]
    shown["best constant lr (median over seeds): final"] = [
        "none usable" if pd.isna(r["constant_lr"])
        else f"{_lr(r['constant_lr'])}: "
        + _with(r["constant_median_final"], r["constant_lo"], r["constant_hi"])
        for r in rows
    ]  # fmt: skip
    shown["gap"] = [
        "n/a" if pd.isna(r["gap"]) else f"{r['gap']:+.4f} " + rt.fmt_interval(r["gap_lo"],
                                                                              r["gap_hi"])
        for r in rows
    ]  # fmt: skip
    shown["result"] = vs["result"]
    return shown


def _claim_blocks(s: Study, metric: str) -> list:
    """The claim-per-set-up part of the section: heading, method, table, one reason per set-up."""
    claim = s.tables["claim"]
    epochs = ", ".join(str(v) for v in sorted(claim["epochs"].unique()))
    return [
        Heading(f"The notes' claim per set-up ({', '.join(s.axes)})", id="claim-per-setup"),
        Paragraph(
            [
                "Each set-up is judged on its own runs, with its own target (1.25 × the best "
                f"median-over-seeds {metric} it reached), from its {epochs}-epoch runs: the "
                "fastest lr against the swept lr nearest 0.001, each number with its 95% "
                f"interval ({METHOD}); a gap whose interval includes 0 is no difference the "
                "seeds resolve. The same numbers: ",
                Link("claim.csv", "claim.csv"),
                " (per lr: ",
                Link("claim_per_lr.csv", "claim_per_lr.csv"),
                ").",
            ]
        ),
        InlineTable(claim_display(claim, s.axes)),
        Bullets(
            [
                [Strong(" / ".join(str(r[c]) for c in SETUP_COLS)), f": {r['reason']}"]
                for r in claim.to_dict("records")
            ],
            id="claim-reasons",
        ),
    ]


def _schedule_blocks(s: Study, metric: str) -> list:
    """The schedules-against-the-constant-rate part of the section."""
    return [
        Heading("Decaying schedules against the best constant rate", id="schedules-vs-constant"),
        Paragraph(
            [
                "At each epoch budget (its own trials), the best lr of each schedule against the "
                f"best constant lr, by median final {metric} over seeds; “better” or “worse” "
                "only when the whole 95% interval of the paired gap (each side's best chosen "
                "again in every resample of the seeds) lies below or above 0. The same numbers: ",
                Link("schedule_vs_constant.csv", "schedule_vs_constant.csv"),
                " (every setting: ",
                Link("schedule_by_budget.csv", "schedule_by_budget.csv"),
                ").",
            ]
        ),
        Bullets(list(s.sentences), id="schedule-findings"),
        InlineTable(schedule_display(s.tables["schedule_vs_constant"])),
    ]


def _figures(s: Study, metric: str, any_usable: bool) -> list[FigureSpec]:
    """The study figures, the study's own question first."""
    from nnlab import figures as fg

    t = s.tables
    makers = {"claim": lambda: fg.claim_grid(t["claim_per_lr"], t["claim"], metric)}
    if "schedule_vs_constant" in t:
        makers = {
            "schedules": lambda: fg.schedule_budgets(
                t["schedule_by_budget"], t["schedule_vs_constant"], metric
            ),
            **makers,
        }
    reason = "" if any_usable else "no run completed (all diverged, failed or were killed)"
    return [
        FigureSpec(key, TITLES[key], CAPTIONS[key].format(m=metric),
                   None if reason else draw, reason)
        for key, draw in makers.items()
    ]  # fmt: skip


def section(ctx: Context) -> Section | None:
    """The studies section of ``ctx``'s grid runs, or None when the set-up does not vary."""
    runs = ctx.grid_runs
    if not len(runs):
        return None
    s = study(runs, ctx.grid_hist, ctx.metric, ctx.stuck)
    if s is None:
        return None
    claim = _claim_blocks(s, ctx.metric)
    blocks = _schedule_blocks(s, ctx.metric) + claim if "schedule" in s.axes else claim
    return Section(
        key="studies",
        title=f"Set-ups compared ({', '.join(s.axes)})",
        blocks=blocks,
        figures=_figures(s, ctx.metric, bool(rt.usable(runs).any())),
        tables=[TableSpec(name, frame) for name, frame in s.tables.items()],
        findings=s.findings,
    )
