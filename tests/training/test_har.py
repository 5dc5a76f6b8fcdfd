from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from data import sources
from data.features import build_series, split_dates
from latentcast.errors import ConfigError, DataError
from training.compare import baseline_spans
from training.dataset import TrainingData
from training.har import (
    HAR_LAGS,
    MIN_HAR_ROWS,
    fit_har,
    har_forecasts,
    har_range,
    har_regressors,
    parkinson_variance,
    series_ranges,
)
from training.metrics import coverage, evaluate_forecasts

LEVELS = np.array([0.1, 0.5, 0.9])
TRUE_BETA = np.array([2e-5, 0.35, 0.3, 0.2])  # b0, day, week, month: persistence 0.85, mean RV 1.33e-4


def simulate_har(n: int, beta: np.ndarray = TRUE_BETA, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(returns, log ranges) whose Parkinson variance follows the HAR with ``beta`` and multiplicative noise.

    RV_{t+1} = forecast_t * e_{t+1}, E[e] = 1, so the regression's conditional mean is exact;
    the return is normal with variance RV_{t+1} and the range is sqrt(4 ln 2 RV).
    """
    rng = np.random.default_rng(seed)
    month = HAR_LAGS[-1]
    rv = np.full(n, beta[0] / (1 - beta[1:].sum()))
    noise = rng.gamma(4.0, 0.25, size=n)  # mean 1, sd 0.5
    for t in range(month - 1, n - 1):
        forecast = har_regressors(rv, np.array([t]))[0] @ beta
        rv[t + 1] = forecast * noise[t + 1]
    returns = rng.normal(size=n) * np.sqrt(rv)
    return returns, np.sqrt(4 * math.log(2) * rv)


def test_parkinson_variance_by_hand():
    assert parkinson_variance(np.array([0.02]))[0] == pytest.approx(0.0004 / (4 * math.log(2)))


def test_regressors_are_the_day_the_week_and_the_month_by_hand():
    rv = np.arange(30, dtype=np.float64)
    row = har_regressors(rv, np.array([25]))[0]
    assert row.tolist() == [1.0, 25.0, np.mean(rv[21:26]), np.mean(rv[4:26])]


def test_fit_recovers_known_har_coefficients():
    _, log_range = simulate_har(20000)
    beta = fit_har(parkinson_variance(log_range))
    np.testing.assert_allclose(beta[1:], TRUE_BETA[1:], atol=0.05)
    assert beta[0] == pytest.approx(TRUE_BETA[0], rel=0.3)


def test_forecasts_iterate_the_regression_on_their_own_forecasts():
    rv = np.linspace(1.0, 2.0, 40)
    beta = np.array([0.1, 0.4, 0.3, 0.2])
    out = har_forecasts(beta, rv, np.array([39]), 2, floor=0.0)[0]
    first = 0.1 + 0.4 * rv[39] + 0.3 * rv[35:].mean() + 0.2 * rv[18:].mean()
    extended = np.append(rv, first)
    second = 0.1 + 0.4 * first + 0.3 * extended[36:].mean() + 0.2 * extended[19:].mean()
    np.testing.assert_allclose(out, [first, second])
    # a negative forecast is floored
    assert har_forecasts(np.array([-10.0, 0, 0, 0]), rv, np.array([39]), 1, floor=0.5)[0, 0] == 0.5


def test_quantiles_cover_80_percent_out_of_sample_and_read_no_later_day():
    r, log_range = simulate_har(6000, seed=1)
    origins = np.arange(4000, 5995)
    forecast = har_range(r, 4000, origins, 5, LEVELS, log_range)
    assert forecast.quantiles is not None and forecast.quantiles.shape == (len(origins), 5, 3)
    assert np.all(np.diff(forecast.quantiles, axis=2) > 0)
    targets = np.cumsum(r[origins[:, None] + np.arange(1, 6)[None, :]], axis=1)
    assert coverage(targets[:, 0], forecast.quantiles[:, 0], LEVELS) == pytest.approx(0.8, abs=0.03)
    assert coverage(targets[:, 4], forecast.quantiles[:, 4], LEVELS) == pytest.approx(0.8, abs=0.04)
    assert forecast.params["nu"] > 10  # normal returns: thin tails
    changed = log_range.copy()
    changed[4500:] *= 3
    again = har_range(r, 4000, origins[:400], 5, LEVELS, changed)  # origins up to 4399
    np.testing.assert_array_equal(again.quantiles, forecast.quantiles[:400])


def test_returns_and_ranges_scaled_by_k_scale_the_quantiles_by_k():
    r, log_range = simulate_har(3000, seed=2)
    origins = np.arange(2500, 2990)
    base = har_range(r, 2500, origins, 3, LEVELS, log_range)
    wild = har_range(3 * r, 2500, origins, 3, LEVELS, 3 * log_range)
    assert base.quantiles is not None and wild.quantiles is not None
    np.testing.assert_allclose(wild.quantiles, 3 * base.quantiles, rtol=1e-4)


def test_closes_only_and_bad_ranges_are_clear_errors():
    r, log_range = simulate_har(500)
    origins = np.arange(400, 499)
    with pytest.raises(DataError) as closes:
        har_range(r, 400, origins, 1, LEVELS, None)
    assert str(closes.value) == "HAR-range needs each day's high and low; these prices have closes only"
    gap = log_range.copy()
    gap[7] = np.nan
    with pytest.raises(DataError) as missing:
        har_range(r, 400, origins, 1, LEVELS, gap)
    assert str(missing.value) == "HAR-range: row 7 has no valid range (log(high / low) = nan)"
    with pytest.raises(ConfigError, match="log_range must have the returns' shape"):
        har_range(r, 400, origins, 1, LEVELS, log_range[:-1])
    with pytest.raises(DataError) as short:
        har_range(r, 100, np.arange(100, 110), 1, LEVELS, log_range)
    assert str(short.value) == f"HAR needs at least {MIN_HAR_ROWS + 22} training days with a range, got 100"


def test_on_the_bundled_prices_and_left_out_of_the_baselines_for_closes_only():
    prices = sources.bundled()
    data = TrainingData.from_series(build_series(prices, ("returns",), 5), ("returns",), 5)
    ranges = series_ranges(prices, data.series)
    assert all(x is not None and x.shape == (len(s),) for x, s in zip(ranges, data.series, strict=True))
    spans = baseline_spans(data, LEVELS, ranges)["har_range"]
    split = split_dates(data.series)
    for series, span in zip(data.series, spans, strict=True):
        assert len(span.point) == len(series) - split.bounds(series)[1]
        metrics = evaluate_forecasts(span.actual, span.point, span.quantiles, LEVELS)
        cover, pinball = metrics["h1"]["coverage"], metrics["h5"]["pinball"]
        assert cover is not None and 0.6 < cover < 0.95 and pinball is not None and math.isfinite(pinball)
    closes = prices.assign(high=np.nan, low=np.nan)
    only = series_ranges(closes, data.series)
    assert only == [None] * len(data.series)
    assert "har_range" not in baseline_spans(data, LEVELS, only) and "har_range" not in baseline_spans(data, LEVELS)


def test_series_ranges_follow_each_series_dates():
    frame = pd.DataFrame(
        {
            "ticker": ["A"] * 3,
            "date": pd.to_datetime(["2020-01-02", "2020-01-03", "2020-01-06"]),
            "high": [11.0, 12.0, 13.0],
            "low": [10.0, 10.0, 10.0],
            "close": [10.5, 11.0, 12.0],
        }
    )
    series = build_series(frame.assign(open=np.nan, adj_close=frame["close"], volume=np.nan), ("returns",), 1)
    (ranges,) = series_ranges(frame, series)
    assert ranges is not None
    np.testing.assert_allclose(ranges, np.log([1.2, 1.3]))  # the first day has no return, so no row
