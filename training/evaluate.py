"""Rolling forecasts over a span, as every report and benchmark measures them.

The protocol (docs/design.md, "Evaluation"): one forecast per day of the
span, made after that day's close, without retraining; the model's state is
warmed on everything before the span. The latent model streams through the
whole history once (one call, equal to streaming it by the state invariant);
the ar model re-reads its last ``window`` rows for every forecast. Forecasts and targets are
unscaled cumulative log returns, for horizons 1..H.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from data.features import Scaler, Series, window_ends, windows
from models import fused_gru
from models.calibration import apply_offsets
from models.forecaster import Forecaster

CHUNK_ROWS = 4096  # bounds memory on long histories; the state carries across chunks


@dataclass(frozen=True)
class SpanForecasts:
    """One ticker's forecasts over a span, with what really happened."""

    ticker: str
    dates: np.ndarray  # (N,) origin days
    close: np.ndarray  # (N,) close on the origin day
    actual: np.ndarray  # (N, H) realised cumulative log returns, NaN past the data
    point: np.ndarray  # (N, H) the median
    quantiles: np.ndarray | None  # (N, H, Q), None for point-only baselines

    def __len__(self) -> int:
        return len(self.dates)


def model_outputs(model: Forecaster, scaler: Scaler, series: Series, start: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows with a forecast from ``start`` on, and their (N, H, Q) unscaled quantiles."""
    config = model.config
    x = scaler.transform(series.features, config.raw_columns)
    model.eval()
    with torch.inference_mode(), fused_gru.evaluation():
        if config.mode == "latent":
            outs, state = [], None
            for begin in range(0, len(x), CHUNK_ROWS):
                out, state = model(torch.from_numpy(x[begin : begin + CHUNK_ROWS])[None], state)
                outs.append(out[0])
            rows = np.arange(start, len(x))
            quantiles = torch.cat(outs).numpy()[start:]
        else:
            rows = window_ends(start, len(x), config.window)
            parts = [
                model(torch.from_numpy(windows(x, rows[i : i + CHUNK_ROWS // 8], config.window)))[0][:, -1]
                for i in range(0, len(rows), CHUNK_ROWS // 8)
            ]
            shape = (0, config.horizon, len(config.quantiles))
            quantiles = torch.cat(parts).numpy() if parts else np.zeros(shape, np.float32)
    return rows, quantiles.astype(np.float64) * scaler.target_scale


def model_forecasts(
    model: Forecaster,
    scaler: Scaler,
    series: Sequence[Series],
    starts: Sequence[int],
    offsets: np.ndarray | None = None,
) -> list[SpanForecasts]:
    """Forecasts of ``model`` for each series from its row ``starts[i]`` to its end.

    ``offsets`` (H, Q): conformal offsets applied to every forecast (``models/calibration.py``).
    """
    median = model.config.median_index
    out = []
    for s, start in zip(series, starts, strict=True):
        rows, quantiles = model_outputs(model, scaler, s, start)
        if offsets is not None:
            quantiles = apply_offsets(quantiles, offsets)
        out.append(
            SpanForecasts(
                ticker=s.ticker,
                dates=s.dates[rows],
                close=s.close[rows],
                actual=s.targets[rows],
                point=quantiles[:, :, median],
                quantiles=quantiles,
            )
        )
    return out


def session_outputs(
    model: Forecaster, scaler: Scaler, series: Series, origin: int, history: int, count: int | None = None
) -> np.ndarray:
    """(N, H, Q) unscaled quantiles of a session opened after row ``origin`` with ``history`` closes.

    Row i's feature is the return from close i - 1 to close i, so ``history``
    closes up to ``origin`` give the session its rows ``origin - history + 2``
    to ``origin`` (a fresh state reads them); its first forecast is that after
    row ``origin``. Forecasts to the end of the series, or the first ``count``.
    """
    first = origin - history + 2
    assert first >= 1 and history >= 2, f"a session opened after row {origin} cannot hold {history} closes"
    end = len(series) if count is None else min(len(series), origin + count)
    x = scaler.transform(series.features[first:end], model.config.raw_columns)
    model.eval()
    with torch.inference_mode(), fused_gru.evaluation():
        out, _ = model(torch.from_numpy(x)[None])
    return out[0].numpy()[history - 2 :].astype(np.float64) * scaler.target_scale
