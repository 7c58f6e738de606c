"""Callbacks: hooks into ``fit`` (Keras's protocol), History, EarlyStopping, DivergenceGuard,
ReduceLROnPlateau and LearningRateScheduler.

``epoch`` arguments are 0-based. Epoch ``logs`` hold Python floats: ``loss``, each metric,
and ``val_*`` when validating. ``on_train_batch_end(step, logs)`` is only called for callbacks
that override it (per-batch Python calls cost time); ``step`` is the optimizer's step count
after the update (1 for the first batch of a fresh model) and ``logs = {"loss": float}``.
Setting ``model.stop_training = True`` ends ``fit`` after the current epoch. As in Keras 3,
``History`` runs after the callbacks passed to ``fit``, so a key they add to the epoch logs
(``learning_rate``) is recorded.

A callback whose ``get_state()`` is not empty travels with ``model.get_state()``: a model restored
with ``set_state`` hands that state back to the callback of the same class at the next ``fit``,
after its ``on_train_begin`` reset, so a resumed run continues exactly (e.g. mid-cooldown).
"""

from __future__ import annotations

import inspect
import math

import numpy as np

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

    def get_state(self) -> dict[str, np.ndarray]:
        """What an exact resume needs, as 0-d arrays (none for most callbacks)."""
        return {}

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore ``get_state()`` output."""


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


def _named(callbacks) -> list[tuple[str, Callback]]:
    """(name, callback) for callbacks with state: the class name, ``_1``... for repeats."""
    named, seen = [], {}
    for cb in callbacks:
        if not cb.get_state():
            continue
        cls = type(cb).__name__
        count = seen.get(cls, 0)
        seen[cls] = count + 1
        named.append((cls if count == 0 else f"{cls}_{count}", cb))
    return named


def callback_state(callbacks) -> dict[str, np.ndarray]:
    """``callbacks/<name>/<key>`` entries for the stateful ones among ``callbacks``."""
    return {
        f"callbacks/{name}/{key}": value
        for name, cb in _named(callbacks)
        for key, value in cb.get_state().items()
    }


def restore_callback_state(callbacks, state: dict[str, np.ndarray]) -> None:
    """Give each stateful callback its ``callback_state`` entries from ``state`` (by name)."""
    by_name: dict[str, dict[str, np.ndarray]] = {}
    for key, value in state.items():
        _, name, field = key.split("/", 2)
        by_name.setdefault(name, {})[field] = value
    for name, cb in _named(callbacks):
        if name in by_name:
            cb.set_state(by_name[name])


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


def _optimizer(callback: Callback, who: str):
    optimizer = getattr(callback.model, "optimizer", None)
    if optimizer is None:
        raise ValueError(f"{who} needs a compiled model: call model.compile(...) first")
    if optimizer.schedule is not None:
        raise TypeError(
            f"{who} sets the learning rate, but the optimizer was created with a "
            f"LearningRateSchedule ({type(optimizer.schedule).__name__}); use one or the other"
        )
    return optimizer


class ReduceLROnPlateau(Callback):
    """Multiply the learning rate by ``factor`` when ``monitor`` stops improving (Keras 3).

    Each epoch end: ``logs["learning_rate"]`` gets the rate this epoch used; an epoch inside the
    cooldown counts down and resets ``wait``; an improvement (by more than ``min_delta``) resets
    ``wait``; otherwise, outside the cooldown, ``wait`` grows and at ``patience`` the rate becomes
    ``max(lr * factor, min_lr)`` (only while ``lr > min_lr``) and the cooldown starts.

    Parameters
    ----------
    monitor : str
        An epoch-log key, e.g. ``val_loss``.
    factor : float
        In (0, 1).
    patience : int
        Epochs without improvement before a reduction.
    verbose : int
        1: print a line at each reduction.
    mode : {"auto", "min", "max"}
        ``auto``: ``max`` for accuracy-like metrics, else ``min``.
    min_delta : float
        Smallest change that counts as an improvement.
    cooldown : int
        Epochs after a reduction during which ``wait`` stays 0.
    min_lr : float
        Lower bound of the rate.

    Notes
    -----
    Unlike Keras, a ``monitor`` missing from the logs is a ValueError (not a warning), and an
    optimizer with a schedule is refused when training begins (not at the first reduction).
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        factor: float = 0.1,
        patience: int = 10,
        verbose: int = 0,
        mode: str = "auto",
        min_delta: float = 1e-4,
        cooldown: int = 0,
        min_lr: float = 0.0,
    ) -> None:
        super().__init__()
        if not (isinstance(factor, int | float) and 0 < factor < 1):
            raise ValueError(f"ReduceLROnPlateau needs 0 < factor < 1; got factor={factor!r}")
        for name, value in (("patience", patience), ("cooldown", cooldown)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0; got {value!r}")
        if not (isinstance(min_lr, int | float) and math.isfinite(min_lr) and min_lr >= 0):
            raise ValueError(f"min_lr must be a finite number >= 0; got {min_lr!r}")
        self.monitor = monitor
        self.factor = float(factor)
        self.patience = patience
        self.verbose = verbose
        self.mode = _direction(monitor, mode)
        self.min_delta = abs(float(min_delta))
        self.cooldown = cooldown
        self.min_lr = float(min_lr)
        self._reset()

    def _reset(self) -> None:
        self.best: float | None = None
        self.wait = 0
        self.cooldown_counter = 0

    def in_cooldown(self) -> bool:
        return self.cooldown_counter > 0

    def _improved(self, current: float) -> bool:
        if self.best is None:
            return True
        if self.mode == "min":
            return current + self.min_delta < self.best
        return current - self.min_delta > self.best

    def on_train_begin(self, logs=None):
        _optimizer(self, "ReduceLROnPlateau")
        self._reset()

    def on_epoch_end(self, epoch, logs=None):
        optimizer = _optimizer(self, "ReduceLROnPlateau")
        logs = logs if logs is not None else {}
        logs["learning_rate"] = optimizer.learning_rate
        current = _monitored(logs, self.monitor, "ReduceLROnPlateau")
        if self.in_cooldown():
            self.cooldown_counter -= 1
            self.wait = 0
        if self._improved(current):
            self.best, self.wait = current, 0
        elif not self.in_cooldown():
            self.wait += 1
            if self.wait >= self.patience and self._reduce(optimizer, epoch):
                self.cooldown_counter, self.wait = self.cooldown, 0

    def _reduce(self, optimizer, epoch: int) -> bool:
        old = optimizer.learning_rate  # as the dtype holds it, so min_lr is compared alike
        floor = float(optimizer.dtype.type(self.min_lr)) if optimizer.dtype else self.min_lr
        if not old > floor:
            return False
        new = max(old * self.factor, self.min_lr)
        optimizer.learning_rate = new
        if self.verbose > 0:
            print(f"Epoch {epoch + 1}: ReduceLROnPlateau reducing learning rate to {new}.")
        return True

    def get_state(self):
        best = math.nan if self.best is None else self.best
        return {"best": np.array(best, np.float64), "wait": np.array(self.wait, np.int64),
                "cooldown_counter": np.array(self.cooldown_counter, np.int64)}  # fmt: skip

    def set_state(self, state):
        best = float(state["best"])
        self.best = None if math.isnan(best) else best
        self.wait = int(state["wait"])
        self.cooldown_counter = int(state["cooldown_counter"])


class LearningRateScheduler(Callback):
    """Set the learning rate at each epoch begin to ``schedule(epoch, lr)`` (Keras 3).

    ``schedule`` takes the 0-based epoch and the current rate, or only the epoch, and returns a
    float >= 0. Each epoch end, ``logs["learning_rate"]`` gets the rate this epoch used.

    Parameters
    ----------
    schedule : callable
        ``schedule(epoch, lr) -> float`` or ``schedule(epoch) -> float``.
    verbose : int
        1: print the rate set at each epoch.
    """

    def __init__(self, schedule, verbose: int = 0) -> None:
        super().__init__()
        if not callable(schedule):
            raise TypeError(f"schedule must be callable; got {type(schedule).__name__}")
        self.schedule = schedule
        self.verbose = verbose
        self._takes_rate = _takes_two_arguments(schedule)

    def on_train_begin(self, logs=None):
        _optimizer(self, "LearningRateScheduler")

    def on_epoch_begin(self, epoch, logs=None):
        optimizer = _optimizer(self, "LearningRateScheduler")
        if self._takes_rate:
            rate = self.schedule(epoch, optimizer.learning_rate)
        else:
            rate = self.schedule(epoch)
        if (
            isinstance(rate, bool)
            or not isinstance(rate, int | float | np.floating)
            or not (math.isfinite(rate) and rate >= 0)
        ):
            raise ValueError(
                f"LearningRateScheduler: schedule at epoch {epoch} returned {rate!r}; it must "
                "return a finite float >= 0"
            )
        optimizer.learning_rate = float(rate)
        if self.verbose > 0:
            print(f"Epoch {epoch + 1}: LearningRateScheduler setting learning rate to {rate}.")

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = _optimizer(self, "LearningRateScheduler").learning_rate


def _takes_two_arguments(fn) -> bool:
    """True when ``fn(epoch, lr)`` is a valid call (else it is called as ``fn(epoch)``)."""
    try:
        inspect.signature(fn).bind(0, 0.0)
    except TypeError:
        return False
    except ValueError:  # no signature (some builtins): try both forms as Keras does
        return True
    return True
