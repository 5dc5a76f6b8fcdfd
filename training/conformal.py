"""Split-conformal offsets: fit on the validation span after training, saved with the checkpoint.

The model, warmed on everything before the validation span, forecasts every
validation day; a forecast's score at horizon h and level tau is its error in
its own half-width, (y - q) / w (``models/calibration.py``). The offset is the
tau-quantile of those scores over every ticker: moved by it, each quantile has
as many validation outcomes below it as its level says. Targets that reach
into the test span are left out, so the test span stays unseen.

``adaptive_forecasts`` replays a span as a session opened with adaptive
calibration would have issued it: the same ``AdaptiveOffsets`` arithmetic,
added to the split-conformal offsets, updated as each close reveals outcomes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from data.errors import DataError
from data.features import Scaler, Series, Split, mask_after
from models.calibration import AdaptiveOffsets, apply_offsets, half_width
from models.forecaster import Forecaster
from training.evaluate import SpanForecasts, model_outputs


def conformal_scores(
    model: Forecaster, scaler: Scaler, series: Sequence[Series], split: Split
) -> tuple[np.ndarray, np.ndarray]:
    """(N, H, Q) scores of every validation forecast and (N, H) whether each is known."""
    scores, known = [], []
    for s in series:
        valid, test = split.bounds(s)
        if test <= valid:
            continue
        rows, quantiles = model_outputs(model, scaler, s, valid)  # (N, H, Q) unscaled
        inside = rows < test
        rows, quantiles = rows[inside], quantiles[inside]
        actual = mask_after(s.targets, test)[rows]  # (N, H): NaN where the outcome is a test price
        width = half_width(quantiles)  # (N, H, 1)
        usable = np.isfinite(actual) & (width[..., 0] > 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            scores.append((actual[..., None] - quantiles) / width)
        known.append(usable)
    if not scores:
        raise DataError("no validation rows to fit conformal offsets on")
    return np.concatenate(scores), np.concatenate(known)


def fit_offsets(model: Forecaster, scaler: Scaler, series: Sequence[Series], split: Split) -> np.ndarray:
    """(H, Q) offsets in half-widths: for each horizon and level tau, the tau-quantile of the scores."""
    levels = model.config.quantiles
    scores, known = conformal_scores(model, scaler, series, split)
    offsets = np.zeros((model.config.horizon, len(levels)))
    for h in range(model.config.horizon):
        column = scores[known[:, h], h]  # (K, Q)
        if len(column) == 0:
            raise DataError(f"no validation outcome known at horizon {h + 1} to fit conformal offsets on")
        for j, level in enumerate(levels):
            offsets[h, j] = np.quantile(column[:, j], level, method="inverted_cdf")
    return offsets


def adaptive_forecasts(span: SpanForecasts, offsets: np.ndarray, levels: Sequence[float], rate: float) -> SpanForecasts:
    """``span``'s forecasts (as the model made them) as a session opened at its first origin would issue them.

    Forecast i is moved by ``offsets`` (H, Q) plus the adaptive offsets learnt
    from the closes of origins 1..i, each close read before the forecast made
    after it, as ``service/session_steps.py`` does for a session.
    """
    if span.quantiles is None:
        raise DataError(f"{span.ticker}: a point forecast has no quantiles to calibrate")
    horizon, count = offsets.shape
    levels_array = np.asarray(levels, dtype=np.float64)
    adaptive = AdaptiveOffsets.zeros(horizon, count)
    out = np.empty_like(span.quantiles)  # (N, H, Q)
    for i in range(len(span)):
        if i > 0:
            adaptive = adaptive.observe(i, [float(span.close[i])], levels_array, rate)
        out[i] = apply_offsets(span.quantiles[i], offsets + adaptive.offsets)
        adaptive = adaptive.issue(i, float(span.close[i]), out[i])
    return replace(span, point=out[:, :, list(levels).index(0.5)], quantiles=out)
