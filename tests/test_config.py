"""The conf/ tree composes, interpolates the sweep axes, and validation names the bad key."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from nnlab.config import ConfigError, validate

CONF = str(Path(__file__).resolve().parents[1] / "conf")


def _compose(*overrides: str):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose("config", overrides=list(overrides))


def test_defaults_compose_and_interpolate_the_axes() -> None:
    plain = validate(_compose("lr=0.05", "batch_size=8", "epochs=3", "seed=7"))
    assert plain["optimizer"] == {
        "name": "adam",
        "learning_rate": 0.05,
        "beta_1": 0.9,
        "beta_2": 0.999,
        "epsilon": 1e-07,
    }
    assert (plain["trainer"]["batch_size"], plain["trainer"]["epochs"]) == (8, 3)
    assert plain["model"]["seed"] == 7
    assert plain["data"]["name"] == "moons" and plain["data"]["seed"] == 0  # data stays fixed
    assert plain["tracking"]["uri"] == "sqlite:///mlflow.db"
    assert plain["report"] == {"enabled": False, "out": "reports/nnlab", "metric": "val_loss"}
    # the testing knobs live in their own group, off, and nowhere else
    assert plain["debug"] == {"fail_at_epoch": None, "epoch_delay": 0.0}
    assert not {"fail_at_epoch", "epoch_delay"} & set(plain["trainer"])


@pytest.mark.parametrize(
    "group", ["optimizer=sgd", "optimizer=rmsprop", "tracking=none", "data=xor"]
)
def test_every_group_option_validates(group: str) -> None:
    validate(_compose(group))


def test_server_tracking_reads_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking.example:5000")
    assert (
        validate(_compose("tracking=server"))["tracking"]["uri"] == "http://tracking.example:5000"
    )


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("lr=-0.1", "lr=-0.1: must be a number > 0"),
        ("lr=0", "lr=0: must be a number > 0"),
        ("lr=abc", "lr='abc': must be a number > 0"),
        ("batch_size=0", "batch_size=0: must be an integer >= 1"),
        ("batch_size=1.5", "batch_size=1.5: must be an integer >= 1"),
        ("epochs=0", "epochs=0: must be an integer >= 1"),
        ("seed=-1", "seed=-1: must be an integer >= 0"),
        ("model.hidden=[]", "model.hidden=[]: must be a non-empty list of positive integers"),
        ("model.hidden=[8,0]", "model.hidden=[8, 0]: must be a non-empty list"),
        ("model.activation=relux", "model.activation='relux': must be one of"),
        ("model.dtype=float16", "model.dtype='float16': must be one of ['float32', 'float64']"),
        (
            "optimizer.name=adagrad",
            "optimizer.name='adagrad': must be one of ['sgd', 'adam', 'rmsprop']",
        ),
        ("optimizer.beta_1=1.5", "optimizer.beta_1=1.5: must be a number in [0, 1)"),
        ("data.name=mnist", "data.name='mnist': must be one of"),
        ("trainer.divergence_factor=0.5", "trainer.divergence_factor=0.5: must be a number > 1"),
        ("trainer.verbose=3", "trainer.verbose=3: must be auto, 0, 1 or 2"),
        (
            "trainer.early_stopping.monitor=acc",
            "trainer.early_stopping.monitor='acc': must be one of",
        ),
        ("data=csv", "data.path is required"),
        ("debug.fail_at_epoch=0", "debug.fail_at_epoch=0: must be null or a 1-based epoch number"),
        ("debug.epoch_delay=-1", "debug.epoch_delay=-1: must be a number of seconds >= 0"),
    ],
)
def test_bad_values_give_one_line_naming_key_and_allowed(override: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        validate(_compose(override))
    text = str(err.value)
    assert message in text
    assert "\n" not in text
