"""nnlab.analysis edge cases a clean sweep does not produce: resumed runs that logged a step
twice, NaN / inf values, a run still RUNNING, a single run with no parent, unusual param strings.
Runs are written through the real MLflow client into a temp sqlite store, in the nnlab schema
(docs/architecture.md); the end-to-end tests on a real sweep are in test_report.py."""

from __future__ import annotations

import math
import time

import numpy as np
import pandas as pd
import pytest
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from nnlab.analysis import load_histories, load_runs, resolve_tracking_uri

EXP = "edge"


def _trial(client, exp_id, parent, params, series, outcome="completed", status="FINISHED",
           stopped=None, name=None):  # fmt: skip
    tags = {"nnlab.role": "trial"}
    if parent:
        tags |= {"mlflow.parentRunId": parent, "nnlab.sweep_id": parent}
    run = client.create_run(exp_id, run_name=name, tags=tags)
    rid = run.info.run_id
    ts = int(time.time() * 1000)
    metrics = [Metric(k, v, ts, step) for k, vals in series.items() for step, v in vals]
    client.log_batch(rid, metrics=metrics, params=[Param(k, str(v)) for k, v in params.items()])
    run_tags = [RunTag("nnlab.outcome", outcome)] if outcome else []
    if stopped:
        run_tags.append(RunTag("nnlab.stopped_epoch", str(stopped)))
    if run_tags:
        client.log_batch(rid, tags=run_tags)
    if status != "RUNNING":
        client.set_terminated(rid, status)
    return rid


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("store")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    exp_id = client.create_experiment(EXP)
    client.create_experiment("empty")
    parent = client.create_run(exp_id, run_name="sweep", tags={"nnlab.role": "sweep"}).info.run_id
    base = {"batch_size": 16, "epochs": 3, "data.name": "moons", "data.noise": 0.2,
            "model.hidden": "[16, 16]", "trainer.shuffle": True, "optimizer.name": "adam"}  # fmt: skip
    ids = {}
    ids["ok"] = _trial(client, exp_id, parent, {**base, "lr": "1e-3", "seed": 0},
                       {"loss": [(1, 0.7), (2, 0.5), (3, 0.4)],
                        "val_loss": [(1, 0.72), (2, 0.55), (3, 0.45)]})  # fmt: skip
    ids["diverged"] = _trial(client, exp_id, parent, {**base, "lr": 10.0, "seed": 0},
                             {"loss": [(1, 0.7), (2, math.inf)],
                              "val_loss": [(1, 0.9), (2, math.nan)]},
                             outcome="diverged", stopped=2)  # fmt: skip
    # A resumed run: step 2 logged twice, the later value must win.
    rid = _trial(client, exp_id, parent, {**base, "lr": 0.01, "seed": 1},
                 {"loss": [(1, 0.6), (2, 0.9)], "val_loss": [(1, 0.6), (2, 0.9)]})  # fmt: skip
    time.sleep(0.01)
    ts = int(time.time() * 1000) + 5
    client.log_batch(rid, metrics=[Metric("loss", 0.3, ts, 2), Metric("loss", 0.25, ts, 3),
                                   Metric("val_loss", 0.35, ts, 2), Metric("val_loss", 0.3, ts, 3)])  # fmt: skip
    ids["resumed"] = rid
    ids["running"] = _trial(client, exp_id, parent, {**base, "lr": 0.1, "seed": 2},
                            {"loss": [(1, 0.5)], "val_loss": [(1, 0.5)]}, outcome=None,
                            status="RUNNING")  # fmt: skip
    ids["single"] = _trial(client, exp_id, None, {**base, "lr": 0.1, "seed": 3},
                           {"loss": [(1, 0.5), (2, 0.4), (3, 0.3)],
                            "val_loss": [(1, 0.5), (2, 0.45), (3, 0.4)]})  # fmt: skip
    return {"uri": uri, "tmp": tmp, "ids": ids, "parent": parent}


def test_runs_excludes_the_sweep_parent_and_keeps_every_trial(store):
    runs = load_runs(EXP, store["uri"]).set_index("run_id")
    assert set(runs.index) == set(store["ids"].values())
    assert store["parent"] not in runs.index


def test_params_are_cast_to_their_real_types(store):
    runs = load_runs(EXP, store["uri"])
    assert runs["lr"].dtype == np.float64 and 1e-3 in set(runs["lr"])  # "1e-3" -> 0.001
    assert runs["batch_size"].dtype == np.int64 and runs["seed"].dtype == np.int64
    assert runs["data.noise"].dtype == np.float64
    assert runs["model.hidden"].eq("[16, 16]").all()  # lists stay strings
    assert runs["trainer.shuffle"].eq("True").all()
    assert runs.sort_values(["lr", "seed"])["lr"].is_monotonic_increasing


def test_outcome_comes_from_the_tag_else_the_status(store):
    runs = load_runs(EXP, store["uri"]).set_index("run_id")
    ids = store["ids"]
    assert runs.loc[ids["diverged"], "outcome"] == "diverged"
    assert runs.loc[ids["diverged"], "stopped_epoch"] == 2
    assert pd.isna(runs.loc[ids["ok"], "stopped_epoch"])
    assert runs.loc[ids["running"], "outcome"] == "running"  # not dropped for lack of a tag
    assert runs.loc[ids["ok"], "final_val_loss"] == pytest.approx(0.45)
    assert runs.loc[ids["diverged"], "final_loss"] == math.inf


def test_histories_keep_nan_and_inf_and_the_latest_value_of_a_repeated_step(store):
    hist = load_histories(EXP, ["loss", "val_loss"], store["uri"])
    ids = store["ids"]
    d = hist[hist["run_id"] == ids["diverged"]].set_index(["metric", "epoch"])["value"]
    assert d[("loss", 2)] == math.inf
    assert math.isnan(d[("val_loss", 2)])
    r = hist[(hist["run_id"] == ids["resumed"]) & (hist["metric"] == "loss")]
    assert r["epoch"].tolist() == [1, 2, 3]
    assert r["value"].tolist() == pytest.approx([0.6, 0.3, 0.25])
    assert str(hist["metric"].dtype) == "category"


def test_histories_of_a_metric_subset(store):
    hist = load_histories(EXP, "val_loss", store["uri"])
    assert set(hist["metric"].astype(str)) == {"val_loss"}
    with pytest.raises(ValueError, match="metrics is empty"):
        load_histories(EXP, [], store["uri"])


def test_unknown_and_empty_experiments_list_the_existing_ones(store):
    with pytest.raises(ValueError, match=r"unknown experiment 'nope'.*edge") as err:
        load_runs("nope", store["uri"])
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match=r"'empty'.*no trial runs.*edge"):
        load_histories("empty", tracking_uri=store["uri"])


def test_a_missing_store_is_an_error_and_is_not_created(tmp_path):
    db = tmp_path / "nothing.db"
    with pytest.raises(ValueError, match="no MLflow store"):
        load_runs(EXP, f"sqlite:///{db}")
    assert not db.exists()


def test_tracking_uri_default_env_then_cwd_sqlite(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_tracking_uri() == "sqlite:///mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert resolve_tracking_uri() == "http://127.0.0.1:5000"
    assert resolve_tracking_uri("sqlite:///x.db") == "sqlite:///x.db"


def test_cwd_default_store_is_found(store, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(store["tmp"])
    assert len(load_runs(EXP)) == len(store["ids"])


def test_report_on_an_odd_store_counts_every_run(store, tmp_path):
    """The report on the edge-case store: the RUNNING run is counted, not dropped."""
    import json

    from nnlab.report import build_report

    index = build_report(EXP, tmp_path / "rep", tracking_uri=store["uri"], progress=None)
    findings = json.loads((tmp_path / "rep" / "findings.json").read_text())
    assert sum(findings["outcomes"].values()) == len(store["ids"])
    assert findings["outcomes"]["running"] == 1
    html = index.read_text(encoding="utf-8")
    assert "1 running" in html and "Diverged runs by lr: lr=10: 1/1" in html
    assert (tmp_path / "rep" / "outcomes.png").stat().st_size > 10_000


def test_non_sqlite_stores_fall_back_to_the_client(tmp_path, monkeypatch):
    """A file store (any non-sqlite URI) is read through MlflowClient, with the same frames."""
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    uri = (tmp_path / "mlruns").as_uri()
    client = MlflowClient(tracking_uri=uri)
    exp_id = client.create_experiment("files")
    parent = client.create_run(exp_id, tags={"nnlab.role": "sweep"}).info.run_id
    params = {"lr": 0.01, "batch_size": 8, "epochs": 2, "seed": 0}
    rid = _trial(client, exp_id, parent, params,
                 {"loss": [(1, 0.7), (2, 0.6)], "val_loss": [(1, 0.8), (2, math.nan)]})  # fmt: skip
    runs = load_runs("files", uri)
    assert runs["run_id"].tolist() == [rid] and runs["batch_size"].dtype == np.int64
    hist = load_histories("files", ("loss", "val_loss"), uri)
    assert len(hist) == 4 and hist["epoch"].tolist() == [1, 2, 1, 2]
    assert hist["value"].tolist()[:3] == pytest.approx([0.7, 0.6, 0.8])
    assert math.isnan(hist["value"].iloc[3])
