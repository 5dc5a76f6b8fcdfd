"""Split-conformal offsets: moved by them, the validation outcomes fall below each quantile as often as its level."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from data import sources
from data.features import build_series, fit_scaler, mask_after, split_dates
from models.calibration import apply_offsets, half_width
from models.forecaster import Forecaster
from tests.factories import tiny_config
from training.calibration import rescaled_prices
from training.config import TrainConfig
from training.conformal import YoungConfig, adaptive_forecasts, conformal_scores, fit_offsets, fit_young_offsets
from training.dataset import TrainingData
from training.evaluate import model_forecasts, session_outputs
from training.metrics import coverage
from training.pipeline import fit


@pytest.mark.parametrize("scaling", ["global", "volatility"])
def test_offsets_calibrate_every_quantile_on_the_validation_span(scaling):
    config = tiny_config(scaling=scaling)
    series = build_series(sources.bundled(["IBM", "MSFT"]), ("returns",), config.horizon)
    split = split_dates(series)
    scaler = fit_scaler(series, split, ("returns",))
    torch.manual_seed(0)
    model = Forecaster(config).eval()
    offsets = fit_offsets(model, scaler, series, split)
    assert offsets.shape == (3, 3)
    scores, known = conformal_scores(model, scaler, series, split)
    for h in range(3):
        below = (scores[known[:, h], h] < offsets[h]).mean(axis=0)  # (Q,) share of outcomes below each quantile
        np.testing.assert_allclose(below, config.quantiles, atol=2 / known[:, h].sum())


def test_applied_offsets_move_by_half_widths_and_keep_quantiles_in_order():
    quantiles = np.array([[[-1.0, 0.0, 1.0], [-2.0, 0.5, 2.0]]])  # (1, H=2, Q=3)
    offsets = np.array([[0.5, 0.0, -0.5], [-0.1, 2.0, 0.1]])
    moved = apply_offsets(quantiles, offsets)
    np.testing.assert_allclose(half_width(quantiles)[0, :, 0], [1.0, 2.0])
    np.testing.assert_allclose(moved[0, 0], [-0.5, 0.0, 0.5])
    np.testing.assert_allclose(moved[0, 1], [-2.2, 2.2, 4.5])  # the median crossed the top: sorted again


def test_adaptive_forecasts_replay_the_session_update_and_reach_nominal_coverage():
    # a globally scaled model trained at k = 1 reads returns three times as wild: its band is far too narrow
    data = TrainingData.prepare(sources.bundled(["IBM"]), ("returns",), 3)
    trained = fit(tiny_config(), data, TrainConfig(epochs=2, streams=4, threads=1, progress=False))
    series = build_series(rescaled_prices(sources.bundled(["IBM"]), 3.0), ("returns",), 3)
    [span] = model_forecasts(trained.model, data.scaler, series, [len(series[0]) - 1000])
    base = np.full((3, 3), 0.1)
    levels, rate = np.asarray(trained.model.config.quantiles), 0.05
    adapted = adaptive_forecasts(span, base, levels.tolist(), rate)
    assert span.quantiles is not None and adapted.quantiles is not None
    np.testing.assert_allclose(adapted.quantiles[0], apply_offsets(span.quantiles[0], base))
    # after the first close, horizon 1's offsets took one step on forecast 0's outcome, the others none
    step = rate * (levels - (span.actual[0, 0] < adapted.quantiles[0, 0]))
    moved = base + np.stack([step, 0 * step, 0 * step])
    np.testing.assert_allclose(adapted.quantiles[1], apply_offsets(span.quantiles[1], moved))
    np.testing.assert_array_equal(adapted.point, adapted.quantiles[:, :, 1])
    assert coverage(span.actual[:, 0], span.quantiles[:, 0], levels) < 0.7
    # online conformal's promise: once it has caught up, each quantile is exceeded about as often as its level says
    assert 0.75 <= coverage(adapted.actual[-750:, 0], adapted.quantiles[-750:, 0], levels) <= 0.85


def test_young_offsets_calibrate_each_bucket_of_returns_seen_on_validation_sessions():
    config = tiny_config(scaling="volatility")
    series = build_series(sources.bundled(["IBM", "MSFT"]), ("returns",), config.horizon)
    split = split_dates(series)
    scaler = fit_scaler(series, split, ("returns",))
    torch.manual_seed(0)
    model = Forecaster(config).eval()
    young = fit_young_offsets(model, scaler, series, split, YoungConfig(returns_seen=(1, 3, 9), every=10))
    assert young.returns_seen == (1, 3, 9) and young.offsets.shape == (2, 3, 3)
    # bucket 0: forecasts after 1 and 2 returns of sessions opened with two closes every 10 validation days
    scores = []
    for s in series:
        valid, test = split.bounds(s)
        for origin in range(valid, test, 10):
            q = session_outputs(model, scaler, s, origin, 2, 2)
            y = mask_after(s.targets, test)[origin : origin + 2]
            scores.append((y[..., None] - q) / half_width(q))
    h1 = np.concatenate(scores)[:, 0]  # (N, Q)
    h1 = h1[np.isfinite(h1).all(axis=1)]
    below = (h1 < young.offsets[0, 0]).mean(axis=0)
    np.testing.assert_allclose(below, config.quantiles, atol=2 / len(h1))
    # past the last edge a forecast takes the model's own offsets
    steady = np.full((3, 3), 0.25)
    np.testing.assert_array_equal(young.at(9, steady), steady)
    np.testing.assert_array_equal(
        young.at(np.array([1, 2, 3, 8, 40]), steady)[:, 0, 0], [*young.offsets[[0, 0, 1, 1], 0, 0].tolist(), 0.25]
    )
