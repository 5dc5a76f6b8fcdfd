"""Honest baselines: fit on the training span once, then rolled forward without refitting.

Every baseline has the same call, so that a report can loop over ``BASELINES``:

    baseline(r, train_end, origins, horizon, levels) -> BaselineForecast

- ``r``         (T,) one ticker's daily log returns (column 0 of ``Series.features``);
- ``train_end`` rows ``< train_end`` are the training span, the only rows a fit reads;
- ``origins``   (N,) rows t; the forecast at t is made after observing r[0..t];
- ``horizon``   H; forecasts are of the cumulative log return from t to t+h, h = 1..H,
  the same quantity as ``Series.targets[t]``;
- ``levels``    (Q,) quantile levels, increasing (ignored by point-only baselines).

Parameters are fit on the training span only, and otherwise the forecast at t
reads r[0..t] only: origins at or after ``train_end - 1`` are out of sample.
Earlier origins are allowed (to plot the fit) but are in sample through the
parameters (and, for GARCH, its starting variance, read from the first 75
training returns as arch does).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Protocol

import numpy as np
from arch import arch_model
from arch.univariate import StudentsT
from numpy.lib.stride_tricks import sliding_window_view
from scipy import stats

from latentcast.errors import ConfigError, DataError
from training.metrics import check_levels

logger = logging.getLogger(__name__)

VOL_WINDOW = 20  # trading days: about one month of returns for the random walk's volatility
AR_ORDER = 5  # lags: one trading week
# arch's optimiser is tuned for percent returns (daily variances of order 1, not 1e-4).
RETURN_SCALE = 100.0
# Five parameters by maximum likelihood, the tail index among them: below this
# many returns the estimates mean little.
MIN_GARCH_ROWS = 250
GARCH_MAX_ITERATIONS = 100  # SciPy's SLSQP default; the bundled tickers converge in 13 to 35
RISKMETRICS_DECAY = 0.94  # RiskMetrics' decay for daily returns (J.P. Morgan/Reuters, 1996)


@dataclass(frozen=True)
class BaselineForecast:
    """Forecasts of one baseline at N origins for horizons 1..H."""

    name: str
    point: np.ndarray  # (N, H) cumulative log return t -> t+h, the median where there are quantiles
    quantiles: np.ndarray | None  # (N, H, Q) at the requested levels, None for point-only baselines
    params: dict[str, float] = field(default_factory=dict)  # fitted parameters, for reports


class Baseline(Protocol):
    def __call__(
        self, r: np.ndarray, train_end: int, origins: np.ndarray, horizon: int, levels: np.ndarray
    ) -> BaselineForecast: ...


def _check_inputs(
    r: np.ndarray, train_end: int, origins: np.ndarray, horizon: int, first_origin: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Validated (T,) float returns and (N,) integer origins in [first_origin, T)."""
    r = np.asarray(r, dtype=np.float64)
    if r.ndim != 1:
        raise DataError(f"returns must be one series of shape (T,), got shape {r.shape}")
    bad = np.flatnonzero(~np.isfinite(r))
    if bad.size:
        raise DataError(f"returns row {bad[0]} is not finite ({r[bad[0]]})")
    if not 0 < train_end <= len(r):
        raise ConfigError(f"train_end must be in 1..{len(r)}, got {train_end}")
    if horizon < 1:
        raise ConfigError(f"horizon must be at least 1, got {horizon}")
    rows = np.asarray(origins)
    if rows.ndim != 1 or (rows.size and not np.issubdtype(rows.dtype, np.integer)):
        raise ConfigError(f"origins must be a 1-D array of row indices, got dtype {rows.dtype}, shape {rows.shape}")
    outside = rows[(rows < first_origin) | (rows >= len(r))]
    if outside.size:
        raise ConfigError(f"origin {outside[0]} is outside {first_origin}..{len(r) - 1}")
    return r, rows.astype(np.int64)


def _steps(horizon: int) -> np.ndarray:
    """(H,) the horizons 1..H as floats."""
    return np.arange(1, horizon + 1, dtype=np.float64)


def random_walk(
    r: np.ndarray,
    train_end: int,
    origins: np.ndarray,
    horizon: int,
    levels: np.ndarray,
    window: int = VOL_WINDOW,
) -> BaselineForecast:
    """Point 0; normal quantiles of zero mean and volatility sqrt(h) * sigma_t.

    sigma_t is the sample standard deviation (ddof=1) of the ``window`` returns
    ending at t, inclusive, so origins start at ``window - 1``. Nothing is fit:
    ``train_end`` is only checked, for the common signature.
    """
    if window < 2:
        raise ConfigError(f"the volatility window needs at least 2 returns, got {window}")
    r, rows = _check_inputs(r, train_end, origins, horizon, first_origin=window - 1)
    levels = check_levels(levels)
    sigma = sliding_window_view(r, window).std(axis=1, ddof=1)[rows - (window - 1)]  # (N,)
    z = np.array([NormalDist().inv_cdf(float(level)) for level in levels])  # (Q,)
    quantiles = sigma[:, None, None] * np.sqrt(_steps(horizon))[None, :, None] * z[None, None, :]
    return BaselineForecast("random_walk", np.zeros((len(rows), horizon)), quantiles, {"window": float(window)})


def previous_return(
    r: np.ndarray, train_end: int, origins: np.ndarray, horizon: int, levels: np.ndarray
) -> BaselineForecast:
    """Persistence of the last return: point h * r[t]; no quantiles, nothing fit."""
    r, rows = _check_inputs(r, train_end, origins, horizon)
    return BaselineForecast("previous_return", r[rows, None] * _steps(horizon)[None, :], None)


@dataclass(frozen=True)
class ARFit:
    """r_t = intercept + sum_k coefficients[k-1] * r_{t-k} + noise, k = 1..p."""

    intercept: float
    coefficients: np.ndarray  # (p,) lag 1 first

    def params(self) -> dict[str, float]:
        lags = {f"phi{k}": float(c) for k, c in enumerate(self.coefficients, start=1)}
        return {"intercept": self.intercept, **lags}


def fit_ar(r_train: np.ndarray, p: int = AR_ORDER) -> ARFit:
    """Least-squares AR(p) with intercept on (T,) training returns."""
    if p < 1:
        raise ConfigError(f"the AR order must be at least 1, got {p}")
    r_train = np.asarray(r_train, dtype=np.float64)
    if len(r_train) - p <= p + 1:
        raise DataError(f"AR({p}) needs more than {2 * p + 1} training returns, got {len(r_train)}")
    n = len(r_train)
    lagged = [r_train[p - k : n - k] for k in range(1, p + 1)]  # lag k of targets r[p:]
    design = np.column_stack([np.ones(n - p), *lagged])  # (n - p, 1 + p)
    beta, *_ = np.linalg.lstsq(design, r_train[p:], rcond=None)
    return ARFit(float(beta[0]), beta[1:])


def ar_forecast(fit: ARFit, r: np.ndarray, origins: np.ndarray, horizon: int) -> np.ndarray:
    """(N, H) cumulative forecasts, the recursion iterated on its own forecasts past t."""
    p = len(fit.coefficients)
    lags = r[origins[:, None] - np.arange(p)[None, :]]  # (N, p): r_t, r_{t-1}, ..., r_{t-p+1}
    steps = []
    for _ in range(horizon):
        step = fit.intercept + lags @ fit.coefficients  # (N,)
        steps.append(step)
        lags = np.column_stack([step, lags[:, :-1]])
    return np.cumsum(np.stack(steps, axis=1), axis=1)


def linear_ar(
    r: np.ndarray,
    train_end: int,
    origins: np.ndarray,
    horizon: int,
    levels: np.ndarray,
    p: int = AR_ORDER,
) -> BaselineForecast:
    """AR(p) fit by least squares on r[:train_end]; origins start at p - 1; no quantiles."""
    r, rows = _check_inputs(r, train_end, origins, horizon, first_origin=max(p - 1, 0))
    fit = fit_ar(r[:train_end], p)
    return BaselineForecast(f"ar{p}", ar_forecast(fit, r, rows, horizon), None, fit.params())


@dataclass(frozen=True)
class GarchFit:
    """GARCH(1,1) with constant mean and standardised Student-t errors, in percent returns.

    x_t = 100 r_t = mu + eps_t, eps_t = sigma_t z_t, z_t ~ t(nu) scaled to unit variance,
    sigma2_t = omega + alpha eps_{t-1}^2 + beta sigma2_{t-1}. ``backcast`` stands for
    eps^2 and sigma2 before the first row, as arch fits it.
    """

    mu: float
    omega: float
    alpha: float
    beta: float
    nu: float
    backcast: float

    def params(self) -> dict[str, float]:
        return {"mu": self.mu, "omega": self.omega, "alpha": self.alpha, "beta": self.beta, "nu": self.nu}


def fit_garch(r_train: np.ndarray, max_iterations: int = GARCH_MAX_ITERATIONS) -> GarchFit:
    """Maximum-likelihood GARCH(1,1)-t on (T,) training returns, with the ``arch`` package.

    A fit that does not converge keeps the optimiser's last estimates (arch keeps
    them stationary: alpha + beta < 1, nu > 2) and logs a warning.
    """
    r_train = np.asarray(r_train, dtype=np.float64)
    if len(r_train) < MIN_GARCH_ROWS:
        raise DataError(f"GARCH(1,1)-t needs at least {MIN_GARCH_ROWS} training returns, got {len(r_train)}")
    model = arch_model(r_train * RETURN_SCALE, mean="Constant", vol="GARCH", p=1, q=1, dist="t")
    # show_warning=False silences arch's ConvergenceWarning only: the flag is checked
    # just below and reported through logging, with the optimiser's own message.
    result = model.fit(disp="off", show_warning=False, options={"maxiter": max_iterations})
    if result.convergence_flag != 0:
        logger.warning(
            "GARCH(1,1)-t fit did not converge (%s); keeping the last estimates",
            result.optimization_result.message,
        )
    mu, omega, alpha, beta, nu = (float(v) for v in result.params[["mu", "omega", "alpha[1]", "beta[1]", "nu"]])
    # The starting value arch fit with (a weighted mean of the first 75 squared
    # training residuals about the sample mean): the variance path below then
    # equals arch's own, and reads nothing past the training span.
    backcast = float(model.volatility.backcast(model.resids(model.starting_values())))
    return GarchFit(mu, omega, alpha, beta, nu, backcast)


def garch_variance(fit: GarchFit, r: np.ndarray) -> np.ndarray:
    """(T + 1,) conditional variances in percent^2: entry t is Var(100 r_t | r[:t]).

    Entry T is the one-step forecast after the last row; the filter reads each
    return once, in order, so entry t + 1 depends on r[0..t] only.
    """
    eps2 = (np.asarray(r, dtype=np.float64) * RETURN_SCALE - fit.mu) ** 2
    sigma2 = np.empty(len(eps2) + 1)
    sigma2[0] = fit.omega + (fit.alpha + fit.beta) * fit.backcast
    for t, e2 in enumerate(eps2):
        sigma2[t + 1] = fit.omega + fit.alpha * e2 + fit.beta * sigma2[t]
    return sigma2


def garch_quantiles(fit: GarchFit, next_variance: np.ndarray, horizon: int, levels: np.ndarray) -> np.ndarray:
    """(N, H, Q) quantiles of the cumulative log return from (N,) one-step variances.

    The k-step variance forecast follows the GARCH recursion for its expectation,
    f_k = omega + (alpha + beta) f_{k-1}; the h-step sum has mean h mu and
    variance f_1 + ... + f_h. Its quantiles are taken from the unit-variance
    Student-t with the fitted nu: the sum of t-distributed steps is not exactly t
    (it is closer to normal as h grows), an approximation that is standard practice.
    """
    variances = [next_variance]
    for _ in range(horizon - 1):
        variances.append(fit.omega + (fit.alpha + fit.beta) * variances[-1])
    total = np.cumsum(np.stack(variances, axis=1), axis=1)  # (N, H)
    z = StudentsT().ppf(check_levels(levels), np.array([fit.nu]))  # (Q,) unit-variance quantiles
    mean = fit.mu * _steps(horizon)  # (H,)
    return (mean[None, :, None] + np.sqrt(total)[:, :, None] * z[None, None, :]) / RETURN_SCALE


def garch_t(r: np.ndarray, train_end: int, origins: np.ndarray, horizon: int, levels: np.ndarray) -> BaselineForecast:
    """GARCH(1,1)-t fit on r[:train_end], then filtered through r with its parameters fixed.

    The point forecast is the median h * mu (the approximate distribution is symmetric).
    ``params`` are in percent returns, as fit.
    """
    r, rows = _check_inputs(r, train_end, origins, horizon)
    fit = fit_garch(r[:train_end])
    next_variance = garch_variance(fit, r)[rows + 1]  # (N,) Var(r_{t+1} | r[0..t]) in percent^2
    point = np.broadcast_to(fit.mu * _steps(horizon) / RETURN_SCALE, (len(rows), horizon)).copy()
    return BaselineForecast("garch_t", point, garch_quantiles(fit, next_variance, horizon, levels), fit.params())


def ewma_variance(r: np.ndarray, initial: float, decay: float = RISKMETRICS_DECAY) -> np.ndarray:
    """(T + 1,) RiskMetrics variances: entry t is the forecast of r_t^2 from r[:t], entry 0 ``initial``.

    sigma2_{t+1} = decay * sigma2_t + (1 - decay) * r_t^2 (zero mean, as RiskMetrics has it).
    """
    sigma2 = np.empty(len(r) + 1)
    sigma2[0] = initial
    for t, value in enumerate(r):
        sigma2[t + 1] = decay * sigma2[t] + (1 - decay) * value * value
    return sigma2


def _riskmetrics(
    r: np.ndarray, train_end: int, origins: np.ndarray, horizon: int, levels: np.ndarray, tails: str
) -> BaselineForecast:
    """EWMA variance (decay 0.94) started from the training span's mean square; sqrt(h) scaling to h steps.

    ``tails`` "normal": normal quantiles; "t": a Student t (degrees of freedom
    and scale) fit by maximum likelihood to the training returns over their
    EWMA volatility. Point 0, the median.
    """
    r, rows = _check_inputs(r, train_end, origins, horizon)
    levels = check_levels(levels)
    sigma2 = ewma_variance(r, float(np.mean(r[:train_end] ** 2)))
    params = {"decay": RISKMETRICS_DECAY}
    if tails == "normal":
        z = stats.norm.ppf(levels)  # (Q,)
    else:
        standardised = r[:train_end] / np.sqrt(sigma2[:train_end])
        nu, _, scale = stats.t.fit(standardised, floc=0)
        z = scale * stats.t.ppf(levels, nu)
        params |= {"nu": float(nu), "scale": float(scale)}
    sigma = np.sqrt(sigma2[rows + 1])  # (N,) one-step volatility after observing r[0..t]
    quantiles = sigma[:, None, None] * np.sqrt(_steps(horizon))[None, :, None] * z[None, None, :]
    return BaselineForecast(f"riskmetrics_{tails}", np.zeros((len(rows), horizon)), quantiles, params)


def riskmetrics_normal(
    r: np.ndarray, train_end: int, origins: np.ndarray, horizon: int, levels: np.ndarray
) -> BaselineForecast:
    """RiskMetrics EWMA volatility with normal quantiles (see ``_riskmetrics``)."""
    return _riskmetrics(r, train_end, origins, horizon, levels, "normal")


def riskmetrics_t(
    r: np.ndarray, train_end: int, origins: np.ndarray, horizon: int, levels: np.ndarray
) -> BaselineForecast:
    """RiskMetrics EWMA volatility with Student t quantiles fit on the training span (see ``_riskmetrics``)."""
    return _riskmetrics(r, train_end, origins, horizon, levels, "t")


BASELINES: dict[str, Baseline] = {
    "random_walk": random_walk,
    "previous_return": previous_return,
    "linear_ar": linear_ar,
    "garch_t": garch_t,
    "riskmetrics_normal": riskmetrics_normal,
    "riskmetrics_t": riskmetrics_t,
}
