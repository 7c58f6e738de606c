"""Per-trial checkpoints for exact resume, and atomic file writes.

A checkpoint is one ``.npz`` file per trial, keyed by something that survives a re-run (Hydra
gives every invocation a new timestamped directory)::

    <launch dir>/<trainer.checkpoint.dir>/<experiment>/<config hash>.npz

It holds a :class:`nnlab.train.TrainState` (``model.get_state()`` arrays, the history so far, the
batch losses, whether training has ended, EarlyStopping's best weights) and a small ``meta`` dict
(config hash, MLflow run and experiment ids). Everything is a plain array: loading uses
``allow_pickle=False``, so a checkpoint can never run code.

Writes are atomic: a temp file in the same directory, then ``os.replace`` (``fsync`` first when
``sync``; without it a write still survives ``kill -9``, not an OS crash). A reader
(or a re-run after ``kill -9``) sees the previous complete file or the new one, never half of one.
A ``<hash>.lock`` file held with ``flock`` keeps two processes from training the same trial
into one checkpoint (the lock dies with its process, also on ``kill -9``).

When to save is :class:`CheckpointSchedule`'s job: at most every ``trainer.checkpoint.interval``
seconds, at the end, and on an interruption.
"""

from __future__ import annotations

import io
import json
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np

from nnlab.config import ConfigError
from nnlab.train import TrainState

FORMAT = "nnlab.checkpoint/1"


class CheckpointError(ConfigError):
    """A checkpoint file cannot be used; the message names the file and the fix."""


def checkpoint_path(base: Path, directory: str, experiment: str, digest: str) -> Path:
    """``<base>/<directory>/<experiment>/<digest>.npz`` (``directory`` may be absolute)."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", experiment).strip("._") or "experiment"
    return (base / directory / safe / f"{digest}.npz").resolve()


def atomic_write(path: Path, write: Callable[[IO[bytes]], None], sync: bool = True) -> None:
    """Write ``path`` through ``write(fh)`` atomically: temp file, fsync, ``os.replace``.

    The content is built in memory and written with one call (``np.savez`` makes many small
    writes). ``sync=False`` skips the fsync: still atomic if the process dies, but an OS crash
    may lose the last write (used for the job dir's history, which the checkpoint also holds).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    write(buf)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(buf.getbuffer())
            if sync:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:  # also Ctrl-C mid-write: leave no temp file behind
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str, sync: bool = True) -> None:
    """``atomic_write`` for a text file (UTF-8)."""
    atomic_write(path, lambda fh: fh.write(text.encode()), sync)


def _unusable(path: Path, why: str) -> CheckpointError:
    return CheckpointError(
        f"checkpoint {path} {why}; delete that file to start this trial afresh, or run with "
        "trainer.checkpoint.resume=false"
    )


class Checkpointer:
    """Save / load / delete one trial's checkpoint, under an exclusive ``flock``."""

    def __init__(self, path: Path, sync: bool = True):
        self.path, self.sync = path, sync
        self._lock: IO[bytes] | None = None
        self.seconds = 0.0  # total time spent saving (the cost of checkpointing)

    def acquire(self) -> bool:
        """Take the trial's lock; False when another live process holds it."""
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path.with_suffix(".lock"), "wb")  # noqa: SIM115 - held until release()
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            return False
        self._lock = fh
        return True

    def release(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def save(self, state: TrainState, meta: dict[str, Any]) -> None:
        """Write ``state`` and ``meta`` (JSON-able) atomically."""
        t0 = time.perf_counter()
        arrays: dict[str, np.ndarray] = {
            "meta": np.array(
                json.dumps(
                    {
                        "format": FORMAT,
                        **meta,
                        "epoch": state.epoch,
                        "finished": state.finished,
                        "history_keys": list(state.history),
                    }
                )
            ),
            "batch/step": np.array([s for s, _ in state.batch_losses], dtype=np.int64),
            "batch/loss": np.array([v for _, v in state.batch_losses], dtype=np.float64),
        }
        for i, key in enumerate(state.history):  # keys by position: metric names stay free-form
            arrays[f"history/{i}"] = np.array(state.history[key], dtype=np.float64)
        for key, value in state.model_state.items():
            arrays[f"model/{key}"] = value
        for i, w in enumerate(state.best_weights or []):
            arrays[f"best_weights/{i}"] = w
        atomic_write(self.path, lambda fh: np.savez(fh, **arrays), self.sync)
        self.seconds += time.perf_counter() - t0

    def load(self) -> tuple[TrainState, dict[str, Any]] | None:
        """The saved state and meta, or None without a file; CheckpointError if unusable."""
        if not self.path.exists():
            return None
        try:
            with np.load(self.path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
            meta = json.loads(str(arrays.pop("meta")))
        except Exception as exc:  # truncated, not a zip, pickled objects, bad JSON ...
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise _unusable(self.path, f"is unreadable ({reason})") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise _unusable(self.path, f"is not an {FORMAT} file")
        try:
            keys = meta["history_keys"]
            state = TrainState(
                epoch=int(meta["epoch"]),
                finished=bool(meta["finished"]),
                model_state={k[6:]: v for k, v in arrays.items() if k.startswith("model/")},
                history={k: arrays[f"history/{i}"].tolist() for i, k in enumerate(keys)},
                batch_losses=list(
                    zip(arrays["batch/step"].tolist(), arrays["batch/loss"].tolist(), strict=True)
                ),
                best_weights=[
                    arrays[f"best_weights/{i}"]
                    for i in range(sum(k.startswith("best_weights/") for k in arrays))
                ]
                or None,
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise _unusable(self.path, f"is incomplete ({type(exc).__name__}: {exc})") from None
        if any(len(v) != state.epoch for v in state.history.values()):
            raise _unusable(self.path, "has a history that does not match its epoch count")
        return state, meta

    def delete(self) -> None:
        self.path.unlink(missing_ok=True)
        self.path.with_suffix(".lock").unlink(missing_ok=True)


class CheckpointSchedule:
    """Time-bounded checkpoints: at most one save every ``interval`` seconds, plus the end.

    :meth:`on_state` is ``train``'s ``on_checkpoint``: it sees every epoch's end, keeps that
    state (cheap: the model state is a copy of a few small arrays) and saves it when ``interval``
    seconds have passed since the last save, when training has ended, or when
    :meth:`save_latest` is called (Ctrl-C, SIGTERM, an exception). A resume starts from whichever
    epoch the file holds, so it stays bit-identical; at most ``interval`` seconds of epochs are
    trained again after ``kill -9``.

    ``save(state)`` writes the file; ``after_save(epoch)`` runs right after each save (the MLflow
    sink flushes there, so the store never holds an epoch the checkpoint lacks).
    """

    def __init__(
        self,
        save: Callable[[TrainState], None],
        interval: float,
        after_save: Callable[[int], None] | None = None,
    ) -> None:
        self.save, self.interval, self.after_save = save, interval, after_save
        self.latest: tuple[TrainState, int] | None = None
        self.saved_epoch: int | None = None
        self.last_save = time.perf_counter()

    def on_state(self, state: TrainState) -> None:
        # the batch-loss list keeps growing: remember how much of it belongs to this epoch end
        self.latest = (state, len(state.batch_losses))
        if state.finished or time.perf_counter() - self.last_save >= self.interval:
            self.save_latest()

    def save_latest(self) -> None:
        """Save the latest epoch end (if not saved yet), then call ``after_save``."""
        if self.latest is None or self.latest[0].epoch == self.saved_epoch:
            return
        state, n_batches = self.latest
        if len(state.batch_losses) != n_batches or any(
            len(v) != state.epoch for v in state.history.values()
        ):  # later epochs (or a part of one) were appended since: cut them off
            state = TrainState(
                state.epoch,
                state.model_state,
                {k: v[: state.epoch] for k, v in state.history.items()},
                state.batch_losses[:n_batches],
                state.finished,
                state.best_weights,
            )
        self.save(state)
        self.saved_epoch = state.epoch
        self.last_save = time.perf_counter()
        if self.after_save is not None:
            self.after_save(state.epoch)

    def last_saved_step(self) -> tuple[int, int] | None:
        """(epoch, optimizer step of its last logged batch loss) of the latest state, or None."""
        if self.latest is None:
            return None
        state, n_batches = self.latest
        return state.epoch, (state.batch_losses[n_batches - 1][0] if n_batches else 0)
