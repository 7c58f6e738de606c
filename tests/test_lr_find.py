"""``python -m nnlab.lr_find``: the range test runs the steps it says, writes its job directory,
refuses bad keys in one line (exit 2), and files one MLflow run with its curve and figure."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from helpers import QUIET, TINY, cli, compose

from nnlab import lr_find, lr_range
from nnlab.config import ConfigError, validate_lr_find
from nnlab.jobdir import read_history


def finder_config(*overrides: str) -> dict:
    return validate_lr_find(compose(*TINY, "tracking=none", *overrides, config="lr_find"))


def read_curve(path: Path) -> dict[str, np.ndarray]:
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    return {k: np.array([float(r[k]) for r in rows]) for k in rows[0]}


def test_mini_batches_are_fresh_full_and_cover_each_pass() -> None:
    rng = np.random.default_rng(0)
    gen = lr_find.mini_batches(10, 4, rng)
    batches = [next(gen) for _ in range(6)]  # 2 full batches per pass of 10, 2 left over
    assert all(len(b) == 4 for b in batches)
    for p in range(3):
        one_pass = np.concatenate(batches[2 * p : 2 * p + 2])
        assert len(set(one_pass)) == 8  # no sample twice within a pass
    assert not np.array_equal(batches[0], batches[2])  # a new order every pass
    assert [len(next(lr_find.mini_batches(3, 8, rng))) for _ in range(2)] == [3, 3]  # B > N


def test_each_step_is_one_update_at_the_ramps_rate_on_a_fresh_batch() -> None:
    """Replayed with the public API: a constant-rate SGD model whose rate is set to the ramp's
    before each one-batch fit gives the same batch losses."""
    from nnlab.build import build_model, load_data

    plain = finder_config("optimizer=sgd", "batch_size=16", "lr_find.num_it=30")
    result = lr_find.run_range_test(plain)
    test = result.test
    assert len(test.losses) == 30 and not test.stopped
    np.testing.assert_allclose(test.lrs, lr_range.ramp(1e-7, 10.0, 30))
    data = load_data(plain["data"])
    model = build_model(plain["model"], plain["optimizer"], data.n_features, data.n_classes)
    batches = lr_find.mini_batches(len(data.x_train), 16, np.random.default_rng([0, 1]))
    replay = []
    for k in range(30):
        idx = next(batches)
        model.optimizer.learning_rate = test.lrs[k]
        replay.append(
            model.fit(data.x_train[idx], data.y_train[idx], batch_size=16).history["loss"][0]
        )
    np.testing.assert_allclose(test.losses, replay, rtol=1e-5)
    np.testing.assert_allclose(test.smoothed, lr_range.smooth(np.array(replay), 0.98), rtol=1e-5)


def test_a_diverging_ramp_stops_at_4x_the_best_smoothed_loss() -> None:
    plain = finder_config(
        "optimizer=sgd", "batch_size=16", "lr_find.end_lr=1e6", "lr_find.beta=0.5"
    )
    test = lr_find.run_range_test(plain).test
    assert test.stopped and len(test.losses) < 100
    smoothed = np.array(test.smoothed)
    assert lr_range.stop_index(smoothed, 4.0) == len(smoothed) - 1  # stopped at the first


def test_the_job_directory_holds_the_curve_suggestions_and_figure(tmp_path: Path) -> None:
    """tracking=none: everything in the job directory, MLflow never imported (a poisoned
    ``mlflow`` package first on the path would fail the run)."""
    import os

    from helpers import env

    poison = tmp_path / "poison" / "mlflow"
    poison.mkdir(parents=True)
    (poison / "__init__.py").write_text("raise ImportError('tracking=none imported mlflow')\n")
    path = os.pathsep.join([str(poison.parent), os.environ.get("PYTHONPATH", "")])
    launch = tmp_path / "launch"
    launch.mkdir()
    proc = cli(launch, *TINY, QUIET, "tracking=none", "optimizer=sgd", "batch_size=16",
               module="nnlab.lr_find", environ=env(PYTHONPATH=path))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    tmp_path = launch
    assert "lr_find: suggested lr valley=" in proc.stdout
    (job,) = tmp_path.glob("outputs/*/*")
    meta = json.loads((job / "run.json").read_text())
    assert meta["tags"]["nnlab.role"] == "lr_find" and meta["outcome"] == "completed"
    assert meta["tracked"] is False and meta["params"]["optimizer.name"] == "sgd"
    curve = read_curve(job / "artifacts" / "history.csv")
    assert list(curve) == ["step", "learning_rate", "batch_loss", "smooth_loss"]
    assert list(curve["step"]) == list(range(1, len(curve["step"]) + 1))
    # the params are the suggestions of the curve the file holds
    expected = lr_range.suggest(curve["learning_rate"], curve["smooth_loss"], 100)
    for name, s in expected.items():
        assert float(meta["params"][f"suggested_lr_{name}"]) == pytest.approx(s.lr, rel=1e-12)
    png = (job / "artifacts" / "lr_find.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    series = read_history(job / "artifacts")  # what filing it into MLflow reads
    assert sorted(series) == ["batch_loss", "learning_rate", "smooth_loss"]
    assert [s for s, _ in series["smooth_loss"]] == list(range(1, len(curve["step"]) + 1))
    assert not (tmp_path / "mlflow.db").exists()


def test_the_figure_marks_each_suggestion() -> None:
    plain = finder_config("optimizer=adam", "batch_size=16")
    result = lr_find.run_range_test(plain)
    fig = lr_find.draw(result, plain)
    assert fig.nnlab_data["suggested"] == {n: s.lr for n, s in result.suggestions.items()}
    assert fig.nnlab_data["kept"] == (10, 95) and fig.nnlab_data["points"] == 100
    lines = [ln.get_label() for ln in fig.axes[0].get_lines()]
    assert [ln.split(":")[0] for ln in lines if ":" in ln] == ["valley", "minimum", "steep"]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("lr_find.num_it=5", "lr_find.num_it=5: must be an integer >= 10"),
        ("lr_find.start_lr=0", "lr_find.start_lr=0: must be a number > 0"),
        ("lr_find.end_lr=1e-8", "lr_find.end_lr=1e-08: must be larger than lr_find.start_lr"),
        ("lr_find.beta=1.0", "lr_find.beta=1.0: must be a number in [0, 1)"),
        ("lr_find.stop_factor=1", "lr_find.stop_factor=1: must be a number > 1"),
        ("+lr_find.smooth=0.9", "lr_find.smooth: unknown key"),
        ("batch_size=0", "batch_size=0: must be an integer >= 1"),
    ],
)
def test_a_bad_key_is_refused_in_one_line(override: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        finder_config(override)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_bad_input_exits_2_in_one_line_before_anything_runs(tmp_path: Path) -> None:
    proc = cli(tmp_path, *TINY, "tracking=none", "lr_find.num_it=5", module="nnlab.lr_find")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "nnlab: invalid config: lr_find.num_it=5: must be an integer >= 10 (the suggestions "
        "drop the first num_it//10 and the last 5 steps)"
    ]
    assert not list(tmp_path.glob("outputs/*/*/run.json"))
    multi = cli(tmp_path, "-m", "tracking=none", module="nnlab.lr_find")
    assert multi.returncode == 2 and "no -m" in multi.stderr


def test_conf_lr_find_holds_fastais_defaults() -> None:
    plain = finder_config()
    assert plain["lr_find"] == {
        "start_lr": lr_range.START_LR,
        "end_lr": lr_range.END_LR,
        "num_it": lr_range.NUM_IT,
        "beta": lr_range.BETA,
        "stop_factor": lr_range.STOP_FACTOR,
    }


@pytest.mark.slow
def test_a_tracked_run_holds_the_params_the_curve_and_the_figure(launch_dir: Path) -> None:
    from helpers import client, runs, steps

    proc = cli(launch_dir, *TINY, "optimizer=sgd", "batch_size=16", "experiment_name=finder",
               module="nnlab.lr_find")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (run,) = runs(launch_dir, "finder", "lr_find")
    assert runs(launch_dir, "finder", "trial") == []
    assert run.info.status == "FINISHED" and f"MLflow run {run.info.run_id}" in proc.stdout
    (job,) = launch_dir.glob("outputs/*/*")
    curve = read_curve(job / "artifacts" / "history.csv")
    n = len(curve["step"])
    for name in ("learning_rate", "batch_loss", "smooth_loss"):
        assert steps(launch_dir, run.info.run_id, name) == list(range(1, n + 1))
    history = client(launch_dir).get_metric_history(run.info.run_id, "smooth_loss")
    np.testing.assert_allclose(
        sorted(history, key=lambda m: m.step)[-1].value, curve["smooth_loss"][-1]
    )
    expected = lr_range.suggest(curve["learning_rate"], curve["smooth_loss"], 100)
    for name, s in expected.items():
        assert float(run.data.params[f"suggested_lr_{name}"]) == pytest.approx(s.lr, rel=1e-12)
    assert run.data.params["optimizer.name"] == "sgd" and run.data.params["lr_find.num_it"] == "100"
    assert run.data.tags["nnlab.lr_find.steps"] == str(n)
    arts = {a.path for a in client(launch_dir).list_artifacts(run.info.run_id)}
    assert {"lr_find.png", "history.csv", "config.yaml", "overrides.yaml"} <= arts
