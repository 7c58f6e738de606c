"""Learning-rate schedules with Keras 3's names, arguments and numbers.

A schedule maps the optimizer's step count (``optimizer.iterations``: 0 for the first update)
to a learning rate. Pass one as ``learning_rate`` to any optimizer (example below).

Formulas are evaluated in float64 and the optimizer rounds the rate to its parameter dtype once
per step; Keras evaluates them in float32, so values agree to float32 rounding (~6e-8 relative).
``serialize`` / ``deserialize`` use Keras's ``{"class_name": ..., "config": ...}`` layout.

Examples
--------
>>> from nnlab import nn
>>> lr = nn.schedules.ExponentialDecay(0.1, decay_steps=100, decay_rate=0.96)
>>> opt = nn.SGD(learning_rate=lr)
>>> round(lr(100), 6)
0.096
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence

import numpy as np


def _number(schedule, name: str, value, minimum: float | None = None, strict: bool = False):
    """``value`` (an int stays an int, other numbers become floats); a bool, non-number,
    non-finite or too small value is a ValueError naming the schedule's class and ``name``."""
    owner = type(schedule).__name__
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ValueError(f"{owner}: {name} must be a number; got {value!r}")
    value = int(value) if isinstance(value, int | np.integer) else float(value)
    too_small = minimum is not None and (value <= minimum if strict else value < minimum)
    if not math.isfinite(value) or too_small:
        bound = "" if minimum is None else f" {'>' if strict else '>='} {minimum:g}"
        raise ValueError(f"{owner}: {name} must be a finite number{bound}; got {value!r}")
    return value


class LearningRateSchedule:
    """Base class: ``schedule(step) -> float`` for a step count ``step >= 0``.

    Subclasses implement ``__call__`` and ``get_config``; ``from_config(get_config())`` rebuilds
    an equal schedule.
    """

    def __call__(self, step: int) -> float:
        raise NotImplementedError(f"{type(self).__name__} must override __call__(step)")

    def get_config(self) -> dict:
        raise NotImplementedError(f"{type(self).__name__} must override get_config()")

    @classmethod
    def from_config(cls, config: dict) -> LearningRateSchedule:
        return cls(**config)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other) -> bool:
        return type(self) is type(other) and self.get_config() == other.get_config()

    __hash__ = None  # mutable attributes: equal by config, not hashable


class _StepDecay(LearningRateSchedule):
    """What ExponentialDecay and InverseTimeDecay share: Keras's five arguments, checked once,
    and the decay's progress ``step / decay_steps`` (floored with ``staircase``)."""

    _rate_strict = False  # may decay_rate be 0?

    def __init__(
        self,
        initial_learning_rate: float,
        decay_steps: int,
        decay_rate: float,
        staircase: bool = False,
        name: str | None = None,
    ) -> None:
        self.initial_learning_rate = _number(
            self, "initial_learning_rate", initial_learning_rate, 0
        )
        self.decay_steps = _number(self, "decay_steps", decay_steps, 0, strict=True)
        self.decay_rate = _number(self, "decay_rate", decay_rate, 0, strict=self._rate_strict)
        self.staircase = bool(staircase)
        self.name = type(self).__name__ if name is None else name  # Keras: the class name

    def _progress(self, step: int) -> float:
        p = step / self.decay_steps
        return math.floor(p) if self.staircase else p

    def get_config(self) -> dict:
        return {"initial_learning_rate": self.initial_learning_rate,
                "decay_steps": self.decay_steps, "decay_rate": self.decay_rate,
                "staircase": self.staircase, "name": self.name}  # fmt: skip


class ExponentialDecay(_StepDecay):
    """``initial_learning_rate * decay_rate ** (step / decay_steps)``.

    Parameters
    ----------
    initial_learning_rate : float
    decay_steps : int
        Steps per decay by ``decay_rate`` (> 0).
    decay_rate : float
    staircase : bool
        Floor ``step / decay_steps``: the rate drops every ``decay_steps`` steps.
    name : str
        Defaults to ``"ExponentialDecay"``.
    """

    _rate_strict = True

    def __call__(self, step: int) -> float:
        return self.initial_learning_rate * self.decay_rate ** self._progress(step)


class InverseTimeDecay(_StepDecay):
    """``initial_learning_rate / (1 + decay_rate * step / decay_steps)``.

    Parameters
    ----------
    initial_learning_rate : float
    decay_steps : int
        Steps per unit of ``decay_rate`` (> 0).
    decay_rate : float
    staircase : bool
        Floor ``step / decay_steps``.
    name : str
        Defaults to ``"InverseTimeDecay"``.
    """

    def __call__(self, step: int) -> float:
        return self.initial_learning_rate / (1.0 + self.decay_rate * self._progress(step))


class PiecewiseConstantDecay(LearningRateSchedule):
    """``values[0]`` while ``step <= boundaries[0]``, ``values[i]`` while
    ``boundaries[i-1] < step <= boundaries[i]``, ``values[-1]`` after ``boundaries[-1]``.

    Parameters
    ----------
    boundaries : sequence of int, length k
        Non-decreasing step counts.
    values : sequence of float, length k + 1
    name : str
    """

    def __init__(
        self, boundaries: Sequence[int], values: Sequence[float], name: str = "PiecewiseConstant"
    ) -> None:
        owner = type(self).__name__
        boundaries, values = list(boundaries), list(values)
        if len(boundaries) != len(values) - 1:
            raise ValueError(
                f"{owner}: values needs one more entry than boundaries; got {len(boundaries)} "
                f"boundaries and {len(values)} values"
            )
        self.boundaries = [_number(self, "boundaries", b) for b in boundaries]
        self.values = [_number(self, "values", v, 0) for v in values]
        if any(b > c for b, c in zip(self.boundaries, self.boundaries[1:], strict=False)):
            raise ValueError(f"{owner}: boundaries must be non-decreasing; got {boundaries}")
        self.name = name

    def __call__(self, step: int) -> float:
        # the number of boundaries strictly below step picks the interval
        return self.values[bisect.bisect_left(self.boundaries, step)]

    def get_config(self) -> dict:
        return {"boundaries": self.boundaries, "values": self.values, "name": self.name}


class PolynomialDecay(LearningRateSchedule):
    """``(initial - end) * (1 - step / decay_steps) ** power + end``, ``step`` capped at
    ``decay_steps``; with ``cycle`` ``decay_steps`` grows to the first multiple above ``step``.

    Parameters
    ----------
    initial_learning_rate : float
    decay_steps : int
        Steps to go from ``initial_learning_rate`` to ``end_learning_rate`` (> 0).
    end_learning_rate : float
    power : float
    cycle : bool
    name : str
    """

    def __init__(
        self,
        initial_learning_rate: float,
        decay_steps: int,
        end_learning_rate: float = 0.0001,
        power: float = 1.0,
        cycle: bool = False,
        name: str = "PolynomialDecay",
    ) -> None:
        self.initial_learning_rate = _number(
            self, "initial_learning_rate", initial_learning_rate, 0
        )
        self.decay_steps = _number(self, "decay_steps", decay_steps, 0, strict=True)
        self.end_learning_rate = _number(self, "end_learning_rate", end_learning_rate, 0)
        self.power = _number(self, "power", power, 0, strict=True)
        self.cycle = bool(cycle)
        self.name = name

    def __call__(self, step: int) -> float:
        decay_steps = self.decay_steps
        if self.cycle:
            decay_steps *= 1.0 if step == 0 else math.ceil(step / self.decay_steps)
        else:
            step = min(step, decay_steps)
        span = self.initial_learning_rate - self.end_learning_rate
        return span * (1.0 - step / decay_steps) ** self.power + self.end_learning_rate

    def get_config(self) -> dict:
        return {"initial_learning_rate": self.initial_learning_rate,
                "decay_steps": self.decay_steps, "end_learning_rate": self.end_learning_rate,
                "power": self.power, "cycle": self.cycle, "name": self.name}  # fmt: skip


def _cosine(fraction: float, alpha: float) -> float:
    """Cosine from 1 at ``fraction`` 0 down to ``alpha`` at 1."""
    return (1.0 - alpha) * 0.5 * (1.0 + math.cos(math.pi * fraction)) + alpha


class CosineDecay(LearningRateSchedule):
    """Optional linear warmup, then cosine decay (Loshchilov & Hutter, SGDR).

    Without ``warmup_target``: ``initial * cosine(min(step, decay_steps) / decay_steps)``,
    where ``cosine(f) = (1 - alpha) (1 + cos(pi f)) / 2 + alpha``. With it: for
    ``step < warmup_steps`` the rate goes linearly from ``initial_learning_rate`` to
    ``warmup_target``, then ``warmup_target * cosine((step - warmup_steps) / decay_steps)``
    (capped at the end of the decay).

    Parameters
    ----------
    initial_learning_rate : float
        Start of the warmup, or of the decay when there is none.
    decay_steps : int
        Steps of the cosine decay (> 0).
    alpha : float
        Final rate as a fraction of the decay's starting rate.
    name : str
    warmup_target : float or None
        Peak rate reached after ``warmup_steps``; None: no warmup.
    warmup_steps : int
    """

    def __init__(
        self,
        initial_learning_rate: float,
        decay_steps: int,
        alpha: float = 0.0,
        name: str = "CosineDecay",
        warmup_target: float | None = None,
        warmup_steps: int = 0,
    ) -> None:
        self.initial_learning_rate = _number(
            self, "initial_learning_rate", initial_learning_rate, 0
        )
        self.decay_steps = _number(self, "decay_steps", decay_steps, 0, strict=True)
        self.alpha = _number(self, "alpha", alpha, 0)
        self.name = name
        self.warmup_target = (
            None if warmup_target is None else _number(self, "warmup_target", warmup_target, 0)
        )
        self.warmup_steps = _number(self, "warmup_steps", warmup_steps, 0)

    def __call__(self, step: int) -> float:
        if self.warmup_target is None:
            fraction = min(step, self.decay_steps) / self.decay_steps
            return self.initial_learning_rate * _cosine(fraction, self.alpha)
        step = min(step, self.decay_steps + self.warmup_steps)
        if step < self.warmup_steps:
            rise = self.warmup_target - self.initial_learning_rate
            return rise * (step / self.warmup_steps) + self.initial_learning_rate
        fraction = (step - self.warmup_steps) / self.decay_steps
        return self.warmup_target * _cosine(fraction, self.alpha)

    def get_config(self) -> dict:
        return {"initial_learning_rate": self.initial_learning_rate,
                "decay_steps": self.decay_steps, "alpha": self.alpha, "name": self.name,
                "warmup_target": self.warmup_target,
                "warmup_steps": self.warmup_steps}  # fmt: skip


class CosineDecayRestarts(LearningRateSchedule):
    """Cosine decay with warm restarts (SGDR): period ``i`` lasts ``first_decay_steps * t_mul**i``
    steps and starts at ``initial_learning_rate * m_mul**i``.

    Within a period at fraction ``f``: ``initial * ((1 - alpha) m_mul**i (1 + cos(pi f)) / 2
    + alpha)``.

    Parameters
    ----------
    initial_learning_rate : float
    first_decay_steps : int
        Length of the first period (> 0).
    t_mul : float
        Each period is ``t_mul`` times longer than the one before (>= 1; Keras also takes
        ``t_mul < 1``, whose periods shrink to nothing after ``first_decay_steps / (1 - t_mul)``
        steps, where its formula takes the log of a negative number).
    m_mul : float
        Each period starts ``m_mul`` times lower than the one before.
    alpha : float
        Floor as a fraction of ``initial_learning_rate``.
    name : str
    """

    def __init__(
        self,
        initial_learning_rate: float,
        first_decay_steps: int,
        t_mul: float = 2.0,
        m_mul: float = 1.0,
        alpha: float = 0.0,
        name: str = "SGDRDecay",
    ) -> None:
        self.initial_learning_rate = _number(
            self, "initial_learning_rate", initial_learning_rate, 0
        )
        self.first_decay_steps = _number(self, "first_decay_steps", first_decay_steps, 0, True)
        self.t_mul = _number(self, "t_mul", t_mul, 1)
        self.m_mul = _number(self, "m_mul", m_mul, 0)
        self.alpha = _number(self, "alpha", alpha, 0)
        self.name = name

    def __call__(self, step: int) -> float:
        fraction = step / self.first_decay_steps
        if self.t_mul == 1.0:
            restart = math.floor(fraction)
            fraction -= restart
        else:  # periods 0..i-1 sum to (1 - t^i) / (1 - t) first periods
            t = self.t_mul
            restart = math.floor(math.log(1.0 - fraction * (1.0 - t)) / math.log(t))
            done = (1.0 - t**restart) / (1.0 - t)
            fraction = (fraction - done) / t**restart
        height = self.m_mul**restart
        cosine = 0.5 * height * (1.0 + math.cos(math.pi * fraction))
        return self.initial_learning_rate * ((1.0 - self.alpha) * cosine + self.alpha)

    def get_config(self) -> dict:
        return {"initial_learning_rate": self.initial_learning_rate,
                "first_decay_steps": self.first_decay_steps, "t_mul": self.t_mul,
                "m_mul": self.m_mul, "alpha": self.alpha, "name": self.name}  # fmt: skip


SCHEDULES: dict[str, type[LearningRateSchedule]] = {
    cls.__name__: cls
    for cls in (
        ExponentialDecay,
        InverseTimeDecay,
        PiecewiseConstantDecay,
        PolynomialDecay,
        CosineDecay,
        CosineDecayRestarts,
    )
}


def serialize(schedule: LearningRateSchedule) -> dict:
    """``{"class_name": ..., "config": ...}`` (JSON-able), as Keras's ``serialize``."""
    return {"class_name": type(schedule).__name__, "config": schedule.get_config()}


def deserialize(config: dict) -> LearningRateSchedule:
    """The schedule ``serialize`` described (only the classes of this module)."""
    name = config.get("class_name") if isinstance(config, dict) else None
    if name not in SCHEDULES:
        raise ValueError(f"unknown learning-rate schedule {name!r}; valid: {', '.join(SCHEDULES)}")
    return SCHEDULES[name].from_config(dict(config.get("config", {})))
