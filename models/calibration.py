"""Quantile offsets that calibrate a forecaster's intervals, and their adaptive update.

An offset is per horizon and quantile, in units of the forecast's own
half-width w = (q_highest - q_lowest) / 2 at that horizon: a calibrated
quantile is q + offset * w. Measured in the forecast's own width, offsets
carry over between quiet and wild assets and between horizons, and a
zero offset is the model's forecast as it is.

- Split-conformal offsets (``training/conformal.py``) are fit once on the
  validation span and saved with the checkpoint.
- Adaptive offsets (Gibbs and Candes, 2021) move with a session: when a price
  reveals the outcome y of an earlier forecast q of level tau at horizon h,
  the offset takes one step of online gradient descent on the pinball loss,

      offset += (rate / h) * (tau - 1{y < q}),

  the adaptive conformal update written on the offset itself: a quantile
  exceeded more often than 1 - tau rises, one exceeded less often falls, and
  over any stretch of n outcomes the share below q stays within a bound that
  shrinks as h / (rate * n) of tau. The step shrinks with h because an
  h-step outcome arrives h observations after its forecast: h steps are
  taken before the first of them shows in an outcome, and a full step at
  every horizon would overshoot and swing the long horizons' bands.
  A session's first outcomes take larger steps, ``first_rate / n`` for the
  n-th outcome of horizon h (over h), until that falls to ``rate``: a young
  session's offsets move as a running estimate does, then as the steady
  update (``AdaptiveConfig``).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from latentcast.errors import StateError

ADAPTIVE_FORMAT = 2
COUNTED_FORMAT = 2  # the outcomes seen per horizon (H u32) follow the offsets; format 1 has none
# format, horizons, quantiles, pending forecasts; then the offsets, the outcome counts, each pending forecast
_ADAPTIVE_HEADER = struct.Struct("<BHHH")
MAX_COUNT = 2**32 - 1  # an outcome count as stored (u32); also what a count of None is written as
_PENDING = struct.Struct("<Qd")  # origin seq and its close; the issued (H, Q) log returns follow


@dataclass(frozen=True)
class AdaptiveConfig:
    """How fast a session's adaptive offsets move: ``step / h`` half-widths per outcome at horizon h, at most.

    The step of the n-th outcome of a horizon is ``max(rate, first_rate / n)``.
    """

    rate: float = 0.05
    first_rate: float = 0.1


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
    """(H, Q) offsets after one outcome: ``issued`` (Q,) was the forecast of horizon ``horizon`` (1-based).

    The step is ``rate / horizon`` (module docstring: the outcome comes ``horizon`` observations late)."""
    out = offsets.copy()
    below = (outcome < issued).astype(offsets.dtype)  # (Q,)
    out[horizon - 1] += rate / horizon * (levels - below)
    return out


@dataclass(frozen=True)
class YoungOffsets:
    """Split-conformal offsets of young streams, by how many returns a stream has read.

    A stream that has read few returns forecasts from a variance estimated on
    them and a state that has seen little: its quantiles are not those of a
    warmed stream. ``offsets[i]`` (H, Q) are the split-conformal offsets of the
    forecasts made after ``returns_seen[i]`` to ``returns_seen[i + 1] - 1``
    returns (fit on sessions opened in the validation span,
    ``training/conformal.py``); from ``returns_seen[-1]`` returns on, the
    model's own offsets apply.
    """

    returns_seen: tuple[int, ...]  # (A + 1,) increasing bucket edges
    offsets: np.ndarray  # (A, H, Q)

    def __post_init__(self) -> None:
        edges = self.returns_seen
        if len(edges) != len(self.offsets) + 1 or list(edges) != sorted(set(edges)) or edges[0] < 1:
            raise StateError(f"young offsets need {len(self.offsets) + 1} increasing edges from 1, got {list(edges)}")

    def at(self, seen: int | np.ndarray, steady: np.ndarray) -> np.ndarray:
        """(H, Q), or (B, H, Q) for (B,) counts: the offsets of a forecast after ``seen`` returns."""
        table = np.concatenate([self.offsets, steady[None]])  # (A + 1, H, Q)
        bucket = np.searchsorted(self.returns_seen, seen, side="right") - 1
        return table[np.clip(bucket, 0, len(self.offsets))]

    def to_dict(self) -> dict[str, list[Any]]:
        return {"returns_seen": list(self.returns_seen), "offsets": self.offsets.tolist()}


@dataclass(frozen=True)
class Pending:
    """A forecast issued after observation ``origin`` (close ``close``), whose outcomes are still to come."""

    origin: int
    close: float
    log_return: np.ndarray  # (H, Q) as issued, offsets included


@dataclass(frozen=True)
class AdaptiveOffsets:
    """A session's adaptive offsets (H, Q) and the forecasts whose outcomes it still awaits."""

    offsets: np.ndarray
    pending: tuple[Pending, ...] = ()
    # outcomes seen per horizon; None (offsets stored before they were counted): past the first ones
    outcomes: tuple[int, ...] | None = None

    @classmethod
    def zeros(cls, horizon: int, levels: int) -> AdaptiveOffsets:
        return cls(np.zeros((horizon, levels)), (), (0,) * horizon)

    def observe(
        self, first_seq: int, closes: Sequence[float], levels: np.ndarray, rate: float, first_rate: float = 0.0
    ) -> AdaptiveOffsets:
        """The offsets after the outcomes that ``closes`` (seq ``first_seq`` on) reveal, in the order they come.

        The n-th outcome of a horizon steps ``max(rate, first_rate / n)`` (module
        doc). A pending forecast is dropped once its last horizon has its outcome.
        """
        offsets = self.offsets
        horizon = len(offsets)
        seen = None if self.outcomes is None else list(self.outcomes)
        for i, close in enumerate(closes):
            seq = first_seq + i
            for p in self.pending:
                h = seq - p.origin
                if 1 <= h <= horizon:
                    step = rate
                    if seen is not None:
                        seen[h - 1] = min(seen[h - 1] + 1, MAX_COUNT)
                        step = max(rate, first_rate / seen[h - 1])
                    outcome = math.log(close / p.close)
                    offsets = adaptive_step(offsets, p.log_return[h - 1], outcome, h, levels, step)
        last = first_seq + len(closes) - 1
        kept = tuple(p for p in self.pending if p.origin + horizon > last)
        return AdaptiveOffsets(offsets, kept, None if seen is None else tuple(seen))

    def issue(self, origin: int, close: float, log_return: np.ndarray) -> AdaptiveOffsets:
        """With the forecast issued after observation ``origin`` awaiting its outcomes."""
        horizon = len(self.offsets)
        kept = tuple(p for p in self.pending if p.origin + horizon > origin and p.origin != origin)
        issued = Pending(origin, close, np.asarray(log_return, np.float64))
        return AdaptiveOffsets(self.offsets, (*kept, issued), self.outcomes)

    def to_bytes(self) -> bytes:
        horizon, levels = self.offsets.shape
        parts = [_ADAPTIVE_HEADER.pack(ADAPTIVE_FORMAT, horizon, levels, len(self.pending))]
        parts.append(self.offsets.astype("<f8").tobytes())
        parts.append(np.array(self.outcomes or (MAX_COUNT,) * horizon, "<u4").tobytes())
        for p in self.pending:
            parts += [_PENDING.pack(p.origin, p.close), p.log_return.astype("<f8").tobytes()]
        return b"".join(parts)

    @classmethod
    def from_bytes(cls, blob: bytes, horizon: int, levels: int) -> AdaptiveOffsets:
        """Inverse of ``to_bytes``; ``StateError`` if the bytes are not offsets of (horizon, levels)."""
        if len(blob) < _ADAPTIVE_HEADER.size:
            raise StateError("adaptive offsets truncated")
        version, h, q, count = _ADAPTIVE_HEADER.unpack_from(blob)
        if version not in (1, COUNTED_FORMAT) or (h, q) != (horizon, levels):
            raise StateError(
                f"adaptive offsets of format {version}, {h} x {q}, do not fit a {horizon} x {levels} model"
            )
        size, counts = 8 * h * q, 4 * h if version == COUNTED_FORMAT else 0
        if len(blob) != _ADAPTIVE_HEADER.size + size + counts + count * (_PENDING.size + size):
            raise StateError(f"adaptive offsets have {len(blob)} bytes, which do not fit {count} pending forecasts")
        at = _ADAPTIVE_HEADER.size
        offsets = np.ndarray((h, q), "<f8", blob, at).copy()
        at += size
        outcomes = None  # format 1: counted as past the first outcomes
        if counts:
            seen = tuple(int(n) for n in np.ndarray((h,), "<u4", blob, at))
            outcomes = None if all(n == MAX_COUNT for n in seen) else seen
            at += counts
        pending = []
        for _ in range(count):
            origin, close = _PENDING.unpack_from(blob, at)
            at += _PENDING.size
            pending.append(Pending(origin, close, np.ndarray((h, q), "<f8", blob, at).copy()))
            at += size
        return cls(offsets, tuple(pending), outcomes)
