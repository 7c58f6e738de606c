"""Every key of a composed config is one nnlab knows (issue 25, defect 8).

A key added with ``+`` that no file of conf/ defines for the chosen options (``+learning_rate``,
a typo, ``+optimizer.momentum`` on Adam) is refused in one line naming the nearest known key;
the keys a user may add (an experiment's own helper keys, ``--config-dir`` options) still work.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import CONF, TINY, cli, compose

from nnlab.config import ConfigError, validate

# override -> (what the one line starts with, the nearest known key it names)
UNKNOWN = {
    "+learning_rate=0.1": ("learning_rate=0.1: not a key nnlab knows", "did you mean lr?"),
    "+trainer.early_stoping.enabled=true": (
        "trainer.early_stoping.enabled=True: not a key of trainer",
        "did you mean trainer.early_stopping.enabled?",
    ),
    "+model.hiden=[4]": ("model.hiden=[4]: not a key of model=mlp", "did you mean model.hidden?"),
    "+schedule.decay=0.5": (
        "schedule.decay=0.5: not a key of schedule=constant",
        "did you mean schedule.decay_rate (schedule=exponential)?",
    ),
    "+foo=1": ("foo=1: not a key nnlab knows", "no known key is close (top level: lr, batch_size"),
    "+optimizer.momentum=0.9": (
        "optimizer.momentum=0.9: not a key of optimizer=adam",
        "optimizer=rmsprop, optimizer=sgd",
    ),
    "+data.noize=0.3": ("data.noize=0.3: not a key of data=moons", "did you mean data.noise?"),
    "+report.metrik=loss": ("report.metrik='loss': not a key", "did you mean report.metric?"),
}


@pytest.mark.parametrize("override", list(UNKNOWN))
def test_an_unknown_key_is_refused_naming_the_nearest_known_one(override: str) -> None:
    start, nearest = UNKNOWN[override]
    with pytest.raises(ConfigError) as err:
        validate(compose(override))
    line = str(err.value)
    assert line.startswith(start) and nearest in line, line
    assert "\n" not in line


def test_a_key_of_another_option_is_fine_with_that_option() -> None:
    assert validate(compose("optimizer=sgd", "optimizer.momentum=0.9"))["optimizer"]["momentum"]
    assert validate(compose("schedule=exponential", "schedule.decay_rate=0.5"))


@pytest.mark.parametrize("name", sorted(p.stem for p in (CONF / "experiment").glob("*.yaml")))
def test_every_experiment_validates_with_its_own_helper_keys(name: str) -> None:
    """claim_across_datasets and lr_schedules pick the data through their own top-level keys
    (``data: ${problems.${problem}}``): keys another key interpolates are in use."""
    cfg = compose(f"+experiment={name}")
    plain = validate(cfg)
    assert validate(plain) == plain  # validate's own output passes again (train() re-checks it)


def test_a_helper_key_nothing_interpolates_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"^unused=1: not a key nnlab knows"):
        validate(compose("+experiment=claim_across_datasets", "+unused=1"))


SWEEPS = {
    "grid": ("lr=0.1,0.01",),
    "search": ("hydra/sweeper=optuna", "hydra.sweeper.n_trials=2", "lr=interval(0.01,0.1)"),
}


@pytest.mark.parametrize("sweep", list(SWEEPS))
def test_sweep_with_an_unknown_key_is_refused_before_anything_runs(
    sweep: str, tmp_path: Path
) -> None:
    """Every trial config of a sweep goes through ``validate`` before any trial starts."""
    proc = cli(tmp_path, "-m", *SWEEPS[sweep], "+foo=1", "epochs=1", *TINY)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nnlab: invalid config: trial `"), lines
    assert "foo=1: not a key nnlab knows; no known key is close" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no store, no multirun dir


def test_single_run_with_adam_momentum_is_refused_with_exit_2(tmp_path: Path) -> None:
    """Was ``run failed: TypeError: Adam.__init__() got an unexpected keyword argument``."""
    proc = cli(tmp_path, "+optimizer.momentum=0.9", "epochs=1", *TINY)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("nnlab: invalid config: optimizer.momentum=0.9: not a key")
    assert not (tmp_path / "mlflow.db").exists()
