"""A volatility-scaled model reads a series with its returns multiplied by k as the same series, k times wilder."""

from __future__ import annotations

import numpy as np
import pytest

from data import sources
from data.features import build_series
from tests.factories import tiny_config
from training.calibration import rescaled_prices
from training.config import TrainConfig
from training.dataset import TrainingData
from training.evaluate import model_forecasts
from training.metrics import coverage
from training.pipeline import Trained, fit

TICKERS = ["IBM", "MSFT"]
WARM_UP = 250  # days: the EWMA's start weighs 0.94^250 by then


@pytest.fixture(scope="module")
def trained() -> dict[str, Trained]:
    prices = sources.bundled(TICKERS)
    data = TrainingData.prepare(prices, ("returns",), 3)
    train = TrainConfig(epochs=2, streams=4, threads=1, progress=False)
    return {scaling: fit(tiny_config(scaling=scaling), data, train) for scaling in ("global", "volatility")}


def forecasts(trained: Trained, k: float) -> tuple[np.ndarray, np.ndarray, float]:
    """(N, H, Q) quantiles and (N, H) outcomes from day WARM_UP on, and the test span's 10-90% coverage at h=1."""
    data = trained.data
    series = build_series(rescaled_prices(sources.bundled(TICKERS), k), data.features, data.horizon)
    spans = model_forecasts(trained.model, data.scaler, series, [WARM_UP] * len(series))
    quantiles = np.concatenate([s.quantiles for s in spans if s.quantiles is not None])
    actual = np.concatenate([s.actual for s in spans])
    test = np.concatenate([s.dates >= data.split.test_start for s in spans])
    levels = np.asarray(trained.model.config.quantiles)
    return quantiles, actual, coverage(actual[test, 0], quantiles[test, 0], levels)


@pytest.mark.parametrize("k", [0.3, 3.0])
def test_volatility_scaled_quantiles_scale_by_k_and_coverage_stays(trained, k):
    base, actual, base_coverage = forecasts(trained["volatility"], 1.0)
    scaled, scaled_actual, scaled_coverage = forecasts(trained["volatility"], k)
    np.testing.assert_allclose(scaled_actual, actual * k, rtol=1e-9, atol=1e-12)
    width = (base[..., -1:] - base[..., :1]) / 2  # (N, H, 1)
    assert np.abs(scaled - k * base).max(axis=(1, 2)).max() > 0  # not a model that ignores its input
    assert (np.abs(scaled - k * base) <= 0.02 * k * width).all()
    assert abs(scaled_coverage - base_coverage) < 0.01


def test_a_globally_scaled_model_does_not_scale(trained):
    base, _, base_coverage = forecasts(trained["global"], 1.0)
    scaled, _, scaled_coverage = forecasts(trained["global"], 3.0)
    width = (base[..., -1:] - base[..., :1]) / 2
    assert not (np.abs(scaled - 3 * base) <= 0.02 * 3 * width).all()
    assert abs(scaled_coverage - base_coverage) >= 0.01
