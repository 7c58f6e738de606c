"""Optimizers with Keras 3's update rules, applied in place to one flat parameter vector.

The model keeps every weight in one contiguous vector (per-layer W and b are views), so one
``update(params, grads)`` is a handful of whole-vector NumPy passes per step. All
hyper-parameters are cast to the parameter dtype when the slots are built: with float32 weights
nothing is computed in float64.

``learning_rate`` is a number or a :mod:`nnlab.nn.schedules` schedule (Keras 3): a schedule is
evaluated at ``iterations`` (0 for the first update) before every update, as Keras does.
A number may be changed between steps (``opt.learning_rate = 0.01``, what ReduceLROnPlateau and
LearningRateScheduler do); a schedule may not.

A stack of M models of one architecture (``nnlab.nn.stacked``) keeps its parameters, gradients
and slots as (M, P) arrays, one row per model, and updates them in one pass per formula step:
``apply_stacked`` runs the same ``_apply`` with per-model constants of shape (M, 1)
(``stacked_constants``: each model's rate, Adam's bias correction at each model's own step), so
every row gets the numbers its model computes alone.

Speed notes (235k float32 parameters, one core): the passes are bound by memory traffic, so
the vector is updated in L2-sized blocks; the constants enter the element-wise passes as 0-d
arrays (a NumPy *scalar* operand costs ~0.2 us more per ufunc call) and ``out`` is positional.
"""

from __future__ import annotations

import json
import math

import numpy as np

from . import schedules


def _check_positive(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise TypeError(f"{name} must be a number; got {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0; got {value!r}")
    return float(value)


def _check_range(name: str, value, lo: float, hi: float, hi_open: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise TypeError(f"{name} must be a number; got {value!r}")
    ok = lo <= value < hi if hi_open else lo <= value <= hi
    if not ok:
        bracket = ")" if hi_open else "]"
        raise ValueError(f"{name} must be in [{lo:g}, {hi:g}{bracket}; got {value!r}")
    return float(value)


def _check_rate(value) -> float:
    """A rate set after construction: a finite number >= 0 (schedules may reach 0)."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise TypeError(f"learning_rate must be a number; got {value!r}")
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"learning_rate must be a finite number >= 0; got {value!r}")
    return float(value)


class Optimizer:
    """Base class: holds the step count, the learning rate and per-parameter slot vectors.

    Subclasses set ``name`` and ``slot_names`` and implement ``_apply``, which reads every
    constant from its ``k`` argument (0-d arrays for one model, (M, 1) per-model arrays for a
    stack); their ``get_config`` reports the rate as ``self._rate_config()``.

    Parameters
    ----------
    learning_rate : float, LearningRateSchedule or dict
        A number > 0, a schedule, or a schedule's ``schedules.serialize`` dict.
    """

    name = "optimizer"
    slot_names: tuple[str, ...] = ()

    def __init__(self, learning_rate) -> None:
        self._schedule: schedules.LearningRateSchedule | None = None
        self._rate: float | None = None
        if isinstance(learning_rate, dict):
            learning_rate = schedules.deserialize(learning_rate)
        if isinstance(learning_rate, schedules.LearningRateSchedule):
            self._schedule = learning_rate
        else:
            self._rate = _check_positive("learning_rate", learning_rate)
        self.iterations = 0
        self.slots: dict[str, np.ndarray] = {}
        self._size: int | None = None
        self.dtype: np.dtype | None = None

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items() if k != "name")
        return f"{type(self).__name__}({args})"

    def get_config(self) -> dict:
        raise NotImplementedError

    def _rate_config(self):
        """The ``learning_rate`` entry of ``get_config``: a float or a serialized schedule."""
        if self._schedule is not None:
            return schedules.serialize(self._schedule)
        return self._rate

    @property
    def schedule(self) -> schedules.LearningRateSchedule | None:
        """The learning-rate schedule, or None for a number."""
        return self._schedule

    @property
    def learning_rate(self) -> float:
        """The rate the next update uses, as that update sees it (rounded to the parameter
        dtype once built): the schedule at ``iterations``, or the number."""
        value = self._current_rate()
        return float(self.dtype.type(value)) if self.dtype is not None else float(value)

    @learning_rate.setter
    def learning_rate(self, value) -> None:
        if isinstance(value, schedules.LearningRateSchedule):
            self._schedule, self._rate = value, None
        elif self._schedule is not None:
            raise TypeError(
                f"this {type(self).__name__} was created with a LearningRateSchedule, so its "
                "learning rate cannot be set; create it with a number as learning_rate instead"
            )
        else:
            self._rate = _check_rate(value)
        if self.built:
            self._set_rate(self._current_rate())

    def _current_rate(self) -> float:
        return self._schedule(self.iterations) if self._schedule is not None else self._rate

    def _set_rate(self, value: float) -> None:
        """Put ``value`` (rounded to the dtype) where the update passes read the rate."""
        rate = self.dtype.type(value)
        self._c["learning_rate"] = rate
        self._k["learning_rate"][...] = rate

    @property
    def built(self) -> bool:
        return self._size is not None

    #: elements per block: large vectors are updated block by block so the ~12 passes of an
    #: update run on L2-resident data (6 float32 arrays of 32768 = 768 KB)
    CHUNK = 32768

    def build(self, size: int, dtype) -> None:
        """Allocate zero slots and scratch for ``size`` parameters of ``dtype``."""
        dtype = np.dtype(dtype)
        if self.built:
            if (size, dtype) != (self._size, self.dtype):
                raise ValueError(
                    f"this {type(self).__name__} instance already serves {self._size} "
                    f"{self.dtype} parameters; give each model its own optimizer"
                )
            return
        self._size, self.dtype = size, dtype
        chunk = min(size, self.CHUNK)
        self._scratch = np.empty(chunk, dtype), np.empty(chunk, dtype)
        self.bind_slots({name: np.zeros(size, dtype) for name in self.slot_names})
        self._c = {k: dtype.type(v) for k, v in self.get_config().items()
                   if k not in ("name", "learning_rate") and isinstance(v, float)}  # fmt: skip
        # the same values as 0-d arrays, for the element-wise passes
        self._k = {k: np.array(v) for k, v in self._c.items()}
        self._k["learning_rate"] = np.zeros((), dtype)
        self._set_rate(self._current_rate())

    def bind_slots(self, slots: dict[str, np.ndarray]) -> None:
        """Keep the slots in ``slots`` (name -> (size,) array, values already in place). A stack
        binds its members' slots to the rows of its (M, size) arrays while it trains them."""
        self.slots = dict(slots)
        t1, t2 = self._scratch
        chunk = t1.size
        self._blocks = []  # (start, stop, slot views, scratch views) per block
        for start in range(0, self._size, chunk):
            stop = min(start + chunk, self._size)
            views = {k: v[start:stop] for k, v in self.slots.items()}
            self._blocks.append((start, stop, views, t1[: stop - start], t2[: stop - start]))

    def update(self, params: np.ndarray, grads: np.ndarray) -> None:
        """One step, in place: ``params`` and ``grads`` are flat arrays of the built size."""
        if not self.built:
            self.build(params.size, params.dtype)
        if self._schedule is not None:
            self._set_rate(self._schedule(self.iterations))
        k = self._step_constants()
        if len(self._blocks) == 1:
            _, _, slots, t, u = self._blocks[0]
            self._apply(params, grads, slots, t, u, k)
        else:
            for start, stop, slots, t, u in self._blocks:
                self._apply(params[start:stop], grads[start:stop], slots, t, u, k)
        self.iterations += 1

    def _step_constants(self) -> dict[str, np.ndarray]:
        """The constants ``_apply`` reads for the next update (``_k``, with per-step values
        such as Adam's bias-corrected rate written into it)."""
        return self._k

    def _apply(self, w, g, slots, t, u, k) -> None:
        """Update one block in place: w, g, slot views and scratch t, u of equal shape, (n,) or
        (M, n) for a stack; ``k`` the constants (``_step_constants`` or ``stacked_constants``)."""
        raise NotImplementedError

    # -- a stack of models sharing these settings -------------------------------------------

    def rates(self, count: int) -> np.ndarray:
        """The learning rates of the next ``count`` updates as ``update`` applies them (in the
        parameter dtype), if nothing sets the rate in between: (count,)."""
        if self._schedule is None:
            return np.full(count, self.dtype.type(self._rate))
        values = [self._schedule(self.iterations + i) for i in range(count)]
        return np.array([self.dtype.type(v) for v in values], self.dtype)

    def stacked_constants(self, rates: np.ndarray, steps: np.ndarray) -> dict[str, np.ndarray]:
        """``_apply``'s constants for a stack of models with this optimizer's settings (apart
        from the rate): ``rates`` each model's learning rate for the update (the dtype),
        ``steps`` each model's ``iterations`` before it; both of one shape, e.g. (M, 1), or
        (S, M, 1) for S updates at once. Per-model entries get that shape."""
        k = dict(self._k)
        k["learning_rate"] = rates
        return k

    def apply_stacked(self, params, grads, slots, scratch, constants) -> None:
        """One update of a stack, in place: ``params``, ``grads``, each slot and both scratch
        arrays (M, P); ``constants`` from ``stacked_constants`` with (M, 1) entries. The step
        counts are the caller's (each member's ``iterations``)."""
        self._apply(params, grads, slots, scratch[0], scratch[1], constants)

    # -- resume state ---------------------------------------------------------------------

    def _rate_state(self) -> np.ndarray:
        """The rate as state: a float64 number, or the schedule's config as a JSON string."""
        if self._schedule is None:
            return np.array(self._rate, dtype=np.float64)
        return np.array(json.dumps(schedules.serialize(self._schedule), sort_keys=True))

    def get_state(self) -> dict[str, np.ndarray]:
        """Step count, learning rate (``_rate_state``) and slot copies, as plain arrays."""
        state = {"iterations": np.array(self.iterations, dtype=np.int64)}
        state["learning_rate"] = self._rate_state()
        state.update({k: v.copy() for k, v in self.slots.items()})
        return state

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore ``get_state()`` output (the optimizer must be built).

        A state without ``learning_rate`` (written before schedules existed) keeps the rate.
        A schedule is configuration, not state: the saved one must equal this optimizer's.
        """
        missing = [k for k in ("iterations", *self.slot_names) if k not in state]
        if missing:
            raise ValueError(f"optimizer state lacks {missing} for {type(self).__name__}")
        saved = state.get("learning_rate")
        if saved is not None:
            saved = np.asarray(saved)
            mine = self._rate_state()
            if (saved.dtype.kind == "U") != (mine.dtype.kind == "U") or (
                saved.dtype.kind == "U" and str(saved) != str(mine)
            ):
                raise ValueError(
                    f"the optimizer state was saved with learning_rate {_describe(saved)} but this "
                    f"{type(self).__name__} has {_describe(mine)}; compile with the same one"
                )
        for k in self.slot_names:
            if np.shape(state[k]) != (self._size,):
                raise ValueError(
                    f"optimizer slot {k!r} has shape {np.shape(state[k])}; expected ({self._size},)"
                )
            self.slots[k][...] = state[k]
        self.iterations = int(state["iterations"])
        if saved is not None and saved.dtype.kind != "U":
            self._rate = float(saved)
        self._set_rate(self._current_rate())


def _describe(rate_state: np.ndarray) -> str:
    if rate_state.dtype.kind == "U":
        return f"schedule {rate_state}"
    return f"number {float(rate_state):g}"


class SGD(Optimizer):
    """``w -= lr g``; with momentum ``v = m v - lr g; w += v`` (nesterov: ``w += m v - lr g``)."""

    name = "sgd"

    def __init__(
        self, learning_rate: float = 0.01, momentum: float = 0.0, nesterov: bool = False
    ) -> None:
        super().__init__(learning_rate)
        self.momentum = _check_range("momentum", momentum, 0.0, 1.0, hi_open=False)
        self.nesterov = bool(nesterov)
        self.slot_names = ("momentum",) if self.momentum > 0 else ()

    def get_config(self) -> dict:
        return {"name": self.name, "learning_rate": self._rate_config(),
                "momentum": self.momentum, "nesterov": self.nesterov}  # fmt: skip

    def _apply(self, w, g, slots, t, u, k):
        np.multiply(g, k["learning_rate"], t)  # lr g
        if self.momentum == 0:
            np.subtract(w, t, w)
            return
        m, v = k["momentum"], slots["momentum"]
        np.multiply(v, m, v)
        np.subtract(v, t, v)
        if self.nesterov:
            np.multiply(v, m, u)
            np.subtract(u, t, u)
            np.add(w, u, w)
        else:
            np.add(w, v, w)


class Adam(Optimizer):
    """Keras's Adam: ``a = lr sqrt(1-b2^t)/(1-b1^t); m += (g-m)(1-b1); v += (g^2-v)(1-b2);
    w -= a m / (sqrt(v) + eps)`` with ``t = step + 1``."""

    name = "adam"
    slot_names = ("m", "v")

    def __init__(
        self,
        learning_rate: float = 0.001,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-7,
    ) -> None:
        super().__init__(learning_rate)
        self.beta_1 = _check_range("beta_1", beta_1, 0.0, 1.0)
        self.beta_2 = _check_range("beta_2", beta_2, 0.0, 1.0)
        self.epsilon = _check_range("epsilon", epsilon, 0.0, math.inf)

    def get_config(self) -> dict:
        return {"name": self.name, "learning_rate": self._rate_config(), "beta_1": self.beta_1,
                "beta_2": self.beta_2, "epsilon": self.epsilon}  # fmt: skip

    def build(self, size, dtype):
        super().build(size, dtype)
        one = self.dtype.type(1)
        self._k["one_minus_beta_1"] = np.array(one - self._c["beta_1"])
        self._k["one_minus_beta_2"] = np.array(one - self._c["beta_2"])
        self._k["alpha"] = self._alpha_now = np.zeros((), self.dtype)
        self._one = one

    def _alpha(self, rate, power_1, power_2):
        """``rate sqrt(1 - power_2) / (1 - power_1)`` with ``power_i = beta_i ** t``: scalars of
        the dtype, or arrays of one shape (a stack's models)."""
        return rate * np.sqrt(self._one - power_2) / (self._one - power_1)

    def _step_constants(self):
        c, step = self._c, self.dtype.type(self.iterations + 1)
        power_1, power_2 = c["beta_1"] ** step, c["beta_2"] ** step
        self._alpha_now[...] = self._alpha(c["learning_rate"], power_1, power_2)
        return self._k

    def stacked_constants(self, rates, steps):
        k = super().stacked_constants(rates, steps)
        # the powers as a lone model computes them (NumPy scalar power): an array power may
        # take another (SIMD) routine and differ in the last bit. One per distinct step.
        distinct, where = np.unique(steps, return_inverse=True)
        t = [self.dtype.type(s + 1) for s in distinct]
        powers = [
            np.array([self._c[b] ** ti for ti in t], self.dtype)[where].reshape(np.shape(steps))
            for b in ("beta_1", "beta_2")
        ]
        k["alpha"] = self._alpha(rates, *powers)
        return k

    def _apply(self, w, g, slots, t, u, k):
        m, v = slots["m"], slots["v"]
        np.subtract(g, m, t)  # m += (g - m) (1 - b1)
        np.multiply(t, k["one_minus_beta_1"], t)
        np.add(m, t, m)
        np.multiply(g, g, t)  # v += (g^2 - v) (1 - b2)
        np.subtract(t, v, t)
        np.multiply(t, k["one_minus_beta_2"], t)
        np.add(v, t, v)
        np.sqrt(v, t)  # w -= alpha m / (sqrt(v) + eps)
        np.add(t, k["epsilon"], t)
        np.multiply(m, k["alpha"], u)
        np.divide(u, t, u)
        np.subtract(w, u, w)


class RMSprop(Optimizer):
    """``v = rho v + (1-rho) g^2; w -= lr g / sqrt(v + eps)``; centered subtracts the squared
    running mean gradient inside the root; momentum accumulates the increments."""

    name = "rmsprop"

    def __init__(
        self,
        learning_rate: float = 0.001,
        rho: float = 0.9,
        momentum: float = 0.0,
        epsilon: float = 1e-7,
        centered: bool = False,
    ) -> None:
        super().__init__(learning_rate)
        self.rho = _check_range("rho", rho, 0.0, 1.0)
        self.momentum = _check_range("momentum", momentum, 0.0, 1.0, hi_open=False)
        self.epsilon = _check_range("epsilon", epsilon, 0.0, math.inf)
        self.centered = bool(centered)
        self.slot_names = (
            ("velocity",)
            + (("average_gradient",) if self.centered else ())
            + (("momentum",) if self.momentum > 0 else ())
        )

    def get_config(self) -> dict:
        return {"name": self.name, "learning_rate": self._rate_config(), "rho": self.rho,
                "momentum": self.momentum, "epsilon": self.epsilon,
                "centered": self.centered}  # fmt: skip

    def build(self, size, dtype):
        super().build(size, dtype)
        self._k["one_minus_rho"] = np.array(self.dtype.type(1) - self._c["rho"])

    def _apply(self, w, g, slots, t, u, k):
        c = k
        rho, v = c["rho"], slots["velocity"]
        np.multiply(v, rho, v)  # v = rho v + (1 - rho) g^2
        np.multiply(g, g, t)
        np.multiply(t, c["one_minus_rho"], t)
        np.add(v, t, v)
        if self.centered:
            mg = slots["average_gradient"]
            np.multiply(mg, rho, mg)
            np.multiply(g, c["one_minus_rho"], t)
            np.add(mg, t, mg)
            np.multiply(mg, mg, t)
            np.subtract(v, t, t)
            np.add(t, c["epsilon"], t)
        else:
            np.add(v, c["epsilon"], t)
        np.sqrt(t, t)
        np.multiply(g, c["learning_rate"], u)
        np.divide(u, t, u)
        if self.momentum > 0:
            mom = slots["momentum"]
            np.multiply(mom, c["momentum"], mom)
            np.add(mom, u, mom)
            np.subtract(w, mom, w)
        else:
            np.subtract(w, u, w)


OPTIMIZERS: dict[str, type[Optimizer]] = {"sgd": SGD, "adam": Adam, "rmsprop": RMSprop}


def get(identifier) -> Optimizer:
    """An Optimizer from a name (default hyper-parameters), a config dict or an instance."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, dict):
        config = dict(identifier)
        return OPTIMIZERS[config.pop("name")](**config)
    if isinstance(identifier, str):
        key = identifier.lower()
        if key in OPTIMIZERS:
            return OPTIMIZERS[key]()
        raise ValueError(
            f"unknown optimizer {identifier!r}; valid: {', '.join(OPTIMIZERS)} "
            "or an Optimizer instance"
        )
    raise TypeError(
        f"optimizer must be a name or an Optimizer instance; got {type(identifier).__name__}"
    )
