from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from data import sources
from data.features import (
    Scaler,
    build_series,
    check_features,
    cumulative_targets,
    feature_rows,
    fields_needed,
    fit_scaler,
    mask_after,
    recent_split,
    split_dates,
    through_end,
    window_ends,
    windows,
)
from latentcast.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def prices() -> pd.DataFrame:
    return sources.bundled()


def test_features_are_log_returns_range_and_volume_change(prices):
    aapl = prices[prices["ticker"] == "AAPL"].reset_index(drop=True)
    [series] = build_series(aapl, ("returns", "range", "volume"), horizon=3)
    assert len(series) == len(aapl) - 1
    t = 10  # row t is day t + 1 of the frame
    day, prev = aapl.iloc[t + 1], aapl.iloc[t]
    assert series.features[t, 0] == pytest.approx(np.log(day["adj_close"] / prev["adj_close"]))
    assert series.features[t, 1] == pytest.approx(np.log(day["high"] / day["low"]))
    assert series.features[t, 2] == pytest.approx(np.log((day["volume"] + 1) / (prev["volume"] + 1)))
    assert series.close[t] == day["close"]


def test_targets_are_cumulative_returns_to_t_plus_h():
    returns = np.array([0.1, -0.2, 0.3, 0.05])
    out = cumulative_targets(returns, horizon=2)
    expected = np.array([[-0.2, 0.1], [0.3, 0.35], [0.05, np.nan], [np.nan, np.nan]])
    np.testing.assert_allclose(out, expected)


def test_streaming_features_equal_batch_features():
    close = np.array([10.0, 11.0, 10.5, 12.0, 12.5])
    volume = np.array([5.0, 0.0, 7.0, 3.0, 9.0])
    whole = feature_rows(("returns", "volume"), close[1:], close[0], volume=volume[1:], prev_volume=volume[0])
    pieces = [
        feature_rows(
            ("returns", "volume"), close[i : i + 1], close[i - 1], volume=volume[i : i + 1], prev_volume=volume[i - 1]
        )
        for i in range(1, 5)
    ]
    np.testing.assert_array_equal(whole, np.concatenate(pieces))


def test_feature_names_are_checked():
    assert fields_needed(("returns", "range", "volume")) == ("close", "high", "low", "volume")
    with pytest.raises(ConfigError) as err:
        check_features(("returns", "rsi"))
    assert str(err.value) == "unknown feature 'rsi'; valid features: returns, range, volume"
    with pytest.raises(ConfigError) as err:
        check_features(("range", "returns"))
    assert str(err.value) == "features must start with 'returns' and not repeat, got ['range', 'returns']"


def test_split_is_chronological_70_15_15(prices):
    series = build_series(prices, ("returns",), horizon=1)
    split = split_dates(series)
    days = np.unique(np.concatenate([s.dates for s in series]))
    train = (days < split.validation_start).mean()
    test = (days >= split.test_start).mean()
    assert train == pytest.approx(0.70, abs=0.001)
    assert test == pytest.approx(0.15, abs=0.001)
    for s in series:
        v, t = split.bounds(s)
        assert (s.dates[:v] < split.validation_start).all() and (s.dates[v:] >= split.validation_start).all()
        assert (s.dates[t:] >= split.test_start).all() and (s.dates[:t] < split.test_start).all()
    with pytest.raises(ConfigError):
        split_dates(series, (0.8, 0.3, -0.1))


def test_scaler_sees_only_training_rows(prices):
    features = ("returns", "range", "volume")
    series = build_series(prices, features, horizon=1)
    split = split_dates(series)
    before = fit_scaler(series, split, features)
    tampered = []
    for s in series:
        v, _ = split.bounds(s)
        feats = s.features.copy()
        feats[v:] = 1e6  # every validation and test row
        tampered.append(type(s)(s.ticker, s.dates, s.close, feats, s.targets))
    after = fit_scaler(tampered, split, features)
    np.testing.assert_array_equal(before.mean, after.mean)
    np.testing.assert_array_equal(before.std, after.std)
    assert before.target_scale == after.target_scale


def test_scaler_round_trips_and_clips():
    rows = np.array([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]])
    scaler = Scaler.fit(rows, ("returns", "range"), clip=1.0)
    again = Scaler.from_dict(scaler.to_dict())
    np.testing.assert_array_equal(again.transform(rows), scaler.transform(rows))
    assert scaler.transform(np.array([[100.0, -100.0]])).tolist() == [[1.0, -1.0]]
    with pytest.raises(ConfigError) as err:
        Scaler.from_dict({"features": ["returns"], "mean": [0.0], "std": [0.0], "target_scale": 1.0, "clip": 5})
    assert str(err.value) == "malformed scaler: mean/std do not match the features or are not positive"


def test_raw_columns_are_left_in_the_returns_units_for_the_model_to_scale():
    rows = np.array([[0.02, 0.03, 1.0], [-0.04, 0.05, 2.0], [0.0, 0.01, 3.0]])
    scaler = Scaler.fit(rows, ("returns", "range", "volume"))
    standard = scaler.transform(rows)
    np.testing.assert_allclose(scaler.transform(rows, 1)[:, 0], rows[:, 0] / scaler.target_scale, rtol=1e-6)
    np.testing.assert_array_equal(scaler.transform(rows, 1)[:, 1:], standard[:, 1:])
    two = scaler.transform(rows, 2)
    np.testing.assert_allclose(two[:, :2], rows[:, :2] / scaler.target_scale, rtol=1e-6)
    np.testing.assert_array_equal(two[:, 2], standard[:, 2])
    np.testing.assert_array_equal(scaler.transform(rows, True), scaler.transform(rows, 1))


def test_a_lone_row_is_scaled_to_the_floats_the_rows_of_a_batch_are():
    values = [0.0, -0.0, 0.013, -0.04, 3.5, -1e6, 1e300, 5e-324, np.nan, np.inf, -np.inf]
    rows = np.array(list(itertools.product(values, repeat=3)))  # every mix, NaN (a range not sent) among them
    scaler = Scaler(("returns", "range", "volume"), np.array([0.001, 0.02, -0.3]), np.array([0.02, 0.01, 0.7]), 0.02)
    for raw in (0, 1, 2, True):
        together = scaler.transform(rows, raw)  # (N, F): numpy's arithmetic, row by row alike
        for i in range(len(rows)):
            alone = scaler.transform(rows[i : i + 1], raw)
            assert (alone.dtype, alone.shape) == (np.dtype(np.float32), (1, 3))
            assert alone.tobytes() == together[i].tobytes(), (rows[i], raw)


def test_training_targets_never_read_past_the_cut():
    targets = cumulative_targets(np.arange(10, dtype=float), horizon=3)
    masked = mask_after(targets, stop=6)
    assert masked.shape == (6, 3)
    for t in range(6):
        for h in range(1, 4):
            assert np.isnan(masked[t, h - 1]) == (t + h >= 6)


def test_windows_end_at_each_index():
    x = np.arange(10).reshape(10, 1)
    ends = window_ends(0, 10, window=4)
    assert ends.tolist() == [3, 4, 5, 6, 7, 8, 9]
    w = windows(x, ends, 4)
    assert w.shape == (7, 4, 1)
    assert w[0, :, 0].tolist() == [0, 1, 2, 3] and w[-1, :, 0].tolist() == [6, 7, 8, 9]


def test_extreme_price_ratios_give_infinite_returns_that_the_scaler_clips_without_warnings():
    # pytest turns warnings into errors: overflow in the ratio or log(0) must not warn
    rows = feature_rows(
        ("returns", "range"),
        np.array([1e-300, 1e300]),
        1e300,
        high=np.array([1e300, 1e300]),
        low=np.array([1e-300, 1e-300]),
    )
    assert rows[0, 0] == -np.inf and rows[1, 0] == np.inf and rows[0, 1] == np.inf
    scaler = Scaler(("returns", "range"), np.zeros(2), np.ones(2), 1.0, clip=10.0)
    assert scaler.transform(rows).tolist() == [[-10.0, 10.0], [10.0, 10.0]]


def test_recent_split_holds_out_the_newest_days(prices):
    series = build_series(prices, ("returns",), horizon=1)
    days = np.unique(np.concatenate([s.dates for s in series]))
    split = recent_split(series, 30)
    assert split.test_start == days[-30] and split.validation_start == days[-60]
    with pytest.raises(DataError) as err:
        recent_split(series, len(days) // 2)
    assert str(err.value).startswith(f"too few trading days for a holdout and a validation of {len(days) // 2} days")


def test_through_end_keeps_every_row_in_training(prices):
    series = build_series(prices, ("returns",), horizon=1)
    split = through_end(series)
    assert all(split.bounds(s) == (len(s), len(s)) for s in series)


def test_features_that_read_a_missing_column_name_the_columns_they_need(prices):
    closes = prices.loc[prices["ticker"] == "IBM", ["ticker", "date", "close"]].head(30)
    closes_only = closes.assign(open=np.nan, high=np.nan, low=np.nan, adj_close=closes["close"], volume=np.nan)
    series = build_series(closes_only, ("returns",), 1)
    np.testing.assert_allclose(series[0].features[:, 0], np.diff(np.log(closes["close"].to_numpy())))
    with pytest.raises(DataError) as err:
        build_series(closes_only, ("returns", "range"), 1)
    assert str(err.value) == (
        "IBM: no high, low in the prices; features returns,range need the columns date, close, high, low "
        "(features returns alone need date, close)"
    )
