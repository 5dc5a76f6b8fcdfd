"""Split-conformal offsets: fit on the validation span after training, saved with the checkpoint.

The model, warmed on everything before the validation span, forecasts every
validation day; a forecast's score at horizon h and level tau is its error in
its own half-width, (y - q) / w (``models/calibration.py``). The offset is the
tau-quantile of those scores over every ticker: moved by it, each quantile has
as many validation outcomes below it as its level says. Targets that reach
into the test span are left out, so the test span stays unseen.

``fit_young_offsets`` fits the same offsets for young streams (``YoungOffsets``),
by how many returns a stream has read: sessions opened every few days of the
validation span with two closes read one close a day, and their forecast
after n returns is scored with the others after as many.

``adaptive_forecasts`` replays a span as a session opened with adaptive
calibration would have issued it: the same ``AdaptiveOffsets`` arithmetic,
added to the split-conformal offsets, updated as each close reveals outcomes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from data.features import Scaler, Series, Split, mask_after
from latentcast.errors import DataError
from models.calibration import AdaptiveOffsets, YoungOffsets, apply_offsets, half_width
from models.forecaster import Forecaster
from training.evaluate import SpanForecasts, model_outputs, session_outputs


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


@dataclass(frozen=True)
class YoungConfig:
    """The validation sessions that fit ``YoungOffsets``: opened every ``every`` days with two closes.

    Each reads up to ``returns_seen[-1] - 1`` returns; its forecast after n
    returns is scored in the bucket of n (``returns_seen``, its edges).
    """

    returns_seen: tuple[int, ...] = (1, 5, 9, 17, 33, 65)
    every: int = 5


def fit_young_offsets(
    model: Forecaster, scaler: Scaler, series: Sequence[Series], split: Split, config: YoungConfig | None = None
) -> YoungOffsets:
    """Split-conformal offsets by returns seen, of sessions opened in the validation span (module doc)."""
    config = config or YoungConfig()
    edges, levels = config.returns_seen, model.config.quantiles
    scores: list[list[np.ndarray]] = [[] for _ in edges[1:]]
    for s in series:
        valid, test = split.bounds(s)
        actual = mask_after(s.targets, test)  # (test, H): NaN where the outcome is a test price
        for origin in range(max(valid, 1), test, config.every):
            count = min(edges[-1] - 1, test - origin)  # forecasts after 1, 2, ... returns, made before the test span
            quantiles = session_outputs(model, scaler, s, origin, 2, count)
            seen = np.arange(1, len(quantiles) + 1)
            width = half_width(quantiles)  # (N, H, 1)
            with np.errstate(divide="ignore", invalid="ignore"):
                score = (actual[origin : origin + len(quantiles), :, None] - quantiles) / width  # (N, H, Q)
            bucket = np.searchsorted(edges, seen, side="right") - 1
            for b in range(len(scores)):
                scores[b].append(score[bucket == b])
    offsets = np.zeros((len(scores), model.config.horizon, len(levels)))
    for b, parts in enumerate(scores):
        column = np.concatenate(parts) if parts else np.zeros((0, model.config.horizon, len(levels)))
        for h in range(model.config.horizon):
            known = column[np.isfinite(column[:, h]).all(axis=1), h]  # (K, Q)
            if len(known) == 0:
                raise DataError(f"no validation outcome after {edges[b]} returns at horizon {h + 1} to fit on")
            for j, level in enumerate(levels):
                offsets[b, h, j] = np.quantile(known[:, j], level, method="inverted_cdf")
    return YoungOffsets(tuple(edges), offsets)


def adaptive_forecasts(
    span: SpanForecasts, offsets: np.ndarray, levels: Sequence[float], rate: float, first_rate: float = 0.0
) -> SpanForecasts:
    """``span``'s forecasts (as the model made them) as a session opened at its first origin would issue them.

    Forecast i is moved by ``offsets`` (H, Q), or ``offsets[i]`` of (N, H, Q), plus the adaptive offsets learnt
    from the closes of origins 1..i, each close read before the forecast made
    after it, as ``service/sessions/steps.py`` does for a session.
    """
    if span.quantiles is None:
        raise DataError(f"{span.ticker}: a point forecast has no quantiles to calibrate")
    horizon, count = offsets.shape[-2:]
    levels_array = np.asarray(levels, dtype=np.float64)
    adaptive = AdaptiveOffsets.zeros(horizon, count)
    out = np.empty_like(span.quantiles)  # (N, H, Q)
    for i in range(len(span)):
        if i > 0:
            adaptive = adaptive.observe(i, [float(span.close[i])], levels_array, rate, first_rate)
        out[i] = apply_offsets(span.quantiles[i], (offsets if offsets.ndim == 2 else offsets[i]) + adaptive.offsets)
        adaptive = adaptive.issue(i, float(span.close[i]), out[i])
    return replace(span, point=out[:, :, list(levels).index(0.5)], quantiles=out)
