"""The conf/ tree composes, interpolates the sweep axes, and validation names the bad key."""

from __future__ import annotations

import functools

import pytest
from helpers import CONF, with_values
from helpers import compose as _compose
from omegaconf import OmegaConf

from nnlab.config import OPTIONAL_RULES, RULES, ConfigError, validate


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


GROUPS = ("data", "model", "optimizer", "trainer", "tracking", "debug")
OPTIONS = [(g, p.stem) for g in GROUPS for p in sorted((CONF / g).glob("*.yaml"))]
# what an option needs on the command line to be complete (its ??? values)
REQUIRED = {("data", "csv"): ("data.path=x.csv", "data.target=label")}


@pytest.mark.parametrize(("group", "option"), OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_group_option_validates_to_its_own_file(group: str, option: str, monkeypatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    plain = validate(_compose(f"{group}={option}", *REQUIRED.get((group, option), ())))
    own = OmegaConf.to_container(OmegaConf.load(CONF / group / f"{option}.yaml"))
    assert set(plain[group]) == set(own), "the option's keys, no more, no fewer"
    for key, value in own.items():
        if isinstance(value, str) and value.startswith("${"):  # ${lr}, ${oc.env:...}: resolved
            assert plain[group][key] is not None and not str(plain[group][key]).startswith("$")
        elif value != "???":
            assert plain[group][key] == value, key


BAD_CANDIDATES = (-1, 0, 1.5, "nope", None, [], [0], True, 1)


def option_with(key: str) -> str:
    """``group=option`` of the first option whose file has the optional ``key`` (a key of
    another option is refused as unknown before its value is looked at)."""
    group, name = key.split(".")
    for path in sorted((CONF / group).glob("*.yaml")):
        if name in OmegaConf.load(path):
            return f"{group}={path.stem}"
    raise AssertionError(f"no conf/{group} option has {name}")


@functools.cache
def _defaults(override: str) -> dict:
    return validate(_compose(override))


def promised(allowed: str) -> list:
    """Values a rule's own message ("must be a number in (0, 1)", ...) says are refused."""
    values: list = []
    if "number" in allowed or "integer" in allowed:
        values += [-1, "nope"]
    if "integer" in allowed:
        values.append(1.5)
    if any(t in allowed for t in ("> 0", ">= 1", "(0, 1)", "1-based")):
        values.append(0)
    if "> 1" in allowed:
        values.append(1)
    if "[0, 1)" in allowed or "(0, 1)" in allowed:
        values += [1, 1.5]
    if "true or false" in allowed:
        values += [1, "nope"]
    if "one of" in allowed:
        values.append("nope")
    if "non-empty list" in allowed:
        values += [[], [0]]
    return values


@pytest.mark.parametrize("key", [*RULES, *OPTIONAL_RULES])
def test_every_rule_refuses_a_bad_value_naming_its_key(key: str) -> None:
    good = _defaults(option_with(key) if key in OPTIONAL_RULES else "optimizer=adam")
    allowed = {**RULES, **OPTIONAL_RULES}[key][1]
    refused = {}
    for value in [*BAD_CANDIDATES, *promised(allowed)]:
        try:
            validate(with_values(good, {key: value}))
        except ConfigError as exc:
            refused[repr(value)] = str(exc)
    assert refused, f"{key}: no value of {BAD_CANDIDATES} is refused"
    # what the message promises holds: each value it rules out is refused
    assert {repr(v) for v in promised(allowed)} <= set(refused), (key, allowed, refused)
    for message in refused.values():
        assert message.startswith(f"{key}=") and "\n" not in message, message


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
