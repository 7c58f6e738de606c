"""A search with ``hydra.sweeper.direction=maximize`` maximises its objective (issue 25): its
best trial, its pruning and its registered model all take the largest value as the best.

The outcome is forced, not a trajectory: both trials start from the same seeded weights, and
lr=1e-6 leaves them where they are, so its val_accuracy stays at the untrained model's while
lr=0.05 learns the moons. The grid sampler's order is fixed by its seed (the good trial first),
so successive halving (min_resource 1, reduction factor 2) must stop the untrained one at
epoch 1 under maximize, and would not under minimize.
"""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from helpers import TINY, cli, client, runs, trial_lines

from nnlab.search.study import storage

GOOD, BAD = 0.05, 1e-6
SEARCH = (
    "hydra/sweeper=optuna", "trainer.verbose=0", *TINY, "epochs=6",
    "hydra/sweeper/sampler=grid", "hydra.sweeper.sampler.seed=0",
    "hydra/sweeper/pruner=sha", "hydra.sweeper.pruner.min_resource=1",
    "hydra.sweeper.pruner.reduction_factor=2",
    "hydra.sweeper.objective=val_accuracy", "hydra.sweeper.direction=maximize",
    "experiment_name=maxi",
)  # fmt: skip


def study_of(stdout: str) -> optuna.Study:
    line = next(x for x in stdout.splitlines() if x.startswith("  study ") and "journal" in x)
    name, journal = line.split()[1].rstrip(":"), line.rsplit("journal ", 1)[1].rstrip(")")
    return optuna.load_study(study_name=name, storage=storage(journal))


@pytest.mark.slow
def test_a_maximize_search_keeps_prunes_and_registers_by_the_largest_value(
    launch_dir: Path,
) -> None:
    proc = cli(launch_dir, "-m", *SEARCH, "hydra.sweeper.n_trials=2", f"lr=choice({BAD},{GOOD})")
    assert proc.returncode == 0, proc.stderr
    study = study_of(proc.stdout)
    assert study.direction == optuna.study.StudyDirection.MAXIMIZE
    trials = {float(t.data.params["lr"]): t for t in runs(launch_dir, "maxi", "trial")}
    good, bad = trials[GOOD], trials[BAD]
    by_run = {t.user_attrs["mlflow_run_id"]: t for t in study.trials}
    first = {lr: by_run[t.info.run_id].intermediate_values[1] for lr, t in trials.items()}
    assert first[GOOD] > first[BAD] + 0.05, first  # forced: one learns, one stays untrained

    # pruning: the untrained trial is the worse one at epoch 1, so it stops there
    assert [x.split()[1] for x in trial_lines(proc.stdout)] == ["completed", "pruned"], proc.stdout
    assert (
        bad.data.tags["nnlab.outcome"] == "pruned" and bad.data.tags["nnlab.stopped_epoch"] == "1"
    )
    assert good.data.tags["nnlab.outcome"] == "completed"

    # best: the largest val_accuracy, in the study, the summary, the parent run
    best_value = good.data.metrics["val_accuracy"]
    assert study.best_trial.user_attrs["mlflow_run_id"] == good.info.run_id
    assert study.best_value == pytest.approx(best_value)
    (line,) = [x for x in proc.stdout.splitlines() if x.lstrip().startswith("best")]
    assert "val_accuracy=" in line and good.info.run_id in line, line  # the summary's best
    (parent,) = runs(launch_dir, "maxi", "sweep")
    assert parent.data.tags["nnlab.best_run_id"] == good.info.run_id
    assert float(parent.data.tags["optuna.best_value"]) == pytest.approx(best_value)

    # the registered model: @best is the best run's model
    mlflow = client(launch_dir)
    version = mlflow.get_model_version_by_alias("maxi", "best")
    assert version.run_id == good.info.run_id
    assert version.tags["nnlab.objective"] == "val_accuracy"
    assert float(version.tags["nnlab.objective_value"]) == pytest.approx(best_value)

    # a later search of the experiment whose best is worse (lower): @best stays, latest moves
    worse = cli(launch_dir, "-m", *SEARCH, "hydra.sweeper.n_trials=1", f"lr=choice({BAD})")
    assert worse.returncode == 0, worse.stderr
    assert mlflow.get_model_version_by_alias("maxi", "best").version == version.version
    latest = mlflow.get_model_version_by_alias("maxi", "latest_sweep")
    assert latest.version != version.version
    assert float(latest.tags["nnlab.objective_value"]) < best_value


@pytest.mark.slow
def test_best_follows_the_search_direction_even_for_a_loss(launch_dir: Path) -> None:
    args = [a.replace("objective=val_accuracy", "objective=val_loss") for a in SEARCH]
    first = cli(launch_dir, "-m", *args, "hydra.sweeper.n_trials=2", f"lr=choice({BAD},{GOOD})")
    assert first.returncode == 0, first.stderr
    best = client(launch_dir).get_model_version_by_alias("maxi", "best")
    largest = max(t.data.metrics["val_loss"] for t in runs(launch_dir, "maxi", "trial"))
    assert float(best.tags["nnlab.objective_value"]) == pytest.approx(largest)
    smaller = cli(launch_dir, "-m", *args, "hydra.sweeper.n_trials=1", f"lr=choice({GOOD})")
    assert smaller.returncode == 0, smaller.stderr
    assert client(launch_dir).get_model_version_by_alias("maxi", "best").version == best.version
