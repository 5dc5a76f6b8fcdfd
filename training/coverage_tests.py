"""Does a band cover as often as it says, and are its misses independent? Kupiec's and Christoffersen's tests.

A 10-90% band should miss 20% of outcomes (``expected``), and a miss today
should say nothing of a miss tomorrow. For a sequence of misses (1) and hits
(0) of one-step forecasts:

- Kupiec's proportion of failures: LR_pof = -2 log(L(p) / L(x / n)), where x
  of n forecasts miss, chi-squared with 1 degree of freedom;
- Christoffersen's independence: LR_ind compares a first-order Markov chain
  of misses (pi_01, pi_11) with one probability for both, chi2(1); and
  conditional coverage LR_cc = LR_pof + LR_ind, chi2(2).

Several tickers' sequences are tested as one sample: misses are counted over
all of them, transitions inside each (never from one ticker's last day to the
next ticker's first). Misses of forecasts that overlap (h > 1) are not
independent even when the band is right: test one-step forecasts.

Kupiec (1995), J. Derivatives 3(2); Christoffersen (1998), IER 39(4).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

from latentcast.errors import DataError
from training.evaluate import SpanForecasts


@dataclass(frozen=True)
class CoverageTests:
    """Kupiec's and Christoffersen's tests of one band's misses; p-values below a level reject."""

    n: int  # forecasts
    misses: int
    expected: float  # the miss rate the band promises
    kupiec_p: float
    independence_p: float
    conditional_p: float

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def _log_likelihood(count: float, total: float, p: float) -> float:
    """log(p^count (1 - p)^(total - count)), with 0 log 0 = 0."""
    out = 0.0
    if count > 0:
        out += count * math.log(p)
    if total - count > 0:
        out += (total - count) * math.log(1 - p)
    return out


def coverage_tests(misses: Sequence[np.ndarray], expected: float) -> CoverageTests:
    """Test the miss sequences of one band (one (N,) boolean array per ticker, in date order)."""
    if not 0 < expected < 1:
        raise DataError(f"the expected miss rate must lie strictly between 0 and 1, got {expected}")
    runs = [np.asarray(m, dtype=bool) for m in misses]
    n = sum(len(m) for m in runs)
    if n < 2:
        raise DataError(f"too few forecasts for coverage tests: {n}")
    x = sum(int(m.sum()) for m in runs)
    pof = 2 * (_log_likelihood(x, n, x / n) - _log_likelihood(x, n, expected))
    # transitions n_ij from state i (yesterday) to j (today), within each ticker
    n00 = n01 = n10 = n11 = 0
    for m in runs:
        before, after = m[:-1], m[1:]
        n00 += int((~before & ~after).sum())
        n01 += int((~before & after).sum())
        n10 += int((before & ~after).sum())
        n11 += int((before & after).sum())
    pi01 = n01 / (n00 + n01) if n00 + n01 else 0.0
    pi11 = n11 / (n10 + n11) if n10 + n11 else 0.0
    pi = (n01 + n11) / (n00 + n01 + n10 + n11) if n00 + n01 + n10 + n11 else 0.0
    markov = _log_likelihood(n01, n00 + n01, pi01) + _log_likelihood(n11, n10 + n11, pi11)
    independence = max(2 * (markov - _log_likelihood(n01 + n11, n00 + n01 + n10 + n11, pi)), 0.0)
    pof = max(pof, 0.0)
    return CoverageTests(
        n=n,
        misses=x,
        expected=expected,
        kupiec_p=float(stats.chi2.sf(pof, 1)),
        independence_p=float(stats.chi2.sf(independence, 1)),
        conditional_p=float(stats.chi2.sf(pof + independence, 2)),
    )


def band_tests(runs: Sequence[Sequence[SpanForecasts]], levels: Sequence[float]) -> list[dict[str, float | int]]:
    """The tests of each run's outer band (``levels``' first to last) on its one-step forecasts, ticker by ticker."""
    expected = 1 - (levels[-1] - levels[0])
    out = []
    for run in runs:
        misses = []
        for span in run:
            if span.quantiles is None:
                raise DataError(f"{span.ticker}: a point forecast has no band to test")
            actual, band = span.actual[:, 0], span.quantiles[:, 0]  # (N,), (N, Q)
            known = np.isfinite(actual)
            misses.append(((actual < band[:, 0]) | (actual > band[:, -1]))[known])
        out.append(coverage_tests(misses, expected).to_dict())
    return out
