"""The Diebold-Mariano test: is one forecaster's loss really lower than another's?

Given the losses of two forecasters on the same origins, ``d_t = a_t - b_t``,
the statistic is the mean of ``d`` over its standard error. Forecasts of
horizon h overlap, so ``d`` is autocorrelated up to lag h - 1 (an MA(h - 1) under the
null): the variance of the mean is the truncated (equal-weight) long-run
variance with h - 1 lags, as Diebold and Mariano wrote it,

    V = (gamma_0 + 2 * sum_{k=1}^{h-1} gamma_k) / n,

where ``gamma_k`` is the lag-k autocovariance of ``d`` (divided by n). The
Harvey-Leybourne-Newbold correction scales the statistic by
``sqrt((n + 1 - 2h + h(h - 1) / n) / n)`` and reads the p-value from a Student
t with n - 1 degrees of freedom: that factor is the bias of this estimator,
so it belongs with equal weights. Bartlett weights ``1 - k / h`` shrink the
variance of an MA(h - 1) and, under the same correction, reject a true null
about twice as often as they should at h = 5 (``tests/training/
test_significance.py`` simulates it). The equal-weight variance can come out
negative on a short or odd sample; only then is the Bartlett (Newey-West)
variance used, always positive, and the result says so (``weights``).

Rolling forecasts of several tickers are tested as one series over dates
(``origin_losses``): the loss of each origin day is the mean over the runs
and over the tickers of that day, so that correlation across tickers does
not inflate the evidence.

Diebold and Mariano (1995), JBES 13(3); Harvey, Leybourne and Newbold (1997), IJF 13(2).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
import pandas as pd
from scipy import stats

from latentcast.errors import ConfigError, DataError
from training.evaluate import SpanForecasts

SIGNIFICANCE = 0.05  # a difference is called only below this p-value
Loss = Literal["pinball", "absolute_error"]
Weights = Literal["equal", "bartlett"]
LOSSES: tuple[Loss, ...] = ("pinball", "absolute_error")


@dataclass(frozen=True)
class DieboldMariano:
    """The test of ``mean(a - b) = 0``; a negative statistic favours ``a``."""

    statistic: float
    p_value: float
    mean_difference: float  # mean of a - b
    n: int  # origins compared
    lags: int  # autocovariances in the long-run variance (h - 1)
    weights: Weights = "equal"  # "bartlett" only where the equal-weight variance was not positive

    def verdict(self, a: str, b: str, level: float = SIGNIFICANCE) -> str:
        """A plain sentence: who has the lower loss, or that no difference is significant."""
        if self.p_value >= level:
            return f"no significant difference between {a} and {b} (p = {self.p_value:.3f})"
        better, worse = (a, b) if self.mean_difference < 0 else (b, a)
        return f"{better} has a significantly lower loss than {worse} (p = {self.p_value:.3g})"

    @property
    def p_lower(self) -> float:
        """One-sided p-value of the alternative that ``a``'s loss is lower (Student t, n - 1 degrees of freedom)."""
        return float(stats.t.cdf(self.statistic, df=self.n - 1))

    @property
    def p_higher(self) -> float:
        """One-sided p-value of the alternative that ``a``'s loss is higher."""
        return float(stats.t.sf(self.statistic, df=self.n - 1))

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def diebold_mariano(a: np.ndarray, b: np.ndarray, horizon: int = 1) -> DieboldMariano:
    """DM test (equal-weight variance, HLN correction) of the losses ``a`` and ``b`` (N,) at ``horizon``.

    Origins where either loss is NaN are left out (in order: the lags are
    taken over the origins that remain).
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise DataError(f"losses must be two series of the same shape (N,), got {a.shape} and {b.shape}")
    if horizon < 1:
        raise ConfigError(f"horizon must be at least 1, got {horizon}")
    d = (a - b)[np.isfinite(a) & np.isfinite(b)]
    n = len(d)
    if n < 2 * horizon + 1:
        raise DataError(f"too few origins for a Diebold-Mariano test at horizon {horizon}: {n}")
    mean = float(d.mean())
    weights: Weights = "equal"
    statistic, variance = hln_statistic(d, horizon, weights)
    if variance <= 0 and horizon > 1:
        weights = "bartlett"
        statistic, variance = hln_statistic(d, horizon, weights)
    if variance <= 0:  # identical forecasters (or a constant difference): nothing to test
        return DieboldMariano(0.0, 1.0, mean, n, horizon - 1, weights)
    p_value = float(2 * stats.t.sf(abs(statistic), df=n - 1))
    return DieboldMariano(float(statistic), p_value, mean, n, horizon - 1, weights)


def hln_statistic(d: np.ndarray, horizon: int, weights: Weights = "equal") -> tuple[np.ndarray, np.ndarray]:
    """The HLN-corrected DM statistic of ``d`` and its long-run variance: (N,) one series, or (R, N) at once.

    Returns two arrays of shape ``d.shape[:-1]`` (0-d for one series); the
    statistic is NaN where the variance is not positive. The long-run variance
    is gamma_0 + 2 * sum_{k=1}^{h-1} w_k gamma_k, w_k = 1 (equal) or 1 - k / h (Bartlett).
    """
    n = d.shape[-1]
    mean = d.mean(axis=-1)
    centred = d - mean[..., None]
    variance = (centred * centred).sum(axis=-1) / n
    for k in range(1, horizon):
        weight = 1.0 if weights == "equal" else 1 - k / horizon
        variance = variance + 2 * weight * (centred[..., k:] * centred[..., :-k]).sum(axis=-1) / n
    correction = math.sqrt((n + 1 - 2 * horizon + horizon * (horizon - 1) / n) / n)
    with np.errstate(divide="ignore", invalid="ignore"):
        statistic = np.where(variance > 0, correction * mean / np.sqrt(np.abs(variance) / n), np.nan)
    return statistic, variance


def _losses(span: SpanForecasts, levels: np.ndarray, horizon: int, loss: Loss) -> np.ndarray:
    """(N,) ``loss`` of each origin of ``span`` at ``horizon``: of the median, or pinball averaged over levels."""
    actual = span.actual[:, horizon - 1]
    if loss == "absolute_error":
        return np.abs(actual - span.point[:, horizon - 1])
    if span.quantiles is None:
        raise ConfigError(f"{span.ticker}: a point forecast has no pinball loss")
    error = actual[:, None] - span.quantiles[:, horizon - 1]  # (N, Q)
    return np.maximum(levels * error, (levels - 1) * error).mean(axis=1)


def origin_losses(
    runs: Sequence[Sequence[SpanForecasts]], levels: Sequence[float], horizon: int, loss: Loss = "pinball"
) -> pd.Series:
    """``loss`` at ``horizon`` of each origin day: averaged over runs, then over the tickers of that day.

    ``runs``: one list of per-ticker spans per training run (one for a
    baseline); ``levels``: the quantile levels of those spans (pinball only).
    """
    if loss not in LOSSES:
        raise ConfigError(f"unknown loss {loss!r}; valid losses: {', '.join(LOSSES)}")
    levels_array = np.asarray(levels, dtype=np.float64)
    frames = [
        pd.DataFrame({"ticker": span.ticker, "date": span.dates, "loss": _losses(span, levels_array, horizon, loss)})
        for run in runs
        for span in run
    ]
    losses = pd.concat(frames).groupby(["ticker", "date"])["loss"].mean()
    return losses.groupby(level="date").mean().sort_index()


def compare_losses(
    a: Sequence[Sequence[SpanForecasts]],
    b: Sequence[Sequence[SpanForecasts]],
    levels: Sequence[float],
    horizon: int,
    loss: Loss = "pinball",
    levels_b: Sequence[float] | None = None,
) -> DieboldMariano:
    """The Diebold-Mariano test of ``a``'s ``origin_losses`` against ``b``'s, over the days both forecast.

    ``levels_b``: ``b``'s quantile levels when they are not ``levels`` (each
    forecaster's pinball loss at its own levels).
    """
    both = pd.concat(
        [
            origin_losses(a, levels, horizon, loss),
            origin_losses(b, levels if levels_b is None else levels_b, horizon, loss),
        ],
        axis=1,
        join="inner",
    )
    return diebold_mariano(both.iloc[:, 0].to_numpy(), both.iloc[:, 1].to_numpy(), horizon)
