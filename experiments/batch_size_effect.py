"""Batch-size effect at a fixed epoch budget, written on nnlab.analysis.

Same epochs, different batch sizes: a smaller batch makes more optimizer steps per epoch. This
study asks how much of the batch-size effect is just that: it plots val_loss against the epoch
and against the number of optimizer steps, and the seconds per epoch each batch size costs.

    python -m nnlab.run -m +experiment=batch_size_effect
    python experiments/batch_size_effect.py [--experiment batch_size_effect] [--tracking-uri URI]
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import seaborn as sns  # noqa: E402

from nnlab.analysis import load_histories, load_runs  # noqa: E402

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("--experiment", default="batch_size_effect")
ap.add_argument("--tracking-uri", default=None)
ap.add_argument("--out", default="reports/study_batch_size_effect.png")
args = ap.parse_args()

runs = load_runs(args.experiment, args.tracking_uri)
usable = runs[runs["outcome"].isin(["completed", "early_stopped"])]
print(f"{len(runs)} runs, {len(runs) - len(usable)} diverged/failed/killed (left out below)")

# Final val_loss per batch size and lr (median over seeds), and the cost of an epoch.
hist = load_histories(
    args.experiment, ["val_loss", "epoch_time"], args.tracking_uri, runs=runs
).query("run_id in @usable.run_id")
table = usable.pivot_table(index="batch_size", columns="lr", values="final_val_loss",
                           aggfunc="median")  # fmt: skip
secs = hist[hist["metric"] == "epoch_time"].groupby("batch_size")["value"].median()
table["seconds/epoch"] = secs
print("\nmedian final val_loss by batch size (rows) and lr (columns):")
print(table.to_string(float_format="{:.4f}".format))

# Optimizer steps so far = epoch x batches per epoch (train rows from the data params).
n_train = usable["data.n_samples"] * (1 - usable["data.val_fraction"])
steps_per_epoch = (n_train / usable["batch_size"]).map(math.ceil)
val = hist[hist["metric"] == "val_loss"].merge(
    usable[["run_id"]].assign(steps_per_epoch=steps_per_epoch.to_numpy()), on="run_id"
)
val["steps"] = val["epoch"] * val["steps_per_epoch"]

sns.set_theme(style="whitegrid")
fig, axes = plt.subplots(2, val["lr"].nunique(), figsize=(4.2 * val["lr"].nunique(), 7),
                         sharey=True, squeeze=False)  # fmt: skip
for col, (lr, grp) in enumerate(val.groupby("lr")):
    for row, x in enumerate(("epoch", "steps")):
        ax = axes[row][col]
        sns.lineplot(data=grp, x=x, y="value", hue="batch_size", palette="viridis",
                     hue_norm=matplotlib.colors.LogNorm(), estimator="median",
                     errorbar=("ci", 95), n_boot=2000, seed=0, ax=ax,
                     legend=(row == 0 and col == 0))  # fmt: skip
        ax.set(yscale="log", xscale="log" if x == "steps" else "linear", ylabel="val_loss",
               xlabel="epoch" if x == "epoch" else "optimizer steps", title=f"lr={lr:g}")  # fmt: skip
        ax.yaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1, 1.5, 2, 3, 5, 7)))
        ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%.2g"))
        ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
handles, labels = axes[0][0].get_legend_handles_labels()
axes[0][0].get_legend().remove()
fig.legend(handles, labels, title="batch size", loc="center right", frameon=False)
fig.suptitle("Batch-size effect: val_loss per epoch (top) and per optimizer step (bottom)")
fig.tight_layout(rect=(0, 0, 0.9, 1))
Path(args.out).parent.mkdir(parents=True, exist_ok=True)
fig.savefig(args.out, dpi=100, bbox_inches="tight")
print(f"\nfigure: {args.out}")
