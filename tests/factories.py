"""Small real objects for tests: tiny models with scalers fit on the bundled prices."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from data import sources
from data.features import build_series, fit_scaler, split_dates
from models import fused_gru
from models.checkpoint import make_checkpoint
from models.config import ModelConfig
from models.forecaster import Forecaster
from models.series import Observation
from service.price_data import bars_of

FEATURES: dict[int, tuple[str, ...]] = {1: ("returns",), 2: ("returns", "range"), 3: ("returns", "range", "volume")}


def tiny_config(mode: str = "latent", **fields: Any) -> ModelConfig:
    values: dict[str, Any] = {
        "mode": mode,
        "cell": "GRU",
        "n_features": 1,
        "conv_channels": 4,
        "conv_kernel": 3,
        "hidden_size": 8,
        "horizon": 3,
        "window": 10,
        "scaling": "global",
    }
    values.update(fields)
    return ModelConfig(**values)


def tiny_checkpoint(
    mode: str = "latent", seed: int = 0, metrics: dict[str, Any] | None = None, last: str = "2013-03-01", **fields: Any
) -> dict[str, Any]:
    """An untrained tiny model with a scaler fit on the bundled training span.

    Its data span claims the bundled prices up to ``last``: a retrain on later
    prices has something new to learn from and may score it out of sample.
    """
    config = tiny_config(mode, **fields)
    features = FEATURES[config.n_features]
    series = build_series(sources.bundled(), features, config.horizon)
    scaler = fit_scaler(series, split_dates(series), features)
    torch.manual_seed(seed)
    span = {"source": "bundled", "first": "2000-03-01", "last": last}
    return make_checkpoint(Forecaster(config), scaler, metrics or {"val_loss": 1.0}, span)


def real_bars(ticker: str = "IBM", count: int = 400, start: int = 0) -> list[Observation]:
    """``count`` real daily bars of ``ticker`` from the bundled prices, from its row ``start``."""
    return bars_of(sources.bundled([ticker]).iloc[start : start + count])


def fused_inference_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    """The calls of the fused GRU's forward without gradients (evaluation's), recorded from now on."""
    infer, calls = fused_gru._infer, []

    def recorded(*args: Any) -> tuple[torch.Tensor, torch.Tensor]:
        calls.append(args)
        return infer(*args)

    monkeypatch.setattr(fused_gru, "_infer", recorded)
    return calls
