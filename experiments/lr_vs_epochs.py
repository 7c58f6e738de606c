"""The learning-rate vs epochs study, written directly on nnlab.analysis.

An example of writing your own study: two frames from MLflow, a few lines of pandas, one
seaborn figure. (``python -m nnlab.report`` does the full version of this study.)

    python -m nnlab.run -m +experiment=lr_vs_epochs report.enabled=false
    python experiments/lr_vs_epochs.py [--experiment lr_vs_epochs] [--tracking-uri URI]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402

from nnlab.analysis import load_histories, load_runs  # noqa: E402

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("--experiment", default="lr_vs_epochs")
ap.add_argument("--tracking-uri", default=None)
ap.add_argument("--out", default="reports/study_lr_vs_epochs.png")
args = ap.parse_args()

runs = load_runs(args.experiment, args.tracking_uri)  # one row per trial, typed params
usable = runs[runs["outcome"].isin(["completed", "early_stopped"])]
print(f"{len(runs)} runs, {len(runs) - len(usable)} diverged/failed/killed (left out below)")

# 1. Which lr is best for each epoch budget? Median over seeds of each trial's final val_loss.
final = usable.groupby(["batch_size", "epochs", "lr"])["final_val_loss"].median()
best = final.groupby(["batch_size", "epochs"]).idxmin().map(lambda key: key[2])
print("\nbest lr per (batch size, epoch budget):\n" + best.unstack("epochs").to_string())

# 2. Speed and quality per lr, from the per-epoch histories of the longest runs.
hist = load_histories(args.experiment, ["val_loss"], args.tracking_uri, runs=runs)
longest = hist[(hist["epochs"] == hist["epochs"].max()) & hist["run_id"].isin(usable["run_id"])]
per_run = longest.groupby(["lr", "run_id"])["value"].agg(best="min")
target = 1.25 * per_run["best"].groupby("lr").median().min()
reached = longest[longest["value"] <= target].groupby(["lr", "run_id"])["epoch"].min()
per_run["epochs_to_target"] = reached  # NaN: never reached within the budget
summary = per_run.groupby("lr").agg(
    best_val_loss=("best", "median"),
    epochs_to_target=("epochs_to_target", "median"),
    runs_reaching=("epochs_to_target", "count"),
)
print(f"\nper lr (target val_loss <= {target:.3f}; epochs: median over the runs reaching it):")
print(summary.to_string(float_format="{:.4g}".format))

# 3. One figure: median final val_loss against the epoch budget, one line per lr; the band is
# the 95% percentile bootstrap interval of the median (seaborn resamples the seeds of each point).
sns.set_theme(style="whitegrid")
grid = sns.relplot(
    data=usable, x="epochs", y="final_val_loss", hue="lr", col="batch_size", kind="line",
    estimator="median", errorbar=("ci", 95), n_boot=2000, seed=0, marker="o", palette="viridis",
    hue_norm=matplotlib.colors.LogNorm(), height=3.4, aspect=1.1,
)  # fmt: skip
grid.set(xscale="log", yscale="log", xlabel="epoch budget", ylabel="final val_loss")
grid.figure.suptitle("Final val_loss vs epoch budget, one line per learning rate", y=1.03)
Path(args.out).parent.mkdir(parents=True, exist_ok=True)
grid.savefig(args.out, dpi=100, bbox_inches="tight")
plt.close("all")
print(f"\nfigure: {args.out}")
