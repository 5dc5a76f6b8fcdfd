"""Adaptive offsets: each outcome moves its horizon's offsets once, and they round-trip through bytes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from data.errors import StateError
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
    assert str(err.value) == "adaptive offsets of format 1, 1 x 3, do not fit a 2 x 3 model"
    with pytest.raises(StateError) as err:
        AdaptiveOffsets.from_bytes(adaptive.to_bytes()[:-1], 1, 3)
    assert str(err.value) == "adaptive offsets have 70 bytes, which do not fit 1 pending forecasts"
