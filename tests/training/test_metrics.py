from __future__ import annotations

import json
import math

import numpy as np
import pytest

from latentcast.errors import ConfigError, DataError
from training.metrics import (
    check_levels,
    coverage,
    directional_accuracy,
    evaluate_forecasts,
    horizon_metrics,
    mae,
    mae_ratio,
    pinball,
    rmse,
)

NAN = math.nan
# Dyadic or small-integer values, so that every expected figure below is exact.
ACTUAL = np.array([1.0, -2.0, 0.0, NAN])
POINT = np.array([2.0, 1.0, 1.0, 5.0])  # the last entry has no actual and is left out


def test_point_metrics_by_hand():
    # known errors -1, -3, -1
    assert mae(ACTUAL, POINT) == 5 / 3
    assert rmse(ACTUAL, POINT) == math.sqrt(11 / 3)
    # random walk MAE = (1 + 2 + 0) / 3 = 1
    assert mae_ratio(ACTUAL, POINT) == 5 / 3
    # the actual 0 calls no direction; of the other two, one sign agrees
    assert directional_accuracy(ACTUAL, POINT) == 0.5


def test_random_walk_has_mae_ratio_one_and_no_direction():
    actual = np.array([[0.01, -0.03], [0.02, NAN], [-0.005, 0.04]])
    zero = np.zeros_like(actual)
    assert mae_ratio(actual, zero) == 1.0
    assert math.isnan(directional_accuracy(actual, zero))


def test_nothing_known_gives_nan():
    actual = np.full(3, NAN)
    point = np.ones(3)
    for metric in (mae, rmse, mae_ratio, directional_accuracy):
        assert math.isnan(metric(actual, point))


def test_all_zero_actuals_give_no_mae_ratio():
    assert math.isnan(mae_ratio(np.zeros(2), np.ones(2)))


def test_pinball_by_hand():
    actual = np.array([1.0, 3.0, NAN])
    quantiles = np.array([[0.0, 1.0, 2.0], [0.0, 1.0, 2.0], [NAN, NAN, NAN]])
    levels = np.array([0.25, 0.5, 0.75])
    # y=1: 0.25*1, 0, 0.25*1; y=3: 0.75*3, 0.5*2, 0.75*1 -> total 3.0 over 6 terms
    assert pinball(actual, quantiles, levels) == 0.5


def test_pinball_of_the_median_is_half_the_mae():
    actual = np.array([0.5, -1.5, 2.0])
    point = np.array([0.0, 0.5, 1.0])
    assert pinball(actual, point[:, None], np.array([0.5])) == mae(actual, point) / 2


def test_coverage_of_a_known_interval():
    actual = np.array([-1.0, 0.5, 2.0, NAN])
    quantiles = np.tile([-1.0, 0.0, 1.0], (4, 1))
    levels = np.array([0.1, 0.5, 0.9])
    # -1 on the bound counts as inside; 2 is outside
    assert coverage(actual, quantiles, levels) == 2 / 3
    assert coverage(actual, quantiles, levels, interval=(0.5, 0.9)) == 1 / 3


def test_coverage_needs_the_interval_levels():
    quantiles = np.zeros((1, 3))
    with pytest.raises(ConfigError) as info:
        coverage(np.zeros(1), quantiles, np.array([0.05, 0.5, 0.95]))
    assert str(info.value) == "quantile level 0.1 is not among the forecast levels [0.05, 0.5, 0.95]"
    with pytest.raises(ConfigError) as info:
        coverage(np.zeros(1), quantiles, np.array([0.1, 0.5, 0.9]), interval=(0.9, 0.1))
    assert str(info.value) == "interval (0.9, 0.1) must go from a lower to a higher level"


def test_levels_must_increase_inside_the_unit_interval():
    assert check_levels([0.1, 0.5, 0.9]).tolist() == [0.1, 0.5, 0.9]
    for bad in ([0.5, 0.1], [0.0, 0.5], [0.5, 1.0], [], [0.5, 0.5]):
        with pytest.raises(ConfigError) as info:
            check_levels(bad)
        assert str(info.value) == f"quantile levels must be strictly increasing inside (0, 1), got {bad}"


def test_forecasts_must_be_finite_where_the_actual_is_known():
    with pytest.raises(DataError) as info:
        mae(np.array([1.0, 2.0]), np.array([NAN, 0.0]))
    assert str(info.value) == "point is not finite where the actual value is known"
    with pytest.raises(DataError) as info:
        mae(np.array([1.0, 2.0]), np.zeros(3))
    assert str(info.value) == "point has shape (3,), which does not match actual (2,)"
    with pytest.raises(DataError) as info:
        pinball(np.zeros(2), np.zeros((2, 2)), np.array([0.1, 0.5, 0.9]))
    assert str(info.value) == "quantiles have shape (2, 2), expected (2, 3)"


def test_evaluate_forecasts_reports_h1_and_hH():
    actual = np.array([[1.0, 2.0, 3.0], [-2.0, -1.0, NAN], [0.0, 4.0, NAN]])
    point = np.array([[2.0, 2.0, 2.0], [1.0, -2.0, 0.0], [1.0, 2.0, 0.0]])
    levels = np.array([0.1, 0.5, 0.9])
    quantiles = np.stack([point - 1, point, point + 1], axis=-1)  # (3, 3, 3)
    result = evaluate_forecasts(actual, point, quantiles, levels)
    assert list(result) == ["h1", "h3"]
    h1, h3 = result["h1"], result["h3"]
    # pinball by hand, levels 0.1/0.5/0.9 (not dyadic, hence approx):
    # y=1 vs (1,2,3): 0 + 0.5 + 0.2; y=-2 vs (0,1,2): 1.8 + 1.5 + 0.4; y=0 vs (0,1,2): 0 + 0.5 + 0.2
    assert h1.pop("pinball") == pytest.approx(5.1 / 9, abs=1e-15)
    assert h1 == {
        "horizon": 1,
        "count": 3,
        "mae": 5 / 3,
        "rmse": math.sqrt(11 / 3),
        "mae_ratio": 5 / 3,
        "directional_accuracy": 0.5,
        "coverage": 2 / 3,  # 1 in [1, 3] and 0 in [0, 2]; -2 outside [0, 2]
    }
    # h=3: one known entry, actual 3 against point 2 and interval [1, 3]
    assert h3.pop("pinball") == pytest.approx(0.7 / 3, abs=1e-15)
    assert h3 == {
        "horizon": 3,
        "count": 1,
        "mae": 1.0,
        "rmse": 1.0,
        "mae_ratio": 1 / 3,
        "directional_accuracy": 1.0,
        "coverage": 1.0,
    }
    assert horizon_metrics(actual, point, quantiles, levels, 2).count == 3


def test_point_only_forecasts_are_json_ready_with_none():
    actual = np.array([[0.01], [NAN]])
    result = evaluate_forecasts(actual, np.zeros_like(actual))
    assert list(result) == ["h1"]
    assert result["h1"]["pinball"] is None and result["h1"]["coverage"] is None
    assert result["h1"]["directional_accuracy"] is None  # the random walk calls no direction
    assert result["h1"]["mae_ratio"] == 1.0
    json.dumps(result, allow_nan=False)  # no NaN reaches JSON


def test_evaluate_forecasts_checks_shapes():
    with pytest.raises(DataError) as shape_error:
        evaluate_forecasts(np.zeros(3), np.zeros(3))
    assert str(shape_error.value) == "actual must be (N, H), got shape (3,)"
    with pytest.raises(ConfigError) as levels_error:
        evaluate_forecasts(np.zeros((2, 1)), np.zeros((2, 1)), np.zeros((2, 1, 3)))
    assert str(levels_error.value) == "quantile forecasts need their levels"
