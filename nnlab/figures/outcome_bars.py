"""Figure 6, run outcomes: stacked bars of runs per outcome for each learning rate."""

from __future__ import annotations

import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np
import pandas as pd

from nnlab.figures.style import (
    NO_LEARNING_COLOR,
    OUTCOME_COLORS,
    UNKNOWN_OUTCOME_COLOR,
    attach,
    set_style,
)
from nnlab.report.tables import fmt_lr
from nnlab.tracking.schema import OK_OUTCOMES

NO_LEARNING = "no learning"  # the stack of usable runs that never improved on epoch 1
_NOT_OUTCOMES = ("lr", "batch_size", "total", "not_learning")  # other columns of the counts


def outcome_stacks(counts: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, str]]:
    """The counts as stacked: runs flagged ``not_learning`` moved out of the usable outcome they
    are counted in into a ``"no learning"`` column, and the colour of each stack in order.

    Parameters
    ----------
    counts : DataFrame
        ``nnlab.report.tables.outcome_counts``: ``lr, batch_size, <outcome>..., total``
        and optionally ``not_learning``.

    Returns
    -------
    (counts, colors)
        The adjusted copy, and ``{stack name: colour}`` in stacking order (bottom first), only
        for the stacks with at least one run.
    """
    counts = counts.copy()
    colors = dict(OUTCOME_COLORS)
    if "not_learning" in counts and counts["not_learning"].sum():
        stuck = counts["not_learning"].to_numpy()
        for o in OK_OUTCOMES:  # take them out of the outcome they are counted in
            if o in counts:
                take = np.minimum(stuck, counts[o].to_numpy())
                counts[o] -= take
                stuck = stuck - take
        counts[NO_LEARNING] = counts["not_learning"]
        colors = {
            **{o: colors[o] for o in OK_OUTCOMES},
            NO_LEARNING: NO_LEARNING_COLOR,
            **{o: c for o, c in colors.items() if o not in OK_OUTCOMES},
        }
    for o in counts.columns:  # outcomes outside the vocabulary (e.g. "running") still show
        if o not in colors and o not in _NOT_OUTCOMES:
            colors[o] = UNKNOWN_OUTCOME_COLOR
    return counts, {o: c for o, c in colors.items() if o in counts and counts[o].sum()}


def _bars_panel(ax, sub: pd.DataFrame, colors: dict, bad_kinds: list, bs: int, data: dict):
    """Draw one batch size's stacked bars (one per lr), numbers on the unusable stacks; record
    each bar segment in ``data["bars"]``."""
    x = np.arange(len(sub))
    bottom = np.zeros(len(sub))
    for o, color in colors.items():
        v = sub[o].to_numpy(dtype=float)
        hatch = "//" if o == NO_LEARNING else None
        ax.bar(
            x, v, bottom=bottom, color=color, label=o, width=0.75, hatch=hatch, edgecolor="white"
        )
        for xi, (vi, b) in enumerate(zip(v, bottom, strict=True)):
            data["bars"].append(
                {"batch_size": int(bs), "lr": float(sub["lr"].iat[xi]), "outcome": o,
                 "count": int(vi), "bottom": float(b), "color": color,
                 "label": str(int(vi)) if vi and o in bad_kinds else None}
            )  # fmt: skip
            if vi and o in bad_kinds:
                ax.text(
                    xi,
                    b + vi / 2,
                    str(int(vi)),
                    ha="center",
                    va="center",
                    color="white" if o != NO_LEARNING else "black",
                    fontsize=9,
                    fontweight="bold",
                )
        bottom += v
    ax.set_xticks(x, [fmt_lr(v) for v in sub["lr"]], rotation=45)


def outcomes(counts: pd.DataFrame) -> plt.Figure:
    """Runs per outcome for each lr (stacked bars), one panel per batch size. Usable runs that
    never improved on their first epoch (column ``not_learning``) get their own hatched part.

    Parameters
    ----------
    counts : DataFrame
        ``nnlab.report.tables.outcome_counts``, one row per (lr, batch_size).

    Returns
    -------
    Figure
        With ``fig.nnlab_data``: ``bars`` (DataFrame, one row per bar segment: ``batch_size,
        lr, outcome, count, bottom, color, label``; ``label`` is the number written on it, or
        None); ``colors`` ``{stack: colour}`` in stacking order; ``title``.
    """
    set_style()
    counts, colors = outcome_stacks(counts)
    present = list(colors)
    bad_kinds = [o for o in present if o not in OK_OUTCOMES]
    bss = sorted(counts["batch_size"].unique())
    fig, axes = plt.subplots(
        1, len(bss), figsize=(3.6 * len(bss) + 2.0, 3.6), sharey=True, squeeze=False
    )
    data = {"bars": []}
    for ax, bs in zip(axes[0], bss, strict=True):
        _bars_panel(ax, counts[counts["batch_size"] == bs].sort_values("lr"), colors, bad_kinds,
                    bs, data)  # fmt: skip
        ax.set_xlabel("learning rate")
        ax.set_title(f"batch size {bs}")
        ax.grid(axis="x", visible=False)
    axes[0][0].set_ylabel("runs (all budgets and seeds)")
    axes[0][0].yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    handles = [
        plt.Rectangle(
            (0, 0), 1, 1, facecolor=c, edgecolor="white", hatch="//" if o == NO_LEARNING else None
        )
        for o, c in colors.items()
    ]
    fig.legend(handles, present, title="outcome", loc="center right", frameon=False)
    n_bad = int(counts[bad_kinds].to_numpy().sum()) if bad_kinds else 0
    what = " or ".join(k.replace(NO_LEARNING, "did not learn") for k in bad_kinds) or "failed"
    title = (
        f"Run outcomes: {n_bad} of {int(counts['total'].sum())} runs {what} (numbers on the bars)"
    )
    fig.suptitle(title, fontsize=12)
    fig.tight_layout(rect=(0, 0, 1 - 1.9 / fig.get_figwidth(), 0.93))
    return attach(fig, bars=pd.DataFrame(data["bars"]), colors=colors, title=title)
