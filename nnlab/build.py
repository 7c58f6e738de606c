"""From a validated config to a compiled model: layers, loss, optimizer and its learning-rate
schedule, with a memory check first; and the data the config names.

``train()`` uses these; so do the sweep's up-front validation (a model too big for memory is
refused before any run) and a trial's resume check (the checkpoint must fit the model).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from nnlab.config import ConfigError


def _callbacks_module():
    from nnlab.nn import callbacks

    return callbacks


def _binary_output(model_cfg: dict, n_classes: int) -> bool:
    """True when the MLP ends in 1 sigmoid unit (+ BCE), False for K softmax units."""
    return n_classes == 2 and model_cfg.get("loss", "auto") != "sparse_categorical_crossentropy"


def count_params(model_cfg: dict, n_features: int, n_classes: int) -> int:
    """Weights + biases of the MLP ``build_model`` builds for ``n_features`` -> ``n_classes``."""
    units = [
        n_features,
        *model_cfg["hidden"],
        1 if _binary_output(model_cfg, n_classes) else n_classes,
    ]
    # Python ints: exact at any size (a numpy product would overflow silently)
    return sum(int(a) * int(b) + int(b) for a, b in zip(units[:-1], units[1:], strict=True))


# when /proc/meminfo is missing (not Linux): assume a modest machine
FALLBACK_MEMORY = 8 * 2**30


def available_memory() -> tuple[int, str]:
    """Bytes of memory a new allocation can get, and where the number comes from."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024, "available"  # the value is in kB
    except (OSError, ValueError, IndexError):
        pass
    return FALLBACK_MEMORY, "assumed (no /proc/meminfo)"


def fit_memory(
    model_cfg: dict, n_features: int, n_classes: int, optimizer_cfg: dict | None = None
) -> tuple[int, int, int]:
    """Parameter count, bytes a fit needs at least, and optimizer slot count (nothing allocated).

    A fit holds the weights, their gradients and the optimizer's slots, each a flat vector of
    ``model.dtype`` (Adam: m and v, so 4 copies; SGD without momentum: 2). That is a lower bound:
    activations, the data and checkpoint copies come on top. Arguments as :func:`check_model_fits`.
    """
    from nnlab import nn

    n_params = count_params(model_cfg, n_features, n_classes)
    optimizer_cfg = optimizer_cfg or {"name": "adam"}
    kwargs = {k: v for k, v in optimizer_cfg.items() if k != "name"}
    # an optimizer instance allocates nothing until its first update
    slots = len(nn.OPTIMIZERS[optimizer_cfg["name"]](**kwargs).slot_names)
    return n_params, n_params * np.dtype(model_cfg["dtype"]).itemsize * (2 + slots), slots


def check_model_fits(
    model_cfg: dict, n_features: int, n_classes: int, optimizer_cfg: dict | None = None
) -> int:
    """Refuse a model whose fit cannot fit in memory, before anything is allocated.

    The need is :func:`fit_memory`'s lower bound (weights + gradients + optimizer slots), so a
    model refused here cannot train; the supply is ``MemAvailable`` (:func:`available_memory`).

    Parameters
    ----------
    model_cfg : dict
        The validated ``model`` config (``hidden``, ``dtype``, ``loss``).
    n_features, n_classes : int
        Input width and number of classes of the data.
    optimizer_cfg : dict, optional
        The validated ``optimizer`` config, for its slot count; Adam's 2 slots when omitted.

    Returns
    -------
    int
        The parameter count.

    Raises
    ------
    nnlab.config.ConfigError
        One line: parameter count, memory needed vs available, and the fix.
    """
    n_params, needed, slots = fit_memory(model_cfg, n_features, n_classes, optimizer_cfg)
    name = (optimizer_cfg or {"name": "adam"})["name"]
    have, source = available_memory()
    if needed > have:
        raise ConfigError(
            f"model.hidden={list(model_cfg['hidden'])}: {n_params:,} parameters need at least "
            f"{_gib(needed)} to train ({model_cfg['dtype']} weights + gradients + {slots} {name} "
            f"slots) but only {_gib(have)} of memory is {source}; use a smaller model.hidden "
            "(e.g. model.hidden=[64,64])"
        )
    return n_params


def _gib(n: int) -> str:
    return f"{n / 2**30:,.1f} GiB"


def build_model(
    model_cfg: dict,
    optimizer_cfg: dict,
    n_features: int,
    n_classes: int,
    learning_rate: Any = None,
):
    """An MLP compiled for the task: binary -> 1 sigmoid + BCE, K classes -> K softmax + sparse CCE.

    ``model.loss`` may force sparse categorical cross-entropy (K >= 2 softmax units); names map
    to the fixed tables of ``nnlab.nn`` (never to Python objects named in the config). A model
    too big for memory is refused first (:func:`check_model_fits`).
    """
    from nnlab import nn

    check_model_fits(model_cfg, n_features, n_classes, optimizer_cfg)
    hidden = list(model_cfg["hidden"])
    layers = [nn.Dense(hidden[0], activation=model_cfg["activation"], input_dim=n_features)]
    layers += [nn.Dense(units, activation=model_cfg["activation"]) for units in hidden[1:]]
    if _binary_output(model_cfg, n_classes):
        layers.append(nn.Dense(1, activation="sigmoid"))
        loss = "binary_crossentropy"
    else:
        layers.append(nn.Dense(n_classes, activation="softmax"))
        loss = "sparse_categorical_crossentropy"
    model = nn.Sequential(layers, seed=model_cfg["seed"], dtype=model_cfg["dtype"])
    kwargs = {k: v for k, v in optimizer_cfg.items() if k != "name"}
    if learning_rate is not None:  # a schedule (learning_rate_for) instead of the number
        kwargs["learning_rate"] = learning_rate
    model.compile(
        optimizer=nn.OPTIMIZERS[optimizer_cfg["name"]](**kwargs), loss=loss, metrics=["accuracy"]
    )
    return model


def learning_rate_for(plain: dict, n_train: int) -> Any:
    """The optimizer's ``learning_rate`` as the ``schedule`` group says: the number ``lr``, or
    a :mod:`nnlab.nn.schedules` schedule that starts (or peaks) at it.

    Schedules count optimizer steps (Keras); the config counts epochs, converted with
    ``ceil(n_train / batch_size)`` steps per epoch. ``plateau`` keeps the number (its callback,
    :func:`lr_callback`, changes it between epochs).
    """
    from nnlab.nn import schedules

    sched, lr = plain["schedule"], float(plain["optimizer"]["learning_rate"])
    tr = plain["trainer"]
    steps = math.ceil(n_train / tr["batch_size"])
    if sched["name"] == "exponential":
        return schedules.ExponentialDecay(
            lr, steps * sched["decay_epochs"], sched["decay_rate"], staircase=sched["staircase"]
        )
    if sched["name"] == "cosine":
        warmup = steps * sched["warmup_epochs"]
        decay = max(steps * tr["epochs"] - warmup, 1)
        if not warmup:
            return schedules.CosineDecay(lr, decay, alpha=sched["alpha"])
        return schedules.CosineDecay(
            0.0, decay, alpha=sched["alpha"], warmup_target=lr, warmup_steps=warmup
        )
    return lr


def lr_callback(schedule_cfg: dict) -> Any:
    """``ReduceLROnPlateau`` for ``schedule=plateau``, else None."""
    if schedule_cfg["name"] != "plateau":
        return None
    keys = ("monitor", "factor", "patience", "min_delta", "cooldown", "min_lr")
    return _callbacks_module().ReduceLROnPlateau(**{k: schedule_cfg[k] for k in keys})


def build_for(plain: dict, data: Any):
    """The compiled model of a validated config on its loaded data (with its lr schedule)."""
    rate = learning_rate_for(plain, len(data.x_train))
    return build_model(plain["model"], plain["optimizer"], data.n_features, data.n_classes, rate)


def load_data(data_cfg: dict, loss: str = "auto"):
    """``nnlab.data.load_dataset`` with the ``data`` group's keys; a bad one is a ConfigError.

    ``loss="binary_crossentropy"`` refuses a target with more than two classes. The last few
    datasets are kept (a worker runs many trials of one dataset; a ``Dataset``'s arrays are
    read-only, so trials can share them); a CSV file is read again when it changed.
    """
    import json
    import os

    key = json.dumps([data_cfg, loss], sort_keys=True, default=str)
    path = data_cfg.get("path")
    if isinstance(path, str) and os.path.isfile(path):
        st = os.stat(path)
        key += f"|{st.st_mtime_ns}|{st.st_size}"
    if key in _DATASETS:
        return _DATASETS[key]
    data = _load_data(data_cfg, loss)
    _DATASETS[key] = data
    while len(_DATASETS) > 8:
        _DATASETS.pop(next(iter(_DATASETS)))
    return data


_DATASETS: dict[str, object] = {}  # load_data's recent datasets, oldest first


def _load_data(data_cfg: dict, loss: str):
    from nnlab.data import DataError, load_dataset

    params = {k: v for k, v in data_cfg.items() if k != "name"}
    binary = loss == "binary_crossentropy"
    try:
        return load_dataset(data_cfg["name"], require_binary=binary, **params)
    except DataError as exc:
        raise ConfigError(f"data: {exc}") from None
