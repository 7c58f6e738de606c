"""The numbers of the LR range test (Smith 2015, 2017), with fastai's defaults: pure functions.

The test trains for ``num_it`` optimizer steps, one fresh mini-batch each, while the learning
rate grows exponentially from ``start_lr`` to ``end_lr`` (fastai: 1e-7 to 10 over 100 steps),
and records each step's loss. Then:

- **smoothing**: the recorded loss is a debiased exponential moving average of the batch losses,
  ``avg = beta * avg + (1 - beta) * loss`` from ``avg = 0``, divided by ``1 - beta**count``
  (``beta`` = 0.98) so the first points are not pulled toward zero (:class:`SmoothedLoss`);
- **stop**: the test ends at the first point whose smoothed loss exceeds ``stop_factor`` (4)
  times the lowest smoothed loss so far, that point included (:class:`RangeTest`);
- **trimming**: before suggesting, the first ``num_it // 10`` and the last 5 recorded points are
  dropped, and the curve is cut at its first NaN (:func:`trim`);
- **suggestions** (:data:`SUGGESTIONS`), each read from the trimmed smoothed curve:

  - *valley* (fastai's default): the longest run of ever-lower losses. For every point, the
    length of the longest sequence of points before it whose losses strictly fall into it
    (the points need not be neighbours) is counted; the valley ends at the first point with the
    largest count and is taken to start that count of points earlier (one point before the
    first point of an unbroken fall). The suggestion is the point a third plus a sixth (about
    half) of the way in, each part rounded down (:func:`valley`);
  - *minimum*: the rate at the lowest smoothed loss, divided by 10 (:func:`minimum`);
  - *steep*: the rate where the loss falls fastest against log(rate): the left end of the
    segment between neighbouring points with the most negative slope (:func:`steep`).

Array shapes: ``lrs`` and ``losses`` are (n,) float arrays of one curve, in step order.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

# fastai's defaults (Learner.lr_find)
START_LR, END_LR, NUM_IT, BETA, STOP_FACTOR = 1e-7, 10.0, 100, 0.98, 4.0
SKIP_END = 5  # recorded points dropped at the end before suggesting


def ramp(start_lr: float, end_lr: float, num_it: int) -> np.ndarray:
    """The rate of each step: ``start_lr * (end_lr / start_lr) ** (i / num_it)``, i = 0..num_it-1.

    Returns
    -------
    ndarray, shape (num_it,)
        The last rate is one step short of ``end_lr`` (fastai's schedule position ``i/num_it``).
    """
    return start_lr * (end_lr / start_lr) ** (np.arange(num_it) / num_it)


class SmoothedLoss:
    """Debiased exponential moving average of a stream of losses (fastai's ``AvgSmoothLoss``)."""

    def __init__(self, beta: float = BETA) -> None:
        self.beta, self.avg, self.count = beta, 0.0, 0

    def add(self, loss: float) -> float:
        """Take the next loss; return the smoothed value including it."""
        self.count += 1
        self.avg = self.beta * self.avg + (1.0 - self.beta) * loss
        return self.avg / (1.0 - self.beta**self.count)


def smooth(losses: np.ndarray, beta: float = BETA) -> np.ndarray:
    """:class:`SmoothedLoss` over a whole curve: (n,) -> (n,)."""
    s = SmoothedLoss(beta)
    return np.array([s.add(float(v)) for v in losses])


@dataclass
class RangeTest:
    """The running test: feed it each step's batch loss; it says when to stop.

    Attributes
    ----------
    lrs, losses, smoothed : list of float
        Per recorded step: the rate of that step's update, the batch loss measured before it,
        the smoothed loss.
    best : float
        Lowest smoothed loss so far.
    stopped : bool
        True when the smoothed loss passed ``stop_factor`` x ``best`` (not just the end of the ramp).
    """

    start_lr: float = START_LR
    end_lr: float = END_LR
    num_it: int = NUM_IT
    beta: float = BETA
    stop_factor: float | None = STOP_FACTOR  # None: run the whole ramp
    lrs: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    smoothed: list[float] = field(default_factory=list)
    best: float = math.inf
    stopped: bool = False

    def __post_init__(self) -> None:
        self._rates = ramp(self.start_lr, self.end_lr, self.num_it)
        self._smoother = SmoothedLoss(self.beta)

    def lr(self, step: int) -> float:
        """The rate of 0-based step ``step``."""
        return float(self._rates[step])

    def record(self, loss: float) -> bool:
        """Record the next step's batch loss; True when the test is over (stop or last step)."""
        value = self._smoother.add(loss)
        self.lrs.append(self.lr(len(self.losses)))
        self.losses.append(float(loss))
        self.smoothed.append(value)
        self.best = min(self.best, value)  # a NaN never becomes the best
        if self.stop_factor is not None and value > self.stop_factor * self.best:
            self.stopped = True
            return True
        return len(self.losses) >= self.num_it


def stop_index(smoothed: np.ndarray, stop_factor: float) -> int | None:
    """Index of the first point above ``stop_factor`` x the lowest smoothed loss up to it, or
    None: where :class:`RangeTest` stops (the recorded curve ends with that point)."""
    best = np.fmin.accumulate(smoothed)
    above = np.flatnonzero(smoothed > stop_factor * best)
    return int(above[0]) if above.size else None


def trim(
    lrs: np.ndarray, losses: np.ndarray, num_it: int, skip_end: int = SKIP_END
) -> tuple[np.ndarray, np.ndarray]:
    """The part of a recorded curve the suggestions read: the first ``num_it // 10`` and the
    last ``skip_end`` points dropped, then everything from the first NaN loss on."""
    lrs = np.asarray(lrs, float)[num_it // 10 : len(lrs) - skip_end]
    losses = np.asarray(losses, float)[num_it // 10 : len(losses) - skip_end]
    nan = np.flatnonzero(np.isnan(losses))
    cut = int(nan[0]) if nan.size else len(losses)
    return lrs[:cut], losses[:cut]


@dataclass(frozen=True)
class Suggestion:
    """A suggested rate and the curve point it was read at (where a figure marks it).

    ``lr`` is NaN when the trimmed curve is too short for the rule.
    """

    lr: float
    at_lr: float
    at_loss: float


NO_SUGGESTION = Suggestion(math.nan, math.nan, math.nan)


def valley(lrs: np.ndarray, losses: np.ndarray) -> Suggestion:
    """About half-way into the longest run of ever-lower losses (module docstring)."""
    n = len(losses)
    if n == 0:
        return NO_SUGGESTION
    run = np.ones(n, int)  # longest strictly falling sequence ending at each point
    for i in range(1, n):
        higher = losses[:i] > losses[i]
        if higher.any():
            run[i] = run[:i][higher].max() + 1
    end = int(np.argmax(run))  # the first point with the longest run
    start = end - int(run[end])
    third = (end - start) / 3
    i = max(start + int(third) + int(third / 2), 0)  # a curve that never falls: its first point
    return Suggestion(float(lrs[i]), float(lrs[i]), float(losses[i]))


def minimum(lrs: np.ndarray, losses: np.ndarray) -> Suggestion:
    """A tenth of the rate at the lowest loss (marked at the lowest loss itself)."""
    if len(losses) == 0:
        return NO_SUGGESTION
    i = int(np.argmin(losses))
    return Suggestion(float(lrs[i]) / 10, float(lrs[i]), float(losses[i]))


def steep(lrs: np.ndarray, losses: np.ndarray) -> Suggestion:
    """The rate where the loss falls fastest against log(rate)."""
    if len(losses) < 2:
        return NO_SUGGESTION
    slopes = np.diff(losses) / np.diff(np.log(lrs))
    i = int(np.argmin(slopes))
    return Suggestion(float(lrs[i]), float(lrs[i]), float(losses[i]))


# rule name -> rule; the MLflow params are suggested_lr_<name>
SUGGESTIONS: dict[str, Callable[[np.ndarray, np.ndarray], Suggestion]] = {
    "valley": valley,
    "minimum": minimum,
    "steep": steep,
}


def suggest(
    lrs: np.ndarray, smoothed: np.ndarray, num_it: int, skip_end: int = SKIP_END
) -> dict[str, Suggestion]:
    """Every rule of :data:`SUGGESTIONS` on the trimmed curve (:func:`trim`).

    Parameters
    ----------
    lrs, smoothed : ndarray, shape (n,)
        A recorded curve: each step's rate and smoothed loss.
    num_it : int
        The ramp's length (the first ``num_it // 10`` points are dropped).
    """
    t_lrs, t_losses = trim(lrs, smoothed, num_it, skip_end)
    return {name: rule(t_lrs, t_losses) for name, rule in SUGGESTIONS.items()}
