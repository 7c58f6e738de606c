"""The report of a search (``nnlab.report.search``, ``nnlab.figures.search``) on real searches.

A grid-sampled search with a threshold pruner makes the outcomes certain whatever the losses:
the 5-epoch trials are pruned at epoch 3, the lr=1e30 trials diverge at once, the rest complete
(see tests/test_search.py for the pruner). The page, its tables and its figures must call each
trial what the sweep called it, number trials as the sweep's ``[i/N]`` lines do, and draw the
search's own figures, not the grid's.
"""

from __future__ import annotations

import json
import re
from collections import Counter

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from helpers import QUIET, TINY, cli, runs, trial_lines

from nnlab.analysis import load_histories
from nnlab.figures import search as fs
from nnlab.report import build_report
from nnlab.report.flagship import FIGURES as GRID_FIGURES
from nnlab.report.search import FIGURES, search_trials

SEARCH = ("hydra/sweeper=optuna", "hydra/sweeper/sampler=grid", *TINY, QUIET)
PRUNE_AT_3 = ("hydra/sweeper/pruner=threshold", "hydra.sweeper.pruner.upper=0",
              "hydra.sweeper.pruner.n_warmup_steps=3")  # fmt: skip


def _search(d, experiment: str, *args: str) -> dict:
    proc = cli(d, "-m", *SEARCH, *args, f"experiment_name={experiment}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    uri = f"sqlite:///{d / 'mlflow.db'}"
    out = d / f"report-{experiment}"
    index = build_report(experiment, out, tracking_uri=uri, progress=None)
    return {"dir": d, "uri": uri, "out": out, "html": index.read_text(encoding="utf-8"),
            "stdout": proc.stdout, "experiment": experiment}  # fmt: skip


@pytest.fixture(scope="module")
def pruned(make_launch_dir) -> dict:
    """6 trials: lr 0.01, 0.05, 1e30 x epochs 2, 5."""
    return _search(make_launch_dir("search-report"), "searched", *PRUNE_AT_3,
                   "hydra.sweeper.n_trials=6", "lr=choice(0.01,0.05,1e30)", "epochs=choice(2,5)")  # fmt: skip


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _lines(stdout: str) -> dict[int, dict]:
    """The sweep's ``[i/N] outcome name`` lines by i: outcome, lr, epochs."""
    out = {}
    for line in trial_lines(stdout):
        m = re.match(r"\[(\d+)/\d+\] (\S+)\s+(.*)", line)
        params = dict(re.findall(r"(lr|epochs)=(\S+)", m.group(3)))
        out[int(m.group(1))] = {"outcome": m.group(2), "lr": float(params["lr"]),
                                "epochs": int(params.get("epochs", 2))}  # fmt: skip
    return out


def _expected_outcome(lr: float, epochs: int) -> str:
    return "diverged" if lr == 1e30 else "pruned" if epochs == 5 else "completed"


def test_trials_are_numbered_and_labelled_as_the_sweep_lines(pruned):
    lines = _lines(pruned["stdout"])
    assert sorted(lines) == [1, 2, 3, 4, 5, 6]
    table = pd.read_csv(pruned["out"] / "search_trials.csv").set_index("trial")
    assert sorted(table.index) == sorted(lines)
    for i, line in lines.items():
        row = table.loc[i]
        assert (row["lr"], row["epochs"]) == (line["lr"], line["epochs"]), i
        assert row["outcome"] == line["outcome"] == _expected_outcome(line["lr"], line["epochs"])
    # the Optuna state stays in the table: a diverged trial is PRUNED for the sampler
    assert set(table.loc[table["outcome"] == "diverged", "state"]) == {"PRUNED"}
    summary = re.search(r"<p id='search-summary'>(.*?)</p>", pruned["html"], re.S).group(1)
    assert all(f"2 {o}" in summary for o in ("completed", "pruned", "diverged")), summary
    assert "diverged/failed" not in pruned["html"]
    findings = json.loads((pruned["out"] / "findings.json").read_text())
    assert findings["search"]["outcomes"] == {"completed": 2, "pruned": 2, "diverged": 2}


def test_the_best_trial_is_the_best_completed_run_under_the_sweep_lines_number(pruned):
    trials = runs(pruned["dir"], pruned["experiment"], "trial")
    done = [t for t in trials if t.data.tags["nnlab.outcome"] == "completed"]
    best = min(done, key=lambda t: t.data.metrics["val_loss"])
    number = int(best.data.tags["optuna.trial"]) + 1
    line = _lines(pruned["stdout"])[number]
    assert (line["lr"], line["epochs"]) == (float(best.data.params["lr"]),
                                            int(best.data.params["epochs"]))  # fmt: skip
    value = best.data.metrics["val_loss"]
    assert f"Best trial: trial {number}, val_loss {value:.4g}" in pruned["html"]
    findings = json.loads((pruned["out"] / "findings.json").read_text())
    assert findings["search"]["best_trial"] == number


def test_a_search_draws_its_own_figures_not_the_grids(pruned):
    out, html = pruned["out"], pruned["html"]
    for key, _ in FIGURES:
        if key != "search_importance":  # one param varies among the 2 completed trials
            assert (out / f"{key}.png").stat().st_size > 10_000, key
            assert f"src='{key}.png'" in html
    for key, _ in GRID_FIGURES:
        assert not (out / f"{key}.png").exists() and f"id='{key}'" not in html, key
    assert html.count("<tr>") < 20  # no per-lr tables of a continuous search


def test_the_objective_figure_marks_each_outcome_and_no_batch_legend(pruned):
    tags, trials = search_trials(pruned["experiment"], pruned["uri"])
    hist = load_histories(pruned["experiment"], ["val_loss"], pruned["uri"])
    data = fs.objective_vs_lr(trials, hist, "val_loss", by_batch_size=False).nnlab_data
    pts = data["points"].set_index("trial")
    epochs = trials.set_index("trial")["epochs"]
    want = {"completed": "filled", "pruned": "hollow", "diverged": "cross"}
    for trial, row in pts.iterrows():
        assert row["mark"] == want[_expected_outcome(row["lr"], epochs[trial])], trial
    pruned_pts = pts[pts["mark"] == "hollow"]
    last = hist[hist["run_id"].isin(pruned_pts["run_id"])].groupby("run_id")["epoch"].max()
    assert (last == 3).all()  # drawn at the value of the epoch where they stopped
    assert (pts.loc[pts["mark"] == "cross", "y"] == data["top"]).all()
    assert not any("batch" in label for label in data["legend"])
    assert len(set(map(str, pts["color"]))) == 1


def test_the_objective_figure_is_coloured_by_batch_size_when_searched():
    """Hand-built trials: two searched batch sizes, a legend entry for each, no others."""
    trials = pd.DataFrame({"run_id": list("abcd"), "trial": [1, 2, 3, 4],
                           "lr": [0.01, 0.1, 0.01, 1.0], "batch_size": [16, 16, 64, 64],
                           "outcome": ["completed", "pruned", "completed", "diverged"]})  # fmt: skip
    hist = pd.DataFrame({"run_id": list("abcd"), "epoch": 1, "value": [0.3, 0.5, 0.4, np.inf]})
    data = fs.objective_vs_lr(trials, hist, "val_loss", by_batch_size=True).nnlab_data
    assert [x for x in data["legend"] if x.startswith("batch")] == ["batch size 16",
                                                                    "batch size 64"]  # fmt: skip
    pts = data["points"].set_index("run_id")
    assert pts.loc["a", "color"] == pts.loc["b", "color"] != pts.loc["c", "color"]
    assert list(pts["mark"]) == ["filled", "hollow", "filled", "cross"]
    assert Counter(data["legend"]) == Counter(set(data["legend"]))  # no duplicate entries


@pytest.mark.slow
def test_without_a_pruner_a_diverged_trial_is_called_diverged(make_launch_dir):
    rep = _search(make_launch_dir("search-nopruner"), "unpruned", "hydra/sweeper/pruner=none",
                  "hydra.sweeper.n_trials=2", "lr=choice(0.01,1e30)", "epochs=2")  # fmt: skip
    table = pd.read_csv(rep["out"] / "search_trials.csv").set_index("trial")
    lines = _lines(rep["stdout"])
    assert {i: line["outcome"] for i, line in lines.items()} == table["outcome"].to_dict()
    assert sorted(table["outcome"]) == ["completed", "diverged"]
    summary = re.search(r"<p id='search-summary'>(.*?)</p>", rep["html"], re.S).group(1)
    assert "1 diverged" in summary and "pruned)" not in summary and "1 pruned" not in summary
