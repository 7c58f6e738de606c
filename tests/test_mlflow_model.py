"""MLflow-native results: each trial's model is an MLflow Model that predicts from raw features,
its data splits are dataset inputs, and a sweep's best model lands in the registry
(``nnlab.tracking.pyfunc``, ``datasets``, ``registry``). Real sweeps, a real sqlite store."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import QUIET, cli, client, compose, free_port, running, runs, store_uri

from nnlab.data import load_dataset, make_moons, stratified_split

EXPERIMENT = "mm"
# noisy moons: the models misclassify some of the 80 validation samples
DATA = ("data.n_samples=400", "data.noise=0.35", "model.hidden=[8]", "epochs=6")
SWEEP = ("-m", "lr=0.01,0.1", *DATA, QUIET, f"experiment_name={EXPERIMENT}")


@pytest.fixture(scope="module")
def sweep(make_launch_dir):
    """(launch dir, the finished sweep's process): two trials on 400 noisy moons samples."""
    cwd = make_launch_dir("mlflow_model")
    proc = cli(cwd, *SWEEP)
    assert proc.returncode == 0, proc.stderr
    return cwd, proc


@pytest.fixture()
def tracking_uri(sweep, monkeypatch) -> str:
    """``runs:/`` and ``models:/`` URIs resolve against the sweep's store."""
    uri = store_uri(sweep[0])
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


def raw_val(n_samples: int = 400, noise: float = 0.35, seed: int = 0, fraction: float = 0.2):
    """The validation split of ``data=moons`` in raw units (float64), rebuilt the way
    ``nnlab.data`` builds it: x (M, 2), class ids y (M,)."""
    rng = np.random.default_rng(seed)
    x, y = make_moons(n_samples, noise, rng)
    _, val = stratified_split(y, fraction, rng)
    return x[val], y[val]


# --- the model --------------------------------------------------------------------------------


def test_each_trial_model_predicts_raw_features_as_it_was_validated(
    sweep, tracking_uri, tmp_path: Path
) -> None:
    import mlflow.pyfunc

    from nnlab import nn

    x, y = raw_val()
    standardised = load_dataset("moons", n_samples=400, noise=0.35).x_val  # what training saw
    frame = pd.DataFrame(x, columns=["x0", "x1"])
    trials = runs(sweep[0], EXPERIMENT, "trial")
    assert len(trials) == 2
    p1 = []
    for run in trials:
        model = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model")
        pred = model.predict(frame)
        assert list(pred.columns) == ["label", "p_0", "p_1"]
        assert pred["label"].dtype == np.int64 and set(pred["label"]) <= {0, 1}
        np.testing.assert_allclose(pred["p_0"] + pred["p_1"], 1.0, atol=1e-6)
        accuracy = float(np.mean(pred["label"].to_numpy() == y))
        assert 0.5 < accuracy < 1.0  # a non-trivial check: some samples are misclassified
        assert accuracy == pytest.approx(run.data.metrics["val_accuracy"], abs=1e-9)
        # the same outputs as the network on the split it was validated on
        weights = client(sweep[0]).download_artifacts(run.info.run_id, "model.npz", str(tmp_path))
        direct = nn.load_model(weights).predict(standardised)[:, 0]
        np.testing.assert_allclose(pred["p_1"], direct, rtol=1e-5, atol=1e-7)
        p1.append(pred["p_1"].to_numpy())
    assert not np.allclose(p1[0], p1[1])  # two trials, two different models


def test_model_directory_is_a_complete_mlflow_model(sweep, tmp_path: Path) -> None:
    from nnlab import nn

    run = runs(sweep[0], EXPERIMENT, "trial")[0]
    c = client(sweep[0])
    local = Path(c.download_artifacts(run.info.run_id, "model", str(tmp_path)))
    files = {p.name for p in local.iterdir()}
    assert {"MLmodel", "model.npz", "nnlab.json", "input_example.json"} <= files
    assert not [f for f in files if f.endswith((".pkl", ".pickle", ".cloudpickle"))]
    import yaml

    meta = yaml.safe_load((local / "MLmodel").read_text())
    assert meta["flavors"]["python_function"]["loader_module"] == "nnlab.tracking.pyfunc"
    assert meta["run_id"] == run.info.run_id
    inputs = [c["name"] for c in json.loads(meta["signature"]["inputs"])]
    outputs = [c["name"] for c in json.loads(meta["signature"]["outputs"])]
    assert inputs == ["x0", "x1"] and outputs == ["label", "p_0", "p_1"]
    stats = json.loads((local / "nnlab.json").read_text())
    data = load_dataset("moons", n_samples=400, noise=0.35)
    assert stats["mean"] == data.mean.tolist() and stats["std"] == data.std.tolist()
    assert stats["labels"] == [0, 1]
    # model.npz stays for nnlab's own loader, and the runs table / run page list the model
    assert nn.load_model(c.download_artifacts(run.info.run_id, "model.npz", str(tmp_path)))
    (logged,) = json.loads(run.data.tags["mlflow.log-model.history"])
    assert logged["artifact_path"] == "model" and "python_function" in logged["flavors"]


def test_model_refuses_input_without_its_features(sweep, tracking_uri) -> None:
    import mlflow.pyfunc
    from mlflow.exceptions import MlflowException

    run = runs(sweep[0], EXPERIMENT, "trial")[0]
    model = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model")
    with pytest.raises(MlflowException, match=r"missing inputs \['x1'\]"):
        model.predict(pd.DataFrame({"x0": [0.0]}))
    # the example stored with the model predicts
    assert len(model.predict(model.input_example)) == len(model.input_example)


def test_multiclass_csv_model_speaks_the_files_labels(tmp_path: Path) -> None:
    """Labels 3/5/7 and named columns come back as ``label`` values and ``p_<label>`` columns."""
    import mlflow.pyfunc

    from nnlab.tracking.pyfunc import write_model_dir
    from nnlab.train import train

    rng = np.random.default_rng(1)
    labels = np.repeat([3, 5, 7], 60)
    x = rng.normal(0, 1.0, (180, 2)) + np.array([[0, 0], [2, 2], [0, 4]])[labels // 2 - 1] * 2
    x = x * [100.0, 0.01] + [5000.0, -3.0]  # raw units far from standardised ones
    csv = tmp_path / "flowers.csv"
    rows = "".join(f"{float(a)!r},{float(b)!r},{c}\n" for (a, b), c in zip(x, labels, strict=True))
    csv.write_text("width,height,species\n" + rows)
    overrides = ("tracking=none", "data=csv", f"data.path={csv}", "data.target=species")
    cfg = compose(*overrides, "epochs=15", "model.hidden=[8]", QUIET)
    data = load_dataset("csv", path=str(csv), target="species")
    assert data.labels == (3, 5, 7) and data.feature_names == ("width", "height")
    result = train(cfg, [], data=data)
    result.model.save(tmp_path / "w.npz")
    write_model_dir(tmp_path / "model", tmp_path / "w.npz", data)

    y_ids = np.unique(labels, return_inverse=True)[1]
    _, val = stratified_split(y_ids, 0.2, np.random.default_rng(0))  # data.seed=0
    pred = mlflow.pyfunc.load_model(str(tmp_path / "model")).predict(
        pd.DataFrame(x[val], columns=["width", "height"])
    )
    assert list(pred.columns) == ["label", "p_3", "p_5", "p_7"]
    accuracy = float(np.mean(pred["label"].to_numpy() == labels[val]))
    assert accuracy == pytest.approx(result.final("val_accuracy"), abs=1e-9)
    assert accuracy > 0.6


def test_a_failed_write_leaves_no_model_directory(tmp_path: Path) -> None:
    from nnlab.tracking.pyfunc import write_model_dir

    with pytest.raises(FileNotFoundError):
        write_model_dir(tmp_path / "model", tmp_path / "missing.npz", load_dataset("moons"))
    assert list(tmp_path.iterdir()) == []  # neither the directory nor its temporary twin


# --- the data -----------------------------------------------------------------------------------


def test_each_trial_logs_both_splits_once_and_runs_filter_by_them(sweep) -> None:
    cwd = sweep[0]
    c = client(cwd)
    trials = runs(cwd, EXPERIMENT, "trial")
    digests = set()
    for run in trials:
        inputs = run.inputs.dataset_inputs
        contexts = sorted(t.value for i in inputs for t in i.tags if t.key == "mlflow.data.context")
        assert contexts == ["training", "validation"]
        for i in inputs:
            assert i.dataset.name == "moons" and i.dataset.source_type == "code"
            tags = json.loads(i.dataset.source)["tags"]
            assert tags["generator"] == "nnlab.data.make_moons" and tags["n_samples"] == 400
            assert json.loads(i.dataset.profile)["num_rows"] in (320, 80)
            digests.add(i.dataset.digest)
    assert len(digests) == 2  # both trials saw the same two splits
    exp_id = c.get_experiment_by_name(EXPERIMENT).experiment_id
    query = "datasets.name = 'moons' and datasets.context = 'validation'"
    found = {r.info.run_id for r in c.search_runs([exp_id], query)}
    assert found == {r.info.run_id for r in trials}  # the parent has no dataset


def test_dataset_digest_follows_the_numbers() -> None:
    from nnlab.tracking.datasets import dataset_inputs

    def digests(**params) -> list[str]:
        cfg = {"name": "moons", **params}
        return [i.dataset.digest for i in dataset_inputs(load_dataset(**cfg), cfg)]

    assert digests(n_samples=200) == digests(n_samples=200)
    assert digests(n_samples=200) != digests(n_samples=200, noise=0.3)
    assert digests(n_samples=200)[0] != digests(n_samples=200, standardize=False)[0]


# --- the registry and the first screen ----------------------------------------------------------


def test_sweep_registers_its_best_model_under_the_experiments_name(sweep, tracking_uri) -> None:
    import mlflow.pyfunc

    cwd, proc = sweep
    c = client(cwd)
    (parent,) = runs(cwd, EXPERIMENT, "sweep")
    best = c.get_model_version_by_alias(EXPERIMENT, "best")
    assert best.run_id == parent.data.tags["nnlab.best_run_id"]
    assert best.tags["nnlab.sweep_id"] == parent.data.tags["nnlab.sweep_id"]
    assert best.tags["nnlab.objective"] == "val_loss"
    best_run = c.get_run(best.run_id)
    assert float(best.tags["nnlab.objective_value"]) == best_run.data.metrics["val_loss"]
    assert f"registered: models:/{EXPERIMENT}@best = version {best.version}" in proc.stdout

    x, _ = raw_val()
    frame = pd.DataFrame(x, columns=["x0", "x1"])
    via_alias = mlflow.pyfunc.load_model(f"models:/{EXPERIMENT}@best").predict(frame)
    via_run = mlflow.pyfunc.load_model(f"runs:/{best.run_id}/model").predict(frame)
    pd.testing.assert_frame_equal(via_alias, via_run)


def test_summary_links_the_runs_table_and_the_experiment_is_a_training_one(sweep) -> None:
    cwd, proc = sweep
    exp = client(cwd).get_experiment_by_name(EXPERIMENT)
    url = f"http://127.0.0.1:5000/#/experiments/{exp.experiment_id}/runs?workflowType=machine_learning"
    assert f"runs table: {url}" in proc.stdout
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"


def test_summary_link_opens_the_sweeps_saved_view(sweep) -> None:
    from nnlab.tracking.runs_view import view_key
    from nnlab.tracking.store import runs_url

    cwd, proc = sweep
    parent_id = proc.stdout.split("parent run: ", 1)[1].split()[0]
    exp_id = client(cwd).get_experiment_by_name(EXPERIMENT).experiment_id
    url = runs_url(store_uri(cwd), exp_id, view=view_key(parent_id))
    assert f"runs table: {url}\n" in proc.stdout
    tags = client(cwd).get_experiment(exp_id).tags
    assert f"mlflow.sharedViewState.{view_key(parent_id)}" in tags


def test_a_rerun_moves_best_only_when_a_better_run_appears(sweep) -> None:
    """The same sweep plus one new trial, without dataset logging: finished trials are skipped,
    the alias follows the best of all three, and no run is registered twice."""
    cwd = sweep[0]
    c = client(cwd)
    args = ("-m", "lr=0.01,0.1,0.03", *DATA, QUIET, f"experiment_name={EXPERIMENT}")
    proc = cli(cwd, *args, "tracking.log_datasets=false")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("] skipped") == 2
    trials = runs(cwd, EXPERIMENT, "trial")
    new = [r for r in trials if r.data.params["lr"] == "0.03"]
    assert len(new) == 1 and new[0].inputs.dataset_inputs == []
    best = min(trials, key=lambda r: r.data.metrics["val_loss"])
    assert c.get_model_version_by_alias(EXPERIMENT, "best").run_id == best.info.run_id
    versions = c.search_model_versions(f"name = '{EXPERIMENT}'")
    assert len({v.run_id for v in versions}) == len(versions)


def test_register_best_false_registers_nothing_and_a_repeat_adds_no_version(sweep) -> None:
    from nnlab.tracking.registry import register_sweep_best

    cwd = sweep[0]
    run = runs(cwd, EXPERIMENT, "trial")[0]
    plain = {"experiment_name": "other", "tracking": {"register_best": False}}
    record = {"run_id": run.info.run_id, "val_loss": 0.1}
    assert register_sweep_best(store_uri(cwd), plain, "s", record) == []
    assert client(cwd).search_registered_models("name = 'other'") == []
    plain["tracking"]["register_best"] = True
    for _ in range(2):  # the same best run again (a re-run of a finished sweep): still version 1
        (line,) = register_sweep_best(store_uri(cwd), plain, "s", record)
        assert line == f"  registered: models:/other@best = version 1 (run {run.info.run_id})"
    assert len(client(cwd).search_model_versions("name = 'other'")) == 1


def test_best_never_moves_to_a_worse_model_latest_sweep_follows_each_sweep(sweep) -> None:
    """Sweeps registering into one model in turn (the module's two real trials): ``best`` moves
    only to a better val_loss, ``latest_sweep`` to each sweep's best; a model chosen by another
    objective is not compared."""
    from nnlab.tracking.registry import register_sweep_best

    cwd = sweep[0]
    c, uri = client(cwd), store_uri(cwd)
    trials = sorted(runs(cwd, EXPERIMENT, "trial"), key=lambda r: r.data.metrics["val_loss"])
    good, bad = trials[0], trials[-1]
    plain = {"experiment_name": "mono", "tracking": {"register_best": True}}

    def register(run, sweep_id: str, study: dict | None = None) -> str:
        record = {"run_id": run.info.run_id, "val_loss": run.data.metrics["val_loss"]}
        (line,) = register_sweep_best(uri, plain, sweep_id, record, study)
        return line.strip()

    def alias(name: str) -> str:
        return c.get_model_version_by_alias("mono", name).run_id

    assert (
        register(good, "s1")
        == f"registered: models:/mono@best = version 1 (run {good.info.run_id})"
    )
    line = register(bad, "s2")  # a later sweep whose best is worse
    assert line.startswith("registered: models:/mono@latest_sweep = version 2"), line
    assert "models:/mono@best stays version 1" in line and "is not beaten" in line, line
    assert (alias("best"), alias("latest_sweep")) == (good.info.run_id, bad.info.run_id)
    # chosen by another objective: not comparable, best stays
    study = {"objective": "val_accuracy", "best": {"value": 1.0}}
    assert "chosen by val_loss, not val_accuracy" in register(bad, "s3", study)
    assert alias("best") == good.info.run_id
    # the good run again (its version is reused): both aliases on version 1
    assert register(good, "s4").startswith("registered: models:/mono@best = version 1")
    assert (alias("best"), alias("latest_sweep")) == (good.info.run_id, good.info.run_id)
    assert len(c.search_model_versions("name = 'mono'")) == 2


@pytest.mark.slow
def test_a_later_sweep_with_a_worse_best_leaves_best_in_place(launch_dir: Path) -> None:
    """Two real sweeps of one experiment in one store, the second one's best worse."""
    c = client(launch_dir)
    base = (*DATA[:3], QUIET, "experiment_name=two")
    first = cli(launch_dir, "-m", "lr=0.1", "epochs=6", *base)
    assert first.returncode == 0, first.stderr
    v1 = c.get_model_version_by_alias("two", "best")
    second = cli(launch_dir, "-m", "lr=0.0001", "epochs=1", *base)  # barely trained
    assert second.returncode == 0, second.stderr
    worse = runs(launch_dir, "two", "trial")
    assert min(r.data.metrics["val_loss"] for r in worse if r.info.run_id != v1.run_id) > float(
        v1.tags["nnlab.objective_value"]
    )
    assert c.get_model_version_by_alias("two", "best").version == v1.version
    latest = c.get_model_version_by_alias("two", "latest_sweep")
    assert latest.version != v1.version and latest.run_id != v1.run_id
    assert f"models:/two@best stays version {v1.version}" in second.stdout


def test_beats_reads_the_direction_and_refuses_what_it_cannot_compare() -> None:
    from types import SimpleNamespace

    from nnlab.tracking.registry import beats

    def version(metric: str | None, value: str | None):
        tags = {"nnlab.objective": metric, "nnlab.objective_value": value}
        return SimpleNamespace(tags={k: v for k, v in tags.items() if v is not None})

    assert beats("val_loss", 0.1, version("val_loss", "0.2"))
    assert not beats("val_loss", 0.2, version("val_loss", "0.2"))  # a tie does not move it
    assert not beats("val_loss", 0.3, version("val_loss", "0.2"))
    assert beats("val_accuracy", 0.9, version("val_accuracy", "0.8"))
    assert not beats("val_accuracy", 0.7, version("val_accuracy", "0.8"))
    assert not beats("val_loss", float("nan"), version("val_loss", "0.2"))
    assert beats("val_loss", 0.5, version("val_loss", None))  # the old one had no finite value
    assert not beats("loss", 0.01, version("val_loss", "0.2"))  # another metric


def test_an_experiment_name_mlflow_cannot_register_is_refused_up_front() -> None:
    from nnlab.config import ConfigError, validate

    with pytest.raises(ConfigError, match="tracking.register_best=false"):
        validate(compose("experiment_name=team/lr"))
    validate(compose("experiment_name=team/lr", "tracking.register_best=false"))


# --- serving ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_mlflow_models_serve_answers_with_the_same_predictions(sweep, tracking_uri) -> None:
    import mlflow.pyfunc
    from helpers import env

    run = runs(sweep[0], EXPERIMENT, "trial")[0]
    model_uri = f"runs:/{run.info.run_id}/model"
    x, _ = raw_val()
    frame = pd.DataFrame(x, columns=["x0", "x1"])
    expected = mlflow.pyfunc.load_model(model_uri).predict(frame)
    port = free_port()
    args = ("models", "serve", "-m", model_uri, "--env-manager", "local", "-h", "127.0.0.1")
    with running(
        sweep[0],
        *args,
        "-p",
        str(port),
        module="mlflow",
        environ=env(MLFLOW_TRACKING_URI=tracking_uri),
    ) as server:
        body = json.dumps({"dataframe_split": frame.to_dict(orient="split", index=False)})
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations",
            body.encode(),
            {"Content-Type": "application/json"},
        )
        deadline = time.monotonic() + 240
        while True:
            assert server.poll() is None, server.communicate()
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    answer = json.load(response)
                break
            except OSError:
                assert time.monotonic() < deadline, "mlflow models serve did not answer"
                time.sleep(0.5)
    served = pd.DataFrame(answer["predictions"])
    assert list(served.columns) == ["label", "p_0", "p_1"]
    assert served["label"].tolist() == expected["label"].tolist()
    np.testing.assert_allclose(served["p_1"], expected["p_1"], rtol=1e-12)
