"""The two studies' tables and findings (nnlab.report.claim, schedules, studies; figures.studies).

Fast tests build frames by hand that force each verdict (held / held in part / did not hold,
better / no difference / worse than the constant rate) and check the tables, the findings and
what the figures place. The CLI tests run a tiny version of each study through
``python -m nnlab.run -m +experiment=...`` and recompute every finding from the saved CSVs and
the store's raw histories, with the rules written out here again (not by calling the module)."""

from __future__ import annotations

import json
import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from helpers import cli

from nnlab import figures as fg
from nnlab.analysis import load_histories, load_runs
from nnlab.report import claim as rc
from nnlab.report import schedules as rsc
from nnlab.report import studies
from nnlab.report import tables as rt

METRIC = "val_loss"
BUDGET = 20
SEEDS = (0, 1, 2)
# (dataset, optimizer) -> {lr: (floor, rate)}: val_loss(e) = floor + (start - floor) * rate**e.
# The "hard" dataset's losses are ten times the "easy" one's: pooled, its target would be out of
# reach; each set-up must get its own.
CURVES = {
    ("easy", "adam"): {1e-3: (0.10, 0.75), 1e-1: (0.12, 0.30)},  # fast but worse: held
    ("easy", "sgd"): {1e-3: (0.30, 0.97), 1e-1: (0.10, 0.50)},  # fast and better: in part
    ("hard", "adam"): {1e-4: (1.60, 0.95), 1e-3: (1.00, 0.30), 1e-1: (1.50, 0.90)},  # no
}
EXPECTED = {("easy", "adam"): "held", ("easy", "sgd"): "held in part",
            ("hard", "adam"): "did not hold"}  # fmt: skip


def _curve(start: float, floor: float, rate: float, seed: int) -> list[float]:
    return [floor * (1 + 0.01 * seed) + (start - floor) * rate**e for e in range(1, BUDGET + 1)]


def _frames(curves: dict = CURVES) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``runs`` and ``hist`` shaped like ``load_runs`` / ``load_histories``."""
    runs, hist = [], []
    for (ds, opt), per_lr in curves.items():
        start = 10 * per_lr[max(per_lr)][0]
        for lr, (floor, rate) in per_lr.items():
            for seed in SEEDS:
                rid = f"{ds}-{opt}-{lr:g}-{seed}"
                values = _curve(start, floor, rate, seed)
                key = {"run_id": rid, "lr": lr, "batch_size": 32, "epochs": BUDGET,
                       "seed": seed, "outcome": "completed"}  # fmt: skip
                runs.append({**key, "data.name": ds, "optimizer.name": opt,
                             f"final_{METRIC}": values[-1]})  # fmt: skip
                hist += [{**key, "epoch": e, "metric": METRIC, "value": v}
                         for e, v in enumerate(values, 1)]  # fmt: skip
    return pd.DataFrame(runs), pd.DataFrame(hist)


def _setup(frame: pd.DataFrame, dataset: str, optimizer: str) -> pd.DataFrame:
    """The rows of one (dataset, optimizer) of a study table."""
    return frame[(frame["dataset"] == dataset) & (frame["optimizer"] == optimizer)]


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


# ------------------------------------------------------------------------- the rule, again


def reference_lr(lrs) -> float:
    """The swept lr nearest 0.001 on a log scale."""
    return min(lrs, key=lambda lr: abs(math.log10(lr) + 3))


def expected_claim(t: pd.DataFrame) -> dict:
    """The claim's verdict on one set-up's per-lr table (indexed by lr), from the written rule:
    the fastest lr (least median epochs to target; ties: the smaller lr) against the lr nearest
    0.001; held if it is larger, faster and less accurate by more than the larger seed std of
    the two; held in part if larger and faster only; did not hold otherwise. It cannot be
    checked with one lr, or when no lr's median run reached the target."""
    t = t.sort_index()
    ett, best = t["median_epochs_to_target"], t["median_best"]
    ref = reference_lr(t.index)
    if len(t) < 2 or not np.isfinite(ett).any():
        return {"verdict": "cannot be checked", "reference_lr": ref}
    fastest = float(ett[np.isfinite(ett)].idxmin())
    f, r = t.loc[fastest], t.loc[ref]
    faster = fastest > ref and f["median_epochs_to_target"] < r["median_epochs_to_target"]
    less = f["median_best"] - r["median_best"] > max(f["seed_std_best"], r["seed_std_best"])
    verdict = "held" if faster and less else "held in part" if faster else "did not hold"
    return {"fastest_lr": fastest, "reference_lr": ref, "verdict": verdict,
            "most_accurate_lr": float(best[np.isfinite(best)].idxmin())}  # fmt: skip


# ------------------------------------------------------------------ the claim, hand-built


def test_each_setup_gets_its_own_target_and_its_own_verdict():
    runs, hist = _frames()
    per_lr = rc.claim_per_lr(runs, hist, METRIC)
    assert set(map(tuple, per_lr[["dataset", "optimizer"]].to_numpy())) == set(CURVES)
    assert (per_lr["schedule"] == "constant").all()  # no schedule param: a constant rate
    for (ds, opt), grp in per_lr.groupby(["dataset", "optimizer"]):
        # target: 1.25 x the best median-over-seeds best of this set-up alone
        mine = runs[(runs["data.name"] == ds) & (runs["optimizer.name"] == opt)]
        h = hist[hist["run_id"].isin(mine["run_id"])]
        best = h.groupby("run_id")["value"].min()
        per_lr_best = mine.assign(best=mine["run_id"].map(best)).groupby("lr")["best"].median()
        assert grp["target"].iloc[0] == pytest.approx(1.25 * per_lr_best.min())
        np.testing.assert_allclose(grp.set_index("lr")["median_best"], per_lr_best)
    claim = rc.claim_table(per_lr, METRIC)
    got = {(r["dataset"], r["optimizer"]): r["verdict"] for r in claim.to_dict("records")}
    assert got == EXPECTED
    for row in claim.to_dict("records"):
        t = _setup(per_lr, row["dataset"], row["optimizer"])
        want = expected_claim(t.set_index("lr"))
        for key, value in want.items():
            assert row[key] == value, (row["dataset"], row["optimizer"], key)
        assert row["reason"].lower().startswith(row["verdict"].replace(" in part", " only in part"))


def test_claim_rows_carry_the_deciding_numbers_and_go_to_json():
    runs, hist = _frames()
    per_lr = rc.claim_per_lr(runs, hist, METRIC)
    claim = rc.claim_table(per_lr, METRIC)
    row = claim[(claim["dataset"] == "easy") & (claim["optimizer"] == "adam")].iloc[0]
    t = _setup(per_lr, "easy", "adam").set_index("lr")
    assert row["fastest_epochs"] == t.loc[0.1, "median_epochs_to_target"]
    assert row["reference_epochs"] == t.loc[1e-3, "median_epochs_to_target"]
    assert row["gap"] == pytest.approx(t.loc[0.1, "median_best"] - t.loc[1e-3, "median_best"])
    assert row["seed_spread"] == pytest.approx(t.loc[[0.1, 1e-3], "seed_std_best"].max())
    assert row["gap"] > row["seed_spread"] > 0
    assert (row["claim_faster"], row["claim_less_accurate"]) == (True, True)
    objects = json.loads(json.dumps(rc.claim_findings(claim)))  # JSON-safe, one per set-up
    assert [(o["dataset"], o["optimizer"], o["verdict"]) for o in objects] == [
        (r["dataset"], r["optimizer"], r["verdict"]) for r in claim.to_dict("records")
    ]


@pytest.mark.parametrize(
    ("curves", "verdict"),
    [
        # the large lr is worse by less than the seed spread: not "less accurate"
        ({1e-3: (0.100, 0.9), 1e-1: (0.1002, 0.3)}, "held in part"),
        # a smaller lr than 0.001 is the fastest
        ({1e-4: (0.2, 0.2), 1e-3: (0.1, 0.9), 1e-1: (0.1, 0.95)}, "did not hold"),
        # one lr only: nothing to compare
        ({1e-2: (0.1, 0.5)}, "cannot be checked"),
    ],
)
def test_edge_verdicts(curves, verdict):
    runs, hist = _frames({("d", "adam"): curves})
    claim = rc.claim_table(rc.claim_per_lr(runs, hist, METRIC), METRIC)
    assert claim["verdict"].tolist() == [verdict]


def test_a_verdict_sentence_maps_to_its_key_by_its_longest_head():
    assert rc.verdict_key("Held only in part (a larger lr was faster): x") == "held in part"
    assert rc.verdict_key("Held: x") == "held"
    assert rc.verdict_key("Did not hold: x") == "did not hold"
    with pytest.raises(ValueError, match="not a claim verdict"):
        rc.verdict_key("Mostly held: x")


def test_no_study_when_the_setup_does_not_vary():
    runs, hist = _frames({("d", "adam"): CURVES[("easy", "adam")]})
    assert rc.varying_setups(runs) == []
    assert studies.study(runs, hist, METRIC) is None
    runs, hist = _frames()
    assert rc.varying_setups(runs) == ["dataset", "optimizer"]


def test_claim_figure_rings_the_tables_fastest_and_most_accurate_lr():
    runs, hist = _frames()
    per_lr = rc.claim_per_lr(runs, hist, METRIC)
    claim = rc.claim_table(per_lr, METRIC)
    data = fg.claim_grid(per_lr, claim, METRIC).nnlab_data
    rings = {(m["dataset"], m["variant"], m["kind"]): m["lr"] for m in data["marks"]}
    for r in claim.to_dict("records"):
        assert rings[(r["dataset"], r["optimizer"], "fastest")] == r["fastest_lr"]
        assert rings[(r["dataset"], r["optimizer"], "most_accurate")] == r["most_accurate_lr"]
        assert data["verdicts"][(r["dataset"], r["optimizer"])] == r["verdict"]
    for (ds, opt, kind), line in data["lines"].items():
        col = "median_epochs_to_target" if kind == "fastest" else "median_best"
        t = per_lr[(per_lr["dataset"] == ds) & (per_lr["optimizer"] == opt)].sort_values("lr")
        v = t[col].to_numpy(dtype=float)
        np.testing.assert_array_equal(line["lr"], t["lr"])
        np.testing.assert_allclose(line["y"][np.isfinite(v)], v[np.isfinite(v)])
        assert (line["y"][~np.isfinite(v)] >= data["tops"][ds][col]).all()  # at the top
    assert len(data["lines"]) == 2 * len(CURVES)


# -------------------------------------------------------------- schedules, hand-built

# (schedule, lr, epochs) -> median final; seeds add -0.01, 0, +0.01 (seed std 0.0082).
FINALS = {
    ("constant", 0.1, 5): 0.30, ("constant", 0.01, 5): 0.50,
    ("constant", 0.1, 20): 0.25, ("constant", 0.01, 20): 0.20,
    ("exponential", 0.1, 5): 0.305, ("exponential", 0.01, 5): 0.45,  # no difference
    ("exponential", 0.1, 20): 0.15, ("exponential", 0.01, 20): 0.19,  # better
    ("cosine", 0.1, 5): 0.40, ("cosine", 0.01, 5): 0.60,  # worse
    ("cosine", 0.1, 20): 0.10, ("cosine", 0.01, 20): 0.30,  # 0.1 diverged in 2 of 3 seeds
}  # fmt: skip
EXPECTED_RESULT = {("exponential", 5): "no difference", ("exponential", 20): "better",
                   ("cosine", 5): "worse", ("cosine", 20): "worse"}  # fmt: skip


def _schedule_runs() -> pd.DataFrame:
    rows = []
    for (sched, lr, ep), median in FINALS.items():
        for seed in SEEDS:
            diverged = (sched, lr, ep) == ("cosine", 0.1, 20) and seed > 0
            rows.append(
                {
                    "run_id": f"{sched}-{lr}-{ep}-{seed}",
                    "lr": lr,
                    "batch_size": 32,
                    "epochs": ep,
                    "seed": seed,
                    "data.name": "moons",
                    "optimizer.name": "adam",
                    "schedule.name": sched,
                    "outcome": "diverged" if diverged else "completed",
                    f"final_{METRIC}": np.nan if diverged else median + 0.01 * (seed - 1),
                }
            )
    return pd.DataFrame(rows)  # fmt: skip


def test_schedules_are_compared_with_the_best_constant_rate_at_each_budget():
    by_budget = rsc.schedule_by_budget(_schedule_runs(), METRIC)
    row = by_budget[(by_budget["schedule"] == "cosine") & (by_budget["lr"] == 0.1)
                    & (by_budget["epochs"] == 20)].iloc[0]  # fmt: skip
    assert row["median_final"] == np.inf and row["not_usable"] == 2  # most seeds diverged
    vs = rsc.schedule_vs_constant(by_budget)
    got = {(r["schedule"], r["epochs"]): r["result"] for r in vs.to_dict("records")}
    assert got == EXPECTED_RESULT
    for r in vs.to_dict("records"):  # each side is its schedule's best lr at that budget
        const = min((v, lr) for (s, lr, ep), v in FINALS.items() if s == "constant"
                    and ep == r["epochs"])  # fmt: skip
        assert (r["constant_median_final"], r["constant_lr"]) == pytest.approx(const)
        assert r["gap"] == pytest.approx(r["median_final"] - r["constant_median_final"])
        assert r["spread"] == pytest.approx(np.std([-0.01, 0, 0.01]))
    cos20 = vs[(vs["schedule"] == "cosine") & (vs["epochs"] == 20)].iloc[0]
    assert cos20["lr"] == 0.01  # the diverged lr is not its best
    objects, sentences = rsc.schedule_findings(vs, METRIC)
    assert len(json.loads(json.dumps(objects))) == len(vs)
    assert any("exponential beat the best constant rate" in s and "at 1 of 2 budgets" in s
               for s in sentences)  # fmt: skip


def test_schedule_figure_fills_exactly_the_points_that_beat_the_constant_rate():
    by_budget = rsc.schedule_by_budget(_schedule_runs(), METRIC)
    vs = rsc.schedule_vs_constant(by_budget)
    data = fg.schedule_budgets(by_budget, vs, METRIC).nnlab_data
    scheds = ("constant", "cosine", "exponential")
    assert set(data["points"]) == {("moons", "adam", ep, s) for ep in (5, 20) for s in scheds}
    for (_ds, _opt, ep, sched), point in data["points"].items():
        usable = {
            lr: v
            for (s, lr, e), v in FINALS.items()
            if s == sched and e == ep and not (s == "cosine" and e == 20 and lr == 0.1)
        }
        best_lr = min(usable, key=usable.get)
        assert (point["median"], point["lr"]) == pytest.approx((usable[best_lr], best_lr))
        assert point["std"] == pytest.approx(np.std([-0.01, 0, 0.01]))
        want = "constant" if sched == "constant" else EXPECTED_RESULT[(sched, ep)]
        assert point["result"] == want
        assert point["filled"] == (want == "better")
    for (ds, opt, ep), band in data["bands"].items():
        assert band == pytest.approx(
            (data["points"][(ds, opt, ep, "constant")]["median"], np.std([-0.01, 0, 0.01]))
        )


# ---------------------------------------------------------------- the real CLI, tiny studies


def _recompute_per_lr(runs: pd.DataFrame, hist: pd.DataFrame) -> pd.DataFrame:
    """claim_per_lr's numbers straight from the store: per set-up target, then per lr the median
    epochs to target and the median best (a diverged run never reaches and counts as +inf)."""
    h = hist[hist["metric"] == METRIC]
    ok = runs.set_index("run_id")["outcome"].isin(["completed", "early_stopped"])
    best = h.groupby("run_id")["value"].min().where(ok, np.inf)
    rows = []
    for (ds, opt), grp in runs.groupby(["data.name", "optimizer.name"]):
        grp = grp.assign(best=grp["run_id"].map(best).fillna(np.inf))
        target = 1.25 * grp.groupby("lr")["best"].median().min()
        hit = h[h["value"] <= target].groupby("run_id")["epoch"].min()
        grp = grp.assign(ett=grp["run_id"].map(hit).where(grp["run_id"].map(ok), np.inf))
        grp["ett"] = grp["ett"].fillna(np.inf)
        for lr, g in grp.groupby("lr"):
            rows.append({"dataset": ds, "optimizer": opt, "lr": lr, "target": target,
                         "median_epochs_to_target": g["ett"].median(),
                         "median_best": g["best"].median()})  # fmt: skip
    return pd.DataFrame(rows)


def test_claim_study_through_the_cli_recomputed_from_the_store_and_the_csvs(make_launch_dir):
    """A tiny claim_across_datasets (2 datasets x 2 optimizers x 2 lrs x 2 seeds x 6 epochs)."""
    d = make_launch_dir("claim")
    proc = cli(d, "-m", "+experiment=claim_across_datasets", "problem=moons,breast_cancer",
               "lr=0.1,0.001", "seed=0,1", "epochs=6", "problems.moons.n_samples=120",
               "hydra/launcher=basic", f"hydra.sweep.dir={d / 'multirun'}")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = d / "reports" / "claim_across_datasets"
    uri = f"sqlite:///{d / 'mlflow.db'}"
    runs = load_runs("claim_across_datasets", uri)
    assert len(runs) == 16
    hist = load_histories("claim_across_datasets", (METRIC,), uri, runs=runs)

    per_lr = pd.read_csv(out / "claim_per_lr.csv")
    mine = _recompute_per_lr(runs, hist)
    merged = per_lr.merge(mine, on=["dataset", "optimizer", "lr"], suffixes=("", "_store"))
    assert len(merged) == len(per_lr) == 8
    for col in ("target", "median_epochs_to_target", "median_best"):
        np.testing.assert_allclose(merged[col], merged[f"{col}_store"], err_msg=col)

    claim = pd.read_csv(out / "claim.csv")
    findings = json.loads((out / "findings.json").read_text())
    assert len(claim) == len(findings["claim"]) == 4
    assert findings["setups"] == ["dataset", "optimizer"]
    for row, obj in zip(claim.to_dict("records"), findings["claim"], strict=True):
        t = _setup(per_lr, row["dataset"], row["optimizer"])
        want = expected_claim(t.set_index("lr"))
        for key, value in want.items():
            assert row[key] == value and obj[key] == value, (row["dataset"], key, t.to_string())
    html = (out / "index.html").read_text(encoding="utf-8")
    assert "src='claim.png'" in html and (out / "claim.png").stat().st_size > 10_000
    assert "Findings pooled over all set-ups" in html
    for r in findings["claim"]:
        assert r["reason"].replace("≤", "&le;")[:40].split("&")[0] in html


def _recompute_schedules(runs: pd.DataFrame) -> pd.DataFrame:
    """schedule_vs_constant from runs.csv alone: per (schedule, lr, epochs) the median final
    (unusable runs +inf) and the std over the finite seeds; each schedule's best lr per budget
    against the constant rate's; better / worse only beyond the larger std of the two."""
    ok = runs["outcome"].isin(["completed", "early_stopped"])
    runs = runs.assign(final=runs[f"final_{METRIC}"].where(ok, np.inf).fillna(np.inf))
    runs = runs.rename(columns={"schedule.name": "schedule"})
    keys = ["schedule", "epochs", "lr"]
    med = runs.groupby(keys)["final"].median()
    std = runs[np.isfinite(runs["final"])].groupby(keys)["final"].std(ddof=0)
    table = pd.DataFrame({"median": med, "std": std.reindex(med.index).fillna(0.0)})
    table = table[np.isfinite(table["median"])].reset_index()
    best = table.loc[table.groupby(["schedule", "epochs"])["median"].idxmin()]
    const = best[best["schedule"] == "constant"].set_index("epochs")
    rows = []
    for r in best[best["schedule"] != "constant"].itertuples():
        c = const.loc[r.epochs]
        gap, spread = r.median - c["median"], max(r.std, c["std"])
        result = "better" if gap < -spread else "worse" if gap > spread else "no difference"
        rows.append(
            {
                "schedule": r.schedule,
                "epochs": r.epochs,
                "lr": r.lr,
                "median_final": r.median,
                "constant_lr": c["lr"],
                "gap": gap,
                "spread": spread,
                "result": result,
            }
        )
    return pd.DataFrame(rows).sort_values(["epochs", "schedule"]).reset_index(drop=True)


@pytest.mark.slow
def test_schedule_study_through_the_cli_recomputed_from_the_csvs(make_launch_dir):
    """A tiny lr_schedules (moons x 3 schedules x 2 lrs x 2 budgets x 2 seeds = 24 trials) on
    the study's own launcher (joblib, 2 workers)."""
    d = make_launch_dir("schedules")
    proc = cli(d, "-m", "+experiment=lr_schedules", "problem=moons",
               "schedule=constant,exponential,cosine", "lr=0.1,0.01", "epochs=2,5", "seed=0,1",
               "problems.moons.n_samples=120", f"hydra.sweep.dir={d / 'multirun'}")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = d / "reports" / "lr_schedules"
    runs = pd.read_csv(out / "runs.csv")
    assert len(runs) == 24 and set(runs["schedule.name"]) == {"constant", "exponential", "cosine"}
    vs = pd.read_csv(out / "schedule_vs_constant.csv").sort_values(["epochs", "schedule"])
    mine = _recompute_schedules(runs)
    assert len(vs) == len(mine) == 4  # 2 decaying schedules x 2 budgets
    for col in ("schedule", "epochs", "lr", "constant_lr", "result"):
        assert vs[col].tolist() == mine[col].tolist(), col
    for col in ("median_final", "gap", "spread"):
        np.testing.assert_allclose(vs[col], mine[col], err_msg=col)
    findings = json.loads((out / "findings.json").read_text())
    assert findings["setups"] == ["schedule"]
    got = {(o["schedule"], o["epochs"]): o["result"] for o in findings["schedules"]}
    assert got == {(r["schedule"], r["epochs"]): r["result"] for r in mine.to_dict("records")}
    # The claim per schedule is there too, each verdict from its own per-lr rows.
    per_lr = pd.read_csv(out / "claim_per_lr.csv")
    for obj in findings["claim"]:
        t = per_lr[per_lr["schedule"] == obj["schedule"]].set_index("lr")
        assert obj["verdict"] == expected_claim(t)["verdict"], obj["schedule"]
    html = (out / "index.html").read_text(encoding="utf-8")
    assert html.index("schedules-vs-constant") < html.index("claim-per-setup")
    assert "src='schedules.png'" in html and (out / "schedules.png").stat().st_size > 10_000


def test_budget_consistency_pairs_trials_within_their_own_setup():
    """Each shorter-budget trial is compared with the longest run of its own set-up only: two
    schedules x two budgets x one lr and seed make 2 pairs, not 4."""
    rows, hist = [], []
    for sched, scale in (("constant", 1.0), ("cosine", 2.0)):
        for ep in (2, 4):
            rid = f"{sched}-{ep}"
            values = [scale / e for e in range(1, ep + 1)]
            if sched == "cosine" and ep == 2:
                values[-1] += 0.5  # a shorter cosine run is not the start of the longer one
            rows.append({"run_id": rid, "lr": 0.1, "batch_size": 32, "epochs": ep, "seed": 0,
                         "outcome": "completed", "schedule.name": sched,
                         f"final_{METRIC}": values[-1]})  # fmt: skip
            hist += [{"run_id": rid, "epoch": e, "metric": METRIC, "value": v}
                     for e, v in enumerate(values, 1)]  # fmt: skip
    got = rt.budget_consistency(pd.DataFrame(rows), pd.DataFrame(hist), METRIC)
    assert (got["compared"], got["identical"]) == (2, 1)
    assert got["max_abs_diff"] == pytest.approx(0.5)
