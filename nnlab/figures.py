"""The report's figures: one function per figure, frames in, matplotlib Figure out.

Every function takes the tidy frames of ``nnlab.analysis`` / ``nnlab.report_tables`` and returns
a Figure; ``nnlab.report`` saves them. Conventions: learning rate is ordered, so it gets an
ordered colour-blind-safe map (viridis, without its pale yellow end); batch sizes and outcomes get
seaborn's "colorblind" palette; lr axes are logarithmic; runs that diverged or failed are drawn as
crosses, never left out.
"""

from __future__ import annotations

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")  # files only; never needs a display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.colors import LogNorm, Normalize  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from nnlab.report_tables import fmt_lr, longest_budget_runs  # noqa: E402
from nnlab.tracking.schema import OK_OUTCOMES  # noqa: E402

BAD_COLOR = "#d55e00"  # colorblind palette's vermilion: diverged / failed marks
OUTCOME_COLORS = {
    "completed": "#0072b2",
    "early_stopped": "#56b4e9",
    "diverged": "#d55e00",
    "failed": "#000000",
    "killed": "#999999",
}


def lr_palette(lrs) -> dict[float, tuple]:
    """Ordered colours for the sorted learning rates (dark = small, yellow-green = large)."""
    lrs = sorted(set(float(x) for x in lrs))
    cmap = plt.get_cmap("viridis")
    pos = np.linspace(0.0, 0.85, len(lrs)) if len(lrs) > 1 else [0.4]
    return {lr: cmap(p) for lr, p in zip(lrs, pos, strict=True)}


def bs_palette(batch_sizes) -> dict[int, tuple]:
    bss = sorted(set(int(b) for b in batch_sizes))
    return dict(zip(bss, sns.color_palette("colorblind", len(bss)), strict=True))


def _style() -> None:
    sns.set_theme(style="whitegrid", context="notebook", font_scale=0.95)


def _use_log(values: np.ndarray) -> bool:
    v = values[np.isfinite(values)]
    return bool(len(v)) and v.min() > 0 and v.max() / v.min() > 5


def _log_ticks(axis) -> None:
    """Readable ticks on a log axis spanning less than a few decades: 0.1, 0.2, 0.3, 0.5, 1..."""
    axis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 3.0, 5.0)))
    axis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%.3g"))
    axis.set_minor_formatter(matplotlib.ticker.NullFormatter())


def _lr_legend(fig, palette, title="learning rate", loc="center right") -> None:
    handles = [Line2D([], [], color=c, lw=3, label=fmt_lr(lr)) for lr, c in palette.items()]
    fig.legend(handles=handles, title=title, loc=loc, frameon=False)


# ------------------------------------------------------------------------- 1 learning curves


def learning_curves(
    runs: pd.DataFrame,
    hist: pd.DataFrame,
    metric: str,
    target: float | None = None,
    stuck: pd.Series | None = None,
) -> plt.Figure:
    """Median ``metric`` per epoch by lr (line) with the min-max band over seeds, one panel per
    batch size, from the longest-budget runs. Diverged/failed runs end in a cross at their last
    logged epoch; runs that never learned (``stuck``, aligned with ``runs``) are left out of the
    lines and counted in a note on their panel, so they do not flatten the scale."""
    _style()
    longest = longest_budget_runs(runs)
    stuck_ids = set(runs.loc[stuck.to_numpy(), "run_id"]) if stuck is not None else set()
    h = hist[(hist["metric"] == metric) & hist["run_id"].isin(longest["run_id"])].copy()
    h_stuck = h[h["run_id"].isin(stuck_ids)]
    h = h[~h["run_id"].isin(stuck_ids)]
    ok = h["outcome"].isin(OK_OUTCOMES)
    finite = h.loc[ok & np.isfinite(h["value"]), "value"].to_numpy()
    if len(finite) == 0:
        finite = h.loc[np.isfinite(h["value"]), "value"].to_numpy()
    top = float(np.quantile(finite, 0.995)) * 1.6 if len(finite) else 1.0
    log = _use_log(finite)
    bottom = float(finite[finite > 0].min()) * 0.8 if log else None
    h["shown"] = h["value"].where(np.isfinite(h["value"]), top).clip(upper=top)

    bss = sorted(longest["batch_size"].unique())
    pal = lr_palette(longest["lr"].unique())
    fig, axes = plt.subplots(
        1, len(bss), figsize=(4.6 * len(bss) + 1.6, 4.3), sharey=True, squeeze=False
    )
    for ax, bs in zip(axes[0], bss, strict=True):
        sub = h[h["batch_size"] == bs]
        for lr, grp in sub.groupby("lr"):
            stats = grp.groupby("epoch")["shown"].agg(["median", "min", "max"])
            ax.plot(stats.index, stats["median"], color=pal[lr], lw=2)
            ax.fill_between(stats.index, stats["min"], stats["max"], color=pal[lr], alpha=0.15)
            bad = grp[~grp["outcome"].isin(OK_OUTCOMES)]
            ends = bad.loc[bad.groupby("run_id")["epoch"].idxmax()] if len(bad) else bad
            ax.scatter(
                ends["epoch"],
                ends["shown"],
                marker="X",
                s=70,
                color=BAD_COLOR,
                edgecolor="white",
                linewidth=0.6,
                zorder=5,
            )
        if target is not None and np.isfinite(target):
            ax.axhline(target, color="0.3", ls="--", lw=1)
        notes = []
        n_bad = int(sub.loc[~sub["outcome"].isin(OK_OUTCOMES), "run_id"].nunique())
        if n_bad:
            notes.append(f"✕ {n_bad} runs diverged/failed")
        st = h_stuck[h_stuck["batch_size"] == bs]
        for lr, grp in st.groupby("lr"):
            last = grp.sort_values("epoch").groupby("run_id")["value"].last().median()
            notes.append(
                f"lr={fmt_lr(lr)}: {grp['run_id'].nunique()} runs did not learn "
                f"({metric} ≈ {last:.3g}, off scale)"
            )
        if notes:
            ax.text(
                0.98,
                0.97,
                "\n".join(notes),
                transform=ax.transAxes,
                ha="right",
                va="top",
                fontsize=8,
                color="0.2",
                bbox={"facecolor": "white", "alpha": 0.85, "edgecolor": "0.8"},
            )
        ax.set_title(f"batch size {bs}")
        ax.set_xlabel("epoch")
        if log:
            ax.set_yscale("log")
            _log_ticks(ax.yaxis)
        ax.set_ylim(bottom, top * 1.05)
    axes[0][0].set_ylabel(f"{metric} (median; band = range over seeds)")
    _lr_legend(fig, pal)
    extra = [Line2D([], [], color="0.3", ls="--", label="target")] if target is not None else []
    extra.append(Line2D([], [], marker="X", color=BAD_COLOR, ls="", ms=8, label="diverged/failed"))
    fig.legend(handles=extra, loc="lower right", frameon=False)
    fig.suptitle(
        f"Learning curves: how fast each learning rate brings {metric} down, and where it "
        "levels off",
        fontsize=12,
    )
    fig.tight_layout(rect=(0, 0, 1 - 1.5 / fig.get_figwidth(), 0.95))
    return fig


# ------------------------------------------------------------------------------ 2 heatmap


def budget_heatmap(budget: pd.DataFrame, metric: str) -> plt.Figure:
    """Median final ``metric`` per lr (rows) x epoch budget (columns), one panel per batch size,
    a shared colour scale, the best lr of each budget boxed. Cells where most seeds diverged or
    failed, or never learned, are grey and labelled (and kept off the colour scale)."""
    _style()
    bss = sorted(budget["batch_size"].unique())
    budget = budget.assign(
        grey=~np.isfinite(budget["median_final"]) | (budget["not_learning"] * 2 > budget["runs"])
    )
    fin = budget.loc[~budget["grey"], "median_final"].to_numpy(dtype=float)
    if len(fin):
        norm = LogNorm(fin.min(), fin.max()) if _use_log(fin) else Normalize(fin.min(), fin.max())
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
    for ax, bs in zip(axes[0], bss, strict=True):
        sub = budget[budget["batch_size"] == bs]
        piv = {
            c: sub.pivot(index="lr", columns="epochs", values=c).sort_index()
            for c in ("median_final", "not_usable", "not_learning", "runs", "grey")
        }
        arr = piv["median_final"].to_numpy(dtype=float)
        grey = piv["grey"].fillna(True).to_numpy(dtype=bool)
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
                if not np.isfinite(v):
                    text, color = f"diverged\n{nb}/{int(nt)}", BAD_COLOR
                elif grey[i, j]:
                    text, color = f"no learning\n{v:.3g}", "0.25"
                else:
                    text = f"{v:.3f}"
                    r, g, b, _ = cmap(norm(v))
                    color = "white" if 0.299 * r + 0.587 * g + 0.114 * b < 0.5 else "black"
                    if nb or ns:
                        text += f"\n{nb + ns}/{int(nt)} ✕"
                ax.text(j + 0.5, i + 0.5, text, ha="center", va="center", fontsize=8, color=color)
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
        ax.set_xticks(np.arange(arr.shape[1]) + 0.5, [str(c) for c in piv["runs"].columns])
        ax.set_yticks(np.arange(arr.shape[0]) + 0.5, [fmt_lr(x) for x in piv["runs"].index])
        ax.set_xlabel("epoch budget")
        if ax is axes[0][0]:
            ax.set_ylabel("learning rate")
        ax.set_title(f"batch size {bs}")
        ax.grid(False)
    cbar = fig.colorbar(
        mesh, ax=axes[0].tolist(), label=f"final {metric} (median of seeds)", shrink=0.9, pad=0.02
    )
    if len(fin):  # a few labelled ticks: a LogNorm over less than a decade shows none
        ticks = np.unique(np.round(np.geomspace(fin.min(), fin.max(), 6), 3))
        cbar.set_ticks(ticks, labels=[f"{t:.3g}" for t in ticks])
        cbar.ax.minorticks_off()
    fig.suptitle(
        f"Final {metric} by learning rate and epoch budget (yellow = lower; box = best lr of "
        "each budget)",
        fontsize=12,
    )
    return fig


# ------------------------------------------------------------------------ 3 speed vs quality


def speed_quality(lr_batch: pd.DataFrame, metric: str, target: float) -> plt.Figure:
    """Epochs to reach the target (x) against best ``metric`` (y): one point per (lr, batch size),
    coloured by lr, marker by batch size. Settings that never reached the target sit in a "not
    reached" column on the right; those whose runs mostly diverged, failed or never learned in a
    row at the top."""
    _style()
    fig, ax = plt.subplots(figsize=(8.2, 5.2))
    pal = lr_palette(lr_batch["lr"])
    markers = dict(zip(sorted(lr_batch["batch_size"].unique()), "osD^vP*", strict=False))
    fin_x = lr_batch["median_epochs_to_target"].replace(np.inf, np.nan)
    max_x = float(np.nanmax(fin_x)) if fin_x.notna().any() else 1.0
    budget = float(lr_batch["epochs_budget"].max())
    nr_x = max(max_x, budget) * 1.35  # the "not reached" column
    # Settings whose runs mostly diverged, failed or never learned go to a row at the top.
    off = ~np.isfinite(lr_batch["median_best"])
    if "not_learning" in lr_batch:
        off |= lr_batch["not_learning"] * 2 > lr_batch["runs"]
    lr_batch = lr_batch.assign(median_best=lr_batch["median_best"].where(~off, np.inf))
    yv = lr_batch["median_best"].to_numpy(dtype=float)
    fy = yv[np.isfinite(yv)]
    y_bad = float(fy.max()) * 1.5 if len(fy) else 1.0
    for k, (bs, grp) in enumerate(lr_batch.groupby("batch_size")):
        grp = grp.sort_values("lr")
        shift = 1 + 0.07 * (k - (len(markers) - 1) / 2)  # side by side in the column
        x = grp["median_epochs_to_target"].replace(np.inf, nr_x * shift).to_numpy(dtype=float)
        y = grp["median_best"].replace(np.inf, y_bad).to_numpy(dtype=float)
        for xi, yi, lr, reached, usable_y in zip(
            x,
            y,
            grp["lr"],
            np.isfinite(grp["median_epochs_to_target"]),
            np.isfinite(grp["median_best"]),
            strict=True,
        ):
            if not usable_y:
                ax.scatter(
                    xi,
                    yi,
                    marker="X",
                    s=90,
                    color=pal[lr],
                    edgecolor=BAD_COLOR,
                    linewidth=1.2,
                    zorder=3,
                )
                continue
            ax.scatter(
                xi,
                yi,
                marker=markers[bs],
                s=70,
                zorder=3,
                facecolor=pal[lr] if reached else "white",
                edgecolor=pal[lr],
                linewidth=2,
            )
    if (~np.isfinite(yv)).any():
        ax.axhline(y_bad / 1.2, color="0.6", lw=0.8)
        ax.text(
            nr_x * 1.2,
            y_bad * 1.02,
            "diverged / failed / no learning ",
            ha="right",
            va="bottom",
            fontsize=8,
            color="0.35",
        )
    ax.axvline(budget, color="0.5", ls=":", lw=1)
    ax.text(
        budget,
        0.01,
        f"budget {budget:g} ",
        transform=ax.get_xaxis_transform(),
        va="bottom",
        ha="right",
        fontsize=8,
        color="0.4",
    )
    ax.set_xscale("log")
    min_x = float(np.nanmin(fin_x)) if fin_x.notna().any() else 1.0
    ax.set_xlim(max(0.7, min_x / 1.6), nr_x * 1.25)
    ticks = [
        t
        for t in [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000]
        if min_x / 1.6 <= t <= max(max_x, budget)
    ]
    ax.set_xticks([*ticks, nr_x], [*map(str, ticks), "not\nreached"])
    ax.minorticks_off()
    if _use_log(fy):
        ax.set_yscale("log")
        _log_ticks(ax.yaxis)
    ax.set_xlabel(f"epochs to reach {metric} ≤ {target:.3f} (median of seeds; fewer = faster)")
    ax.set_ylabel(f"best {metric} reached (median of seeds; lower = more accurate)")
    handles = [
        Line2D([], [], color=c, marker="o", ls="", ms=8, label=fmt_lr(lr)) for lr, c in pal.items()
    ]
    leg1 = ax.legend(
        handles=handles,
        title="learning rate",
        loc="upper left",
        bbox_to_anchor=(1.01, 1),
        frameon=False,
    )
    ax.add_artist(leg1)
    bs_h = [
        Line2D([], [], color="0.3", marker=m, ls="", ms=8, label=str(b)) for b, m in markers.items()
    ]
    bs_h += [
        Line2D([], [], color="0.3", marker="o", mfc="white", ls="", ms=8, label="never reached"),
        Line2D(
            [],
            [],
            color="0.6",
            mec=BAD_COLOR,
            marker="X",
            ls="",
            ms=8,
            label="diverged/failed/\nno learning (top)",
        ),
    ]
    ax.legend(
        handles=bs_h, title="batch size", loc="lower left", bbox_to_anchor=(1.01, 0), frameon=False
    )
    ax.set_title("Speed vs quality per learning rate: lower left is fast and accurate")
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------- 4 best lr per budget


def best_lr(best: pd.DataFrame, lrs) -> plt.Figure:
    """The lr with the lowest median final metric for each epoch budget (its own trials), one
    line per batch size."""
    _style()
    fig, ax = plt.subplots(figsize=(7.6, 4.6))
    pal = bs_palette(best["batch_size"].unique())
    n = len(pal)
    for k, (bs, c) in enumerate(pal.items()):
        b = best[best["batch_size"] == bs].sort_values("epochs")
        nudge = 1 + 0.04 * (k - (n - 1) / 2)  # keep coinciding points of batch sizes apart
        ax.plot(
            b["epochs"] * nudge, b["best_lr"], "o-", color=c, ms=9, lw=2, label=f"{bs}", alpha=0.9
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    lrs = sorted(lrs)  # only lrs with a usable result: a diverged-only lr cannot be best
    ax.set_yticks(lrs, [fmt_lr(x) for x in lrs])
    ax.minorticks_off()
    ax.set_ylim(lrs[0] / 2, lrs[-1] * 2)
    budgets = sorted(best["epochs"].unique())
    ax.set_xticks(budgets, [str(b) for b in budgets])
    ax.set_xlim(budgets[0] / 1.5, budgets[-1] * 1.5)
    ax.set_xlabel("epoch budget (its own trials)")
    ax.set_ylabel("best learning rate (lowest median final loss)")
    ax.legend(title="batch size", frameon=False, loc="center left", bbox_to_anchor=(1.01, 0.5))
    first = best[best["epochs"] == best["epochs"].min()]["best_lr"]
    last = best[best["epochs"] == best["epochs"].max()]["best_lr"]
    if len(first) and len(last) and np.median(first) > np.median(last):
        say = "here short budgets favour larger lrs"
    elif len(first) and len(last) and np.median(first) < np.median(last):
        say = "here short budgets favour smaller lrs"
    else:
        say = "here the best lr hardly moves with the budget"
    ax.set_title(f"Best learning rate for each epoch budget: {say}")
    fig.tight_layout()
    return fig


# -------------------------------------------------------------------- 5 batch-size effect


def batch_size_effect(
    runs: pd.DataFrame, metric: str, stuck: pd.Series | None = None
) -> plt.Figure:
    """Final ``metric`` against lr at the largest epoch budget, one line per batch size (median,
    band = range over seeds); runs that diverged, failed or never learned (``stuck``, aligned
    with ``runs``) as crosses at the top instead of stretching the scale."""
    _style()
    stuck = pd.Series(False, index=runs.index) if stuck is None else stuck
    longest = runs[(runs["epochs"] == runs["epochs"].max()).to_numpy()].copy()
    stuck = stuck[(runs["epochs"] == runs["epochs"].max()).to_numpy()].to_numpy()
    col = f"final_{metric}"
    ok = longest["outcome"].isin(OK_OUTCOMES) & np.isfinite(longest[col]) & ~stuck
    fin = longest.loc[ok, col].to_numpy(dtype=float)
    top = float(fin.max()) * 1.4 if len(fin) else 1.0
    fig, ax = plt.subplots(figsize=(7.6, 4.6))
    pal = bs_palette(longest["batch_size"])
    for bs, c in pal.items():
        g = longest[(longest["batch_size"] == bs) & ok].groupby("lr")[col]
        stats = g.agg(["median", "min", "max"])
        ax.plot(stats.index, stats["median"], "o-", color=c, lw=2, label=str(bs))
        ax.fill_between(stats.index, stats["min"], stats["max"], color=c, alpha=0.18)
        bad = longest[(longest["batch_size"] == bs) & ~ok]
        if len(bad):
            jitter = 1 + 0.08 * (list(pal).index(bs) - (len(pal) - 1) / 2)
            ax.scatter(
                bad["lr"] * jitter,
                np.full(len(bad), top),
                marker="X",
                s=70,
                color=c,
                edgecolor=BAD_COLOR,
                linewidth=1.2,
                zorder=4,
            )
    ax.set_xscale("log")
    if _use_log(fin):
        ax.set_yscale("log")
        _log_ticks(ax.yaxis)
    lrs = sorted(longest["lr"].unique())
    ax.set_xticks(lrs, [fmt_lr(x) for x in lrs], rotation=45)
    ax.minorticks_off()
    ax.set_xlabel("learning rate")
    ax.set_ylabel(f"final {metric} after {int(longest['epochs'].max())} epochs")
    handles, labels = ax.get_legend_handles_labels()
    handles.append(Line2D([], [], marker="X", color="0.4", mec=BAD_COLOR, ls="", ms=8))
    labels.append("diverged/failed/\nno learning (top)")
    ax.legend(
        handles,
        labels,
        title="batch size",
        frameon=False,
        loc="center left",
        bbox_to_anchor=(1.01, 0.5),
    )
    ax.set_title(
        f"Batch-size effect: final {metric} against lr for each batch size (lower is better)",
        fontsize=11,
    )
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- 6 outcomes


def outcomes(counts: pd.DataFrame) -> plt.Figure:
    """Runs per outcome for each lr (stacked bars), one panel per batch size. Usable runs that
    never improved on their first epoch (column ``not_learning``) get their own hatched part."""
    _style()
    counts = counts.copy()
    colors = dict(OUTCOME_COLORS)
    if "not_learning" in counts and counts["not_learning"].sum():
        stuck = counts["not_learning"].to_numpy()
        for o in OK_OUTCOMES:  # take them out of the outcome they are counted in
            if o in counts:
                take = np.minimum(stuck, counts[o].to_numpy())
                counts[o] -= take
                stuck = stuck - take
        counts["no learning"] = counts["not_learning"]
        colors = {
            **{o: colors[o] for o in OK_OUTCOMES},
            "no learning": "#e69f00",
            **{o: c for o, c in colors.items() if o not in OK_OUTCOMES},
        }
    for o in counts.columns:  # outcomes outside the vocabulary (e.g. "running") still show
        if o not in colors and o not in ("lr", "batch_size", "total", "not_learning"):
            colors[o] = "#bbbbbb"
    present = [o for o in colors if o in counts and counts[o].sum()]
    bad_kinds = [o for o in present if o not in OK_OUTCOMES]
    bss = sorted(counts["batch_size"].unique())
    fig, axes = plt.subplots(
        1, len(bss), figsize=(3.6 * len(bss) + 2.0, 3.6), sharey=True, squeeze=False
    )
    for ax, bs in zip(axes[0], bss, strict=True):
        sub = counts[counts["batch_size"] == bs].sort_values("lr")
        x = np.arange(len(sub))
        bottom = np.zeros(len(sub))
        for o in present:
            v = sub[o].to_numpy(dtype=float)
            ax.bar(
                x,
                v,
                bottom=bottom,
                color=colors[o],
                label=o,
                width=0.75,
                hatch="//" if o == "no learning" else None,
                edgecolor="white",
            )
            for xi, (vi, b) in enumerate(zip(v, bottom, strict=True)):
                if vi and o in bad_kinds:
                    ax.text(
                        xi,
                        b + vi / 2,
                        str(int(vi)),
                        ha="center",
                        va="center",
                        color="white" if o != "no learning" else "black",
                        fontsize=9,
                        fontweight="bold",
                    )
            bottom += v
        ax.set_xticks(x, [fmt_lr(v) for v in sub["lr"]], rotation=45)
        ax.set_xlabel("learning rate")
        ax.set_title(f"batch size {bs}")
        ax.grid(axis="x", visible=False)
    axes[0][0].set_ylabel("runs (all budgets and seeds)")
    axes[0][0].yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    handles = [
        plt.Rectangle(
            (0, 0),
            1,
            1,
            facecolor=colors[o],
            edgecolor="white",
            hatch="//" if o == "no learning" else None,
        )
        for o in present
    ]
    fig.legend(handles, present, title="outcome", loc="center right", frameon=False)
    n_bad = int(counts[bad_kinds].to_numpy().sum()) if bad_kinds else 0
    what = " or ".join(k.replace("no learning", "did not learn") for k in bad_kinds) or "failed"
    fig.suptitle(
        f"Run outcomes: {n_bad} of {int(counts['total'].sum())} runs {what} (numbers on the bars)",
        fontsize=12,
    )
    fig.tight_layout(rect=(0, 0, 1 - 1.9 / fig.get_figwidth(), 0.93))
    return fig


# ------------------------------------------------------------------ 7 decision boundaries


def decision_boundaries(panels: list[dict]) -> plt.Figure:
    """Predicted probability of class 1 over the input plane for a few runs, with the validation
    points. Each panel dict: ``title``, ``model``, ``x (M, 2)``, ``y (M,)``."""
    _style()
    fig, axes = plt.subplots(1, len(panels), figsize=(3.7 * len(panels), 3.9), squeeze=False)
    for ax, p in zip(axes[0], panels, strict=True):
        x, y = p["x"], p["y"]
        pad = 0.5
        gx, gy = np.meshgrid(
            np.linspace(x[:, 0].min() - pad, x[:, 0].max() + pad, 200),
            np.linspace(x[:, 1].min() - pad, x[:, 1].max() + pad, 200),
        )
        grid = np.c_[gx.ravel(), gy.ravel()].astype(np.float32)
        out = np.asarray(p["model"].predict(grid), dtype=float)
        prob = out[:, -1] if out.ndim == 2 and out.shape[1] <= 2 else out.reshape(-1)
        if out.ndim == 2 and out.shape[1] > 2:
            prob = out.argmax(axis=1) / (out.shape[1] - 1)
        if np.isnan(prob).all():
            ax.text(
                0.5,
                0.5,
                "no prediction\n(weights are not finite)",
                ha="center",
                va="center",
                transform=ax.transAxes,
                color=BAD_COLOR,
                fontsize=10,
            )
        prob = np.nan_to_num(prob, nan=0.5).reshape(gx.shape)
        filled = ax.contourf(
            gx, gy, prob, levels=np.linspace(0, 1, 11), cmap="PuOr", alpha=0.6, vmin=0, vmax=1
        )
        ax.contour(gx, gy, prob, levels=[0.5], colors="k", linewidths=1.4)
        # White circles and black triangles stay visible on either background colour.
        for cls, marker, face in ((0, "o", "white"), (1, "^", "black")):
            m = y == cls
            ax.scatter(
                x[m, 0],
                x[m, 1],
                s=16,
                marker=marker,
                facecolor=face,
                edgecolor="black",
                linewidth=0.6,
                label=f"class {cls}",
            )
        ax.set_title(p["title"], fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0][0].legend(loc="lower left", fontsize=8, frameon=True)
    fig.suptitle(
        "Decision boundaries (validation points): how well each lr separates the classes",
        fontsize=12,
    )
    fig.tight_layout(rect=(0, 0, 0.93, 0.95))
    cax = fig.add_axes((0.94, 0.12, 0.01, 0.7))
    fig.colorbar(filled, cax=cax, label="P(class 1)")
    return fig
