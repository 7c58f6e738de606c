"""``train(cfg, sinks)``: a composed config -> data + model -> ``fit`` -> :class:`TrainResult`.

Training knows configs, never MLflow: everything it reports goes through :class:`Sink` s, a
handful of no-op hooks that ``nnlab.tracking`` implements; every hook is called on each sink of
the list, in order (e.g. the job-dir history first, then MLflow). ``train`` validates the config first,
so a bad value fails before any data or model is built.

Exact resume (Keras's BackupAndRestore): ``train(..., on_checkpoint=f)`` calls ``f`` with a
:class:`TrainState` at the end of every epoch, *before* the sinks hear of that epoch (so a tracker
never holds an epoch the checkpoint lacks); ``train(..., resume=state)`` restores it and fits epochs
``state.epoch + 1 ..`` with ``initial_epoch``. The weights, optimizer slots, shuffling RNG and
history then continue bit-identically; EarlyStopping and the divergence guard are brought back to
their state by replaying the saved epoch logs through them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from nnlab.build import build_for, load_data, lr_callback
from nnlab.config import validate

# history.csv columns, in this order (docs/architecture.md)
HISTORY_COLUMNS = (
    "epoch", "loss", "accuracy", "val_loss", "val_accuracy", "epoch_time", "learning_rate",
    "noise_scale",
)  # fmt: skip
# columns only when logged: learning_rate when a schedule changes it, noise_scale with
# trainer.noise_scale=true
OPTIONAL_COLUMNS = ("learning_rate", "noise_scale")


class Sink:
    """Where a training run reports; every hook is optional (this base class ignores all)."""

    def on_train_begin(self, info: dict[str, Any]) -> None:
        """Data and model are built; ``info`` has dataset name, sizes, parameter count."""

    def log_epoch(self, epoch: int, logs: dict[str, float]) -> None:
        """One finished epoch: 1-based ``epoch``; ``logs`` has loss, metrics, val_*, epoch_time."""

    def log_batch_loss(self, step: int, loss: float) -> None:
        """Loss of optimizer step ``step`` (global, 1-based), every ``trainer.batch_log_every``."""

    def stop_reason(self) -> str | None:
        """Asked after each ``log_epoch`` but the last: a reason (e.g. ``pruned``, a search's
        pruner) ends training after this epoch, cleanly, and becomes the run's outcome."""
        return None


class _Fanout(Sink):
    """Calls every hook on each of ``sinks``, in order."""

    def __init__(self, sinks: Sequence[Sink]) -> None:
        if isinstance(sinks, Sink):
            raise TypeError("train(cfg, sinks): pass a list of sinks, e.g. train(cfg, [sink])")
        self.sinks = tuple(sinks)
        if not all(isinstance(s, Sink) for s in self.sinks):
            raise TypeError(f"train(cfg, sinks): each sink must be an nnlab.train.Sink: {sinks!r}")

    def on_train_begin(self, info: dict[str, Any]) -> None:
        for sink in self.sinks:
            sink.on_train_begin(info)

    def log_epoch(self, epoch: int, logs: dict[str, float]) -> None:
        for sink in self.sinks:
            sink.log_epoch(epoch, logs)

    def log_batch_loss(self, step: int, loss: float) -> None:
        for sink in self.sinks:
            sink.log_batch_loss(step, loss)

    def stop_reason(self) -> str | None:
        return next((r for r in (s.stop_reason() for s in self.sinks) if r), None)


@dataclass
class TrainResult:
    """What one training run produced.

    Attributes
    ----------
    outcome : str
        ``completed``, ``early_stopped``, ``diverged``, or a sink's ``stop_reason`` such as
        ``pruned`` (failures raise instead).
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


@dataclass
class TrainState:
    """Everything a resumed ``train`` needs (see ``nnlab.checkpoint`` for the file).

    Attributes
    ----------
    epoch : int
        Epochs finished so far (the next one is ``epoch + 1``, 1-based).
    model_state : dict[str, np.ndarray]
        ``model.get_state()``: weights, optimizer slots and step, shuffling RNG.
    history : dict[str, list[float]]
        Per-epoch values so far (``loss``, metrics, ``val_*``, ``epoch_time``), ``epoch`` long.
    batch_losses : list[tuple[int, float]]
        (global step, loss) pairs logged so far when ``trainer.batch_log_every`` > 0.
    finished : bool
        Training has ended (all epochs, early stop or divergence): a resume fits no epoch.
    best_weights : list[np.ndarray] or None
        EarlyStopping's best weights (``restore_best_weights``), restored on resume.
    """

    epoch: int
    model_state: dict[str, Any]
    history: dict[str, list[float]]
    batch_losses: list[tuple[int, float]] = field(default_factory=list)
    finished: bool = False
    best_weights: list[Any] | None = None


_INTERRUPT = {"requested": False}


def request_interrupt(signum: int | None = None, frame: Any = None) -> None:
    """Signal handler for SIGINT / SIGTERM: raise ``KeyboardInterrupt``, now and at every epoch
    boundary from here on.

    Python raises a signal handler's exception wherever the main thread is; if that is inside a
    weakref callback or ``__del__`` (garbage collection runs those at arbitrary points), the
    exception is only printed ("Exception ignored in ...") and training would go on. Measured:
    SIGTERM lost that way in SQLAlchemy's class registry under load. The flag catches it.
    """
    _INTERRUPT["requested"] = True
    raise KeyboardInterrupt


class FailAtEpoch(RuntimeError):
    """Raised on purpose by ``debug.fail_at_epoch`` (a testing knob for the failure path)."""


def _callbacks_module():
    from nnlab.nn import callbacks

    return callbacks


def _noise_scale_callback():
    from nnlab.nn.noise_scale import GradientNoiseScale

    return GradientNoiseScale()


def _forwarder(
    sink: Sink,
    history: dict[str, list[float]],
    batches: list[tuple[int, float]],
    tr: dict,
    debug: dict,
    on_checkpoint: Callable[[TrainState], None] | None,
    early: Any,
    stopped: dict[str, str],
    record_lr: bool = False,
):
    """A callback that times epochs, checkpoints them and forwards their logs to ``sink``.

    ``record_lr``: the logs get ``learning_rate``, the rate of the epoch's first update, when no
    callback (ReduceLROnPlateau) put it there: a schedule's rate then reaches MLflow per epoch.

    It runs after EarlyStopping and the divergence guard, so ``model.stop_training`` already says
    whether this epoch is the last; then a sink may still stop training (``stopped["reason"]``).
    Built lazily on ``nnlab.nn``.
    """
    cb = _callbacks_module()
    batch_every = tr["batch_log_every"]
    fail_at, delay = debug["fail_at_epoch"], debug["epoch_delay"]

    class EpochForwarder(cb.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if _INTERRUPT["requested"]:  # a signal whose KeyboardInterrupt got swallowed
                raise KeyboardInterrupt
            if delay:
                time.sleep(delay)
            self._lr = self.model.optimizer.learning_rate if record_lr else None
            self._t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            logs = {k: float(v) for k, v in (logs or {}).items()}
            logs["epoch_time"] = time.perf_counter() - self._t0
            if record_lr:
                logs.setdefault("learning_rate", self._lr)
            for key, value in logs.items():
                history.setdefault(key, []).append(value)
            if on_checkpoint is not None:
                done = self.model.stop_training or epoch + 1 >= self.params["epochs"]
                best = getattr(early, "best_weights", None) if early is not None else None
                on_checkpoint(
                    TrainState(epoch + 1, self.model.get_state(), history, batches, done, best)
                )
            sink.log_epoch(epoch + 1, logs)
            if not self.model.stop_training and epoch + 1 < self.params["epochs"]:
                reason = sink.stop_reason()
                if reason:
                    self.model.stop_training, stopped["reason"] = True, reason
            if fail_at is not None and epoch + 1 >= fail_at:
                raise FailAtEpoch(f"debug.fail_at_epoch={fail_at}: raising on purpose")

    class BatchForwarder(EpochForwarder):
        # a separate class because nn only calls on_train_batch_end when it is overridden
        def on_train_batch_end(self, step, logs=None):
            # step: the optimizer's iteration count after this update (1-based)
            if step % batch_every == 0:
                loss = float((logs or {}).get("loss", math.nan))
                batches.append((step, loss))
                sink.log_batch_loss(step, loss)

    return BatchForwarder() if batch_every > 0 else EpochForwarder()


def _replayer(history: dict[str, list[float]], targets: list, best_weights: list | None):
    """A callback that, on train begin, feeds the saved epoch logs to ``targets`` again.

    EarlyStopping (wait, best) and the divergence guard (reference, diverged) rebuild their state
    from the logs alone; EarlyStopping's best weights come from the checkpoint.
    """
    cb = _callbacks_module()

    class Replay(cb.Callback):
        def on_train_begin(self, logs=None):
            n = len(history.get("loss", []))
            for epoch in range(n):
                epoch_logs = {k: v[epoch] for k, v in history.items()}
                for target in targets:
                    target.on_epoch_end(epoch, epoch_logs)
            for target in targets:
                if best_weights is not None and hasattr(target, "best_weights"):
                    target.best_weights = [w.copy() for w in best_weights]
            self.model.stop_training = False

    return Replay()


def initial_loss(model: Any, x: Any, y: Any) -> float | None:
    """Training loss of the untrained ``model`` on (x, y) (N, d), (N,); None if not usable.

    Clipped cross-entropy tops out at ~8-16, so a run wrecked within its first epoch looks calm
    against that epoch; against the untrained loss (~0.7 for two balanced classes) it does not.
    """
    value = float(model.evaluate(x, y, batch_size=min(max(len(x), 1), 1024))["loss"])
    return value if math.isfinite(value) and value > 0 else None


def train(
    cfg: Any,
    sinks: Sequence[Sink] = (),
    *,
    verbose: int | None = None,
    data: Any = None,
    resume: TrainState | None = None,
    on_checkpoint: Callable[[TrainState], None] | None = None,
) -> TrainResult:
    """Train one model as the config says.

    Parameters
    ----------
    cfg : DictConfig or dict
        A composed nnlab config (see ``conf/config.yaml``).
    sinks : sequence of Sink, optional
        Each receives ``on_train_begin``, one ``log_epoch`` per epoch, optional
        ``log_batch_loss``; every hook is called on each sink in list order.
    verbose : int, optional
        Overrides ``trainer.verbose`` (``auto`` means 1 here).
    data : nnlab.data.Dataset, optional
        Already loaded from ``cfg.data`` (``load_data``); loaded here when omitted.
    resume : TrainState, optional
        Continue from this saved state (its epochs are not reported to the sinks again).
    on_checkpoint : callable, optional
        Called with a :class:`TrainState` at the end of every epoch, before the sinks' ``log_epoch``.

    Returns
    -------
    TrainResult
        Outcome (``completed``, ``early_stopped``, ``diverged``, a sink's stop reason), history.

    Raises
    ------
    nnlab.config.ConfigError
        Before a model is built, when a config value (or the data config) is invalid.
    ValueError
        When ``resume`` does not fit the model the config builds.
    TypeError
        When ``sinks`` is not a sequence of :class:`Sink` (a lone sink must be wrapped in a list).
    """
    sink = _Fanout(sinks)
    plain = validate(cfg)
    tr = plain["trainer"]
    if verbose is None:
        verbose = 1 if tr["verbose"] == "auto" else int(tr["verbose"])

    data = (
        data if data is not None else load_data(plain["data"], plain["model"].get("loss", "auto"))
    )
    model = build_for(plain, data)
    # the divergence guard's yardstick, taken before set_state: a resumed run measures the same
    # seeded initial weights as the first attempt
    reference = initial_loss(model, data.x_train, data.y_train) if tr["divergence_factor"] else None
    history, batches, initial_epoch, epochs = _restore(model, resume, tr["epochs"])
    info = _data_info(data)
    sink.on_train_begin(info)
    stopped: dict[str, str] = {}  # a sink's reason to stop (stop_reason)
    callbacks, stoppers, guard = _callbacks(
        plain, sink, history, batches, on_checkpoint, reference, stopped
    )
    if resume is not None:  # runs after their resets (an lr callback's state is in the model's)
        callbacks.append(_replayer(history, stoppers, resume.best_weights))

    t0 = time.perf_counter()
    model.fit(
        data.x_train,
        data.y_train,
        batch_size=tr["batch_size"],
        epochs=epochs,
        validation_data=(data.x_val, data.y_val) if len(data.x_val) else None,
        shuffle=tr["shuffle"],
        callbacks=callbacks,
        verbose=verbose,
        initial_epoch=initial_epoch,
    )
    seconds = time.perf_counter() - t0
    epochs_run = len(history.get("loss", []))
    outcome, stop_epoch = _outcome(guard, epochs_run, tr["epochs"], stopped.get("reason"))
    return TrainResult(outcome, history, epochs_run, stop_epoch, model, seconds, info)


def _restore(
    model: Any, resume: TrainState | None, epochs: int
) -> tuple[dict[str, list[float]], list[tuple[int, float]], int, int]:
    """(history, batch losses, initial epoch, epochs to fit to) of a fresh or resumed run; a
    resumed ``model`` gets its saved state (ValueError if it does not fit this architecture)."""
    if resume is None:
        return {}, [], 0, epochs
    model.set_state(resume.model_state)
    history = {k: list(v) for k, v in resume.history.items()}
    # finished: only the end of training is left (e.g. restoring best weights)
    last = resume.epoch if resume.finished else epochs
    return history, list(resume.batch_losses), resume.epoch, last


def _data_info(data: Any) -> dict[str, Any]:
    """What ``on_train_begin`` tells the sinks about the data."""
    return {
        "dataset": data.name,
        "n_train": int(len(data.x_train)),
        "n_val": int(len(data.x_val)),
        "n_features": int(data.n_features),
        "n_classes": int(data.n_classes),
    }


def _outcome(
    guard: Any, epochs_run: int, epochs: int, reason: str | None = None
) -> tuple[str, int | None]:
    """(outcome, 1-based stopped epoch or None) once ``fit`` has returned."""
    if guard is not None and guard.diverged:
        return "diverged", int(guard.diverged_epoch) + 1
    if reason:  # a sink stopped training (Sink.stop_reason)
        return reason, epochs_run
    if epochs_run < epochs:
        return "early_stopped", epochs_run
    return "completed", None


def _callbacks(
    plain: dict,
    sink: Sink,
    history: dict[str, list[float]],
    batches: list[tuple[int, float]],
    on_checkpoint: Callable[[TrainState], None] | None,
    reference: float | None,
    stopped: dict[str, str],
) -> tuple[list, list, Any]:
    """The fit's callbacks in order, the stoppers among them, the divergence guard (or None).

    Order matters: the lr callback and the stoppers act on the epoch's logs first, then the
    forwarder checkpoints (with their state) and reports the epoch.
    """
    tr = plain["trainer"]
    early, guard = _stoppers(tr, reference)
    stoppers = [c for c in (early, guard) if c is not None]
    plateau = lr_callback(plain["schedule"])
    # before the forwarder, which reports the epoch logs it adds noise_scale to
    noise = [_noise_scale_callback()] if tr["noise_scale"] else []
    record_lr = plain["schedule"]["name"] != "constant"
    forwarder = _forwarder(
        sink, history, batches, tr, plain["debug"], on_checkpoint, early, stopped, record_lr
    )
    return [*([plateau] if plateau else []), *noise, *stoppers, forwarder], stoppers, guard


def _stoppers(tr: dict, reference: float | None) -> tuple[Any, Any]:
    """EarlyStopping and DivergenceGuard as ``trainer`` says (None for one that is off)."""
    cb = _callbacks_module()
    guard = early = None
    if tr["divergence_factor"] is not None:
        guard = cb.DivergenceGuard(
            monitor="loss", factor=float(tr["divergence_factor"]), reference=reference
        )
    es = tr["early_stopping"]
    if es["enabled"]:
        early = cb.EarlyStopping(
            monitor=es["monitor"],
            patience=es["patience"],
            min_delta=es["min_delta"],
            restore_best_weights=es["restore_best_weights"],
        )
    return early, guard
