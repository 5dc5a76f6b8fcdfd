"""The Diebold-Mariano test: is one forecaster's loss really lower than another's?

Given the losses of two forecasters on the same origins, ``d_t = a_t - b_t``,
the statistic is the mean of ``d`` over its standard error. Forecasts of
horizon h overlap, so ``d`` is autocorrelated up to lag h - 1: the variance of
the mean is the Newey-West (HAC) long-run variance with h - 1 lags,

    V = (gamma_0 + 2 * sum_{k=1}^{h-1} (1 - k / h) * gamma_k) / n,

where ``gamma_k`` is the lag-k autocovariance of ``d`` (divided by n). The
Harvey-Leybourne-Newbold correction scales the statistic by
``sqrt((n + 1 - 2h + h(h - 1) / n) / n)`` and reads the p-value from a Student
t with n - 1 degrees of freedom, which keeps the size honest on short samples.

Diebold and Mariano (1995), JBES 13(3); Harvey, Leybourne and Newbold (1997), IJF 13(2).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

from data.errors import ConfigError, DataError

SIGNIFICANCE = 0.05  # a difference is called only below this p-value


@dataclass(frozen=True)
class DieboldMariano:
    """The test of ``mean(a - b) = 0``; a negative statistic favours ``a``."""

    statistic: float
    p_value: float
    mean_difference: float  # mean of a - b
    n: int  # origins compared
    lags: int  # autocovariances in the HAC variance (h - 1)

    def verdict(self, a: str, b: str, level: float = SIGNIFICANCE) -> str:
        """A plain sentence: who has the lower loss, or that no difference is significant."""
        if self.p_value >= level:
            return f"no significant difference between {a} and {b} (p = {self.p_value:.3f})"
        better, worse = (a, b) if self.mean_difference < 0 else (b, a)
        return f"{better} has a significantly lower loss than {worse} (p = {self.p_value:.3g})"

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def diebold_mariano(a: np.ndarray, b: np.ndarray, horizon: int = 1) -> DieboldMariano:
    """DM test (HAC variance, HLN correction) of the losses ``a`` and ``b`` (N,) at ``horizon``.

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
    centred = d - mean
    variance = float(centred @ centred) / n
    for k in range(1, horizon):
        variance += 2 * (1 - k / horizon) * float(centred[k:] @ centred[:-k]) / n
    if variance <= 0:  # identical forecasters (or a constant difference): nothing to test
        return DieboldMariano(0.0, 1.0, mean, n, horizon - 1)
    correction = math.sqrt((n + 1 - 2 * horizon + horizon * (horizon - 1) / n) / n)
    statistic = correction * mean / math.sqrt(variance / n)
    p_value = float(2 * stats.t.sf(abs(statistic), df=n - 1))
    return DieboldMariano(statistic, p_value, mean, n, horizon - 1)
