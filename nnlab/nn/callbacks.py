"""Callbacks: hooks into ``fit`` (Keras's protocol), History, EarlyStopping, DivergenceGuard.

``epoch`` arguments are 0-based. Epoch ``logs`` hold Python floats: ``loss``, each metric,
and ``val_*`` when validating. ``on_train_batch_end(step, logs)`` is only called for callbacks
that override it (per-batch Python calls cost time); ``step`` is the optimizer's step count
after the update (1 for the first batch of a fresh model) and ``logs = {"loss": float}``.
Setting ``model.stop_training = True`` ends ``fit`` after the current epoch.
"""

from __future__ import annotations

import math

from . import metrics as metrics_module


class Callback:
    """Base class: override the hooks you need. ``self.model`` is set by ``fit``."""

    def __init__(self) -> None:
        self.model = None
        self.params: dict = {}

    def set_model(self, model) -> None:
        self.model = model

    def set_params(self, params: dict) -> None:
        self.params = params

    def on_train_begin(self, logs: dict | None = None) -> None: ...

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None: ...

    def on_train_batch_end(self, step: int, logs: dict | None = None) -> None: ...

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None: ...

    def on_train_end(self, logs: dict | None = None) -> None: ...


def overrides_batch_hook(callback: Callback) -> bool:
    """True when ``callback`` defines its own ``on_train_batch_end``."""
    return type(callback).on_train_batch_end is not Callback.on_train_batch_end


class History(Callback):
    """Records epoch logs: ``history`` maps each log key to a list, ``epoch`` the epochs run."""

    def __init__(self) -> None:
        super().__init__()
        self.history: dict[str, list[float]] = {}
        self.epoch: list[int] = []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(value)

    def __repr__(self) -> str:
        return f"History(epochs={len(self.epoch)}, keys={list(self.history)})"


def _direction(monitor: str, mode: str) -> str:
    if mode in ("min", "max"):
        return mode
    if mode != "auto":
        raise ValueError(f"mode must be 'auto', 'min' or 'max'; got {mode!r}")
    name = monitor.removeprefix("val_")
    return "max" if name in metrics_module.HIGHER_IS_BETTER else "min"


def _monitored(logs: dict | None, monitor: str, who: str) -> float:
    logs = logs or {}
    if monitor not in logs:
        hint = " (pass validation_data or validation_split)" if monitor.startswith("val_") else ""
        raise ValueError(
            f"{who} monitors {monitor!r} but the epoch logs only have {sorted(logs)}{hint}"
        )
    return logs[monitor]


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs.

    As Keras 3: never stops after the first epoch; with ``restore_best_weights`` the weights
    of the best epoch are put back when training ends (stopped or not). ``stopped_epoch`` is
    the 0-based epoch at which it stopped, or 0. ``best_epoch`` is the best epoch (0-based).
    Unlike Keras, a monitor missing from the logs is a ValueError, not a warning.
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        patience: int = 0,
        min_delta: float = 0.0,
        mode: str = "auto",
        restore_best_weights: bool = False,
        verbose: int = 0,
    ) -> None:
        super().__init__()
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 0:
            raise ValueError(f"patience must be an integer >= 0; got {patience!r}")
        self.monitor = monitor
        self.patience = patience
        self.min_delta = abs(float(min_delta))
        self.mode = _direction(monitor, mode)
        self.restore_best_weights = bool(restore_best_weights)
        self.verbose = verbose
        self._reset()

    def _reset(self) -> None:
        self.wait = 0
        self.stopped_epoch = 0
        self.best_epoch = 0
        self.best_weights = None
        self.best = math.inf if self.mode == "min" else -math.inf

    def _improved(self, current: float) -> bool:
        if self.mode == "min":
            return current + self.min_delta < self.best
        return current - self.min_delta > self.best

    def on_train_begin(self, logs=None):
        self._reset()

    def on_epoch_end(self, epoch, logs=None):
        current = _monitored(logs, self.monitor, "EarlyStopping")
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights, self.best_epoch = self.model.get_weights(), epoch
        self.wait += 1
        if self._improved(current):
            self.best, self.best_epoch, self.wait = current, epoch, 0
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.stopped_epoch > 0 and self.verbose:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping", flush=True)
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose:
                print(f"Restoring weights from the best epoch: {self.best_epoch + 1}", flush=True)
            self.model.set_weights(self.best_weights)


class DivergenceGuard(Callback):
    """Stop a run whose ``monitor`` is non-finite or above ``factor`` x its starting value.

    The starting value is ``reference`` when given (e.g. the loss of the untrained model, which
    ``Sequential.evaluate`` gives before ``fit``), else the first epoch this callback sees in a
    ``fit`` call. Pass a reference for losses with a ceiling: clipped cross-entropy never exceeds
    ~16, so a run that wrecks itself within its first epoch looks calm against that epoch.

    After ``fit``: ``diverged`` (bool) and ``diverged_epoch`` (0-based, or None).
    """

    def __init__(
        self, monitor: str = "loss", factor: float = 10.0, reference: float | None = None
    ) -> None:
        super().__init__()
        if not (isinstance(factor, int | float) and factor > 0):
            raise ValueError(f"factor must be a number > 0; got {factor!r}")
        if reference is not None and not (
            isinstance(reference, int | float) and math.isfinite(reference) and reference > 0
        ):
            raise ValueError(f"reference must be a finite number > 0 or None; got {reference!r}")
        self.monitor = monitor
        self.factor = float(factor)
        self.initial_reference = None if reference is None else float(reference)
        self.diverged = False
        self.diverged_epoch: int | None = None
        self.reference: float | None = self.initial_reference

    def on_train_begin(self, logs=None):
        self.diverged, self.diverged_epoch = False, None
        self.reference = self.initial_reference

    def on_epoch_end(self, epoch, logs=None):
        current = _monitored(logs, self.monitor, "DivergenceGuard")
        if self.reference is None:
            self.reference = current
        if not math.isfinite(current) or current > self.factor * self.reference:
            self.diverged, self.diverged_epoch = True, epoch
            self.model.stop_training = True


class CallbackList:
    """Dispatches hooks to several callbacks; batch hooks only to those that define one."""

    def __init__(self, callbacks: list[Callback], model, params: dict) -> None:
        for cb in callbacks:
            if not isinstance(cb, Callback):
                raise TypeError(
                    f"callbacks must be nnlab.nn.callbacks.Callback instances; got "
                    f"{type(cb).__name__}"
                )
            cb.set_model(model)
            cb.set_params(params)
        self.callbacks = callbacks
        self.batch_callbacks = [cb for cb in callbacks if overrides_batch_hook(cb)]

    def on_train_begin(self, logs=None):
        for cb in self.callbacks:
            cb.on_train_begin(logs)

    def on_epoch_begin(self, epoch, logs=None):
        for cb in self.callbacks:
            cb.on_epoch_begin(epoch, logs)

    def on_train_batch_end(self, step, logs):
        for cb in self.batch_callbacks:
            cb.on_train_batch_end(step, logs)

    def on_epoch_end(self, epoch, logs):
        for cb in self.callbacks:
            cb.on_epoch_end(epoch, logs)

    def on_train_end(self, logs=None):
        for cb in self.callbacks:
            cb.on_train_end(logs)
