"""The percentile bootstrap over seeds (``nnlab.report.intervals``): a hand computation, the
plain one-resample-at-a-time rule (tests/bootstrap_reference.py), pairing, coverage, and the
handling of unusable (+inf) and missing runs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from bootstrap_reference import gap_interval, median_interval

from nnlab.report.intervals import RESAMPLES, Resampled, seed_draws


def _runs(values: dict[float, list[list[float]]]) -> pd.DataFrame:
    """``{lr: [[runs of seed 0], [runs of seed 1], ...]}`` as one row per run."""
    return pd.DataFrame(
        [{"lr": lr, "seed": s, "v": v} for lr, per_seed in values.items()
         for s, vs in enumerate(per_seed) for v in vs]
    )  # fmt: skip


def test_two_seeds_by_hand():
    """Seeds with 0.2 and 0.4: a resample is {0.2, 0.2}, {0.2, 0.4} or {0.4, 0.4}, each at
    least a quarter of the time, so the 95% interval of the median is [0.2, 0.4]."""
    r = Resampled(_runs({0.1: [[0.2], [0.4]]}), ["lr"], "v")
    iv = r.interval(0)
    assert (iv.value, iv.lo, iv.hi) == pytest.approx((0.3, 0.2, 0.4))
    assert set(np.round(r.samples[0], 12)) == {0.2, 0.3, 0.4}
    assert r.samples.shape == (1, RESAMPLES)


def test_the_vectorised_bootstrap_follows_the_plain_rule():
    """Unbalanced: several runs per seed (batch sizes), a missing run, unusable (+inf) runs."""
    rng = np.random.default_rng(7)
    rows = []
    for lr, shift in ((0.01, 0.0), (0.1, 0.05), (1.0, 0.2)):
        for seed in range(6):
            for bs in (16, 64, 256):
                if (lr, seed, bs) == (0.1, 3, 64):
                    continue  # a missing run
                v = np.inf if lr == 1.0 and seed in (1, 4) else 0.3 + shift + rng.normal(0, 0.05)
                rows.append({"lr": lr, "seed": seed, "batch_size": bs, "v": v})
    runs = pd.DataFrame(rows)
    r = Resampled(runs, ["lr"], "v")
    seeds = sorted(runs["seed"].unique())
    for g, lr in enumerate(r.keys["lr"]):
        iv = r.interval(g)
        want = median_interval(runs[runs["lr"] == lr], "v", seeds)
        assert (iv.value, iv.lo, iv.hi) == pytest.approx(want), lr
    for a, b in ((0, 1), (2, 0), (1, 2)):
        iv = r.gap(a, b)
        lr_a, lr_b = r.keys["lr"][a], r.keys["lr"][b]
        want = gap_interval(runs[runs["lr"] == lr_a], runs[runs["lr"] == lr_b], "v", seeds)
        assert (iv.value, iv.lo, iv.hi) == pytest.approx(want), (lr_a, lr_b)
    assert r.n_seeds.tolist() == [6, 6, 6]


def test_gaps_are_paired_over_seeds():
    """lr 0.1 is worse than lr 0.01 by exactly 0.05 on every seed, while the seeds themselves
    differ by far more: the paired gap's interval is [0.05, 0.05]; each median's is wide."""
    base = [0.1, 0.5, 0.3, 0.9, 0.2, 0.7, 0.4, 0.6]
    r = Resampled(_runs({0.01: [[b] for b in base], 0.1: [[b + 0.05] for b in base]}),
                  ["lr"], "v")  # fmt: skip
    gap = r.gap(1, 0)
    assert (gap.value, gap.lo, gap.hi) == pytest.approx((0.05, 0.05, 0.05))
    assert gap.excludes(0.0)
    assert r.interval(0).hi - r.interval(0).lo > 0.3
    assert r.tied(0) == [0]  # the intervals separate 0.1 from 0.01


def test_a_best_is_tied_with_what_its_intervals_do_not_separate():
    """lr 1 is a little worse than lr 0.01 by the median, but better on some seeds: the
    interval of its gap reaches below 0, so it is not separated from the best."""
    base = [0.1, 0.5, 0.3, 0.9, 0.2, 0.7]
    flip = [0.05, -0.04, 0.06, -0.03, 0.05, -0.02]
    r = Resampled(_runs({0.01: [[b] for b in base], 0.1: [[b + 0.05] for b in base],
                         1.0: [[b + f] for b, f in zip(base, flip, strict=True)]}),
                  ["lr"], "v")  # fmt: skip
    assert r.best() == 0 and r.point[2] > r.point[0]
    assert r.gap(2, 0).lo < 0 < r.gap(2, 0).hi
    assert r.tied(0) == [0, 2]


def test_unusable_runs_count_as_infinite():
    """+inf counts (a setting whose seeds mostly diverged has an infinite median) and two
    equal infinities differ by 0."""
    r = Resampled(_runs({0.1: [[0.2], [0.3], [np.inf]], 1.0: [[np.inf], [np.inf], [np.inf]],
                         3.0: [[np.inf], [np.inf], [np.inf]]}), ["lr"], "v")  # fmt: skip
    assert r.point.tolist() == [0.3, np.inf, np.inf]
    assert r.interval(0).hi == np.inf and r.interval(0).lo == 0.2
    assert (r.gap(1, 2).lo, r.gap(1, 2).hi) == (0.0, 0.0)
    # lr 1 always diverged, lr 0.1 on one seed of three: a resample drawing that seed twice
    # makes both infinite, so the intervals do not separate them
    assert (r.gap(1, 0).lo, r.gap(1, 0).hi) == (0.0, np.inf)
    assert r.best() == 0 and r.share()[0] > 0.5


@pytest.mark.parametrize(("n_seeds", "resolved"), [(3, False), (5, False), (6, True)])
def test_below_six_seeds_nothing_is_resolved(n_seeds, resolved):
    """Every seed puts lr 0.1 above lr 0.01: with 3 seeds chance alone does that a quarter of
    the time, so the interval is shown but decides nothing until there are 6 seeds."""
    base = [0.1, 0.5, 0.3, 0.9, 0.2, 0.7][:n_seeds]
    r = Resampled(_runs({0.01: [[b] for b in base], 0.1: [[b + 0.05] for b in base]}),
                  ["lr"], "v")  # fmt: skip
    gap = r.gap(1, 0)
    assert gap.lo > 0  # the interval itself excludes 0 ...
    assert (gap.above(0), gap.excludes(0), r.resolvable) == (resolved,) * 3  # ... but only counts
    assert r.tied(0) == ([0] if resolved else [0, 1])


def test_the_draws_are_seeded():
    np.testing.assert_array_equal(seed_draws(5), seed_draws(5))
    runs = _runs({0.1: [[0.1], [0.4], [0.2], [0.3]]})
    np.testing.assert_array_equal(Resampled(runs, ["lr"], "v").samples,
                                  Resampled(runs, ["lr"], "v").samples)  # fmt: skip


def test_coverage_of_the_median_with_ten_seeds():
    """Ten seeds from a normal distribution: the 95% interval covers the true median in most
    of 300 repetitions (a percentile bootstrap of the median with n = 10 runs a little under
    95%; a planted off-by-one in the draws or the percentiles moves it far outside)."""
    rng = np.random.default_rng(1)
    runs = pd.DataFrame({"rep": np.repeat(np.arange(300), 10), "seed": np.tile(np.arange(10), 300),
                         "v": rng.normal(0.0, 1.0, size=3000)})  # fmt: skip
    lo, hi = Resampled(runs, ["rep"], "v").intervals()  # 300 repetitions as 300 groups
    covered = ((lo <= 0.0) & (0.0 <= hi)).mean()
    assert 0.85 <= covered <= 0.99, covered
