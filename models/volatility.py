"""Volatility scaling: each stream's causal EWMA variance, and returns measured in it.

A volatility-scaled forecaster (``ModelConfig.scaling == "volatility"``)
reads a return r_t (in units of the training returns' std) as
r_t / sqrt(v_{t-1}), where v is an EWMA of squared returns that knows how
much it has seen. It carries, besides v, its weight w, the count of returns
(discounted by ``decay`` per step) behind it:

    w_t = decay * w_{t-1} + 1
    v_t = max(v_{t-1} + (r_t^2 - v_{t-1}) / w_t, floor)

started at v_0 = the training variance (1 in these units) with the weight
w_0 = ``variance_prior`` of a few pseudo-returns. So v_t is the weighted mean
of the prior and of every squared return so far, return r_{t-k} weighing
decay^k: the first returns weigh like a running mean, shrunk toward the
training variance by how few they are, and as w grows to 1 / (1 - decay) the
recursion becomes RiskMetrics' EWMA, v_t = decay * v_{t-1} + (1 - decay) * r_t^2.
A session opened with five closes of a wild stock starts near its variance,
not the training one.

Its quantiles are learnt in units of sqrt(v_t), the volatility after the
newest return, and scaled back by it. Multiply every return of a series by k
and v is multiplied by k^2 (but for the prior's share) and the forecast by k:
one model fits a quiet index and a wild stock.

With ``variance_source == "parkinson"`` (bars with a high and a low, the
``range`` feature second) the recursion reads, in place of r_t^2, Parkinson's
estimate of the day's variance from its range, (log(high_t / low_t))^2 /
(4 ln 2): for a driftless random walk it has the same mean as r_t^2 and about
a fifth of its variance, so the EWMA tracks the volatility with less noise.
The range enters the network like the return, over the volatility before it.

With ``variance_source == "range_or_returns"`` the range of a day whose high
and low were not sent is NaN, and the recursion reads, day by day, Parkinson's
variance times ``range_ratio`` where the range was sent and r_t^2 where not
(``day_squares``). Parkinson's range misses the move from one close to the
next open and reads low; the ratio, the training span's mean squared return
over its mean Parkinson variance (``range_ratio``), puts both on one scale.
The network reads the range over the volatility where sent, 0 where not, and
a derived column, 1 where the range was sent, 0 where not (``range_inputs``).

With ``variance_scales`` (decays d_k, e.g. about a day, a week and a month)
the stream carries one more (variance, weight) pair per scale, each the same
recursion of the same day's squared move with decay d_k and the same prior
(``scaled_variances``), and the network reads 0.5 * log(v_k / v) before each
day (``scale_columns``): each scale's volatility over the main one, which a
series multiplied by k reads the same.

The torch forward and the numpy step kernel both call these functions, so the
two paths do the same float32 arithmetic.
"""

from __future__ import annotations

import numpy as np

from latentcast.errors import DataError
from models.config import ModelConfig

INITIAL_VARIANCE = 1.0  # the training returns' variance, in the units the scaler gives returns
PARKINSON = np.float32(1.0 / (4.0 * np.log(2.0)))  # Parkinson (1980): E[(log high/low)^2] = 4 ln 2 sigma^2


def steady_weight(config: ModelConfig) -> float:
    """The weight w of a stream that has seen many returns: 1 / (1 - decay)."""
    return 1.0 / (1.0 - config.ewma_decay)


def initial_volatility(batch: int, config: ModelConfig) -> np.ndarray:
    """(B, 2 + 2S) float32: the (variance, weight) of fresh streams, then those of each of S variance scales."""
    out = np.empty((batch, 2 + 2 * len(config.variance_scales)), np.float32)
    out[:, 0::2], out[:, 1::2] = INITIAL_VARIANCE, config.variance_prior
    return out


def day_squares(returns: np.ndarray, ranges: np.ndarray | None, config: ModelConfig) -> np.ndarray:
    """The day's squared move each variance reads: (B, T) float32 from (B, T) returns and ranges (NaN: not sent)."""
    if config.variance_source == "returns":
        return np.square(returns, dtype=np.float32)
    assert ranges is not None, f"a {config.variance_source} variance reads each day's range"
    squares = np.square(ranges, dtype=np.float32)
    if config.variance_source == "parkinson":
        squares *= PARKINSON
        return squares
    squares *= PARKINSON * np.float32(config.range_ratio)
    sent = ~np.isnan(ranges)
    return np.where(sent, squares, np.square(returns, dtype=np.float32))


def range_ratio(returns: np.ndarray, ranges: np.ndarray) -> float:
    """Mean squared return over mean Parkinson variance, on the days with a range (float64 arrays, NaN: none).

    ``DataError`` when no day has both a return and a range: the ratio is then unknown.
    """
    both = ~np.isnan(ranges) & ~np.isnan(returns)
    if not both.any() or not np.any(ranges[both]):
        raise DataError("a range_or_returns variance needs training days with a high and a low of positive range")
    return float(np.mean(np.square(returns[both])) / (np.mean(np.square(ranges[both])) * float(PARKINSON)))


def range_inputs(ranges: np.ndarray, before: np.ndarray, config: ModelConfig) -> tuple[np.ndarray, list[np.ndarray]]:
    """The range column the network reads, over the volatility ``before`` it, and the columns derived from it.

    With ``range_or_returns``: 0 where the range was not sent (NaN), and one
    derived column, 1.0 where it was sent, 0.0 where not. Float32, the shape of ``ranges``.
    """
    if not config.ranges_optional:
        return standardised_returns(ranges, before, config), []
    sent = ~np.isnan(ranges)
    scaled = standardised_returns(np.where(sent, ranges, np.float32(0.0)), before, config)
    return scaled, [sent.astype(np.float32)]


def ewma_variances(
    returns: np.ndarray,
    variance: np.ndarray,
    weight: np.ndarray,
    config: ModelConfig,
    ranges: np.ndarray | None = None,
    decay: float | np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(B, T) float32 returns, the (B,) variance and weight before them -> two (B, T + 1) float32 arrays.

    Column t of each is the variance (weight) before day t; the last column
    is that after the last day (the state to carry). ``ranges``: (B, T)
    log(high / low) in the returns' units, read in place of the squared
    returns as Parkinson's variance (``day_squares``); required by the
    sources that read the range, else ignored. ``decay``: that of a variance scale, or
    (B,) one per row, in place of ``config.ewma_decay``.
    """
    squares = day_squares(returns, ranges, config)
    batch, steps = squares.shape
    out = np.empty((batch, steps + 1), np.float32)
    weights = np.empty((batch, steps + 1), np.float32)
    out[:, 0], weights[:, 0] = variance, weight
    rate = np.float32(config.ewma_decay) if decay is None else np.asarray(decay, np.float32)
    floor = np.float32(config.variance_floor)
    for t in range(steps):  # a recursion: each step needs the one before
        w = weights[:, t + 1]
        np.multiply(weights[:, t], rate, out=w)
        w += np.float32(1.0)
        v = squares[:, t] - out[:, t]
        v /= w
        v += out[:, t]
        np.maximum(v, floor, out=out[:, t + 1])
    return out, weights


def standardised_returns(returns: np.ndarray, before: np.ndarray, config: ModelConfig) -> np.ndarray:
    """Returns (or ranges) over the volatility before them, clipped to ``±input_clip``: same shape, float32."""
    out = returns / np.sqrt(before)
    np.maximum(out, np.float32(-config.input_clip), out=out)
    return np.minimum(out, np.float32(config.input_clip), out=out)


def scaled_variances(
    returns: np.ndarray, volatility: np.ndarray, config: ModelConfig, ranges: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The main variance and those of ``config.variance_scales`` over (B, T) returns (and ranges).

    ``volatility``: (B, 2 + 2S) the (variance, weight) pairs before them, the
    main one first, as carried in the state. Returns every variance before
    each day and after the last, (B, T + 1, 1 + S), the main one first, and
    the (B, 2 + 2S) pairs after the last day. One ``ewma_variances`` call
    runs them all: each stream's moves repeated once per scale, each copy with
    its scale's decay.
    """
    batch, steps = returns.shape
    n = 1 + len(config.variance_scales)
    decays = np.tile(np.array((config.ewma_decay, *config.variance_scales), np.float32), batch)  # (B * n,)
    copies = np.repeat(returns, n, axis=0)
    ranges = None if ranges is None else np.repeat(ranges, n, axis=0)
    pairs = volatility.reshape(batch * n, 2)
    variances, weights = ewma_variances(copies, pairs[:, 0], pairs[:, 1], config, ranges, decays)
    after = np.stack([variances[:, -1], weights[:, -1]], axis=1).reshape(batch, 2 * n)
    return variances.reshape(batch, n, steps + 1).transpose(0, 2, 1), after


def scale_columns(variances: np.ndarray, config: ModelConfig) -> np.ndarray:
    """(B, T + 1, 1 + S) variances from ``scaled_variances`` -> (B, T, S) float32 network inputs.

    Column k at day t: 0.5 * log(v_k / v), the log ratio of scale k's
    volatility to the main one before day t, clipped to ``±input_clip``.
    Multiply every return by c and both variances by c^2 (but for the prior's
    share): the inputs do not change.
    """
    before = variances[:, :-1]
    out = np.log(before[..., 1:] / before[..., :1])
    out *= np.float32(0.5)
    np.maximum(out, np.float32(-config.input_clip), out=out)
    return np.minimum(out, np.float32(config.input_clip), out=out)
