"""nnlab.analysis + nnlab.report on a REAL small sweep: the Hydra CLI trains and tracks 32 trials
into a temp sqlite store (one run of the module-scoped fixture, ~15 s), then the frames, the
report files, the findings and the error paths are checked against it."""

from __future__ import annotations

import json
import re

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
from bootstrap_reference import MIN_SEEDS, gap_interval, median_interval, medians
from helpers import cli

from nnlab.analysis import load_histories, load_runs
from nnlab.report import build_report
from nnlab.report.flagship import FIGURES

EXPERIMENT = "small"
# 1e30 overflows at once: those trials must end diverged. 1e3 saturates the network at the first
# steps; its loss stays finite, so those trials complete without learning, and must say so.
LRS = (1e-3, 3e-2, 1e3, 1e30)
BATCH_SIZES = (16, 64)
EPOCHS = (3, 6)
SEEDS = (0, 1)
N_TRIALS = len(LRS) * len(BATCH_SIZES) * len(EPOCHS) * len(SEEDS)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> dict:
    """32 real trials: 4 lrs x 2 batch sizes x 2 epoch budgets x 2 seeds on 120 moons samples."""
    tmp = tmp_path_factory.mktemp("sweep")
    proc = cli(
        tmp,
        "-m",
        f"lr={','.join(map(str, LRS))}",
        f"batch_size={','.join(map(str, BATCH_SIZES))}",
        f"epochs={','.join(map(str, EPOCHS))}",
        f"seed={','.join(map(str, SEEDS))}",
        "data.n_samples=120",
        f"experiment_name={EXPERIMENT}",
        f"hydra.sweep.dir={tmp / 'multirun'}",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    out = tmp / "report"
    index = build_report(EXPERIMENT, out, metric="val_loss", tracking_uri=uri, progress=None)
    return {"dir": tmp, "uri": uri, "out": out, "index": index}


@pytest.fixture(scope="module")
def runs(sweep) -> pd.DataFrame:
    return load_runs(EXPERIMENT, sweep["uri"])


@pytest.fixture(scope="module")
def hist(sweep, runs) -> pd.DataFrame:
    return load_histories(EXPERIMENT, ("loss", "val_loss"), sweep["uri"])


# ------------------------------------------------------------------------------ frames


def test_runs_frame_has_one_typed_row_per_trial(runs):
    assert len(runs) == N_TRIALS  # the sweep's parent run is not a trial
    assert runs["run_id"].is_unique
    assert runs["lr"].dtype == np.float64
    for col in ("batch_size", "epochs", "seed"):
        assert runs[col].dtype == np.int64, col
    assert set(runs["lr"]) == set(LRS)
    assert set(runs["batch_size"]) == set(BATCH_SIZES)
    assert set(runs["epochs"]) == set(EPOCHS)
    # every combination exactly once
    assert not runs.duplicated(["lr", "batch_size", "epochs", "seed"]).any()
    for col in ("final_loss", "final_val_loss", "final_accuracy", "final_val_accuracy"):
        assert runs[col].dtype == np.float64, col
    assert runs["data.noise"].dtype == np.float64  # other numeric params are cast too
    assert runs["data.n_samples"].dtype == np.int64
    assert runs["data.name"].eq("moons").all()
    assert runs["stopped_epoch"].dtype == "Int64"


def test_absurd_lr_runs_are_diverged_and_the_rest_are_not(runs):
    absurd = runs["lr"] == 1e30
    assert runs.loc[absurd, "outcome"].eq("diverged").all()
    assert runs.loc[absurd, "stopped_epoch"].notna().all()
    sane = runs["lr"] <= 0.1
    assert runs.loc[sane, "outcome"].isin(["completed", "early_stopped"]).all()


def test_histories_are_long_format_with_one_row_per_logged_epoch(runs, hist):
    assert list(hist.columns) == [
        "run_id", "lr", "batch_size", "epochs", "seed", "outcome", "epoch", "metric", "value"
    ]  # fmt: skip
    assert hist["epoch"].dtype == np.int64 and hist["value"].dtype == np.float64
    assert set(hist["metric"].astype(str)) == {"loss", "val_loss"}
    assert hist["epoch"].min() == 1
    assert not hist.duplicated(["run_id", "metric", "epoch"]).any()
    last = hist.groupby("run_id")["epoch"].max()
    expected = runs.set_index("run_id").apply(
        lambda r: r["stopped_epoch"] if pd.notna(r["stopped_epoch"]) else r["epochs"], axis=1
    )
    pd.testing.assert_series_equal(
        last.sort_index(), expected.loc[last.index].sort_index().astype("int64"), check_names=False
    )
    assert hist["run_id"].nunique() == N_TRIALS
    assert len(hist) == 2 * last.sum()


def test_bulk_histories_equal_the_mlflow_client_read(sweep, runs, hist):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=sweep["uri"])
    for run_id in runs["run_id"].iloc[[0, 7, -1]]:
        for metric in ("loss", "val_loss"):
            ref = sorted((m.step, m.value) for m in client.get_metric_history(run_id, metric))
            got = hist[(hist["run_id"] == run_id) & (hist["metric"] == metric)]
            assert got["epoch"].tolist() == [step for step, _ in ref]
            np.testing.assert_array_equal(got["value"].to_numpy(), [v for _, v in ref])


# ------------------------------------------------------------------------------ report


def test_report_writes_html_every_figure_as_valid_png_and_the_tables(sweep):
    out, index = sweep["out"], sweep["index"]
    assert index == out / "index.html"
    html = index.read_text(encoding="utf-8")
    for key, _ in FIGURES:
        png = out / f"{key}.png"
        assert png.exists(), f"{key}.png missing"
        data = png.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000, key
        img = mpimg.imread(png)
        assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 300, key
        assert img[..., :3].std() > 0.05, f"{key}.png is blank"
        assert f"src='{key}.png'" in html  # referenced relatively, beside the HTML
    for name in ("per_lr", "per_lr_batch", "final_by_budget", "best_lr_per_budget", "outcomes",
                 "curves", "runs"):  # fmt: skip
        table = pd.read_csv(out / f"{name}.csv")
        assert len(table) > 0, name
        assert f"href='{name}.csv'" in html
    assert len(pd.read_csv(out / "runs.csv")) == N_TRIALS


def test_findings_agree_with_the_tables_and_the_raw_histories(sweep, runs, hist):
    out = sweep["out"]
    findings = json.loads((out / "findings.json").read_text())
    per_lr = pd.read_csv(out / "per_lr.csv").set_index("lr")
    target = findings["target"]

    # Recompute epochs-to-target and best val_loss from the raw long histories, independently.
    longest = runs[runs["epochs"] == max(EPOCHS)]
    h = hist[(hist["metric"] == "val_loss") & hist["run_id"].isin(longest["run_id"])]
    ok = longest.set_index("run_id")["outcome"].isin(["completed", "early_stopped"])
    for lr in LRS:
        mine = longest.loc[longest["lr"] == lr, ["run_id", "seed"]].copy()
        ett, best = [], []
        for rid in mine["run_id"]:
            v = h[h["run_id"] == rid].sort_values("epoch")
            hit = v.loc[v["value"] <= target, "epoch"]
            ett.append(float(hit.iloc[0]) if ok[rid] and len(hit) else np.inf)
            best.append(float(v["value"].min()) if ok[rid] else np.inf)
        mine["ett"], mine["best"] = ett, best
        row = per_lr.loc[lr]
        assert row["median_epochs_to_target"] == pytest.approx(np.median(ett))
        assert row["reached_target"] == int(np.isfinite(ett).sum())
        # the median best and its 95% interval: the bootstrap over seeds written out again
        got = (row["median_best"], row["best_lo"], row["best_hi"])
        assert got == pytest.approx(median_interval(mine, "best", sorted(SEEDS)))
        assert row["n_seeds"] == len(SEEDS)

    # The target is 1.25 x the best median-over-seeds best of any (lr, batch size).
    lb = pd.read_csv(out / "per_lr_batch.csv")
    assert target == pytest.approx(1.25 * lb["median_best"][np.isfinite(lb["median_best"])].min())

    # The headline names follow from the table.
    speed = per_lr["median_epochs_to_target"].replace(np.inf, np.nan)
    if speed.notna().any():
        assert findings["fastest_lr"] == pytest.approx(speed.idxmin())
    best_col = per_lr["median_best"].replace(np.inf, np.nan)
    assert findings["most_accurate_lr"] == pytest.approx(best_col.idxmin())
    assert findings["reference_lr"] == 1e-3

    # The HTML states each per-lr number as the table has it.
    html = sweep["index"].read_text(encoding="utf-8")
    for lr, row in per_lr.iterrows():
        e = row["median_epochs_to_target"]
        e_txt = "not reached" if not np.isfinite(e) else f"{e:g}"
        b = row["median_best"]
        b_txt = f"{b:.4f}" if np.isfinite(b) else "n/a (no usable run)"
        pattern = (
            rf"lr={re.escape(f'{lr:g}')}: epochs to target {re.escape(e_txt)} "
            rf".*lowest val_loss reached {re.escape(b_txt)}"
        )
        assert re.search(pattern, html), pattern
    assert findings["verdict"].split(":")[0] in html
    assert "Caution: besides" not in html  # one sweep, one set-up: nothing pooled
    assert "Caution: 2 seeds are too few" in html  # and the intervals decide nothing


def test_diverged_runs_are_counted_located_and_listed(sweep, runs):
    out = sweep["out"]
    n_div = int((runs["outcome"] == "diverged").sum())
    assert n_div >= len(BATCH_SIZES) * len(EPOCHS) * len(SEEDS)  # every lr=1e3 trial
    findings = json.loads((out / "findings.json").read_text())
    assert findings["outcomes"]["diverged"] == n_div
    counts = pd.read_csv(out / "outcomes.csv")
    assert counts["diverged"].sum() == n_div
    absurd = counts[counts["lr"] == 1e30]
    assert (absurd["diverged"] == absurd["total"]).all()
    html = sweep["index"].read_text(encoding="utf-8")
    per_absurd = len(BATCH_SIZES) * len(EPOCHS) * len(SEEDS)
    assert f"lr=1e+30: {per_absurd}/{per_absurd}" in html
    assert f"{n_div} diverged" in html
    # each diverged run is listed by name in the table of unusable runs
    for name in runs.loc[runs["outcome"] == "diverged", "run_name"]:
        assert name in html
    # diverged runs never count as reaching the target or as a best result
    curves = pd.read_csv(out / "curves.csv")
    bad = curves[curves["outcome"] == "diverged"]
    assert np.isinf(bad["best"]).all() and np.isinf(bad["epochs_to_target"]).all()
    per_lr = pd.read_csv(out / "per_lr.csv").set_index("lr")
    assert per_lr.loc[1e30, "reached_target"] == 0


def test_runs_that_never_learned_are_flagged_not_hidden(sweep, runs, hist):
    """lr=1e3 saturates the network: unless the divergence guard calls that diverged, the run
    'completes' but its training loss never drops below its first epoch. The report counts such
    runs from the histories and says where they are."""
    out = sweep["out"]
    loss = hist[hist["metric"] == "loss"].sort_values("epoch")
    first = loss.groupby("run_id")["value"].first()
    later = loss[loss["epoch"] > 1].groupby("run_id")["value"].min()
    ok = runs.set_index("run_id")["outcome"].isin(["completed", "early_stopped"])
    stuck = ok & ~(later < first.reindex(later.index)).reindex(ok.index, fill_value=True)
    findings = json.loads((out / "findings.json").read_text())
    assert findings["not_learning"] == int(stuck.sum())
    # Each lr=1e3 run is shown as diverged (if the divergence guard caught it) or as not
    # learning: never as a normal completed run.
    by_id = runs.set_index("run_id")
    is_1e3 = by_id["lr"] == 1e3
    n_1e3 = int(is_1e3.sum())
    stuck_1e3 = int(stuck[is_1e3].sum())
    assert stuck_1e3 + int((by_id.loc[is_1e3, "outcome"] == "diverged").sum()) == n_1e3
    counts = pd.read_csv(out / "outcomes.csv")
    assert counts["not_learning"].sum() == int(stuck.sum())
    if stuck_1e3:
        html = sweep["index"].read_text(encoding="utf-8")
        assert "without learning" in html and f"lr=1000: {stuck_1e3}/{n_1e3}" in html


# ------------------------------------------------------------------------------ errors


def test_unknown_experiment_is_one_line_listing_the_existing_ones(sweep):
    proc = cli(
        sweep["dir"], "--experiment", "nope", "--tracking-uri", sweep["uri"],
        "--out", str(sweep["dir"] / "nope"), module="nnlab.report", timeout=120,
    )  # fmt: skip
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "'nope'" in lines[0] and EXPERIMENT in lines[0]
    assert not (sweep["dir"] / "nope").exists()


def test_unknown_metric_names_the_logged_ones(sweep):
    with pytest.raises(ValueError, match="never logged.*val_loss"):
        build_report(EXPERIMENT, sweep["dir"] / "x", metric="f1", tracking_uri=sweep["uri"],
                     progress=None)  # fmt: skip


def test_higher_is_better_metric_and_bad_target_are_refused(sweep):
    with pytest.raises(ValueError, match="higher-is-better"):
        build_report(EXPERIMENT, sweep["dir"] / "x", metric="val_accuracy",
                     tracking_uri=sweep["uri"], progress=None)  # fmt: skip
    with pytest.raises(ValueError, match="target must be"):
        build_report(EXPERIMENT, sweep["dir"] / "x", tracking_uri=sweep["uri"], target=0.0,
                     progress=None)  # fmt: skip


def test_best_lr_per_budget_agrees_with_the_runs_table(sweep):
    out = sweep["out"]
    runs = pd.read_csv(out / "runs.csv")
    ok = runs["outcome"].isin(["completed", "early_stopped"])
    runs["final"] = runs["final_val_loss"].where(ok, np.inf).fillna(np.inf)
    med = runs.groupby(["batch_size", "epochs", "lr"])["final"].median().reset_index()
    med = med[np.isfinite(med["final"])]
    expected = med.loc[med.groupby(["batch_size", "epochs"])["final"].idxmin()]
    best = pd.read_csv(out / "best_lr_per_budget.csv")
    merged = best.merge(expected, on=["batch_size", "epochs"])
    assert len(merged) == len(best) == len(expected)
    assert (merged["best_lr"] == merged["lr"]).all()
    assert np.allclose(merged["median_final"], merged["final"])
    findings = json.loads((out / "findings.json").read_text())
    for r in best[best["epochs"] == best["epochs"].min()].itertuples():
        assert f"batch size {r.batch_size}: {r.best_lr:g} at {r.epochs} epochs" in findings[
            "verdict"]  # fmt: skip
        # the lrs not separated from it: those whose paired gap interval reaches 0
        at = runs[(runs["batch_size"] == r.batch_size) & (runs["epochs"] == r.epochs)]
        seeds = sorted(at["seed"].unique())
        enough = len(seeds) >= MIN_SEEDS  # fewer: nothing is separated
        tied = [lr for lr, g in at.groupby("lr") if np.isfinite(np.median(g["final"])) and (
            lr == r.best_lr or not enough
            or gap_interval(g, at[at["lr"] == r.best_lr], "final", seeds)[1] <= 0)]  # fmt: skip
        assert str(r.tied_lrs).split() == [f"{x:g}" for x in tied]
    # Does the best lr move with the budget? In each resample (the same seeds at both budgets)
    # each budget's best lr is chosen again; a shift is stated when 97.5% of resamples agree.
    shift = pd.read_csv(out / "budget_shift.csv").set_index("batch_size")
    short, long = min(EPOCHS), max(EPOCHS)
    seeds = sorted(SEEDS)
    for bs in BATCH_SIZES:
        won = {}
        for ep in (short, long):
            at = runs[(runs["batch_size"] == bs) & (runs["epochs"] == ep)]
            per_lr = {lr: medians(g, "final", seeds) for lr, g in at.groupby("lr")}
            lrs = sorted(per_lr)
            won[ep] = np.array(lrs)[np.argmin(np.nan_to_num([per_lr[x] for x in lrs],
                                                            nan=np.inf), axis=0)]  # fmt: skip
        larger = np.mean(won[short] > won[long])
        assert shift.loc[bs, "larger"] == pytest.approx(larger)
        want = "unresolved" if len(seeds) < MIN_SEEDS else "larger" if larger >= 0.975 else (
            "smaller" if np.mean(won[short] < won[long]) >= 0.975 else "unresolved")  # fmt: skip
        assert shift.loc[bs, "shift"] == want
        assert f"larger in {larger:.0%} of resamples" in findings["verdict"]


# ------------------------------------------------------------------------------ end to end


@pytest.mark.slow
def test_sweep_writes_the_report_and_failed_trials_are_reported(tmp_path):
    """A sweep whose config asks for the report writes it at its end and prints the path; a
    trial that raises shows up in the report as failed, counted and listed."""
    common = ["data.n_samples=120", "batch_size=16", "experiment_name=slow", "report.enabled=true"]
    ok = cli(tmp_path, "-m", "lr=1e-2,1e-1", "epochs=4", "seed=0,1", *common)
    assert ok.returncode == 0, ok.stderr[-3000:]
    printed = re.search(r"report: (\S+index\.html)", ok.stdout)
    assert printed, ok.stdout[-2000:]
    index = tmp_path / printed.group(1)
    assert index.exists()

    # A second sweep into the same experiment with one trial that raises at epoch 2: the sweep
    # exits 1 (a trial failed) and still writes the report, now counting the failure.
    bad = cli(tmp_path, "-m", "lr=0.05", "epochs=4", "seed=0", "debug.fail_at_epoch=2", *common)
    assert bad.returncode == 1, bad.stderr[-3000:]
    out = index.parent
    findings = json.loads((out / "findings.json").read_text())
    assert findings["outcomes"].get("failed") == 1
    counts = pd.read_csv(out / "outcomes.csv")
    assert counts.loc[counts["lr"] == 0.05, "failed"].sum() == 1
    html = index.read_text(encoding="utf-8")
    assert "Failed runs by lr: lr=0.05: 1/1" in html
    assert re.search(r"Caution: .*debug\.fail_at_epoch: 2, None", html)  # two set-ups pooled
    runs = pd.read_csv(out / "runs.csv")
    failed = runs[runs["outcome"] == "failed"]
    assert len(failed) == 1 and failed["status"].eq("FAILED").all()
    assert failed["run_name"].iloc[0] in html  # listed in the table of unusable runs
    for key, _ in FIGURES:
        if key != "decision_boundaries":
            assert (out / f"{key}.png").stat().st_size > 10_000, key


def test_an_unknown_outcome_is_counted_in_the_count_sentence_not_in_the_caution():
    """Runs still RUNNING in an experiment whose runs differ in a param: the count sentence says
    "1 running" and the Caution sentence lists only the params (hand-built frames, no store)."""
    from nnlab.report import findings as fd
    from nnlab.report import tables as rt

    runs = pd.DataFrame({"run_id": list("abcd"), "lr": [0.01, 0.01, 0.1, 0.1], "batch_size": 16,
                         "epochs": 2, "seed": [0, 1, 0, 1],
                         "outcome": ["completed", "running", "completed", "completed"],
                         "data.noise": ["0.1", "0.2", "0.1", "0.1"]})  # fmt: skip
    curves = runs.assign(best=[0.3, np.inf, 0.2, 0.25], not_learning=False,
                         epochs_to_target=[np.inf, np.inf, 2, 2])  # fmt: skip
    s = fd.compute_findings(runs, curves, rt.per_lr(curves), 0.25, "loss").sentences
    assert s[0].startswith("Caution: 2 seeds are too few")
    assert s[1].endswith("0 killed, 1 running.")
    assert s[2].startswith("Caution: besides") and s[2].endswith("data.noise: 0.1, 0.2.")
