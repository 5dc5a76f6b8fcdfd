"""Scores of rolling forecasts: per ticker and pooled over tickers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from data.feature_cache import FeatureCache, FeatureSpec
from data.features import Scaler, build_series
from data.universe import frame_series
from models.checkpoint import build_from_checkpoint
from models.forecaster import Forecaster
from training.evaluate import SpanForecasts, model_forecasts
from training.metrics import evaluate_forecasts, pinball
from training.registry import Registry

Scores = dict[str, dict[str, float | None]]


def pooled(spans: Sequence[SpanForecasts]) -> SpanForecasts:
    """All tickers' forecasts as one span (for pooled metrics)."""
    quantiles = None
    if all(s.quantiles is not None for s in spans):
        quantiles = np.concatenate([s.quantiles for s in spans if s.quantiles is not None])
    return SpanForecasts(
        ticker="pooled",
        dates=np.concatenate([s.dates for s in spans]),
        close=np.concatenate([s.close for s in spans]),
        actual=np.concatenate([s.actual for s in spans]),
        point=np.concatenate([s.point for s in spans]),
        quantiles=quantiles,
    )


def outer_band(levels: Sequence[float]) -> tuple[float, float]:
    """The widest interval of ``levels``: a model's coverage is that of its own outer band."""
    return (min(levels), max(levels))


def score(span: SpanForecasts, levels: Sequence[float]) -> Scores:
    """One-step and H-step metrics of one span; coverage of the outer band of ``levels``."""
    return evaluate_forecasts(
        span.actual, span.point, span.quantiles, np.asarray(levels, dtype=np.float64), outer_band(levels)
    )


def pooled_metrics(spans: Sequence[SpanForecasts], levels: Sequence[float]) -> dict[str, Any]:
    """Pooled metrics, with the span they cover (for a version's ``metrics.json``)."""
    everything = pooled(spans)
    first, last = everything.dates.min(), everything.dates.max()
    return {
        "first": str(np.datetime_as_string(first, unit="D")),
        "last": str(np.datetime_as_string(last, unit="D")),
        "forecasts": len(everything),
        **score(everything, levels),
    }


def score_by_ticker(spans: Sequence[SpanForecasts], levels: Sequence[float]) -> dict[str, Scores]:
    """Metrics of each ticker and of all of them pooled (key ``"pooled"``)."""
    out = {span.ticker: score(span, levels) for span in spans}
    out["pooled"] = score(pooled(spans), levels)
    return out


def score_version(registry: Registry, version: str, prices: pd.DataFrame) -> dict[str, Any]:
    """Score ``version`` on ``prices`` from its own test cut-off to the end of the data.

    The model's state is warmed on every earlier row; the features and scaler
    are the version's own.
    """
    model, scaler = build_from_checkpoint(registry.load(version), version)
    span = registry.get(version).data_span
    series = build_series(prices, scaler.features, model.config.horizon)
    cut = np.datetime64(span.get("test_start", "1900-01-01"))
    starts = [int(np.searchsorted(s.dates, cut)) for s in series]
    spans = model_forecasts(model, scaler, series, starts)
    return {
        "version": version,
        "from": str(np.datetime_as_string(cut, unit="D")),
        "metrics": score_by_ticker(spans, model.config.quantiles),
    }


def holdout_loss(spans: Sequence[SpanForecasts], levels: Sequence[float], horizon: int, keep: Sequence[float]) -> float:
    """Mean pinball loss over horizons 1..``horizon`` and quantile levels ``keep``."""
    everything = pooled(spans)
    assert everything.quantiles is not None
    columns = [list(levels).index(level) for level in keep]
    q = everything.quantiles[:, :horizon][:, :, columns]
    return pinball(everything.actual[:, :horizon], q, np.asarray(keep))


def holdout_spans(
    model: Forecaster,
    scaler: Scaler,
    prices: pd.DataFrame,
    holdout_start: np.datetime64,
    offsets: np.ndarray | None = None,
    cache: FeatureCache | None = None,
) -> list[SpanForecasts]:
    """Each ticker's forecasts from ``holdout_start`` on, moved by the conformal ``offsets`` (H, Q), the model's
    state warmed on everything before (features from ``cache``)."""
    series = frame_series(prices, FeatureSpec(scaler.features, model.config.horizon), cache)
    starts = [int(np.searchsorted(s.dates, holdout_start)) for s in series]
    return model_forecasts(model, scaler, series, starts, offsets)


def score_on_holdout(
    model: Forecaster,
    scaler: Scaler,
    prices: pd.DataFrame,
    holdout_start: np.datetime64,
    horizon: int,
    keep: Sequence[float],
    offsets: np.ndarray | None = None,
    cache: FeatureCache | None = None,
) -> float:
    """Holdout loss of a model moved by its conformal ``offsets`` (H, Q), its state warmed on everything before
    the holdout (features from ``cache``)."""
    spans = holdout_spans(model, scaler, prices, holdout_start, offsets, cache)
    return holdout_loss(spans, model.config.quantiles, horizon, keep)


def day_losses(
    spans: Sequence[SpanForecasts], levels: Sequence[float], horizon: int, keep: Sequence[float]
) -> pd.Series:
    """Pinball loss of each origin day over horizons 1..``horizon`` and levels ``keep``, averaged over the
    known entries of each ticker, then over the tickers of that day (NaN where nothing is known yet)."""
    columns = [list(levels).index(level) for level in keep]
    tau = np.asarray(keep, dtype=np.float64)
    frames = []
    for span in spans:
        assert span.quantiles is not None
        actual = span.actual[:, :horizon]  # (N, h)
        error = actual[:, :, None] - span.quantiles[:, :horizon][:, :, columns]  # (N, h, Q)
        loss = np.maximum(tau * error, (tau - 1) * error).mean(axis=2)  # (N, h), NaN where actual is unknown
        known = np.isfinite(actual)
        count = known.sum(axis=1)
        total = np.where(known, loss, 0.0).sum(axis=1)
        daily = np.divide(total, count, out=np.full(len(total), np.nan), where=count > 0)
        frames.append(pd.DataFrame({"ticker": span.ticker, "date": span.dates, "loss": daily}))
    losses = pd.concat(frames).dropna()
    return losses.groupby("date")["loss"].mean().sort_index()
