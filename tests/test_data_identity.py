"""A trial's identity includes its data (issue 25, defect 9).

The config hash decides what a sweep skips and which checkpoint a trial resumes; a CSV's path
says nothing about its content, so the hash also covers a digest of the file. Configs without a
file keep the hash they always had: their FINISHED runs in existing stores still skip.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers import QUIET, cli, compose, runs, trial_lines

from nnlab.config import validate
from nnlab.tracking import config_hash

ROWS = 40


def table(flip: bool = False) -> str:
    """40 rows of two features, label = x0 > 0 (or its opposite)."""
    lines = ["x0,x1,label"]
    for i in range(ROWS):
        x0, x1 = (i * 37 % ROWS) / ROWS - 0.5, (i * 11 % ROWS) / ROWS - 0.5
        lines.append(f"{x0:.3f},{x1:.3f},{int((x0 > 0) != flip)}")
    return "\n".join(lines) + "\n"


# A config as today's code hashes it (golden value from before the data digest existed): a
# store's FINISHED runs are found by this hash, so it must never change needlessly.
LEGACY = {
    "lr": 0.01,
    "batch_size": 32,
    "epochs": 20,
    "seed": 0,
    "experiment_name": "nnlab",
    "data": {"name": "moons", "n_samples": 1000, "noise": 0.2, "seed": 0, "val_fraction": 0.2,
             "standardize": True},
    "model": {"name": "mlp", "hidden": [16, 16], "activation": "relu", "loss": "auto",
              "dtype": "float32", "seed": 0},
    "tracking": {"backend": "mlflow", "uri": "sqlite:///mlflow.db"},
}  # fmt: skip


@pytest.mark.parametrize("name", ["moons", "digits", "breast_cancer"])
def test_configs_without_a_file_keep_their_hash(name: str) -> None:
    plain = {**LEGACY, "data": {**LEGACY["data"], "name": name}}
    expected = {
        "moons": "31aaeb6f456666b1",
        "digits": "06a6be215b47ab68",
        "breast_cancer": "44b9317f8924b5cc",
    }
    assert config_hash(plain) == expected[name]


def test_the_hash_follows_the_csv_content_not_its_path_or_time(tmp_path: Path) -> None:
    path = tmp_path / "my.csv"
    path.write_text(table())
    plain = validate(compose("data=csv", f"data.path={path}", "data.target=label"))
    first = config_hash(plain)
    os.utime(path, (1, 1))  # touched, same bytes: same identity
    assert config_hash(plain) == first
    path.write_text(table(flip=True))
    flipped = config_hash(plain)
    assert flipped != first
    path.write_text(table())
    assert config_hash(plain) == first


@pytest.mark.slow
def test_an_edited_csv_trains_again_instead_of_reusing_stale_results(launch_dir: Path) -> None:
    data = launch_dir / "my.csv"
    data.write_text(table())
    args = ("-m", "lr=0.1,0.01", "epochs=2", "data=csv", "data.path=my.csv", "data.target=label")
    args = (*args, "model.hidden=[4]", QUIET)
    first = cli(launch_dir, *args)
    assert first.returncode == 0, first.stderr
    assert all(" completed " in line for line in trial_lines(first.stdout)), first.stdout

    data.write_text(table(flip=True))  # every label flipped
    second = cli(launch_dir, *args)
    assert second.returncode == 0, second.stderr
    lines = trial_lines(second.stdout)
    assert len(lines) == 2 and not any("skipped" in line for line in lines), second.stdout
    trials = runs(launch_dir, "nnlab", role="trial")
    assert len(trials) == 4 and len({r.data.tags["nnlab.config_hash"] for r in trials}) == 4

    third = cli(launch_dir, *args)  # unchanged since: nothing to train
    assert all("skipped" in line for line in trial_lines(third.stdout)), third.stdout


# The bundled files' bytes as every stored run of them was trained on. Their configs hash no
# digest (stores keep skipping them), so a change to a file must not pass unnoticed.
BUNDLED = {
    "breast_cancer": "738c564042a874cc25ff7cf4cad9a815253adf80b0cf979b2632f21710d4994d",
    "digits": "9f7fca3251c178a06039990b75e3023f8b888151d2e2d4579c3ba0d2744a1d00",
}


@pytest.mark.parametrize("name", list(BUNDLED))
def test_bundled_files_are_the_ones_their_config_hashes_stand_for(name: str) -> None:
    import hashlib
    from importlib import resources

    data = resources.files("nnlab").joinpath(f"datasets/{name}.csv").read_bytes()
    assert hashlib.sha256(data).hexdigest() == BUNDLED[name], (
        f"nnlab/datasets/{name}.csv changed, but configs on it hash as before: existing stores "
        "would skip their trials with results of the old file. Make source_digest cover the "
        "bundled datasets (their hashes then change once) before changing the file."
    )
