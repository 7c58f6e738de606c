"""The verdict on the notes' claim, from bootstrap intervals over seeds.

The notes say: *a large learning rate trains faster but less accurately; a small one (~0.001)
is more accurate but needs more epochs*. :func:`judge` checks it on one set-up's longest-budget
runs (``nnlab.report.tables.per_run_curves``), pooled over batch sizes:

- the **fastest lr** has the lowest median epochs to the target; the **reference** is the
  swept lr nearest 0.001 (log scale);
- the **speed half** holds when the fastest lr is larger than the reference and the paired
  interval of (reference's median epochs − fastest's) lies above 0; it is contradicted when
  the reference itself, or a smaller lr, is resolved as the fastest;
- the **accuracy half** holds when the paired interval of (fastest's median best − reference's)
  lies above 0 (the fast lr less accurate); it is contradicted when it lies below 0;
- **held**: both halves hold; **held in part**: one does; **did not hold**: neither holds and
  one is contradicted; **unresolved**: the intervals decide neither; **cannot be checked**: a
  single lr, or no lr's median run reached the target.

The **best lr** is the lr with the lowest median over seeds of the lowest value each run
reached (the "best lr (median over N seeds)"; a "best trial" is a single run), stated with its
interval, the share of resamples in which it is best, and the lrs the intervals do not
separate from it (``nnlab.report.intervals``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from nnlab.report.intervals import Interval, Resampled, too_few
from nnlab.report.tables import fmt_epochs, fmt_interval, fmt_lr, fmt_val

__all__ = ["REFERENCE_LR", "VERDICTS", "Claim", "judge", "reference_lr"]

REFERENCE_LR = 1e-3  # the notes' "small" learning rate
VERDICTS = {  # verdict key -> the head of its sentence
    "held": "Held",
    "held in part": "Held only in part",
    "did not hold": "Did not hold",
    "unresolved": "Not resolved by the intervals",
    "cannot be checked": "Cannot be checked",
}
HELD, AGAINST, OPEN = "held", "contradicted", "unresolved"  # the state of one half


@dataclass
class Claim:
    """The claim judged on one set-up; every number with its 95% interval.

    ``speed_gap`` is the reference's median epochs to the target minus the fastest lr's (> 0:
    the fastest lr is faster); ``accuracy_gap`` the fastest lr's median best minus the
    reference's (> 0: the fastest lr is less accurate). ``faster`` / ``less_accurate`` are True
    or False when the intervals resolve them, None otherwise.
    """

    verdict: str
    sentence: str
    n_seeds: int
    max_epochs: int
    reference_lr: float | None = None
    fastest_lr: float | None = None
    most_accurate_lr: float | None = None
    faster: bool | None = None
    less_accurate: bool | None = None
    fastest_epochs: Interval | None = None
    reference_epochs: Interval | None = None
    speed_gap: Interval | None = None
    fastest_best: Interval | None = None
    reference_best: Interval | None = None
    accuracy_gap: Interval | None = None
    most_accurate_best: Interval | None = None
    most_accurate_share: float | None = None
    tied_lrs: list[float] = field(default_factory=list)

    def record(self) -> dict:
        """The claim as one flat, JSON-ready row (``claim.csv``, ``findings.json``)."""
        row = {"verdict": self.verdict, "n_seeds": self.n_seeds, "epochs": self.max_epochs,
               "reference_lr": self.reference_lr, "fastest_lr": self.fastest_lr,
               "most_accurate_lr": self.most_accurate_lr, "claim_faster": self.faster,
               "claim_less_accurate": self.less_accurate}  # fmt: skip
        for name in ("fastest_epochs", "reference_epochs", "speed_gap", "fastest_best",
                     "reference_best", "accuracy_gap", "most_accurate_best"):  # fmt: skip
            iv = getattr(self, name)
            for part in ("value", "lo", "hi"):
                key = name if part == "value" else f"{name}_{part}"
                row[key] = getattr(iv, part) if iv is not None else math.nan
        row["most_accurate_share"] = self.most_accurate_share
        row["tied_lrs"] = " ".join(map(fmt_lr, self.tied_lrs))
        row["reason"] = self.sentence
        return row


def reference_lr(lrs) -> float:
    """The lr of ``lrs`` nearest :data:`REFERENCE_LR` on a log scale."""
    lrs = np.asarray(sorted(lrs), dtype=float)
    return float(lrs[np.argmin(np.abs(np.log10(lrs) - math.log10(REFERENCE_LR)))])


def _speed_half(fast: float, ref: float, gap: Interval) -> str:
    if fast == ref:
        return AGAINST  # 0.001 itself was the fastest
    if gap.above(0):
        return HELD if fast > ref else AGAINST  # a smaller lr than 0.001 was resolved faster
    return AGAINST if gap.below(0) else OPEN


def _accuracy_half(fast: float, ref: float, gap: Interval) -> str:
    if fast <= ref:
        return OPEN  # the claim is about a larger lr: nothing to judge
    return HELD if gap.above(0) else AGAINST if gap.below(0) else OPEN


def _verdict(speed: str, accuracy: str) -> str:
    held = (speed, accuracy).count(HELD)
    if held == 2:
        return "held"
    if held == 1:
        return "held in part"
    return "did not hold" if AGAINST in (speed, accuracy) else "unresolved"


def _ett(iv: Interval) -> str:
    if iv.lo == np.inf:
        return "not reached in any resample"
    unit = "" if iv.value == np.inf else " epochs"
    return f"{fmt_epochs(iv.value)}{unit} {fmt_interval(iv.lo, iv.hi, fmt_epochs)}"


def _gap_ett(iv: Interval) -> str:
    def g(v: float) -> str:
        return "∞" if v == np.inf else "−∞" if v == -np.inf else f"{v:+g}"

    return f"{g(iv.value)} epochs [{g(iv.lo)}, {g(iv.hi)}]"


def _val(iv: Interval) -> str:
    return f"{fmt_val(iv.value)} {fmt_interval(iv.lo, iv.hi)}"


def _speed_text(c: Claim, state: str) -> str:
    fast, ref = fmt_lr(c.fastest_lr), fmt_lr(c.reference_lr)
    if c.fastest_lr == c.reference_lr:
        return f"lr={ref} itself was the fastest to the target ({_ett(c.fastest_epochs)})"
    says = {HELD: "faster, beyond the intervals", AGAINST: "faster, beyond the intervals",
            OPEN: "not resolved: the interval of the difference includes 0"
            if c.speed_gap.resolvable else "not decided: too few seeds"}[state]  # fmt: skip
    gap = (
        "" if c.speed_gap.lo == np.inf else f" (lr={ref} minus lr={fast}: {_gap_ett(c.speed_gap)})"
    )
    return (
        f"lr={fast} was the fastest to the target ({_ett(c.fastest_epochs)}) against "
        f"lr={ref} ({_ett(c.reference_epochs)}): {says}{gap}"
    )


def _accuracy_text(c: Claim, metric: str, state: str) -> str:
    fast, ref = fmt_lr(c.fastest_lr), fmt_lr(c.reference_lr)
    if c.fastest_lr <= c.reference_lr:
        return ""
    how = {HELD: "less accurate than", AGAINST: "more accurate than",
           OPEN: "not separated by the intervals from" if c.accuracy_gap.resolvable
           else "not compared (too few seeds) with"}[state]  # fmt: skip
    gap = c.accuracy_gap
    return (
        f"; lr={fast} was {how} lr={ref}: lowest {metric} reached {_val(c.fastest_best)} against "
        f"{_val(c.reference_best)} (gap {gap.value:+.4f} {fmt_interval(gap.lo, gap.hi)})"
    )


def best_lr_text(c: Claim, metric: str) -> str:
    """' The best lr (median over N seeds) was ...' and the lrs not separated from it."""
    if c.most_accurate_lr is None:
        return ""
    others = [lr for lr in c.tied_lrs if lr != c.most_accurate_lr]
    text = (
        f" The best lr (median over {c.n_seeds} seeds) was {fmt_lr(c.most_accurate_lr)}: lowest "
        f"{metric} reached {_val(c.most_accurate_best)}, the lowest median in "
        f"{c.most_accurate_share:.0%} of resamples"
    )
    if not c.most_accurate_best.resolvable:
        return text + f"; with {c.n_seeds} seeds the intervals separate no lr from it."
    if others:
        return text + (
            f"; the intervals do not separate {', '.join(map(fmt_lr, others))} from it, so the "
            "data single out no one lr."
        )
    return text + ", separated from every other lr by the intervals."


def judge(curves: pd.DataFrame, target: float, metric: str) -> Claim:
    """The claim on one set-up's ``curves`` (``tables.per_run_curves``: one row per
    longest-budget run, ``lr, batch_size, seed, best, epochs_to_target``) and its target."""
    lrs = sorted(curves["lr"].unique())
    n_seeds = int(curves["seed"].nunique())
    max_epochs = int(curves["epochs"].max())
    base = {"n_seeds": n_seeds, "max_epochs": max_epochs}
    if len(lrs) < 2:
        return Claim("cannot be checked", "Cannot be checked: the sweep has a single learning "
                     f"rate ({', '.join(map(fmt_lr, lrs))}); sweep lr to compare.", **base)  # fmt: skip
    if not np.isfinite(target):
        return Claim("cannot be checked", "Cannot be checked: no run completed.", **base)
    caution = too_few(n_seeds)
    seeds = np.sort(curves["seed"].unique())
    speed = Resampled(curves, ["lr"], "epochs_to_target", seeds)
    quality = Resampled(curves, ["lr"], "best", seeds)
    keys = speed.keys["lr"].to_numpy(dtype=float)
    ref = reference_lr(lrs)
    g_fast, g_ref, g_acc = speed.best(), speed.index(lr=ref), quality.best()
    c = Claim("cannot be checked", "", reference_lr=ref, **base)
    if g_acc is not None:
        c.most_accurate_lr, c.most_accurate_best = float(keys[g_acc]), quality.interval(g_acc)
        c.most_accurate_share = float(quality.share()[g_acc])
        c.tied_lrs = [float(keys[g]) for g in quality.tied(g_acc)]
    if g_fast is None:
        c.sentence = (f"Cannot be checked: no learning rate reached the target ({metric} ≤ "
                      f"{target:.4f}) within {max_epochs} epochs.")  # fmt: skip
        return c
    c.fastest_lr = float(keys[g_fast])
    c.fastest_epochs, c.reference_epochs = speed.interval(g_fast), speed.interval(g_ref)
    c.speed_gap = speed.gap(g_ref, g_fast)
    c.fastest_best, c.reference_best = quality.interval(g_fast), quality.interval(g_ref)
    c.accuracy_gap = quality.gap(g_fast, g_ref)
    s_half = _speed_half(c.fastest_lr, ref, c.speed_gap)
    a_half = _accuracy_half(c.fastest_lr, ref, c.accuracy_gap)
    if c.fastest_lr > ref:
        c.faster = {HELD: True, AGAINST: False, OPEN: None}[s_half]
        c.less_accurate = {HELD: True, AGAINST: False, OPEN: None}[a_half]
    elif s_half == AGAINST:
        c.faster = False
    c.verdict = _verdict(s_half, a_half)
    c.sentence = (
        f"{VERDICTS[c.verdict]}: {_speed_text(c, s_half)}{_accuracy_text(c, metric, a_half)}."
        + (f" ({caution[0].upper()}{caution[1:]}.)" if caution else "")
    )
    return c
