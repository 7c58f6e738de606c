"""Config validation: every value checked before anything is built or tracked.

``validate(cfg)`` raises :class:`ConfigError` with one line that names the key, the bad value and
what is allowed, e.g. ``lr=-0.1: must be a number > 0 (e.g. lr=0.01)``. ``nnlab.run`` prints that
line and exits 2; no MLflow run is created for a config that fails here.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from nnlab.config_keys import unknown_key
from nnlab.data import DATASETS, is_int
from nnlab.nn import DTYPES, OPTIMIZERS
from nnlab.nn.activations import ACTIVATIONS

SCHEDULES = ("constant", "exponential", "cosine", "plateau")  # conf/schedule/
MONITORS = ("loss", "val_loss", "accuracy", "val_accuracy")
VERBOSITY = ("auto", 0, 1, 2)
BACKENDS = ("mlflow", "none")
LOSSES = ("auto", "binary_crossentropy", "sparse_categorical_crossentropy")


class ConfigError(ValueError):
    """A config value is out of range or of the wrong type (one-line message)."""


def full_error() -> bool:
    """True when the user asked for tracebacks (``HYDRA_FULL_ERROR=1``).

    ``nnlab.run.cli`` sets ``HYDRA_FULL_ERROR=1`` itself (so Hydra raises instead of printing
    several lines) and keeps the user's own choice in ``NNLAB_FULL_ERROR``.
    """
    return os.environ.get("NNLAB_FULL_ERROR", os.environ.get("HYDRA_FULL_ERROR")) == "1"


def activations() -> tuple[str, ...]:
    """Activation names that ``nnlab.nn`` knows, sorted."""
    return tuple(sorted(ACTIVATIONS))


def datasets() -> tuple[str, ...]:
    """Dataset names that ``nnlab.data`` registers, sorted."""
    return tuple(sorted(DATASETS))


# --- small predicates: each returns True when the value is acceptable ------------------------


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _check(ok: bool, key: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"{key}={value!r}: {allowed}")


def _get(cfg: Mapping, dotted: str) -> Any:
    node: Any = cfg
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise ConfigError(f"{dotted}: missing from the config (check the conf/ group files)")
        node = node[part]
    return node


MAX_EXPERIMENT_NAME = 200  # UTF-8 bytes: a file name holds 255, and nnlab adds suffixes to it
_UNSAFE_NAME = (
    "names directories (reports/<name>, <checkpoint dir>/<name>) and must stay inside them"
)


def experiment_name_problem(name: str) -> str | None:
    """Why ``name`` cannot name an experiment's directories, or None when it can.

    The report's default directory is ``reports/<name>`` and checkpoints go to
    ``<checkpoint dir>/<name>/``: the name must be a relative path that stays below them
    ('/'-separated parts, none empty, ``.`` or ``..``; no backslash or control character) and
    short enough for a file name.
    """
    size = len(name.encode("utf-8"))
    if size > MAX_EXPERIMENT_NAME:
        long = f"{len(name)} characters" + (f" ({size} UTF-8 bytes)" if size != len(name) else "")
        return (
            f"is {long} long; at most {MAX_EXPERIMENT_NAME} (it names the MLflow experiment and "
            "directories: reports/<name>, <checkpoint dir>/<name>); pick a shorter name"
        )
    if any(part in ("", ".", "..") for part in name.split("/")) or any(
        c == "\\" or ord(c) < 32 or ord(c) == 127 for c in name
    ):
        return (
            f"{_UNSAFE_NAME}: no '.' or '..' parts, no leading, trailing or double '/', no "
            "backslash or control character (e.g. experiment_name=team/lr_study)"
        )
    return None


def check_experiment_name(name: str, label: str = "experiment_name=", fix: str = "") -> None:
    """Raise ConfigError when :func:`experiment_name_problem` finds one (``label`` + the name
    shortened to 40 characters, then the problem and ``fix``)."""
    problem = experiment_name_problem(name)
    if problem is not None:
        shown = repr(name) if len(name) <= 40 else repr(name[:40]) + "..."
        raise ConfigError(f"{label}{shown}: {problem}{fix}")


def report_dir(experiment: str) -> Path:
    """``reports/<experiment>``, the report's default directory (ConfigError if the name would
    leave it: ``python -m nnlab.report`` then needs ``--out``)."""
    check_experiment_name(
        experiment, "--experiment ", "; or pass --out DIR to write the report elsewhere"
    )
    return Path("reports") / experiment


# key -> (predicate, what is allowed); applied in this order so the first error is the most basic.
RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "lr": (lambda v: _is_num(v) and v > 0, "must be a number > 0 (e.g. lr=0.01)"),
    "batch_size": (lambda v: is_int(v) and v >= 1, "must be an integer >= 1 (e.g. batch_size=32)"),
    "epochs": (lambda v: is_int(v) and v >= 1, "must be an integer >= 1 (e.g. epochs=20)"),
    "seed": (lambda v: is_int(v) and v >= 0, "must be an integer >= 0"),
    "experiment_name": (
        lambda v: isinstance(v, str) and v.strip() != "",
        "must be a non-empty string (the MLflow experiment)",
    ),
    "optimizer.learning_rate": (lambda v: _is_num(v) and v > 0, "must be a number > 0"),
    "trainer.batch_size": (lambda v: is_int(v) and v >= 1, "must be an integer >= 1"),
    "trainer.epochs": (lambda v: is_int(v) and v >= 1, "must be an integer >= 1"),
    "trainer.shuffle": (lambda v: isinstance(v, bool), "must be true or false"),
    "trainer.verbose": (
        lambda v: v in VERBOSITY and not isinstance(v, bool),
        "must be auto, 0, 1 or 2",
    ),
    "trainer.divergence_factor": (
        lambda v: v is None or (_is_num(v) and v > 1),
        "must be a number > 1, or null to turn the divergence guard off",
    ),
    "trainer.batch_log_every": (
        lambda v: is_int(v) and v >= 0,
        "must be an integer >= 0 (0 = no per-batch loss)",
    ),
    "trainer.noise_scale": (lambda v: isinstance(v, bool), "must be true or false"),
    "trainer.checkpoint.enabled": (lambda v: isinstance(v, bool), "must be true or false"),
    "trainer.checkpoint.dir": (
        lambda v: isinstance(v, str) and v.strip() != "",
        "must be a directory path (relative paths start at the launch directory)",
    ),
    "trainer.checkpoint.keep": (lambda v: isinstance(v, bool), "must be true or false"),
    "trainer.checkpoint.resume": (lambda v: isinstance(v, bool), "must be true or false"),
    "trainer.checkpoint.sync": (lambda v: isinstance(v, bool), "must be true or false"),
    "trainer.checkpoint.interval": (
        lambda v: _is_num(v) and v >= 0,
        "must be a number of seconds >= 0 (0 = every epoch)",
    ),
    "trainer.early_stopping.enabled": (lambda v: isinstance(v, bool), "must be true or false"),
    "trainer.early_stopping.monitor": (lambda v: v in MONITORS, f"must be one of {list(MONITORS)}"),
    "trainer.early_stopping.patience": (lambda v: is_int(v) and v >= 0, "must be an integer >= 0"),
    "trainer.early_stopping.min_delta": (lambda v: _is_num(v) and v >= 0, "must be a number >= 0"),
    "model.hidden": (
        lambda v: (
            isinstance(v, (list, tuple)) and len(v) > 0 and all(is_int(h) and h > 0 for h in v)
        ),
        "must be a non-empty list of positive integers (e.g. model.hidden=[16,16])",
    ),
    "model.dtype": (lambda v: v in DTYPES, f"must be one of {list(DTYPES)}"),
    "model.loss": (lambda v: v in LOSSES, f"must be one of {list(LOSSES)}"),
    "model.seed": (lambda v: is_int(v) and v >= 0, "must be an integer >= 0"),
    "optimizer.name": (
        lambda v: isinstance(v, str) and v in OPTIMIZERS,  # a dict: unhashable v would raise
        f"must be one of {list(OPTIMIZERS)}",
    ),
    "schedule.name": (lambda v: v in SCHEDULES, f"must be one of {list(SCHEDULES)}"),
    "debug.fail_at_epoch": (
        lambda v: v is None or (is_int(v) and v >= 1),
        "must be null or a 1-based epoch number",
    ),
    "debug.epoch_delay": (
        lambda v: _is_num(v) and v >= 0,
        "must be a number of seconds >= 0 (0 = off; a testing knob)",
    ),
    "tracking.backend": (lambda v: v in BACKENDS, f"must be one of {list(BACKENDS)}"),
    "tracking.rerun": (lambda v: isinstance(v, bool), "must be true or false"),
    "tracking.flush_interval": (
        lambda v: _is_num(v) and v >= 0,
        "must be a number of seconds >= 0",
    ),
}

# keys checked only when their group's chosen option has them
OPTIONAL_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "optimizer.momentum": (lambda v: _is_num(v) and 0 <= v < 1, "must be a number in [0, 1)"),
    "optimizer.nesterov": (lambda v: isinstance(v, bool), "must be true or false"),
    "optimizer.beta_1": (lambda v: _is_num(v) and 0 <= v < 1, "must be a number in [0, 1)"),
    "optimizer.beta_2": (lambda v: _is_num(v) and 0 <= v < 1, "must be a number in [0, 1)"),
    "optimizer.rho": (lambda v: _is_num(v) and 0 < v < 1, "must be a number in (0, 1)"),
    "optimizer.epsilon": (lambda v: _is_num(v) and v > 0, "must be a number > 0"),
    "optimizer.centered": (lambda v: isinstance(v, bool), "must be true or false"),
    # the schedule group's keys (conf/schedule/<name>.yaml has those of its schedule)
    "schedule.decay_rate": (lambda v: _is_num(v) and 0 < v < 1, "must be a number in (0, 1)"),
    "schedule.decay_epochs": (lambda v: _is_num(v) and v > 0, "must be a number of epochs > 0"),
    "schedule.staircase": (lambda v: isinstance(v, bool), "must be true or false"),
    "schedule.alpha": (lambda v: _is_num(v) and 0 <= v <= 1, "must be a number in [0, 1]"),
    "schedule.warmup_epochs": (lambda v: is_int(v) and v >= 0, "must be an integer >= 0"),
    "schedule.monitor": (lambda v: v in MONITORS, f"must be one of {list(MONITORS)}"),
    "schedule.factor": (lambda v: _is_num(v) and 0 < v < 1, "must be a number in (0, 1)"),
    "schedule.patience": (lambda v: is_int(v) and v >= 0, "must be an integer >= 0"),
    "schedule.min_delta": (lambda v: _is_num(v) and v >= 0, "must be a number >= 0"),
    "schedule.cooldown": (lambda v: is_int(v) and v >= 0, "must be an integer >= 0"),
    "schedule.min_lr": (lambda v: _is_num(v) and v >= 0, "must be a number >= 0"),
    "tracking.log_model": (lambda v: isinstance(v, bool), "must be true or false"),
    "tracking.log_datasets": (lambda v: isinstance(v, bool), "must be true or false"),
    "tracking.register_best": (lambda v: isinstance(v, bool), "must be true or false"),
}


# python -m nnlab.lr_find's own keys (conf/lr_find.yaml), checked by validate_lr_find
LR_FIND_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "start_lr": (lambda v: _is_num(v) and v > 0, "must be a number > 0 (fastai: 1e-7)"),
    "end_lr": (lambda v: _is_num(v) and v > 0, "must be a number > 0 (fastai: 10)"),
    "num_it": (
        lambda v: is_int(v) and v >= 10,
        "must be an integer >= 10 (the suggestions drop the first num_it//10 and the last 5 steps)",
    ),
    "beta": (lambda v: _is_num(v) and 0 <= v < 1, "must be a number in [0, 1) (fastai: 0.98)"),
    "stop_factor": (
        lambda v: v is None or (_is_num(v) and v > 1),
        "must be a number > 1 (fastai: 4), or null to run the whole ramp",
    ),
}


def to_plain(cfg: Any) -> Any:
    """A resolved plain-Python copy of a DictConfig (dicts and lists), or ``cfg`` unchanged."""
    if isinstance(cfg, (DictConfig, ListConfig)):
        return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    return cfg


def _refuse_targets(node: Any, prefix: str = "") -> None:
    """No ``_target_`` anywhere: config values name entries of fixed tables, never Python code."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            if key == "_target_":
                raise ConfigError(
                    f"{prefix}_target_={value!r}: nnlab never instantiates classes named in the "
                    "config (names map to fixed tables); remove the key"
                )
            _refuse_targets(value, f"{prefix}{key}.")
    elif isinstance(node, (list, tuple)):
        for item in node:
            _refuse_targets(item, prefix)


def validate_lr_find(cfg: Any) -> dict:
    """:func:`validate` for ``python -m nnlab.lr_find``: the job config, then its ``lr_find``
    keys (:data:`LR_FIND_RULES`, each present, no other); returns the plain dict with both.

    Raises
    ------
    ConfigError
        On the first bad value, in one line.
    """
    if isinstance(cfg, DictConfig):  # the job config without lr_find, still composed: its
        finder = cfg.get("lr_find")  # keys are checked against conf/ as nnlab.run's are
        job = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "lr_find"])
    else:
        job = dict(cfg)
        finder = job.pop("lr_find", None)
    finder = to_plain(finder)  # plain numbers (conf/lr_find.yaml interpolates nothing)
    if not isinstance(finder, Mapping):
        raise ConfigError("lr_find: missing (python -m nnlab.lr_find reads conf/lr_find.yaml)")
    plain = validate(job)
    for key, (ok, allowed) in LR_FIND_RULES.items():
        if key not in finder:
            raise ConfigError(f"lr_find.{key}: missing from the config (conf/lr_find.yaml)")
        _check(ok(finder[key]), f"lr_find.{key}", finder[key], allowed)
    unknown = sorted(set(finder) - set(LR_FIND_RULES))
    if unknown:
        raise ConfigError(
            f"lr_find.{unknown[0]}: unknown key; the keys are {', '.join(LR_FIND_RULES)}"
        )
    _check(
        finder["end_lr"] > finder["start_lr"],
        "lr_find.end_lr",
        finder["end_lr"],
        f"must be larger than lr_find.start_lr={finder['start_lr']!r}",
    )
    return {**plain, "lr_find": dict(finder)}


def validate(cfg: Any, raw: Any = None) -> dict:
    """Check a composed nnlab config; return it as a resolved plain dict.

    Parameters
    ----------
    cfg : DictConfig or dict
        The job config (``conf/config.yaml`` composed with overrides, without the ``hydra`` node).
    raw : dict, optional
        ``cfg`` unresolved (interpolations as text), when ``cfg`` is a resolved dict: what tells
        an experiment's helper keys from unknown ones (:func:`nnlab.config_keys.unknown_key`).

    Raises
    ------
    ConfigError
        On the first bad value, with a one-line message naming key, value and what is allowed.
    """
    try:
        if isinstance(cfg, DictConfig):
            raw = OmegaConf.to_container(cfg, resolve=False)
        plain = to_plain(cfg)
    except Exception as exc:  # a required ??? value, or an interpolation that cannot resolve
        key = getattr(exc, "full_key", None)
        if type(exc).__name__ == "MissingMandatoryValue" and key:
            raise ConfigError(
                f"{key} is required: set it on the command line ({key}=...)"
            ) from None
        raise ConfigError(f"config does not resolve: {str(exc).splitlines()[0]}") from None
    _refuse_targets(plain)
    for key, (ok, allowed) in RULES.items():
        _check(ok(_get(plain, key)), key, _get(plain, key), allowed)
    check_experiment_name(plain["experiment_name"])
    unknown = unknown_key(plain, raw)
    if unknown is not None:
        raise ConfigError(unknown)
    for key, (ok, allowed) in OPTIONAL_RULES.items():
        section, name = key.split(".")
        if name in plain[section]:
            _check(ok(plain[section][name]), key, plain[section][name], allowed)

    acts = activations()
    _check(
        plain["model"].get("activation") in acts,
        "model.activation",
        plain["model"].get("activation"),
        f"must be one of {list(acts)}",
    )
    data = _get(plain, "data")
    names = datasets()
    _check(
        data.get("name") in names, "data.name", data.get("name"), f"must be one of {list(names)}"
    )
    if plain["tracking"]["backend"] == "mlflow":
        uri = plain["tracking"].get("uri")
        _check(
            isinstance(uri, str) and uri != "",
            "tracking.uri",
            uri,
            "must be an MLflow tracking URI (sqlite:///mlflow.db or http://host:5000)",
        )
        name = plain["experiment_name"]
        _check(
            not plain["tracking"].get("register_best", True) or not any(c in name for c in "/:"),
            "experiment_name",
            name,
            "names the registered model of the sweep's best run, and MLflow's model names cannot "
            "contain '/' or ':'; rename it or set tracking.register_best=false",
        )
    return plain
