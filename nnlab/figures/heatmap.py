"""Figure 2, budget heatmap: median final metric per learning rate x epoch budget, best boxed."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import LogNorm, Normalize

from nnlab.figures.style import BAD_COLOR, attach, set_style, use_log
from nnlab.report.tables import fmt_lr

_PIVOTED = ("median_final", "not_usable", "not_learning", "runs", "grey", "bad_outcome")


def _cell_label(v: float, nt: float, nb: int, ns: int, grey: bool, cmap, norm,
                bad: str = "diverged") -> tuple[str, str]:  # fmt: skip
    """Text and text colour of one cell: median ``v`` of ``nt`` runs, ``nb`` unusable (most
    of them ``bad``: diverged, failed, pruned, ...) and ``ns`` not learning; ``grey`` cells are
    off the colour scale."""
    if not np.isfinite(v):
        return f"{bad or 'not usable'}\n{nb}/{int(nt)}", BAD_COLOR
    if grey:
        return f"no learning\n{v:.3g}", "0.25"
    text = f"{v:.3f}"
    r, g, b, _ = cmap(norm(v))
    color = "white" if 0.299 * r + 0.587 * g + 0.114 * b < 0.5 else "black"
    if nb or ns:
        text += f"\n{nb + ns}/{int(nt)} ✕"
    return text, color


def _heatmap_panel(ax, sub: pd.DataFrame, bs: int, cmap, norm, data: dict):
    """Draw one batch size's grid of cells, their labels and the best lr box of each budget on
    ``ax``; record cells and boxes in ``data``. Returns the colour mesh."""
    piv = {c: sub.pivot(index="lr", columns="epochs", values=c).sort_index() for c in _PIVOTED}
    lrs, budgets = piv["runs"].index, piv["runs"].columns
    arr = piv["median_final"].to_numpy(dtype=float)
    # A missing cell (no trial of that lr and budget) counts as grey; no fillna: object dtype.
    grey = piv["grey"].isna().to_numpy() | piv["grey"].to_numpy(dtype=object).astype(bool)
    ax.set_facecolor("0.85")
    mesh = ax.pcolormesh(
        np.ma.masked_array(arr, grey | ~np.isfinite(arr)),
        cmap=cmap,
        norm=norm,
        edgecolors="white",
        linewidth=1,
    )
    coloured = np.where(grey | ~np.isfinite(arr), np.inf, arr)
    for i in range(arr.shape[0]):
        for j in range(arr.shape[1]):
            v, nt = arr[i, j], piv["runs"].iat[i, j]
            if np.isnan(nt):
                continue
            nb, ns = int(piv["not_usable"].iat[i, j]), int(piv["not_learning"].iat[i, j])
            bad = piv["bad_outcome"].iat[i, j]
            bad = str(bad) if isinstance(bad, str) else "diverged"
            text, color = _cell_label(v, nt, nb, ns, grey[i, j], cmap, norm, bad)
            ax.text(j + 0.5, i + 0.5, text, ha="center", va="center", fontsize=8, color=color)
            data["cells"].append(
                {"batch_size": int(bs), "lr": float(lrs[i]), "epochs": int(budgets[j]),
                 "value": float(v), "grey": bool(grey[i, j]), "text": text, "color": color}
            )  # fmt: skip
    for j in range(arr.shape[1]):  # box the best lr of each budget
        if np.isfinite(coloured[:, j]).any():
            i = int(np.argmin(coloured[:, j]))
            ax.add_patch(
                plt.Rectangle(
                    (j + 0.04, i + 0.04),
                    0.92,
                    0.92,
                    fill=False,
                    edgecolor="black",
                    linewidth=2.2,
                )
            )
            data["boxed"].append(
                {"batch_size": int(bs), "epochs": int(budgets[j]), "lr": float(lrs[i])}
            )
    ax.set_xticks(np.arange(arr.shape[1]) + 0.5, [str(c) for c in budgets])
    ax.set_yticks(np.arange(arr.shape[0]) + 0.5, [fmt_lr(x) for x in lrs])
    return mesh


def budget_heatmap(budget: pd.DataFrame, metric: str) -> plt.Figure:
    """Median final ``metric`` per lr (rows) x epoch budget (columns), one panel per batch size,
    a shared colour scale, the best lr of each budget boxed. Cells where most seeds diverged or
    failed, or never learned, are grey and labelled with their most common outcome (and kept off
    the colour scale).

    Parameters
    ----------
    budget : DataFrame
        ``nnlab.report.tables.final_by_budget``: one row per (batch_size, lr, epochs).
    metric : str
        Name shown on the colour bar.

    Returns
    -------
    Figure
        With ``fig.nnlab_data``: ``boxed`` list of ``{"batch_size", "epochs", "lr"}`` (the
        boxed cell of each budget); ``cells`` list of ``{"batch_size", "lr", "epochs", "value",
        "grey", "text", "color"}``; ``norm`` ``(vmin, vmax)`` of the colour scale; ``log``
        (bool, log colour scale); ``ticks`` (colour bar ticks).
    """
    set_style()
    bss = sorted(budget["batch_size"].unique())
    budget = budget.assign(
        grey=~np.isfinite(budget["median_final"]) | (budget["not_learning"] * 2 > budget["runs"])
    )
    if "bad_outcome" not in budget:  # a table from before the column existed
        budget = budget.assign(bad_outcome="diverged")
    fin = budget.loc[~budget["grey"], "median_final"].to_numpy(dtype=float)
    if len(fin):
        norm = LogNorm(fin.min(), fin.max()) if use_log(fin) else Normalize(fin.min(), fin.max())
    else:
        norm = Normalize(0, 1)
    cmap = plt.get_cmap("viridis_r")
    n_ep, n_lr = budget["epochs"].nunique(), budget["lr"].nunique()
    fig, axes = plt.subplots(
        1,
        len(bss),
        figsize=(2.6 + 1.05 * n_ep * len(bss), 0.5 * n_lr + 2.2),
        squeeze=False,
        sharey=True,
    )
    data = {"cells": [], "boxed": []}
    for ax, bs in zip(axes[0], bss, strict=True):
        mesh = _heatmap_panel(ax, budget[budget["batch_size"] == bs], bs, cmap, norm, data)
        ax.set_xlabel("epoch budget")
        if ax is axes[0][0]:
            ax.set_ylabel("learning rate")
        ax.set_title(f"batch size {bs}")
        ax.grid(False)
    cbar = fig.colorbar(
        mesh, ax=axes[0].tolist(), label=f"final {metric} (median of seeds)", shrink=0.9, pad=0.02
    )
    ticks = np.array([])
    if len(fin):  # a few labelled ticks: a LogNorm over less than a decade shows none
        ticks = np.unique(np.round(np.geomspace(fin.min(), fin.max(), 6), 3))
        cbar.set_ticks(ticks, labels=[f"{t:.3g}" for t in ticks])
        cbar.ax.minorticks_off()
    fig.suptitle(
        f"Final {metric} by learning rate and epoch budget (yellow = lower; box = best lr of "
        "each budget)",
        fontsize=12,
    )
    return attach(
        fig, **data, norm=(norm.vmin, norm.vmax), log=isinstance(norm, LogNorm), ticks=ticks
    )
