"""Stacked training: M compiled ``Sequential`` models of one architecture fit in lockstep.

Each member keeps its own seed (initial weights and shuffle order), learning rate or schedule,
optimizer state, callbacks and epoch budget, and ends with the history, weights and
``get_state()`` that ``member.fit(...)`` alone gives it: every model's GEMMs are the BLAS calls it
makes alone, on the same operands, and every element-wise step the same ufunc, so the numbers
agree bit for bit on the builds tried (to ~1e-5 relative is what the tests ask).

How: one leading model axis (``nnlab.nn.passes``). Weights, gradients and optimizer slots are
(M, P) arrays, one row per member; each layer is one batched ``np.matmul`` (one GEMM per member
slice), each element-wise step of an activation, loss or optimizer one ufunc call over all
members (``losses``, ``metrics.batch_total`` and ``Optimizer.apply_stacked`` take the leading
axis). While the stack trains, every member's weights and slots are views into its row, so its
callbacks see it live: ``get_weights``, ``get_state`` (a checkpoint), ``optimizer.learning_rate``.

Members advance in rounds: in round r member i trains its epoch ``initial_epoch[i] + r`` (all
have the same steps per epoch: same data and batch size). At the end of a round a member that
stopped (``stop_training``: early stopping, divergence, a pruning callback) or reached its
budget leaves the stack: its row goes back into its own arrays, its ``on_train_end`` runs, and
the others go on in a smaller stack.

Stacking pays for narrow networks and small batches, where NumPy's per-call overhead dominates a
step, and less for wide ones, where a large stack's arrays fall out of the caches: ``CROSSOVER``
holds the measured ratios, :func:`stacking_pays` and :func:`stack_size` read them.

Examples
--------
>>> from nnlab import nn
>>> def member(seed, lr):
...     m = nn.Sequential([nn.Dense(16, "relu", input_dim=2),
...                        nn.Dense(1, "sigmoid")], seed=seed)
...     m.compile(nn.Adam(lr), "binary_crossentropy", ["accuracy"])
...     return m
>>> models = [member(0, 1e-3), member(1, 1e-2)]
>>> histories = nn.Stack(models).fit(x, y, batch_size=16, epochs=[5, 10])  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence

import numpy as np

from . import callbacks as callbacks_module
from . import metrics as metrics_module
from . import passes
from .model import Sequential, _check_int
from .printing import epoch_line


def compatibility_key(model: Sequential) -> tuple:
    """What the members of one stack must share, as a hashable tuple: dtype, input width, layer
    widths and activations, loss, metrics, optimizer class and settings apart from the rate.

    Models with equal keys stack when they also train on the same data with one batch size.
    """
    if model.loss is None:
        raise ValueError("a stack member must be compiled: call model.compile(...) first")
    optimizer = model.optimizer.get_config()
    optimizer.pop("learning_rate")
    return (
        model.dtype.name,
        model.input_dim,
        tuple((layer.units, layer.activation) for layer in model.layers),
        json.dumps(model.loss.get_config(), sort_keys=True),
        tuple(model.metrics_names),
        json.dumps(optimizer, sort_keys=True),
    )


def _per_member(name: str, value, count: int, minimum: int) -> list[int]:
    """An int for every member, or one list of ``count`` ints (each >= minimum)."""
    if isinstance(value, Sequence | np.ndarray) and not isinstance(value, str):
        if len(value) != count:
            raise ValueError(f"{name} has {len(value)} values for {count} stack members")
        return [_check_int(name, v, minimum) for v in value]
    return [_check_int(name, value, minimum)] * count


class _Member:
    """One model in a stack's fit: its callbacks, history, budget and own storage."""

    def __init__(self, index, model, callbacks, epochs, initial_epoch, params) -> None:
        self.index, self.model, self.optimizer = index, model, model.optimizer
        self.epochs, self.initial_epoch = epochs, initial_epoch
        self.user_callbacks = list(callbacks)
        self.history = callbacks_module.History()
        self.history.history = {}
        self.callbacks = callbacks_module.CallbackList(
            [*self.user_callbacks, self.history], model, {**params, "epochs": epochs}
        )
        self.batch_hooks = bool(self.callbacks.batch_callbacks)
        self.logs: dict[str, float] = {}
        # the arrays the model owns: its row is copied back into them when it leaves
        self.own_params = model._params
        self.own_slots = dict(self.optimizer.slots)

    def release(self) -> None:
        """Copy the live row back into the member's own arrays and bind it to them again."""
        self.own_params[...] = self.model._params
        for name, own in self.own_slots.items():
            own[...] = self.optimizer.slots[name]
        self.model._bind_params(self.own_params)
        self.optimizer.bind_slots(self.own_slots)


class _Rows:
    """The active members' weights, gradients, optimizer slots and scratch as (M, P) arrays,
    each member bound to its row."""

    def __init__(self, members: list[_Member], model: Sequential) -> None:
        m, dtype = len(members), model.dtype
        self.params = np.stack([mem.model._params for mem in members])
        self.grads = np.zeros_like(self.params)
        self.slots = {
            name: np.stack([mem.optimizer.slots[name] for mem in members])
            for name in model.optimizer.slot_names
        }
        self.scratch = (np.empty_like(self.params), np.empty_like(self.params))
        self.views = passes.Views(self.params, model._layout)
        self.grad_views = passes.Views(self.grads, model._layout)
        for i, mem in enumerate(members):
            mem.model._bind_params(self.params[i])
            mem.optimizer.bind_slots({name: v[i] for name, v in self.slots.items()})
        self.widths = [layer.units for layer in model.layers]
        self.dtype, self.size = dtype, m
        self._batches: dict[int, tuple] = {}

    def batch(self, n: int, n_features: int, n_targets: int) -> tuple:
        """(buffers, x batch, its transpose, y batch) for batches of n samples, made once."""
        cached = self._batches.get(n)
        if cached is None:
            bufs = passes.Buffers((self.size,), n, self.widths, self.dtype)
            xb = np.empty((self.size, n, n_features), self.dtype)
            yb = np.empty((self.size, n, n_targets), self.dtype)
            cached = (bufs, xb, xb.swapaxes(-1, -2), yb)
            self._batches[n] = cached
        return cached


class _RoundConstants:
    """The optimizer constants of every update of one round, per member: (S, M, 1) tables from
    ``stacked_constants``; ``step(s)`` is the dict ``apply_stacked`` takes for update s."""

    def __init__(self, members: list[_Member], steps: int) -> None:
        self.members, self.count = members, steps
        self.first = np.array([mem.optimizer.iterations for mem in members], np.int64)
        self.rates = np.empty((steps, len(members), 1), members[0].model.dtype)
        for i, mem in enumerate(members):  # a constant rate is one number (the common case)
            opt = mem.optimizer
            self.rates[:, i, 0] = (
                opt.rates(steps) if opt.schedule is not None else opt.learning_rate
            )
        counts = self.first[None, :] + np.arange(steps)[:, None]
        self.iterations = counts[..., None]
        self.tables = members[0].optimizer.stacked_constants(self.rates, self.iterations)
        per_member = [k for k, v in self.tables.items() if np.ndim(v) == 3]
        self._steps = [
            {k: (v[s] if k in per_member else v) for k, v in self.tables.items()}
            for s in range(steps)
        ]

    def step(self, s: int) -> dict[str, np.ndarray]:
        return self._steps[s]

    def refresh(self, i: int, done: int) -> None:
        """Member i's callback may have set its rate after update ``done``: recompute its rates
        for the updates left (the tables are updated in place, where ``step`` reads them)."""
        left = self.count - done
        rates = self.members[i].optimizer.rates(left)
        if left and not np.array_equal(rates, self.rates[done:, i, 0]):
            self.rates[done:, i, 0] = rates
            new = self.members[0].optimizer.stacked_constants(self.rates, self.iterations)
            for key, table in self.tables.items():
                if np.ndim(table) == 3:
                    table[...] = new[key]


class Stack:
    """M compiled ``Sequential`` models of one architecture, trained in lockstep by :meth:`fit`.

    Parameters
    ----------
    models : sequence of Sequential
        Distinct compiled models with equal :func:`compatibility_key` (layer widths and
        activations, dtype, loss, metrics, optimizer class and settings apart from the learning
        rate), each with its own optimizer instance. Seeds, learning rates (numbers or
        schedules), initializers and optimizer state may differ.
    """

    def __init__(self, models: Sequence[Sequential]) -> None:
        models = list(models)
        if not models:
            raise ValueError("a Stack needs at least one model")
        for i, model in enumerate(models):
            if not isinstance(model, Sequential):
                raise TypeError(f"stack member {i} is a {type(model).__name__}, not a Sequential")
            if model.loss is None:
                raise ValueError(f"stack member {i} is not compiled: call model.compile(...) first")
        if len({id(m) for m in models}) < len(models):
            raise ValueError("a model appears twice in the stack; give each member its own model")
        if len({id(m.optimizer) for m in models}) < len(models):
            raise ValueError("stack members share an optimizer instance; give each its own")
        self.models = models
        self._check_compatible()

    def __repr__(self) -> str:
        return f"Stack({len(self.models)} x {self.models[0]!r})"

    def _check_compatible(self) -> None:
        first = compatibility_key(self.models[0])
        for i, model in enumerate(self.models[1:], start=1):
            key = compatibility_key(model)
            if key != first and (key[1] is None or first[1] is None):
                key, first = key[:1] + key[2:], first[:1] + first[2:]  # input width unknown yet
            if key != first:
                fields = ("dtype", "input_dim", "layers", "loss", "metrics", "optimizer")
                what = next(f for f, a, b in zip(fields, first, key, strict=False) if a != b)
                raise ValueError(
                    f"stack member {i} differs from member 0 in its {what}; a stack trains "
                    "models of one architecture, dtype, loss, metrics and optimizer settings "
                    "(only seeds and learning rates may differ)"
                )

    # --- fit ----------------------------------------------------------------------------

    def fit(
        self,
        x,
        y,
        batch_size: int | None = 32,
        epochs: int | Sequence[int] = 1,
        verbose: int = 0,
        callbacks: Sequence[Sequence[callbacks_module.Callback]] | None = None,
        validation_split: float = 0.0,
        validation_data: tuple | None = None,
        shuffle: bool = True,
        initial_epoch: int | Sequence[int] = 0,
    ) -> list[callbacks_module.History]:
        """Train every member as ``member.fit`` would with these arguments; one History each.

        Arguments as :meth:`Sequential.fit`, x (N, input_dim) and y shared by all members,
        except: ``epochs`` and ``initial_epoch`` take one int for all or a list with one per
        member; ``callbacks`` is one list per member (``[[EarlyStopping()], []]``), never
        shared. ``verbose=1`` prints each member's epoch line, prefixed with its index.
        """
        k = len(self.models)
        batch_size = 32 if batch_size is None else _check_int("batch_size", batch_size, 1)
        epochs_of = _per_member("epochs", epochs, k, 0)
        initial_of = _per_member("initial_epoch", initial_epoch, k, 0)
        callbacks_of = self._member_callbacks(callbacks, k)
        lead = self.models[0]
        x, y, xv, yv = lead._fit_arrays(x, y, validation_data, validation_split)
        for model in self.models[1:]:
            model._maybe_build()
            if not model.built:
                model.build(lead.input_dim)
        self._check_compatible()

        n = x.shape[0]
        params = {"steps": math.ceil(n / batch_size), "verbose": verbose}
        members = []
        for i, model in enumerate(self.models):
            model.optimizer.build(model._params.size, model.dtype)
            members.append(_Member(i, model, callbacks_of[i], epochs_of[i], initial_of[i], params))
        keys = lead.metrics_names + (
            [f"val_{name}" for name in lead.metrics_names] if xv is not None else []
        )
        for mem in members:
            mem.history.history = {key: [] for key in keys}
            mem.model.stop_training = False
            mem.model.history = mem.history
            mem.model._fit_callbacks = mem.user_callbacks
            mem.callbacks.on_train_begin()
            pending, mem.model._pending_callback_state = mem.model._pending_callback_state, {}
            callbacks_module.restore_callback_state(mem.user_callbacks, pending)
        data = (x, y, xv, yv)
        active = [mem for mem in members if mem.initial_epoch < mem.epochs]
        for mem in members:
            if mem not in active:
                mem.callbacks.on_train_end({})
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            self._train(active, data, batch_size, shuffle, verbose)
        return [mem.history for mem in members]

    @staticmethod
    def _member_callbacks(callbacks, k: int) -> list[list[callbacks_module.Callback]]:
        if callbacks is None:
            return [[] for _ in range(k)]
        callbacks = list(callbacks)
        if any(isinstance(c, callbacks_module.Callback) for c in callbacks):
            raise TypeError(
                "Stack.fit takes one list of callbacks per member, e.g. "
                "callbacks=[[nn.EarlyStopping()] for _ in models]; got a Callback in the outer list"
            )
        if len(callbacks) != k:
            raise ValueError(f"callbacks has {len(callbacks)} lists for {k} stack members")
        lists = [list(c or []) for c in callbacks]
        seen = [id(c) for cs in lists for c in cs]
        if len(set(seen)) < len(seen):
            raise ValueError("a callback instance is given twice; give each member its own")
        return lists

    def _train(self, active: list[_Member], data, batch_size: int, shuffle: bool, verbose: int):
        """Rounds until every member has left; members still bound on an error are released."""
        try:
            rnd = 0
            while active:
                rows = _Rows(active, active[0].model)
                while active:
                    leaving = self._round(rows, active, rnd, data, batch_size, shuffle, verbose)
                    rnd += 1
                    if leaving:
                        break
                for mem in leaving:
                    mem.release()
                    mem.callbacks.on_train_end(mem.logs)
                active = [mem for mem in active if mem not in leaving]
        finally:
            for mem in active:
                if mem.model._params is not mem.own_params:
                    mem.release()

    def _round(self, rows: _Rows, active, rnd: int, data, batch_size: int, shuffle, verbose):
        """One epoch of every active member; returns the members that leave after it."""
        x, y, xv, yv = data
        n, model = x.shape[0], active[0].model
        steps = math.ceil(n / batch_size)
        started = time.perf_counter()
        orders = np.empty((len(active), n), np.intp) if shuffle else None
        for i, mem in enumerate(active):
            mem.callbacks.on_epoch_begin(mem.initial_epoch + rnd)
            if shuffle:
                orders[i] = mem.model._rng.permutation(n)
        constants = _RoundConstants(active, steps)
        sums = self._train_epoch(rows, active, constants, x, y, orders, batch_size)
        if xv is not None:
            sums += [v for v in self._evaluate(rows, model, xv, yv, batch_size)]
        seconds = time.perf_counter() - started
        names = model.metrics_names
        keys = names + ([f"val_{k}" for k in names] if xv is not None else [])
        leaving = []
        for i, mem in enumerate(active):
            epoch = mem.initial_epoch + rnd
            logs = {key: float(s[i]) for key, s in zip(keys, sums, strict=True)}
            if verbose:
                print(f"[{mem.index}] " + epoch_line(epoch, mem.epochs, seconds, logs), flush=True)
            mem.callbacks.on_epoch_end(epoch, logs)
            mem.logs = logs
            if mem.model.stop_training or epoch + 1 >= mem.epochs:
                leaving.append(mem)
        return leaving

    def _train_epoch(self, rows: _Rows, active, constants, x, y, orders, batch_size):
        """One pass over the data in each member's order (``orders`` (M, N), or None: in
        order); per-member means of the batch losses and metrics, each measured before its own
        update, as float64 arrays (M,). Sets each member's ``optimizer.iterations``."""
        model = active[0].model
        loss, activation = model.loss, model.layers[-1].activation
        fns, derivs, metrics = model._forward_fns, model._derivs, model._metrics
        optimizer = active[0].optimizer
        hooked = [(i, mem) for i, mem in enumerate(active) if mem.batch_hooks]
        n, m = x.shape[0], len(active)
        loss_sum = np.zeros(m)
        totals = [np.zeros(m) for _ in metrics]
        done = 0
        try:
            for s, start in enumerate(range(0, n, batch_size)):
                stop = min(start + batch_size, n)
                bufs, xb, xb_t, yb = rows.batch(stop - start, x.shape[1], y.shape[1])
                if orders is None:  # one batch shared by every member (broadcast)
                    xb, yb = x[start:stop], y[start:stop]
                    xb_t = xb.T
                else:
                    index = orders[:, start:stop]
                    # mode="clip" (never triggered) avoids the temporary of mode="raise"
                    np.take(x, index, axis=0, out=xb, mode="clip")
                    np.take(y, index, axis=0, out=yb, mode="clip")
                out = passes.forward(xb, rows.views, fns, bufs)
                batch_loss = loss.value_and_delta(yb, out, activation, bufs.d[-1], bufs.t[-1])
                passes.backward(xb_t, rows.views, rows.grad_views, derivs, bufs)
                loss_sum += batch_loss * (stop - start)
                for j, (_, fn) in enumerate(metrics):
                    totals[j] += metrics_module.batch_total(fn, yb, out)
                optimizer.apply_stacked(
                    rows.params, rows.grads, rows.slots, rows.scratch, constants.step(s)
                )
                done = s + 1
                for i, mem in hooked:
                    mem.optimizer.iterations = int(constants.first[i]) + done
                    mem.callbacks.on_train_batch_end(
                        done + int(constants.first[i]), {"loss": float(batch_loss[i])}
                    )
                    constants.refresh(i, done)
        finally:  # each member's step count, also when a callback raises mid-epoch
            for i, mem in enumerate(active):
                mem.optimizer.iterations = int(constants.first[i]) + done
        return [loss_sum / n, *(t / n for t in totals)]

    def _evaluate(self, rows: _Rows, model: Sequential, xv, yv, batch_size: int) -> list:
        """Per-member validation loss and metrics, float64 arrays (M,), batched as ``evaluate``."""
        n, m = xv.shape[0], rows.size
        loss_sum = np.zeros(m)
        totals = [np.zeros(m) for _ in model._metrics]
        for start in range(0, n, batch_size):
            xb, yb = xv[start : start + batch_size], yv[start : start + batch_size]
            bufs = rows.batch(xb.shape[0], xv.shape[1], yv.shape[1])[0]
            out = passes.forward(xb, rows.views, model._forward_fns, bufs)
            loss_sum += model.loss.batch_mean(yb, out) * xb.shape[0]
            for j, (_, fn) in enumerate(model._metrics):
                totals[j] += metrics_module.batch_total(fn, yb, out)
        return [loss_sum / n, *(t / n for t in totals)]


#: alone / stacked time per model-step (> 1: stacking pays): the smallest of three runs of the
#: crossover of ``python -m benchmarks.run --only stacking`` (see benchmarks/README.md) on the
#: 2-core development machine, one core: 2-w-w-1 relu/sigmoid nets, Adam, float32, the flagship's
#: 640 moons samples. One table per stack size; rows: hidden width w in CROSSOVER_WIDTHS,
#: columns: batch size in CROSSOVER_BATCHES. Stacks of 2 are measured too but left out: they
#: gain 1.0-1.9x and scatter around 1 from run to run, so no stack has fewer than 4 members.
CROSSOVER_WIDTHS = (4, 8, 16, 32, 64, 128)
CROSSOVER_BATCHES = (8, 16, 32, 64, 128, 256)
CROSSOVER: dict[int, tuple[tuple[float, ...], ...]] = {
    4: (
        (2.88, 2.63, 2.33, 2.13, 1.91, 1.35),
        (2.84, 2.40, 2.15, 2.21, 1.83, 0.84),
        (2.78, 2.17, 2.46, 1.91, 1.77, 1.58),
        (2.39, 2.46, 1.96, 1.87, 1.34, 1.27),
        (2.10, 1.89, 1.40, 1.42, 1.19, 0.92),
        (1.32, 1.19, 1.08, 1.19, 1.10, 0.84),
    ),
    16: (
        (9.22, 7.72, 5.92, 4.68, 3.29, 1.89),
        (7.90, 6.74, 4.87, 4.58, 3.08, 1.85),
        (8.25, 6.32, 5.45, 3.63, 2.40, 1.61),
        (5.38, 4.83, 3.65, 2.80, 1.90, 1.26),
        (3.26, 2.49, 1.98, 1.75, 1.38, 0.83),
        (1.37, 1.28, 0.98, 0.96, 0.87, 0.63),
    ),
    64: (
        (17.47, 12.11, 9.41, 6.28, 3.63, 1.76),
        (12.54, 12.29, 8.98, 4.66, 2.57, 0.88),
        (12.99, 7.46, 6.45, 3.73, 2.60, 0.77),
        (7.52, 5.65, 2.64, 1.69, 1.23, 0.71),
        (3.54, 2.90, 1.75, 1.47, 0.77, 0.57),
        (1.12, 1.03, 0.91, 0.75, 0.66, 0.53),
    ),
}
#: the ratio a stack must reach in the table: on the busy development machine one cell's
#: ratio moved by up to 40% between runs, so a stack must be measured 1.5x faster to count
PAYS_AT = 1.5


def measured_ratio(widths: Sequence[int], batch_size: int, n_features: int, k: int):
    """The crossover's alone / stacked ratio for ``k`` models of this shape, or None beyond it.

    The net is compared, conservatively, with the measured 2-w-w-1 net of the smallest width w
    that has at least its multiply-adds per sample and its units, at the smallest measured
    batch size >= ``batch_size``, and with the smaller of the ratios of the measured stack sizes
    around ``k`` (a stack larger than the largest measured counts as that size).

    Parameters
    ----------
    widths : sequence of int
        Units of every layer, the output layer's included, e.g. ``[16, 16, 1]``.
    batch_size : int
    n_features : int
        Input width.
    k : int
        Models in the stack.
    """
    units = [n_features, *widths]
    macs = sum(a * b for a, b in zip(units[:-1], units[1:], strict=True))
    row = next((i for i, w in enumerate(CROSSOVER_WIDTHS)
                if w * w + 3 * w >= macs and 2 * w + 1 >= sum(widths)), None)  # fmt: skip
    col = next((j for j, b in enumerate(CROSSOVER_BATCHES) if b >= batch_size), None)
    below = [s for s in CROSSOVER if s <= k]
    above = [s for s in CROSSOVER if s >= k] or [max(CROSSOVER)]
    if row is None or col is None or not below:
        return None
    return min(CROSSOVER[s][row][col] for s in (max(below), min(above)))


def stacking_pays(widths: Sequence[int], batch_size: int, n_features: int, k: int) -> bool:
    """Whether ``k`` models of this shape train faster as one stack than one at a time: the
    measured ratio (:func:`measured_ratio`) reaches ``PAYS_AT``. What ``trainer.stack=auto``
    asks; anything beyond the measured table (wider, larger batches, k < 2) does not stack."""
    ratio = measured_ratio(widths, batch_size, n_features, k)
    return ratio is not None and ratio >= PAYS_AT


def stack_size(widths: Sequence[int], batch_size: int, n_features: int, n: int) -> int:
    """How many of ``n`` compatible models to put in one stack: of the measured stack sizes up
    to ``n`` and ``n`` itself, the one with the best measured ratio (the larger on a tie) among
    those where stacking pays; 1 (no stack) when none does."""
    sizes = sorted({s for s in CROSSOVER if s <= n} | ({n} if n <= max(CROSSOVER) else set()))
    best = (PAYS_AT, 1)
    for size in sizes:
        ratio = measured_ratio(widths, batch_size, n_features, size)
        if ratio is not None and (ratio, size) >= best:
            best = (ratio, size)
    return best[1]
