"""The two studies' tables and findings (nnlab.report.claim, schedules, studies; figures.studies).

Fast tests build frames by hand that force each verdict (held / held in part / did not hold /
unresolved, better / no difference / worse than the constant rate) and check the tables, the
findings and what the figures place. The CLI tests run a tiny version of each study through
``python -m nnlab.run -m +experiment=...`` and recompute every finding from the store's raw
histories and the saved CSVs, with the rules written out here again (not by calling the module;
the bootstrap as tests/bootstrap_reference.py)."""

from __future__ import annotations

import json
import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from bootstrap_reference import MIN_SEEDS, gap_interval, median_interval, medians, percentile
from helpers import cli

from nnlab import figures as fg
from nnlab.analysis import load_histories, load_runs
from nnlab.report import claim as rc
from nnlab.report import schedules as rsc
from nnlab.report import studies
from nnlab.report import tables as rt

METRIC = "val_loss"
BUDGET = 20
SEEDS = (0, 1, 2, 3, 4, 5)  # nnlab.report.intervals.MIN_SEEDS: fewer decide nothing
# (dataset, optimizer) -> {lr: (floor, rate)}: val_loss(e) = floor + (start - floor) * rate**e,
# the floor scaled by 1 + 0.01 * seed; or {lr: [(floor, rate) of each seed]}. The "hard"
# dataset's losses are ten times the "easy" one's: pooled, its target would be out of reach;
# each set-up must get its own.
CURVES = {
    ("easy", "adam"): {1e-3: (0.10, 0.75), 1e-1: (0.12, 0.30)},  # fast but worse: held
    ("easy", "sgd"): {1e-3: (0.30, 0.97), 1e-1: (0.10, 0.50)},  # fast and better: in part
    ("hard", "adam"): {1e-4: (1.60, 0.95), 1e-3: (1.00, 0.30), 1e-1: (1.50, 0.90)},  # no
}
EXPECTED = {("easy", "adam"): "held", ("easy", "sgd"): "held in part",
            ("hard", "adam"): "did not hold"}  # fmt: skip


def _curve(start: float, floor: float, rate: float, seed: int, scaled: bool) -> list[float]:
    floor = floor * (1 + 0.01 * seed) if scaled else floor
    return [floor + (start - floor) * rate**e for e in range(1, BUDGET + 1)]


def _frames(curves: dict = CURVES) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``runs`` and ``hist`` shaped like ``load_runs`` / ``load_histories``."""
    runs, hist = [], []
    for (ds, opt), per_lr in curves.items():
        floors = [f for spec in per_lr.values() for f, _ in (spec if isinstance(spec, list)
                                                             else [spec])]  # fmt: skip
        start = 10 * max(floors)
        for lr, spec in per_lr.items():
            for seed in SEEDS:
                floor, rate = spec[seed] if isinstance(spec, list) else spec
                rid = f"{ds}-{opt}-{lr:g}-{seed}"
                values = _curve(start, floor, rate, seed, not isinstance(spec, list))
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


def per_run(runs: pd.DataFrame, hist: pd.DataFrame) -> dict[tuple, tuple[pd.DataFrame, float]]:
    """Per (dataset, optimizer): one row per run with ``lr, seed, best, ett`` (a run that is
    not usable never reaches and counts as +inf) and the set-up's target, 1.25 x the lowest
    median best of any lr."""
    h = hist[hist["metric"] == METRIC]
    ok = runs.set_index("run_id")["outcome"].isin(["completed", "early_stopped"])
    best = h.groupby("run_id")["value"].min().where(ok, np.inf)
    out = {}
    for key, grp in runs.groupby(["data.name", "optimizer.name"]):
        grp = grp.assign(best=grp["run_id"].map(best).fillna(np.inf))
        target = 1.25 * grp.groupby("lr")["best"].median().min()
        hit = h[h["value"] <= target].groupby("run_id")["epoch"].min()
        grp = grp.assign(ett=grp["run_id"].map(hit).where(grp["run_id"].map(ok), np.inf))
        out[key] = (grp.assign(ett=grp["ett"].fillna(np.inf).astype(float)), target)
    return out


def reference_lr(lrs) -> float:
    """The swept lr nearest 0.001 on a log scale."""
    return min(lrs, key=lambda lr: abs(math.log10(lr) + 3))


def expected_claim(runs: pd.DataFrame) -> dict:
    """The claim's verdict on one set-up's runs (``per_run``), from the written rule: the
    fastest lr (least median epochs to target; ties: the smaller lr) against the lr nearest
    0.001. Speed half: held if it is larger and the paired 95% interval of (0.001's median
    epochs - its) is above 0; contradicted if that interval is above 0 with a smaller or equal
    lr. Accuracy half (larger lr only): held if the interval of (its median best - 0.001's) is
    above 0, contradicted if below. Held: both; in part: one; did not hold: none held, one
    contradicted; unresolved: neither decided. Cannot be checked: one lr, or no median run
    reached the target."""
    lrs = sorted(runs["lr"].unique())
    seeds = sorted(runs["seed"].unique())
    ref = reference_lr(lrs)
    ett = runs.groupby("lr")["ett"].median()
    best = runs.groupby("lr")["best"].median()
    if len(lrs) < 2 or not np.isfinite(ett).any():
        return {"verdict": "cannot be checked", "reference_lr": ref}
    fast = float(ett[np.isfinite(ett)].idxmin())
    of = {lr: runs[runs["lr"] == lr] for lr in lrs}
    speed = gap_interval(of[ref], of[fast], "ett", seeds)
    acc = gap_interval(of[fast], of[ref], "best", seeds)
    if len(seeds) < MIN_SEEDS:  # too few seeds: the intervals decide nothing
        return {"verdict": "did not hold" if fast == ref else "unresolved", "fastest_lr": fast}
    s_half = "against" if fast == ref else (
        ("held" if fast > ref else "against") if speed[1] > 0 else "open")  # fmt: skip
    a_half = "open" if fast <= ref else "held" if acc[1] > 0 else "against" if acc[2] < 0 \
        else "open"  # fmt: skip
    n_held = [s_half, a_half].count("held")
    verdict = ("held" if n_held == 2 else "held in part" if n_held == 1
               else "did not hold" if "against" in (s_half, a_half) else "unresolved")  # fmt: skip
    return {"fastest_lr": fast, "reference_lr": ref, "verdict": verdict,
            "most_accurate_lr": float(best[np.isfinite(best)].idxmin()),
            "speed_gap": speed, "accuracy_gap": acc}  # fmt: skip


def _check_row(row: dict, want: dict, where) -> None:
    for key, value in want.items():
        if key in ("speed_gap", "accuracy_gap"):
            got = (row[key], row[f"{key}_lo"], row[f"{key}_hi"])
            assert got == pytest.approx(value), (where, key)
        else:
            assert row[key] == value, (where, key)


# ------------------------------------------------------------------ the claim, hand-built


def test_each_setup_gets_its_own_target_and_its_own_verdict():
    runs, hist = _frames()
    per_lr = rc.claim_per_lr(runs, hist, METRIC)
    assert set(map(tuple, per_lr[["dataset", "optimizer"]].to_numpy())) == set(CURVES)
    assert (per_lr["schedule"] == "constant").all()  # no schedule param: a constant rate
    mine = per_run(runs, hist)
    for (ds, opt), grp in per_lr.groupby(["dataset", "optimizer"]):
        r, target = mine[(ds, opt)]  # target: 1.25 x the best median best of this set-up alone
        assert grp["target"].iloc[0] == pytest.approx(target)
        for lr, row in grp.set_index("lr").iterrows():
            want = median_interval(r[r["lr"] == lr], "best")
            assert (row["median_best"], row["best_lo"], row["best_hi"]) == pytest.approx(want)
    claim = rc.claim_table(runs, hist, METRIC)
    got = {(r["dataset"], r["optimizer"]): r["verdict"] for r in claim.to_dict("records")}
    assert got == EXPECTED
    for row in claim.to_dict("records"):
        _check_row(row, expected_claim(mine[(row["dataset"], row["optimizer"])][0]),
                   (row["dataset"], row["optimizer"]))  # fmt: skip
        head = {"held": "Held:", "held in part": "Held only in part:", "did not hold":
                "Did not hold:"}[row["verdict"]]  # fmt: skip
        assert row["reason"].startswith(head)


def test_claim_rows_carry_the_deciding_numbers_and_go_to_json():
    runs, hist = _frames()
    claim = rc.claim_table(runs, hist, METRIC)
    row = claim[(claim["dataset"] == "easy") & (claim["optimizer"] == "adam")].iloc[0]
    assert row["accuracy_gap_lo"] > 0 and row["speed_gap_lo"] > 0  # both halves resolved
    assert (row["claim_faster"], row["claim_less_accurate"]) == (True, True)
    assert row["n_seeds"] == len(SEEDS)
    assert f"{row['accuracy_gap']:+.4f}" in row["reason"]
    objects = json.loads(json.dumps(rc.claim_findings(claim)))  # JSON-safe, one per set-up
    assert [(o["dataset"], o["optimizer"], o["verdict"]) for o in objects] == [
        (r["dataset"], r["optimizer"], r["verdict"]) for r in claim.to_dict("records")
    ]


# Per seed (floor, rate): the larger lr's edge flips from seed to seed.
NOISY_ACCURACY = {1e-3: [(0.100, 0.90)] * 6,
                  1e-1: [(0.103, 0.30), (0.097, 0.30), (0.1002, 0.30), (0.102, 0.30),
                         (0.098, 0.30), (0.1001, 0.30)]}  # fmt: skip
NOISY_BOTH = {1e-3: [(0.100, 0.50), (0.102, 0.80), (0.101, 0.65), (0.100, 0.55), (0.102, 0.75),
                     (0.101, 0.70)],
              1e-2: [(0.102, 0.80), (0.100, 0.50), (0.101, 0.60), (0.102, 0.75), (0.100, 0.55),
                     (0.101, 0.62)]}  # fmt: skip


@pytest.mark.parametrize(
    ("curves", "verdict"),
    [
        # the same small gap on every seed: paired, it is resolved (the large lr is worse)
        ({1e-3: (0.100, 0.5), 1e-1: (0.1002, 0.3)}, "held"),
        # the large lr's accuracy edge changes sign between seeds: not "less accurate"
        (NOISY_ACCURACY, "held in part"),
        # neither its speed nor its accuracy edge holds on every seed
        (NOISY_BOTH, "unresolved"),
        # a smaller lr than 0.001 is the fastest
        ({1e-4: (0.2, 0.2), 1e-3: (0.1, 0.9), 1e-1: (0.1, 0.95)}, "did not hold"),
        # one lr only: nothing to compare
        ({1e-2: (0.1, 0.5)}, "cannot be checked"),
    ],
)
def test_edge_verdicts(curves, verdict):
    runs, hist = _frames({("d", "adam"): curves})
    claim = rc.claim_table(runs, hist, METRIC)
    assert claim["verdict"].tolist() == [verdict]
    if verdict != "cannot be checked":
        want = expected_claim(per_run(runs, hist)[("d", "adam")][0])
        _check_row(claim.iloc[0].to_dict(), want, verdict)


def test_no_study_when_the_setup_does_not_vary():
    runs, hist = _frames({("d", "adam"): CURVES[("easy", "adam")]})
    assert rc.varying_setups(runs) == []
    assert studies.study(runs, hist, METRIC) is None
    runs, hist = _frames()
    assert rc.varying_setups(runs) == ["dataset", "optimizer"]


def test_claim_figure_rings_the_tables_fastest_and_most_accurate_lr():
    runs, hist = _frames()
    per_lr = rc.claim_per_lr(runs, hist, METRIC)
    claim = rc.claim_table(runs, hist, METRIC)
    data = fg.claim_grid(per_lr, claim, METRIC).nnlab_data
    rings = {(m["dataset"], m["variant"], m["kind"]): m["lr"] for m in data["marks"]}
    for r in claim.to_dict("records"):
        assert rings[(r["dataset"], r["optimizer"], "fastest")] == r["fastest_lr"]
        assert rings[(r["dataset"], r["optimizer"], "most_accurate")] == r["most_accurate_lr"]
        assert data["verdicts"][(r["dataset"], r["optimizer"])] == r["verdict"]
    for (ds, opt, kind), line in data["lines"].items():
        col, name = ("median_epochs_to_target", "epochs_to_target") if kind == "fastest" else (
            "median_best", "best")  # fmt: skip
        t = per_lr[(per_lr["dataset"] == ds) & (per_lr["optimizer"] == opt)].sort_values("lr")
        v = t[col].to_numpy(dtype=float)
        fin = np.isfinite(v)
        np.testing.assert_array_equal(line["lr"], t["lr"])
        np.testing.assert_allclose(line["y"][fin], v[fin])
        np.testing.assert_allclose(line["lo"][fin], t[f"{name}_lo"].to_numpy(dtype=float)[fin])
        assert (line["y"][~fin] >= data["tops"][ds][col]).all()  # at the top
    assert len(data["lines"]) == 2 * len(CURVES)


# -------------------------------------------------------------- schedules, hand-built

# (schedule, lr, epochs) -> median final; each schedule's seeds add its own offsets (below),
# so a gap between two schedules changes from seed to seed.
FINALS = {
    ("constant", 0.1, 5): 0.30, ("constant", 0.01, 5): 0.50,
    ("constant", 0.1, 20): 0.25, ("constant", 0.01, 20): 0.20,
    ("exponential", 0.1, 5): 0.305, ("exponential", 0.01, 5): 0.45,  # no difference
    ("exponential", 0.1, 20): 0.15, ("exponential", 0.01, 20): 0.19,  # better
    ("cosine", 0.1, 5): 0.40, ("cosine", 0.01, 5): 0.60,  # worse
    ("cosine", 0.1, 20): 0.10, ("cosine", 0.01, 20): 0.30,  # 0.1 diverged in 4 of 6 seeds
}  # fmt: skip
# cosine at 20 epochs: its best setting by the median is lr 0.01 (0.30, worse than 0.20), but
# a resample that draws lr 0.1's two good seeds 4 times of 6 (10%) makes 0.1 (0.10) its best:
# not resolved.
OFFSETS = {"constant": (-0.01, 0.0, 0.01, -0.005, 0.005, 0.0),
           "exponential": (0.01, 0.0, -0.01, 0.005, -0.005, 0.0),
           "cosine": (0.0, 0.01, -0.01, 0.005, -0.005, 0.0)}  # fmt: skip
EXPECTED_RESULT = {("exponential", 5): "no difference", ("exponential", 20): "better",
                   ("cosine", 5): "worse", ("cosine", 20): "no difference"}  # fmt: skip


def _schedule_runs() -> pd.DataFrame:
    rows = []
    for (sched, lr, ep), median in FINALS.items():
        for seed in SEEDS:
            diverged = (sched, lr, ep) == ("cosine", 0.1, 20) and seed > 1
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
                    f"final_{METRIC}": np.nan if diverged else median + OFFSETS[sched][seed],
                }
            )
    return pd.DataFrame(rows)  # fmt: skip


def expected_vs_constant(runs: pd.DataFrame) -> dict[tuple, dict]:
    """schedule_vs_constant's rule written out: per (schedule, epochs), in each resample the
    best median final among the schedule's settings (unusable runs +inf), minus the constant
    rate's; better / worse only when the 95% interval of that gap is below / above 0."""
    ok = runs["outcome"].isin(["completed", "early_stopped"])
    runs = runs.assign(final=runs[f"final_{METRIC}"].where(ok, np.inf).fillna(np.inf))
    seeds = sorted(runs["seed"].unique())
    out = {}
    for ep, at in runs.groupby("epochs"):
        best = {}
        for sched, grp in at.groupby("schedule.name"):
            per = [medians(g, "final", seeds) for _, g in grp.groupby(["batch_size", "lr"])]
            best[sched] = np.min(per, axis=0)
        for sched in set(best) - {"constant"}:
            with np.errstate(invalid="ignore"):
                gap = np.where(best[sched] == best["constant"], 0.0,
                               best[sched] - best["constant"])  # fmt: skip
            lo, hi = percentile(gap)
            decide = len(seeds) >= MIN_SEEDS
            out[(sched, ep)] = {"gap_lo": lo, "gap_hi": hi, "result": "better" if decide and hi < 0
                                else "worse" if decide and lo > 0 else "no difference"}  # fmt: skip
    return out


def test_schedules_are_compared_with_the_best_constant_rate_at_each_budget():
    runs = _schedule_runs()
    by_budget = rsc.schedule_by_budget(runs, METRIC)
    row = by_budget[(by_budget["schedule"] == "cosine") & (by_budget["lr"] == 0.1)
                    & (by_budget["epochs"] == 20)].iloc[0]  # fmt: skip
    assert row["median_final"] == np.inf and row["not_usable"] == 4  # most seeds diverged
    vs = rsc.schedule_vs_constant(runs, METRIC)
    got = {(r["schedule"], r["epochs"]): r["result"] for r in vs.to_dict("records")}
    assert got == EXPECTED_RESULT
    want = expected_vs_constant(runs)
    for r in vs.to_dict("records"):  # each side is its schedule's best lr at that budget
        const = min((v, lr) for (s, lr, ep), v in FINALS.items() if s == "constant"
                    and ep == r["epochs"])  # fmt: skip
        assert (r["constant_median_final"], r["constant_lr"]) == pytest.approx(const)
        assert r["gap"] == pytest.approx(r["median_final"] - r["constant_median_final"])
        w = want[(r["schedule"], r["epochs"])]
        assert (r["gap_lo"], r["gap_hi"], r["result"]) == (pytest.approx(w["gap_lo"]),
                                                           pytest.approx(w["gap_hi"]),
                                                           w["result"])  # fmt: skip
    cos20 = vs[(vs["schedule"] == "cosine") & (vs["epochs"] == 20)].iloc[0]
    assert cos20["lr"] == 0.01  # the diverged lr is not its best
    objects, sentences = rsc.schedule_findings(vs, METRIC)
    assert len(json.loads(json.dumps(objects))) == len(vs)
    assert any("exponential beat the best constant rate at 1 and lost to it at 0 of 2" in s
               for s in sentences)  # fmt: skip


def test_schedule_figure_fills_exactly_the_points_that_beat_the_constant_rate():
    runs = _schedule_runs()
    by_budget = rsc.schedule_by_budget(runs, METRIC)
    vs = rsc.schedule_vs_constant(runs, METRIC)
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
        mine = runs[(runs["schedule.name"] == sched) & (runs["epochs"] == ep)
                    & (runs["lr"] == best_lr)]  # fmt: skip
        assert (point["lo"], point["hi"]) == pytest.approx(
            median_interval(mine, f"final_{METRIC}")[1:]
        )
        want = "constant" if sched == "constant" else EXPECTED_RESULT[(sched, ep)]
        assert point["result"] == want
        assert point["filled"] == (want == "better")
    for (ds, opt, ep), band in data["bands"].items():
        p = data["points"][(ds, opt, ep, "constant")]
        assert band == pytest.approx((p["median"], p["lo"], p["hi"]))


# ---------------------------------------------------------------- the real CLI, tiny studies


def test_claim_study_through_the_cli_recomputed_from_the_store_and_the_csvs(make_launch_dir):
    """A tiny claim_across_datasets (2 datasets x 2 optimizers x 2 lrs x 6 seeds x 6 epochs)."""
    d = make_launch_dir("claim")
    proc = cli(d, "-m", "+experiment=claim_across_datasets", "problem=moons,breast_cancer",
               "lr=0.1,0.001", "seed=0,1,2,3,4,5", "epochs=6", "problems.moons.n_samples=120",
               "hydra/launcher=basic", f"hydra.sweep.dir={d / 'multirun'}")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = d / "reports" / "claim_across_datasets"
    uri = f"sqlite:///{d / 'mlflow.db'}"
    runs = load_runs("claim_across_datasets", uri)
    assert len(runs) == 48
    hist = load_histories("claim_across_datasets", (METRIC,), uri, runs=runs)
    mine = per_run(runs, hist)

    per_lr = pd.read_csv(out / "claim_per_lr.csv")
    assert len(per_lr) == 8
    for row in per_lr.to_dict("records"):
        r, target = mine[(row["dataset"], row["optimizer"])]
        assert row["target"] == pytest.approx(target)
        at = r[r["lr"] == row["lr"]]
        assert row["median_epochs_to_target"] == pytest.approx(at["ett"].median())
        assert (row["median_best"], row["best_lo"], row["best_hi"]) == pytest.approx(
            median_interval(at, "best")
        )

    claim = pd.read_csv(out / "claim.csv")
    findings = json.loads((out / "findings.json").read_text())
    assert len(claim) == len(findings["claim"]) == 4
    assert findings["setups"] == ["dataset", "optimizer"]
    for row, obj in zip(claim.to_dict("records"), findings["claim"], strict=True):
        want = expected_claim(mine[(row["dataset"], row["optimizer"])][0])
        _check_row(row, want, row["dataset"])
        assert obj["verdict"] == want["verdict"]
    html = (out / "index.html").read_text(encoding="utf-8")
    assert "src='claim.png'" in html and (out / "claim.png").stat().st_size > 10_000
    assert "Findings pooled over all set-ups" in html and "Seeds: 6." in html
    for r in findings["claim"]:
        assert r["reason"].replace("≤", "&le;")[:40].split("&")[0] in html


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
    vs = pd.read_csv(out / "schedule_vs_constant.csv")
    want = expected_vs_constant(runs)
    assert len(vs) == len(want) == 4  # 2 decaying schedules x 2 budgets
    for r in vs.to_dict("records"):
        w = want[(r["schedule"], r["epochs"])]
        assert (r["gap_lo"], r["gap_hi"]) == pytest.approx((w["gap_lo"], w["gap_hi"]))
        assert r["result"] == w["result"]
    findings = json.loads((out / "findings.json").read_text())
    assert findings["setups"] == ["schedule"]
    got = {(o["schedule"], o["epochs"]): o["result"] for o in findings["schedules"]}
    assert got == {k: w["result"] for k, w in want.items()}
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
