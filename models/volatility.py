"""Volatility scaling: each stream's causal EWMA variance, and returns measured in it.

A volatility-scaled forecaster (``ModelConfig.scaling == "volatility"``)
reads a return r_t (in units of the training returns' std) as
r_t / sqrt(v_{t-1}), where v is RiskMetrics' EWMA of squared returns,

    v_t = max(decay * v_{t-1} + (1 - decay) * r_t^2, floor),

started at the training variance (1 in these units) and carried in the
stream's state. Its quantiles are learnt in units of sqrt(v_t), the
volatility after the newest return, and scaled back by it. Multiply every
return of a series by k and, once the start is forgotten, v is multiplied by
k^2 and the forecast by k: one model fits a quiet index and a wild stock.

The torch forward and the numpy step kernel both call these functions, so the
two paths do the same float32 arithmetic.
"""

from __future__ import annotations

import numpy as np

from models.config import ModelConfig

INITIAL_VARIANCE = 1.0  # the training returns' variance, in the units the scaler gives returns


def ewma_variances(returns: np.ndarray, variance: np.ndarray, config: ModelConfig) -> np.ndarray:
    """(B, T) float32 returns and the (B,) variance before them -> (B, T + 1) float32.

    Column t is the variance before return t; the last column is the variance
    after the last return (the state to carry).
    """
    batch, steps = returns.shape
    out = np.empty((batch, steps + 1), np.float32)
    out[:, 0] = variance
    decay, floor = np.float32(config.ewma_decay), np.float32(config.variance_floor)
    weighted = np.square(returns, dtype=np.float32)
    weighted *= np.float32(1.0 - config.ewma_decay)
    for t in range(steps):  # a recursion: each step needs the one before
        v = out[:, t] * decay
        v += weighted[:, t]
        np.maximum(v, floor, out=out[:, t + 1])
    return out


def standardised_returns(returns: np.ndarray, before: np.ndarray, config: ModelConfig) -> np.ndarray:
    """Returns over the volatility before them, clipped to ``±input_clip``: same shape, float32."""
    out = returns / np.sqrt(before)
    np.maximum(out, np.float32(-config.input_clip), out=out)
    return np.minimum(out, np.float32(config.input_clip), out=out)
