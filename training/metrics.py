"""Forecast metrics on unscaled cumulative log returns.

Every function takes, for N forecast origins and horizons h = 1..H:

- ``actual``    (N, H) cumulative log return from origin t to t+h; NaN where it
  is not known yet (past the end of the data). NaN entries are left out.
- ``point``     (N, H) the point forecast (the median for a quantile model).
- ``quantiles`` (N, H, Q) forecast quantiles at ``levels`` (Q,), increasing.

The primitives accept any leading shape (a single horizon column works too) and
return a float, NaN when no entry counts. ``evaluate_forecasts`` gathers them
for h = 1 and h = H into plain dicts ready for JSON: NaN becomes None there.
The random walk's point forecast is a return of 0, so ``mae_ratio`` below 1
means better than the random walk.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from latentcast.errors import ConfigError, DataError

DEFAULT_INTERVAL = (0.1, 0.9)
# Levels are floats that went through JSON and configs; 0.1 must match 0.1000000001.
LEVEL_TOLERANCE = 1e-9


def check_levels(levels: np.ndarray | list[float] | tuple[float, ...]) -> np.ndarray:
    """Quantile levels as a (Q,) float array, strictly increasing inside (0, 1)."""
    out = np.asarray(levels, dtype=np.float64)
    if out.ndim != 1 or out.size == 0 or (out <= 0).any() or (out >= 1).any() or (np.diff(out) <= 0).any():
        raise ConfigError(f"quantile levels must be strictly increasing inside (0, 1), got {out.tolist()}")
    return out


def _known(actual: np.ndarray, forecast: np.ndarray, name: str) -> np.ndarray:
    """Mask of entries whose actual is known; the forecast must be finite there."""
    if forecast.shape[: actual.ndim] != actual.shape:
        raise DataError(f"{name} has shape {forecast.shape}, which does not match actual {actual.shape}")
    known = np.isfinite(actual)
    finite = np.isfinite(forecast).reshape(*actual.shape, -1).all(axis=-1)
    if (known & ~finite).any():
        raise DataError(f"{name} is not finite where the actual value is known")
    return known


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else math.nan


def mae(actual: np.ndarray, point: np.ndarray) -> float:
    """Mean absolute error over the known entries."""
    known = _known(actual, point, "point")
    return _mean(np.abs(actual[known] - point[known]))


def rmse(actual: np.ndarray, point: np.ndarray) -> float:
    """Root mean squared error over the known entries."""
    known = _known(actual, point, "point")
    return math.sqrt(_mean((actual[known] - point[known]) ** 2))


def mae_ratio(actual: np.ndarray, point: np.ndarray) -> float:
    """MAE of ``point`` over MAE of the random walk (forecast 0, i.e. mean |actual|)."""
    known = _known(actual, point, "point")
    random_walk = _mean(np.abs(actual[known]))
    if not random_walk > 0:  # also catches NaN: nothing known, or every actual is exactly 0
        return math.nan
    return mae(actual, point) / random_walk


def directional_accuracy(actual: np.ndarray, point: np.ndarray) -> float:
    """Share of entries where sign(point) == sign(actual), among those where both are non-zero.

    A forecast of exactly 0 (the random walk) calls no direction, so it is not
    counted; NaN when no entry qualifies.
    """
    known = _known(actual, point, "point")
    called = known & (point != 0) & (np.nan_to_num(actual) != 0)
    return _mean(np.sign(point[called]) == np.sign(actual[called]))


def pinball(actual: np.ndarray, quantiles: np.ndarray, levels: np.ndarray) -> float:
    """Mean pinball loss over the known entries and the Q levels.

    For level tau and error e = actual - q: max(tau * e, (tau - 1) * e).
    """
    levels = check_levels(levels)
    if quantiles.shape != (*actual.shape, len(levels)):
        raise DataError(f"quantiles have shape {quantiles.shape}, expected {(*actual.shape, len(levels))}")
    known = _known(actual, quantiles, "quantiles")
    error = actual[known][:, None] - quantiles[known]  # (K, Q)
    return _mean(np.maximum(levels * error, (levels - 1) * error))


def level_index(levels: np.ndarray, level: float) -> int:
    """Position of ``level`` in ``levels``; ConfigError naming the levels if it is absent."""
    levels = check_levels(levels)
    match = np.flatnonzero(np.abs(levels - level) <= LEVEL_TOLERANCE)
    if match.size == 0:
        raise ConfigError(f"quantile level {level} is not among the forecast levels {levels.tolist()}")
    return int(match[0])


def coverage(
    actual: np.ndarray,
    quantiles: np.ndarray,
    levels: np.ndarray,
    interval: tuple[float, float] = DEFAULT_INTERVAL,
) -> float:
    """Share of known actual values inside [q_low, q_high], bounds included.

    ``interval`` names the two levels (default the 10-90% interval, which
    should cover 80% of the actual values if the quantiles are calibrated).
    """
    low, high = level_index(levels, interval[0]), level_index(levels, interval[1])
    if low >= high:
        raise ConfigError(f"interval {interval} must go from a lower to a higher level")
    if quantiles.shape != (*actual.shape, len(levels)):
        raise DataError(f"quantiles have shape {quantiles.shape}, expected {(*actual.shape, len(levels))}")
    known = _known(actual, quantiles, "quantiles")
    inside = (quantiles[known][:, low] <= actual[known]) & (actual[known] <= quantiles[known][:, high])
    return _mean(inside)


def _or_none(value: float) -> float | None:
    return None if math.isnan(value) else value


@dataclass(frozen=True)
class Metrics:
    """Every metric of one horizon; None where it does not apply or nothing counted."""

    horizon: int
    count: int  # entries with a known actual value
    mae: float | None
    rmse: float | None
    mae_ratio: float | None
    directional_accuracy: float | None
    pinball: float | None  # None for a point-only forecast
    coverage: float | None  # of the 10-90% interval by default; None for a point-only forecast

    def to_dict(self) -> dict[str, float | None]:
        return asdict(self)


def horizon_metrics(
    actual: np.ndarray,
    point: np.ndarray,
    quantiles: np.ndarray | None,
    levels: np.ndarray | None,
    horizon: int,
    interval: tuple[float, float] = DEFAULT_INTERVAL,
) -> Metrics:
    """Metrics of horizon ``horizon`` (1-based) from (N, H) actual/point and (N, H, Q) quantiles."""
    if actual.ndim != 2 or point.shape != actual.shape:
        raise DataError(f"actual and point must both be (N, H), got {actual.shape} and {point.shape}")
    if not 1 <= horizon <= actual.shape[1]:
        raise ConfigError(f"horizon must be in 1..{actual.shape[1]}, got {horizon}")
    y, f = actual[:, horizon - 1], point[:, horizon - 1]
    pinball_value = coverage_value = math.nan
    if quantiles is not None:
        if levels is None:
            raise ConfigError("quantile forecasts need their levels")
        if quantiles.ndim != 3 or quantiles.shape[:2] != actual.shape:
            raise DataError(f"quantiles must be (N, H, Q) with (N, H) = {actual.shape}, got {quantiles.shape}")
        q = quantiles[:, horizon - 1]
        pinball_value, coverage_value = pinball(y, q, levels), coverage(y, q, levels, interval)
    return Metrics(
        horizon=horizon,
        count=int(np.isfinite(y).sum()),
        mae=_or_none(mae(y, f)),
        rmse=_or_none(rmse(y, f)),
        mae_ratio=_or_none(mae_ratio(y, f)),
        directional_accuracy=_or_none(directional_accuracy(y, f)),
        pinball=_or_none(pinball_value),
        coverage=_or_none(coverage_value),
    )


def evaluate_forecasts(
    actual: np.ndarray,
    point: np.ndarray,
    quantiles: np.ndarray | None = None,
    levels: np.ndarray | None = None,
    interval: tuple[float, float] = DEFAULT_INTERVAL,
) -> dict[str, dict[str, float | None]]:
    """One-step and H-step metrics, JSON-ready: ``{"h1": {...}, "hH": {...}}``.

    Shapes: actual and point (N, H), quantiles (N, H, Q) or None. Each inner
    dict is ``Metrics.to_dict()``; with H = 1 there is only ``"h1"``.
    """
    if actual.ndim != 2:
        raise DataError(f"actual must be (N, H), got shape {actual.shape}")
    horizons = sorted({1, actual.shape[1]})
    return {f"h{h}": horizon_metrics(actual, point, quantiles, levels, h, interval).to_dict() for h in horizons}
