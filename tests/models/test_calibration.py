"""Adaptive offsets: each outcome moves its horizon's offsets once, and they round-trip through bytes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from latentcast.errors import StateError
from models.calibration import AdaptiveOffsets, adaptive_step

LEVELS = np.array([0.1, 0.5, 0.9])


def test_an_outcome_above_a_quantile_raises_it_and_one_below_lowers_it():
    offsets = np.zeros((2, 3))
    issued = np.array([-1.0, 0.0, 1.0])
    up = adaptive_step(offsets, issued, 2.0, 2, LEVELS, 0.1)  # above every quantile of horizon 2: half a step
    np.testing.assert_allclose(up, [[0.0, 0.0, 0.0], [0.005, 0.025, 0.045]])
    down = adaptive_step(offsets, issued, -2.0, 1, LEVELS, 0.1)  # below every quantile of horizon 1
    np.testing.assert_allclose(down, [[-0.09, -0.05, -0.01], [0.0, 0.0, 0.0]])


def test_closes_resolve_each_pending_forecast_at_each_horizon_once():
    issued = np.array([[-0.01, 0.0, 0.01], [-0.02, 0.0, 0.02]])  # (H=2, Q)
    adaptive = AdaptiveOffsets.zeros(2, 3).issue(9, 100.0, issued)
    # seq 10 and 11: 100 -> 105 -> 110, far above both horizons' bands
    after = adaptive.observe(10, [105.0, 110.0], LEVELS, 0.1)
    np.testing.assert_allclose(after.offsets, [[0.01, 0.05, 0.09], [0.005, 0.025, 0.045]])
    assert after.pending == ()  # its last horizon has its outcome
    partly = adaptive.observe(10, [100.0], LEVELS, 0.1)  # log return 0: below the top, not below the median
    np.testing.assert_allclose(partly.offsets[0], [0.01, 0.05, -0.01])
    assert [p.origin for p in partly.pending] == [9]
    again = partly.observe(11, [100.0 * math.exp(-0.05)], LEVELS, 0.1)
    np.testing.assert_allclose(again.offsets[1], [-0.045, -0.025, -0.005])


def test_adaptive_offsets_round_trip_through_bytes_and_refuse_another_shape():
    adaptive = AdaptiveOffsets(np.array([[0.5, 0.0, -0.25]])).issue(4, 101.5, np.array([[-0.1, 0.0, 0.1]]))
    again = AdaptiveOffsets.from_bytes(adaptive.to_bytes(), 1, 3)
    np.testing.assert_array_equal(again.offsets, adaptive.offsets)
    assert [(p.origin, p.close, p.log_return.tolist()) for p in again.pending] == [(4, 101.5, [[-0.1, 0.0, 0.1]])]
    with pytest.raises(StateError) as err:
        AdaptiveOffsets.from_bytes(adaptive.to_bytes(), 2, 3)
    assert str(err.value) == "adaptive offsets of format 2, 1 x 3, do not fit a 2 x 3 model"
    with pytest.raises(StateError) as err:
        AdaptiveOffsets.from_bytes(adaptive.to_bytes()[:-1], 1, 3)
    assert str(err.value) == "adaptive offsets have 74 bytes, which do not fit 1 pending forecasts"
    counted = AdaptiveOffsets.zeros(2, 3).issue(0, 100.0, np.zeros((2, 3))).observe(1, [101.0], LEVELS, 0.1)
    assert AdaptiveOffsets.from_bytes(counted.to_bytes(), 2, 3).outcomes == (1, 0)


def test_a_sessions_first_outcomes_step_first_rate_over_n_until_that_falls_to_the_rate():
    adaptive = AdaptiveOffsets.zeros(1, 3)
    steps = []
    for seq in range(1, 8):  # each close far above the forecast issued before it
        before = adaptive.issue(seq - 1, 100.0, np.array([[-0.01, 0.0, 0.01]]))
        adaptive = before.observe(seq, [120.0], LEVELS, 0.05, 0.2)
        steps.append((adaptive.offsets[0, 2] - before.offsets[0, 2]) / 0.9)  # the top quantile's step
    np.testing.assert_allclose(steps, [0.2, 0.1, 0.2 / 3, 0.05, 0.05, 0.05, 0.05])
    assert adaptive.outcomes == (7,)


def test_offsets_stored_before_outcomes_were_counted_step_at_the_rate():
    issued = np.array([[-0.01, 0.0, 0.01]])
    old = AdaptiveOffsets(np.zeros((1, 3))).issue(0, 100.0, issued)
    header, body = old.to_bytes()[:7], old.to_bytes()[7:]
    legacy = bytes([1]) + header[1:] + body[:24] + body[28:]  # format 1: no counts after the offsets
    read = AdaptiveOffsets.from_bytes(legacy, 1, 3)
    assert read.outcomes is None and [p.origin for p in read.pending] == [0]
    after = read.observe(1, [120.0], LEVELS, 0.05, 0.2)
    np.testing.assert_allclose(after.offsets[0, 2], 0.05 * 0.9)
