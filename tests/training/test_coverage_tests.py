from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from latentcast.errors import DataError
from training.coverage_tests import coverage_tests


def test_kupiec_by_hand():
    # 30 misses in 100 against 20% promised: LR = -2 [30 log .2 + 70 log .8 - 30 log .3 - 70 log .7]
    misses = np.zeros(100, dtype=bool)
    misses[::10] = misses[1::10] = misses[2::10] = True
    lr = -2 * (30 * math.log(0.2) + 70 * math.log(0.8) - 30 * math.log(0.3) - 70 * math.log(0.7))
    result = coverage_tests([misses], 0.2)
    assert (result.n, result.misses) == (100, 30)
    assert result.kupiec_p == pytest.approx(stats.chi2.sf(lr, 1))


def test_clustered_misses_fail_independence_and_scattered_ones_pass():
    rng = np.random.default_rng(0)
    scattered = rng.random(2000) < 0.2
    clustered = np.repeat(rng.random(200) < 0.2, 10)  # misses in runs of ten days
    assert coverage_tests([scattered], 0.2).independence_p > 0.05
    assert coverage_tests([scattered], 0.2).kupiec_p > 0.05
    result = coverage_tests([clustered], 0.2)
    assert result.independence_p < 1e-6 and result.conditional_p < 1e-6


def test_transitions_are_counted_inside_each_ticker_only():
    # each ticker alone: a miss never follows a miss; joined end to end, one would
    first, second = np.array([False, False, True]), np.array([True, False, False])
    apart = coverage_tests([first, second], 0.2)
    joined = coverage_tests([np.concatenate([first, second])], 0.2)
    assert apart.kupiec_p == joined.kupiec_p and apart.independence_p != joined.independence_p


def test_bad_input_is_refused():
    with pytest.raises(DataError) as err:
        coverage_tests([np.array([True])], 0.2)
    assert str(err.value) == "too few forecasts for coverage tests: 1"
    with pytest.raises(DataError) as err:
        coverage_tests([np.array([True, False])], 1.2)
    assert str(err.value) == "the expected miss rate must lie strictly between 0 and 1, got 1.2"
