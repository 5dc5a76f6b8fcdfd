from __future__ import annotations

import numpy as np
import pytest
import torch

from data import sources
from data.features import Scaler, build_series
from models.config import ModelConfig
from models.forecaster import Forecaster
from models.predictor import Predictor
from models.series import Observation
from tests.factories import fused_inference_calls
from training.evaluate import model_forecasts

FEATURES = ("returns", "range")


@pytest.fixture(scope="module")
def prices():
    return sources.load("bundled", tickers=["AAPL"], end="2003-01-01")


@pytest.mark.parametrize("mode", ["latent", "ar"])
def test_rolling_forecasts_equal_what_the_service_would_answer(prices, mode, monkeypatch):
    """Each forecast of the evaluation equals a stateless forecast over the history up to its day.

    The evaluation runs the fused GRU (``fused_gru.evaluation()``), the service ``nn.GRU`` and its kernel.
    """
    [series] = build_series(prices, FEATURES, horizon=3)
    scaler = Scaler.fit(series.features[:300], FEATURES)
    torch.manual_seed(0)
    config = ModelConfig(mode=mode, n_features=2, hidden_size=16, conv_channels=8, horizon=3, window=20)
    model = Forecaster(config).eval()
    calls = fused_inference_calls(monkeypatch)
    [span] = model_forecasts(model, scaler, [series], [500])
    assert calls, "the evaluation ran the fused GRU"
    calls.clear()
    assert span.quantiles is not None
    assert span.dates[0] == series.dates[500] and len(span) == len(series) - 500
    predictor = Predictor(model, scaler)
    for k in (0, 37, len(span) - 1):
        day = int(np.searchsorted(prices["date"].to_numpy(), span.dates[k]))
        history = [
            Observation(close=r["close"], high=r["high"], low=r["low"])
            for r in prices.iloc[: day + 1].to_dict("records")
        ]
        served = predictor.forecast_history(history)
        assert served is not None
        np.testing.assert_allclose(span.quantiles[k], served.log_return, atol=1e-6)
        assert span.close[k] == pytest.approx(history[-1].close)
    assert not calls, "serving did not"
    np.testing.assert_array_equal(span.point, span.quantiles[:, :, 1])
    np.testing.assert_array_equal(span.actual, series.targets[500:])


def test_ar_forecasts_start_once_a_full_window_exists(prices):
    [series] = build_series(prices, ("returns",), horizon=2)
    scaler = Scaler.fit(series.features[:300], ("returns",))
    model = Forecaster(ModelConfig(mode="ar", n_features=1, horizon=2, window=30)).eval()
    [span] = model_forecasts(model, scaler, [series], [5])
    assert span.dates[0] == series.dates[29]
