"""Quantile offsets that calibrate a forecaster's intervals, and their adaptive update.

An offset is per horizon and quantile, in units of the forecast's own
half-width w = (q_highest - q_lowest) / 2 at that horizon: a calibrated
quantile is q + offset * w. Measured in the forecast's own width, offsets
carry over between quiet and wild assets and between horizons, and a
zero offset is the model's forecast as it is.

- Split-conformal offsets (``training/conformal.py``) are fit once on the
  validation span and saved with the checkpoint.
- Adaptive offsets (Gibbs and Candes, 2021) move with a session: when a price
  reveals the outcome y of an earlier forecast q of level tau, the offset
  takes one step of online gradient descent on the pinball loss,

      offset += rate * (tau - 1{y < q}),

  the adaptive conformal update written on the offset itself: a quantile
  exceeded more often than 1 - tau rises, one exceeded less often falls, and
  over any stretch of n outcomes the share below q stays within a bound that
  shrinks as 1 / (rate * n) of tau.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class AdaptiveConfig:
    """How fast a session's adaptive offsets move: ``rate`` half-widths per outcome, at most."""

    rate: float = 0.05


def half_width(quantiles: np.ndarray) -> np.ndarray:
    """(..., H, Q) increasing quantiles -> (..., H, 1): half the distance from the lowest to the highest."""
    return (quantiles[..., -1:] - quantiles[..., :1]) / 2


def apply_offsets(quantiles: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """(..., H, Q) quantiles moved by (H, Q) offsets in half-widths, sorted again along Q."""
    moved = quantiles + offsets * half_width(quantiles)
    moved.sort(axis=-1)  # offsets of neighbouring levels may cross: quantiles must not
    return moved


def adaptive_step(
    offsets: np.ndarray, issued: np.ndarray, outcome: float, horizon: int, levels: np.ndarray, rate: float
) -> np.ndarray:
    """(H, Q) offsets after one outcome: ``issued`` (Q,) was the forecast of horizon ``horizon`` (1-based)."""
    out = offsets.copy()
    below = (outcome < issued).astype(offsets.dtype)  # (Q,)
    out[horizon - 1] += rate * (levels - below)
    return out
