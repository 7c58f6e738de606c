"""An experiment name becomes directory names: it must stay inside them (issue 25, defect 14).

``reports/${experiment_name}`` (the report's default) and ``<checkpoint dir>/<experiment>/``
are paths: ``../../escape`` would write outside the launch directory, and a 600-character name
would fail as "cannot write checkpoints". Both are refused in one line naming the name.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import QUIET, TINY, cli, client, compose

from nnlab.config import MAX_EXPERIMENT_NAME, ConfigError, validate

NO_MODEL = "tracking.register_best=false"  # a registered model's name refuses '/' on its own


@pytest.mark.parametrize(
    "name", ["../../escape", "..", "a/../b", "./a", "/abs/name", "a//b", "a\\b", "a/", "x\ty"]
)
def test_a_name_that_is_not_a_safe_relative_path_is_refused(name: str) -> None:
    with pytest.raises(ConfigError) as err:
        validate(compose(f"experiment_name='{name}'", NO_MODEL))
    line = str(err.value)
    assert line.startswith(f"experiment_name={name!r}: ") and "names directories" in line, line
    assert "\n" not in line


@pytest.mark.parametrize("name", ["lr_vs_epochs", "team/lr", "my study 2", "étude", "v1.2"])
def test_ordinary_names_and_subdirectories_are_fine(name: str) -> None:
    assert validate(compose(f"experiment_name='{name}'", NO_MODEL))["experiment_name"] == name


def test_a_600_character_name_is_refused_naming_the_length_limit(tmp_path: Path) -> None:
    name = "a" * 600
    proc = cli(tmp_path, f"experiment_name={name}", "epochs=1", *TINY, QUIET)
    assert proc.returncode == 2, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert f"is 600 characters long; at most {MAX_EXPERIMENT_NAME}" in line, line
    assert line.startswith("nnlab: invalid config: experiment_name='aaaa") and len(line) < 400
    assert "cannot write checkpoints" not in line  # what it said: it blamed the directory


def test_the_report_refuses_a_name_that_would_leave_its_directory(tmp_path: Path) -> None:
    proc = cli(tmp_path, "--experiment", "../../escape", module="nnlab.report")
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert "--experiment '../../escape'" in line and "--out DIR" in line, line
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_an_escaping_name_already_in_a_store_is_never_a_report_directory(launch_dir: Path) -> None:
    """A store written elsewhere may hold the name: the report needs an explicit --out."""
    root = launch_dir / "a" / "b"
    root.mkdir(parents=True)
    (launch_dir / "mlflow.db").rename(root / "mlflow.db")
    made = cli(root, "experiment_name=plain", "epochs=2", *TINY, QUIET, NO_MODEL)
    assert made.returncode == 0, made.stderr
    c = client(root)
    c.rename_experiment(c.get_experiment_by_name("plain").experiment_id, "../../escape")

    refused = cli(root, "--experiment", "../../escape", module="nnlab.report")
    assert refused.returncode == 2, refused.stderr
    assert not (launch_dir / "escape").exists()  # was written there: outside the launch dir
    built = cli(root, "--experiment", "../../escape", "--out", "mine", module="nnlab.report")
    assert built.returncode == 0, built.stderr
    assert (root / "mine" / "index.html").is_file()
