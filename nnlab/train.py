"""``train(cfg, sink)``: a composed config -> data + model -> ``fit`` -> :class:`TrainResult`.

Training knows configs, never MLflow: everything it reports goes through a :class:`Sink`, a
handful of no-op hooks that ``nnlab.tracking`` implements. ``train`` validates the config first,
so a bad value fails before any data or model is built.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

from nnlab.config import ConfigError, validate

# history.csv columns, in this order (docs/architecture.md)
HISTORY_COLUMNS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "epoch_time")


class Sink:
    """Where a training run reports; every hook is optional (this base class ignores all)."""

    def on_train_begin(self, info: dict[str, Any]) -> None:
        """Data and model are built; ``info`` has dataset name, sizes, parameter count."""

    def log_epoch(self, epoch: int, logs: dict[str, float]) -> None:
        """One finished epoch: 1-based ``epoch``; ``logs`` has loss, metrics, val_*, epoch_time."""

    def log_batch_loss(self, step: int, loss: float) -> None:
        """Loss of optimizer step ``step`` (global, 1-based), every ``trainer.batch_log_every``."""


@dataclass
class TrainResult:
    """What one training run produced.

    Attributes
    ----------
    outcome : str
        ``completed``, ``early_stopped`` or ``diverged`` (failures raise instead).
    history : dict[str, list[float]]
        Per-epoch values, Keras ``History.history`` plus ``epoch_time`` (seconds).
    epochs_run : int
        Number of epochs that ran (== len of every history list).
    stopped_epoch : int or None
        1-based epoch where training stopped early (diverged / early_stopped), else None.
    model : nnlab.nn.Sequential
        The trained model.
    seconds : float
        Wall time of ``fit``.
    """

    outcome: str
    history: dict[str, list[float]]
    epochs_run: int
    stopped_epoch: int | None
    model: Any
    seconds: float
    info: dict[str, Any] = field(default_factory=dict)

    def final(self, metric: str) -> float:
        """Last value of ``metric`` (NaN when it was not logged)."""
        values = self.history.get(metric) or [math.nan]
        return float(values[-1])

    def rows(self) -> list[dict[str, float]]:
        """One dict per epoch with the ``HISTORY_COLUMNS`` keys (missing metrics are NaN)."""
        return [
            {
                "epoch": e + 1,
                **{
                    k: float(self.history.get(k, [math.nan] * self.epochs_run)[e])
                    for k in HISTORY_COLUMNS[1:]
                },
            }
            for e in range(self.epochs_run)
        ]


class FailAtEpoch(RuntimeError):
    """Raised on purpose by ``trainer.fail_at_epoch`` (a debugging knob for the failure path)."""


def _callbacks_module():
    from nnlab.nn import callbacks

    return callbacks


def _forwarder(sink: Sink, history: dict[str, list[float]], batch_every: int, fail_at: int | None):
    """A callback that times epochs and forwards their logs to ``sink`` (built lazily on nn)."""
    cb = _callbacks_module()

    class EpochForwarder(cb.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self._t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            logs = {k: float(v) for k, v in (logs or {}).items()}
            logs["epoch_time"] = time.perf_counter() - self._t0
            for key, value in logs.items():
                history.setdefault(key, []).append(value)
            sink.log_epoch(epoch + 1, logs)
            if fail_at is not None and epoch + 1 >= fail_at:
                raise FailAtEpoch(f"trainer.fail_at_epoch={fail_at}: raising on purpose")

    class BatchForwarder(EpochForwarder):
        # a separate class because nn only calls on_train_batch_end when it is overridden
        def on_train_batch_end(self, step, logs=None):
            # step: the optimizer's iteration count after this update (1-based)
            if step % batch_every == 0:
                sink.log_batch_loss(step, float((logs or {}).get("loss", math.nan)))

    return BatchForwarder() if batch_every > 0 else EpochForwarder()


def build_model(model_cfg: dict, optimizer_cfg: dict, n_features: int, n_classes: int):
    """An MLP compiled for the task: binary -> 1 sigmoid + BCE, K classes -> K softmax + sparse CCE."""
    from nnlab import nn

    hidden = list(model_cfg["hidden"])
    layers = [nn.Dense(hidden[0], activation=model_cfg["activation"], input_dim=n_features)]
    layers += [nn.Dense(units, activation=model_cfg["activation"]) for units in hidden[1:]]
    if n_classes == 2:
        layers.append(nn.Dense(1, activation="sigmoid"))
        loss = "binary_crossentropy"
    else:
        layers.append(nn.Dense(n_classes, activation="softmax"))
        loss = "sparse_categorical_crossentropy"
    model = nn.Sequential(layers, seed=model_cfg["seed"], dtype=model_cfg["dtype"])
    optimizers = {"sgd": nn.SGD, "adam": nn.Adam, "rmsprop": nn.RMSprop}
    kwargs = {k: v for k, v in optimizer_cfg.items() if k != "name"}
    model.compile(
        optimizer=optimizers[optimizer_cfg["name"]](**kwargs), loss=loss, metrics=["accuracy"]
    )
    return model


def load_data(data_cfg: dict):
    """``nnlab.data.load_dataset`` with the ``data`` group's keys; a bad one is a ConfigError."""
    from nnlab.data import DataError, load_dataset

    params = {k: v for k, v in data_cfg.items() if k != "name"}
    try:
        return load_dataset(data_cfg["name"], **params)
    except DataError as exc:
        raise ConfigError(f"data: {exc}") from None


def train(
    cfg: Any, sink: Sink | None = None, verbose: int | None = None, data: Any = None
) -> TrainResult:
    """Train one model as the config says.

    Parameters
    ----------
    cfg : DictConfig or dict
        A composed nnlab config (see ``conf/config.yaml``).
    sink : Sink, optional
        Receives ``on_train_begin``, one ``log_epoch`` per epoch, optional ``log_batch_loss``.
    verbose : int, optional
        Overrides ``trainer.verbose`` (``auto`` means 1 here).
    data : nnlab.data.Dataset, optional
        Already loaded from ``cfg.data`` (``load_data``); loaded here when omitted.

    Returns
    -------
    TrainResult
        Outcome ``completed``, ``early_stopped`` or ``diverged``, the per-epoch history and model.

    Raises
    ------
    nnlab.config.ConfigError
        Before a model is built, when a config value (or the data config) is invalid.
    """
    plain = validate(cfg)
    sink = sink or Sink()
    tr = plain["trainer"]
    if verbose is None:
        verbose = 1 if tr["verbose"] == "auto" else int(tr["verbose"])

    data = data if data is not None else load_data(plain["data"])
    model = build_model(plain["model"], plain["optimizer"], data.n_features, data.n_classes)
    info = {
        "dataset": data.name,
        "n_train": int(len(data.x_train)),
        "n_val": int(len(data.x_val)),
        "n_features": int(data.n_features),
        "n_classes": int(data.n_classes),
    }
    sink.on_train_begin(info)

    cb = _callbacks_module()
    history: dict[str, list[float]] = {}
    callbacks = [_forwarder(sink, history, tr["batch_log_every"], tr["fail_at_epoch"])]
    guard = None
    if tr["divergence_factor"] is not None:
        guard = cb.DivergenceGuard(monitor="loss", factor=float(tr["divergence_factor"]))
        callbacks.insert(0, guard)
    es = tr["early_stopping"]
    if es["enabled"]:
        callbacks.insert(
            0,
            cb.EarlyStopping(
                monitor=es["monitor"],
                patience=es["patience"],
                min_delta=es["min_delta"],
                restore_best_weights=es["restore_best_weights"],
            ),
        )

    validation = (data.x_val, data.y_val) if len(data.x_val) else None
    t0 = time.perf_counter()
    model.fit(
        data.x_train,
        data.y_train,
        batch_size=tr["batch_size"],
        epochs=tr["epochs"],
        validation_data=validation,
        shuffle=tr["shuffle"],
        callbacks=callbacks,
        verbose=verbose,
    )
    seconds = time.perf_counter() - t0

    epochs_run = len(history.get("loss", []))
    if guard is not None and guard.diverged:
        outcome, stopped = "diverged", int(guard.diverged_epoch) + 1
    elif epochs_run < tr["epochs"]:
        outcome, stopped = "early_stopped", epochs_run
    else:
        outcome, stopped = "completed", None
    return TrainResult(outcome, history, epochs_run, stopped, model, seconds, info)
