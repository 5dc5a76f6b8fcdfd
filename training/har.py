"""HAR on range-based realised variance: the heterogeneous autoregression of daily volatility, as a baseline.

Each day's realised variance is Parkinson's estimator from its high and low,

    RV_t = (log(high_t / low_t))^2 / (4 ln 2),

about five times as efficient as the squared close-to-close return for a
random walk without drift. Corsi's HAR regresses tomorrow's on today's, the
week's mean and the month's mean,

    RV_{t+1} = b0 + bd RV_t + bw mean(RV_{t-4..t}) + bm mean(RV_{t-21..t}) + e,

one least-squares fit on the training span (for the backtest, training and
validation, as much as the models learn from). Forecasts h steps ahead
iterate the regression on its own forecasts; the variance of the cumulative
return to t + h is their sum.

Quantiles: Student t with its degrees of freedom and scale fit by maximum
likelihood to the training returns over the one-step volatility, as
RiskMetrics-t's are. The same tails as GARCH(1,1)-t and RiskMetrics-t, so
that the three differ only in the variance they forecast; and the scale
absorbs Parkinson's bias (the range misses the overnight move, so it reads
low against close-to-close returns). Point 0, the median.

A day's range needs its high and low: closes alone raise ``DataError``
(``har_range``), and the backtest leaves the method out, saying so.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from data.features import Series
from latentcast.errors import ConfigError, DataError
from training.baselines import BaselineForecast, _check_inputs
from training.metrics import check_levels

HAR_LAGS = (1, 5, 22)  # trading days: the day, the week, the month (Corsi 2009)
# Four coefficients by least squares, then a t's two parameters: below this many
# training days past the month's first the estimates mean little.
MIN_HAR_ROWS = 100
# A levels regression can forecast a negative variance after a long calm; it is
# floored at this fraction of the training span's mean realised variance.
VARIANCE_FLOOR_SHARE = 0.01


def parkinson_variance(log_range: np.ndarray) -> np.ndarray:
    """(T,) log(high / low) -> (T,) Parkinson's variance estimates, (log range)^2 / (4 ln 2)."""
    log_range = np.asarray(log_range, dtype=np.float64)
    return np.square(log_range) / (4.0 * math.log(2.0))


def har_regressors(rv: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """(N, 4) [1, RV_t, mean of the 5 days to t, mean of the 22 days to t] at (N,) rows t >= 21."""
    sums = np.concatenate([[0.0], np.cumsum(rv)])
    columns = [np.ones(len(rows))]
    for lag in HAR_LAGS:
        columns.append((sums[rows + 1] - sums[rows + 1 - lag]) / lag)
    return np.column_stack(columns)


def fit_har(rv_train: np.ndarray) -> np.ndarray:
    """(4,) least-squares [b0, bd, bw, bm] of RV_{t+1} on ``har_regressors`` at t, over (T,) training RV."""
    rv_train = np.asarray(rv_train, dtype=np.float64)
    first = HAR_LAGS[-1] - 1
    rows = np.arange(first, len(rv_train) - 1)
    if len(rows) < MIN_HAR_ROWS:
        raise DataError(
            f"HAR needs at least {MIN_HAR_ROWS + HAR_LAGS[-1]} training days with a range, got {len(rv_train)}"
        )
    beta, *_ = np.linalg.lstsq(har_regressors(rv_train, rows), rv_train[rows + 1], rcond=None)
    return np.asarray(beta, dtype=np.float64)


def har_forecasts(beta: np.ndarray, rv: np.ndarray, origins: np.ndarray, horizon: int, floor: float) -> np.ndarray:
    """(N, H) forecasts of RV_{t+1}..RV_{t+H} at (N,) origins t, the regression iterated on its forecasts."""
    month = HAR_LAGS[-1]
    history = rv[origins[:, None] - np.arange(month - 1, -1, -1)[None, :]]  # (N, 22), oldest first
    out = np.empty((len(origins), horizon))
    for k in range(horizon):
        means = [history[:, month - lag :].mean(axis=1) for lag in HAR_LAGS]
        step = beta[0] + sum(b * m for b, m in zip(beta[1:], means, strict=True))
        out[:, k] = np.maximum(step, floor)
        history = np.column_stack([history[:, 1:], out[:, k]])
    return out


def har_range(
    r: np.ndarray,
    train_end: int,
    origins: np.ndarray,
    horizon: int,
    levels: np.ndarray,
    log_range: np.ndarray | None,
) -> BaselineForecast:
    """HAR on Parkinson variance, fit on rows ``< train_end``; Student t quantiles (module docstring).

    ``log_range``: (T,) log(high_t / low_t) on the rows of ``r``; None (closes
    only) or a missing day raises ``DataError``. Origins start at 21, the
    first with a month of ranges.
    """
    r, rows = _check_inputs(r, train_end, origins, horizon, first_origin=HAR_LAGS[-1] - 1)
    levels = check_levels(levels)
    if log_range is None:
        raise DataError("HAR-range needs each day's high and low; these prices have closes only")
    log_range = np.asarray(log_range, dtype=np.float64)
    if log_range.shape != r.shape:
        raise ConfigError(f"log_range must have the returns' shape {r.shape}, got {log_range.shape}")
    bad = np.flatnonzero(~np.isfinite(log_range) | (log_range < 0))
    if bad.size:
        raise DataError(f"HAR-range: row {bad[0]} has no valid range (log(high / low) = {log_range[bad[0]]})")
    rv = parkinson_variance(log_range)
    beta = fit_har(rv[:train_end])
    floor = VARIANCE_FLOOR_SHARE * float(rv[:train_end].mean())
    fitted = np.arange(HAR_LAGS[-1] - 1, train_end - 1)
    one_step = har_forecasts(beta, rv, fitted, 1, floor)[:, 0]
    nu, _, scale = stats.t.fit(r[fitted + 1] / np.sqrt(one_step), floc=0)
    z = scale * stats.t.ppf(levels, nu)  # (Q,)
    total = np.cumsum(har_forecasts(beta, rv, rows, horizon, floor), axis=1)  # (N, H) variance of the sum
    quantiles = np.sqrt(total)[:, :, None] * z[None, None, :]
    params = dict(zip(("b0", "b_day", "b_week", "b_month"), (float(b) for b in beta), strict=True))
    params |= {"nu": float(nu), "scale": float(scale)}
    return BaselineForecast("har_range", np.zeros((len(rows), horizon)), quantiles, params)


def series_ranges(frame: pd.DataFrame, series: Sequence[Series]) -> list[np.ndarray | None]:
    """Each series' (T,) log(high / low) on its own rows (dates) from the tidy ``frame`` it was built from;
    None for a series any of whose days lacks its high or low (closes only)."""
    out: list[np.ndarray | None] = []
    for s in series:
        rows = frame[frame["ticker"] == s.ticker].set_index("date").reindex(s.dates)
        high, low = rows["high"].to_numpy(np.float64), rows["low"].to_numpy(np.float64)
        known = np.isfinite(high).all() and np.isfinite(low).all()
        out.append(np.log(high / low) if known else None)
    return out
