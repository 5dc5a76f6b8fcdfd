"""Live scores: each answered forecast scored once its outcomes arrive, computed with no I/O.

A session answers a forecast after every batch: quantiles of the cumulative log
return from the close of observation ``as_of_seq`` to that of ``as_of_seq + h``
for h = 1..H. That h-step forecast is settled by observation ``as_of_seq + h``.
The forecasts still awaiting outcomes (``Issued``) are kept in the session's
record, in the same compare-and-set as its model state, so a retried batch
(answered from its stored reply, never planned again) settles nothing twice and
a batch that overlaps what was applied settles only by its new tail.

Each settled (forecast, h) gives ``Settled`` sums for its horizon: the pinball
loss at every quantile level, whether the outcome fell inside the model's outer
band (the 10-90% band of the default levels), and the absolute error of the
median against that of the random walk (a forecast return of 0).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from data.errors import StateError

# format, horizon, levels, count of pending forecasts, length of the version's name (which follows)
_HEADER = struct.Struct("<BHHHB")
# a pending forecast: the seq of its last observation, that observation's close, and how many of its
# horizons still await an outcome (its last rows: horizons H - rows + 1..H, each Q float64 log returns)
_PENDING = struct.Struct("<qdH")
ISSUED_FORMAT = 1


@dataclass(frozen=True)
class Pending:
    """An answered forecast whose last ``len(rows) // levels`` horizons await their outcomes."""

    origin: int  # as_of_seq: the seq of the observation it was made after
    close: float  # that observation's close
    rows: tuple[float, ...]  # log-return quantiles of the remaining horizons, row after row (Q each)


@dataclass(frozen=True)
class Issued:
    """The forecasts of one model version a session answered and whose outcomes it still awaits."""

    version: str
    horizon: int
    levels: int
    pending: tuple[Pending, ...] = ()

    @property
    def newest(self) -> int | None:
        return self.pending[-1].origin if self.pending else None

    def with_forecast(self, origin: int, close: float, log_return: Sequence[Sequence[float]]) -> Issued:
        """With the forecast made after observation ``origin`` (H rows of Q log returns) awaiting its outcomes."""
        rows = tuple(value for row in log_return for value in row)
        kept = tuple(p for p in self.pending if p.origin < origin)
        return Issued(self.version, self.horizon, self.levels, (*kept, Pending(origin, close, rows)))

    def to_bytes(self) -> bytes:
        name = self.version.encode()
        parts = [_HEADER.pack(ISSUED_FORMAT, self.horizon, self.levels, len(self.pending), len(name)), name]
        for p in self.pending:
            parts.append(_PENDING.pack(p.origin, p.close, len(p.rows) // self.levels))
            parts.append(struct.pack(f"<{len(p.rows)}d", *p.rows))
        return b"".join(parts)

    @classmethod
    def from_bytes(cls, blob: bytes) -> Issued:
        """Inverse of ``to_bytes``; ``StateError`` naming what does not read."""
        if len(blob) < _HEADER.size:
            raise StateError(f"issued forecasts truncated: {len(blob)} bytes")
        fmt, horizon, levels, count, length = _HEADER.unpack_from(blob)
        if fmt != ISSUED_FORMAT or levels == 0:
            raise StateError(f"issued forecasts of format {fmt} with {levels} levels do not read")
        at = _HEADER.size + length
        version = blob[_HEADER.size : at].decode()
        pending: list[Pending] = []
        for _ in range(count):
            if at + _PENDING.size > len(blob):
                raise StateError(f"issued forecasts truncated after {len(pending)} of {count}")
            origin, close, rows = _PENDING.unpack_from(blob, at)
            at += _PENDING.size
            end = at + 8 * rows * levels
            if rows > horizon or end > len(blob):
                raise StateError(f"issued forecast {origin} holds {rows} horizons of a model of {horizon}")
            pending.append(Pending(origin, close, struct.unpack_from(f"<{rows * levels}d", blob, at)))
            at = end
        if at != len(blob):
            raise StateError(f"issued forecasts have {len(blob) - at} bytes too many")
        return cls(version, horizon, levels, tuple(pending))


@dataclass(frozen=True)
class Settled:
    """Sums over the forecasts of one horizon that one batch settled."""

    horizon: int
    count: int
    levels: tuple[float, ...]  # the model's quantile levels
    pinball: tuple[float, ...]  # per quantile level
    inside: int  # outcomes inside the outer band, bounds included
    abs_error: float  # |outcome - median|
    walk_abs_error: float  # |outcome|: the random walk forecasts a log return of 0


def settle(
    issued: Issued, first_seq: int, closes: Sequence[float], levels: tuple[float, ...]
) -> tuple[list[Settled], Issued]:
    """What the observations ``first_seq, first_seq + 1, ...`` (their ``closes``) settle, and what still awaits.

    A pending forecast's horizon h is settled by observation ``origin + h``; a forecast is dropped once its
    last horizon is. ``levels`` are the model's increasing quantile levels; its outer band is the first to
    the last, and its median the level 0.5 (which every model has).
    """
    q = len(levels)
    median = levels.index(0.5)
    horizon = issued.horizon
    sums: dict[int, list[float]] = {}
    kept = []
    last = first_seq + len(closes) - 1
    for p in issued.pending:
        remaining = len(p.rows) // q
        first_h = horizon - remaining + 1
        for h in range(max(first_h, first_seq - p.origin), min(horizon, last - p.origin) + 1):
            outcome = math.log(closes[p.origin + h - first_seq] / p.close)
            row = p.rows[(h - first_h) * q : (h - first_h + 1) * q]
            acc = sums.get(h)
            if acc is None:
                acc = sums[h] = [0.0] * (q + 4)
            acc[0] += 1
            for i, (level, value) in enumerate(zip(levels, row, strict=True)):
                error = outcome - value
                acc[1 + i] += max(level * error, (level - 1) * error)
            acc[q + 1] += row[0] <= outcome <= row[-1]
            acc[q + 2] += abs(outcome - row[median])
            acc[q + 3] += abs(outcome)
        left = min(remaining, p.origin + horizon - max(last, p.origin))
        if left > 0:
            kept.append(p if left == remaining else Pending(p.origin, p.close, p.rows[(remaining - left) * q :]))
    settled = [
        Settled(h, int(acc[0]), levels, tuple(acc[1 : q + 1]), int(acc[q + 1]), acc[q + 2], acc[q + 3])
        for h, acc in sorted(sums.items())
    ]
    return settled, Issued(issued.version, horizon, issued.levels, tuple(kept))
