"""The LR range test's numbers against hand computations on fixed loss curves (nnlab.lr_range)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nnlab import lr_range


def test_the_ramp_is_fastais_exponential_schedule() -> None:
    rates = lr_range.ramp(1e-7, 10.0, 100)
    assert rates.shape == (100,)
    assert rates[0] == pytest.approx(1e-7)
    assert rates[50] == pytest.approx(1e-3)  # half-way in log: 1e-7 * 1e8**0.5
    assert rates[99] == pytest.approx(10**0.92)  # 1e-7 * 1e8**0.99: one step short of 10
    assert np.allclose(np.diff(np.log10(rates)), 0.08)


def test_smoothing_is_a_debiased_ema_with_beta_098() -> None:
    # by hand: avg_1 = 0.02 * 1.0 = 0.02, / (1 - 0.98) = 1.0
    # avg_2 = 0.98 * 0.02 + 0.02 * 0.5 = 0.0296, / (1 - 0.98**2 = 0.0396) = 0.74747...
    # avg_3 = 0.98 * 0.0296 + 0.02 * 2.0 = 0.069008, / (1 - 0.98**3 = 0.058808) = 1.17345...
    got = lr_range.smooth(np.array([1.0, 0.5, 2.0]), 0.98)
    np.testing.assert_allclose(got, [1.0, 0.0296 / 0.0396, 0.069008 / 0.058808], rtol=1e-12)


def test_the_stop_compares_the_smoothed_loss_with_4x_its_best() -> None:
    # beta 0.5. Losses 1, 1, 1: the smoothed loss stays 1 (debiased), best 1.
    # Loss 5: avg = 0.4375 + 2.5 = 2.9375, / (1 - 0.5**4 = 0.9375) = 3.1333 <= 4: goes on
    #   (the raw loss 5 would already have stopped it).
    # Loss 5 again: avg = 1.46875 + 2.5 = 3.96875, / (1 - 0.5**5 = 0.96875) = 4.0968 > 4: stop,
    #   that point recorded.
    test = lr_range.RangeTest(1e-3, 1.0, num_it=10, beta=0.5, stop_factor=4.0)
    done = [test.record(v) for v in (1.0, 1.0, 1.0, 5.0, 5.0)]
    assert done == [False, False, False, False, True] and test.stopped
    np.testing.assert_allclose(test.smoothed, [1, 1, 1, 2.9375 / 0.9375, 3.96875 / 0.96875])
    assert test.best == 1.0 and test.losses == [1.0, 1.0, 1.0, 5.0, 5.0]
    np.testing.assert_allclose(test.lrs, [10 ** (-3 + 0.3 * i) for i in range(5)])
    assert lr_range.stop_index(np.array(test.smoothed), 4.0) == 4


def test_the_best_is_the_lowest_so_far_and_the_ramp_ends_the_test() -> None:
    # beta 0 smooths nothing. 3, 2, 1, 0.5 (best 0.5), 1.5 (< 2), 2.1 (> 4 * 0.5): stop at index 5
    test = lr_range.RangeTest(1e-3, 1.0, num_it=10, beta=0.0, stop_factor=4.0)
    assert [test.record(v) for v in (3, 2, 1, 0.5, 1.5, 2.1)][-2:] == [False, True]
    assert lr_range.stop_index(np.array([3, 2, 1, 0.5, 1.5, 2.1, 9]), 4.0) == 5
    # no stop factor, or no rise: the test ends after num_it steps
    ramp_only = lr_range.RangeTest(1e-3, 1.0, num_it=4, beta=0.0, stop_factor=None)
    assert [ramp_only.record(v) for v in (1, 100, 1000, 1e4)] == [False, False, False, True]
    assert not ramp_only.stopped
    # a NaN loss neither stops the test nor becomes the best
    nan = lr_range.RangeTest(1e-3, 1.0, num_it=10, beta=0.0)
    assert not nan.record(1.0) and not nan.record(math.nan) and nan.best == 1.0


# A recorded curve of 20 steps (num_it = 20, rates 10**(-4 + i/5)), smoothed values given as they
# are: trimming drops points 0-1 (num_it // 10 = 2) and 15-19 (the last 5), leaving t0..t12 =
# points 2..14. The dropped points would change every rule: 5 and 4 at the start lengthen the
# falling run, 0.01 at the end is the lowest loss.
HEAD = [5.0, 4.0]
T = [2.0, 2.1, 1.9, 1.8, 1.85, 1.6, 1.2, 1.0, 0.9, 1.1, 1.6, 2.5, 3.0]
TAIL = [0.5, 0.01, 0.3, 0.2, 0.1]
CURVE = np.array(HEAD + T + TAIL)
LRS = 10 ** (-4 + np.arange(20) / 5)


def test_trimming_drops_the_first_tenth_and_the_last_five_then_cuts_at_nan() -> None:
    lrs, losses = lr_range.trim(LRS, CURVE, 20)
    np.testing.assert_array_equal(losses, T)
    np.testing.assert_allclose(lrs, LRS[2:15])
    with_nan = CURVE.copy()
    with_nan[2 + 11] = math.nan  # t11
    lrs, losses = lr_range.trim(LRS, with_nan, 20)
    np.testing.assert_array_equal(losses, T[:11])


def test_each_suggestion_against_a_hand_computation() -> None:
    # valley: longest strictly falling sequence ending at each of t0..t12 (by hand):
    #   1, 1, 2, 3, 3, 4, 5, 6, 7, 6, 4, 1, 1   (t4 = 1.85 follows 2.0 > 1.9 > 1.85; t9 = 1.1
    #   follows t0..t6's run of 5). Longest: 7, first at t8; start = 8 - 7 = 1; length 7:
    #   int(7/3) = 2, int(7/3/2) = 1 -> t(1 + 2 + 1) = t4 = point 6, rate 10**(-4 + 6/5).
    # minimum: lowest is t8 = 0.9 = point 10, rate 1e-2 -> suggests 1e-3.
    # steep: the log-rate steps are equal, so the largest fall: t5 -> t6 (1.6 -> 1.2, -0.4)
    #   -> t5 = point 7, rate 10**(-4 + 7/5).
    got = lr_range.suggest(LRS, CURVE, 20)
    assert list(got) == ["valley", "minimum", "steep"]
    assert got["valley"].lr == pytest.approx(10 ** (-4 + 6 / 5))
    assert got["valley"].at_loss == 1.85
    assert got["minimum"].lr == pytest.approx(1e-3)
    assert (got["minimum"].at_lr, got["minimum"].at_loss) == (pytest.approx(1e-2), 0.9)
    assert got["steep"].lr == pytest.approx(10 ** (-4 + 7 / 5))
    assert got["steep"].at_loss == 1.6


def test_a_curve_too_short_for_a_rule_suggests_nan() -> None:
    got = lr_range.suggest(LRS[:7], CURVE[:7], 20)  # 7 points - 2 - 5 = none left
    assert all(math.isnan(s.lr) for s in got.values())
    one = lr_range.suggest(LRS[:8], CURVE[:8], 20)  # one point: valley and minimum, no slope
    assert one["valley"].lr == one["minimum"].lr * 10 == pytest.approx(LRS[2])
    assert math.isnan(one["steep"].lr)
