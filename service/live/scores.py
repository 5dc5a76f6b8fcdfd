"""Live scores: each answered forecast scored once its outcomes arrive, computed with no I/O.

A session answers a forecast after every batch: quantiles of the cumulative log
return from the close of observation ``as_of_seq`` to that of ``as_of_seq + h``
for h = 1..H. That h-step forecast is settled by observation ``as_of_seq + h``.
The forecasts still awaiting outcomes (``Issued``) are kept in the session's
record, in the same compare-and-set as its model state, so a retried batch
(answered from its stored reply, never planned again) settles nothing twice and
a batch that overlaps what was applied settles only by its new tail.

Each settled (forecast, h) adds to ``Settled`` sums for its horizon: the pinball
loss at every quantile level, whether the outcome fell inside the model's outer
band (the 10-90% band of the default levels), and the absolute error of the
median against that of the random walk (a forecast return of 0).

An append settles one horizon of each of up to H forecasts, so this runs at
every append: it reads the forecasts by one ``struct`` call and keeps those
still open as the bytes they were read from, not as an object per forecast.
"""

from __future__ import annotations

import functools
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from latentcast.errors import StateError

# format, horizon, levels, length of the version's name (which follows); then float64 values: each pending
# forecast as the seq of its last observation (its origin), that observation's close, how many of its
# horizons still await an outcome (its last ones), and their log-return quantiles, Q per horizon
_HEADER = struct.Struct("<BHHH")
ISSUED_FORMAT = 2
_ENTRY = 3  # origin, close, horizons left
_ENTRY_VALUES = struct.Struct("<3d")
_ONE = struct.Struct("<d")


@dataclass(frozen=True)
class Pending:
    """An answered forecast whose last ``len(rows) // levels`` horizons await their outcomes."""

    origin: int  # as_of_seq: the seq of the observation it was made after
    close: float  # that observation's close
    rows: tuple[float, ...]  # log-return quantiles of the remaining horizons, row after row (Q each)


@dataclass(frozen=True)
class Issued:
    """The forecasts of one model version a session answered and whose outcomes it still awaits.

    ``body``: each pending forecast, oldest first, as origin, close, horizons left, then their quantiles,
    packed as float64 the way ``to_bytes`` stores them (``values`` reads them): ``settle`` keeps the
    forecasts still open as their bytes, rewriting only the entry of one it settles some horizon of.
    """

    version: str
    horizon: int
    levels: int
    body: bytes = b""

    @property
    def values(self) -> Sequence[float]:
        return memoryview(self.body).cast("d")

    @property
    def pending(self) -> tuple[Pending, ...]:
        out, at, values = [], 0, self.values
        while at < len(values):
            end = at + _ENTRY + int(values[at + 2]) * self.levels
            out.append(Pending(int(values[at]), values[at + 1], tuple(values[at + _ENTRY : end])))
            at = end
        return tuple(out)

    @property
    def newest(self) -> int | None:
        """The origin of the newest pending forecast (the last one's: it has every horizon left); None if
        there is none (or too few values for one: ``settle`` says what does not read)."""
        at = len(self.body) - (self.horizon * self.levels + _ENTRY) * 8
        return int(_ONE.unpack_from(self.body, at)[0]) if at >= 0 else None

    def with_forecast(self, origin: int, close: float, log_return: Sequence[Sequence[float]]) -> Issued:
        """With the forecast made after observation ``origin`` (H rows of Q log returns) awaiting its outcomes,
        in place of any kept of that origin or later."""
        kept = self.body
        newest = self.newest
        if newest is not None and newest >= origin:
            kept = b"".join(_pack(p, self.levels) for p in self.pending if p.origin < origin)
        values = [origin, close, self.horizon]
        for row in log_return:
            values += row
        return Issued(self.version, self.horizon, self.levels, kept + _doubles(len(values)).pack(*values))

    def to_bytes(self) -> bytes:
        return _header(self.version, self.horizon, self.levels) + self.body

    @classmethod
    def of(cls, blob: bytes, version: str, horizon: int, levels: int) -> Issued | None:
        """The forecasts ``blob`` holds (``to_bytes``) if they are of ``version``, ``horizon`` and ``levels``;
        None if they are another's or do not read. ``settle`` checks each forecast's length as it reads it."""
        header = _header(version, horizon, levels)
        if blob.startswith(header) and (len(blob) - len(header)) % 8 == 0:
            return cls(version, horizon, levels, blob[len(header) :])
        return None

    @classmethod
    def from_bytes(cls, blob: bytes) -> Issued:
        """Inverse of ``to_bytes``; ``StateError`` naming what does not read (``settle`` checks each forecast's
        length as it reads it)."""
        if len(blob) < _HEADER.size:
            raise StateError(f"issued forecasts truncated: {len(blob)} bytes")
        fmt, horizon, levels, length = _HEADER.unpack_from(blob)
        at = _HEADER.size + length
        if fmt != ISSUED_FORMAT or levels == 0 or (len(blob) - at) % 8:
            raise StateError(f"issued forecasts of format {fmt}, {levels} levels and {len(blob)} bytes do not read")
        # a name that does not read is no version's: the forecasts are then dropped as another version's
        return cls(blob[_HEADER.size : at].decode(errors="replace"), horizon, levels, blob[at:])


# where a horizon's sums stand in its row of ``Settled.sums``: the count, then the pinball sum of each level,
# then these; a row is Q + 4 values
COUNT, INSIDE, ABS_ERROR, WALK_ABS_ERROR = 0, -3, -2, -1


@dataclass(frozen=True)
class Settled:
    """Sums over the forecasts that one batch settled: a row of ``sums`` for each horizon 1..H, holding the
    count, the pinball loss summed at each level, the outcomes inside the outer band (bounds included), the
    median's absolute errors summed, and the random walk's (``|outcome|``: it forecasts a log return of 0).
    One flat list, rows one after the other: a store adds it to its own in one loop."""

    levels: tuple[float, ...]  # the model's quantile levels
    sums: list[float]  # H rows of Q + 4
    count: int  # forecast horizons settled, all rows together

    @classmethod
    def from_rows(cls, levels: tuple[float, ...], horizon: int, rows: dict[int, list[float]]) -> Settled:
        """Rows by horizon (the others zero)."""
        width = len(levels) + 4
        sums = [0.0] * (horizon * width)
        for h, row in rows.items():
            sums[(h - 1) * width : h * width] = row
        return cls(levels, sums, int(sum(row[COUNT] for row in rows.values())))

    def by_horizon(self) -> dict[int, list[float]]:
        """The rows of the horizons that settled some forecast."""
        width = len(self.levels) + 4
        rows = (self.sums[at : at + width] for at in range(0, len(self.sums), width))
        return {h: row for h, row in enumerate(rows, 1) if row[COUNT]}

    def pinball(self, horizon: int) -> list[float]:
        return self.by_horizon()[horizon][1:INSIDE]


def settle(
    issued: Issued, first_seq: int, closes: Sequence[float], levels: tuple[float, ...]
) -> tuple[Settled, Issued]:
    """What the observations ``first_seq, first_seq + 1, ...`` (their ``closes``) settle, and what still awaits.

    A pending forecast's horizon h is settled by observation ``origin + h``; a forecast is dropped once its
    last horizon is. ``levels`` are the model's increasing quantile levels; its outer band is the first to
    the last, and its median the level 0.5 (which every model has).
    """
    q, median = len(levels), _median(levels)
    horizon, body = issued.horizon, issued.body
    values = _doubles(len(body) // 8).unpack(body)  # one call: then each value is read where it is
    log = math.log
    width = q + 4
    sums = [0.0] * (horizon * width)
    count = 0
    kept: list[bytes] = []  # the forecasts still open, as packed: a settled one's header changes, not its rows
    last = first_seq + len(closes) - 1
    at, end = 0, len(values)
    # plain comparisons and one list of sums, not min, max and lists per forecast: this runs for each of H
    # forecasts at every append
    while at < end:
        start = at
        origin, close, remaining = int(values[at]), values[at + 1], int(values[at + 2])
        rows_at = at + _ENTRY
        at = rows_at + remaining * q
        if remaining <= 0 or remaining > horizon or at > end:
            raise StateError(
                f"issued forecasts do not read: {remaining} horizons left of a model of {horizon}, in {end} values"
            )
        first_h = horizon - remaining + 1
        h = first_seq - origin  # the first horizon of this forecast that the closes settle
        if h < first_h:
            h = first_h
        stop = last - origin
        if stop > horizon:
            stop = horizon
        while h <= stop:
            outcome = log(closes[origin + h - first_seq] / close)
            row_at = rows_at + (h - first_h) * q
            i = (h - 1) * width
            sums[i] += 1.0
            # the pinball loss at each level: max(level * e, (level - 1) * e) for e = outcome - quantile
            for k in range(q):
                e = outcome - values[row_at + k]
                i += 1
                sums[i] += levels[k] * e if e >= 0 else (levels[k] - 1.0) * e
            if values[row_at] <= outcome <= values[row_at + q - 1]:
                sums[i + 1] += 1.0
            sums[i + 2] += abs(outcome - values[row_at + median])
            sums[i + 3] += abs(outcome)
            count += 1
            h += 1
        left = origin + horizon - last  # the horizons still open after the last close (origin < first_seq)
        if left >= remaining:
            kept.append(body[start * 8 : at * 8])
        elif left > 0:
            kept += (_ENTRY_VALUES.pack(origin, close, left), body[(at - left * q) * 8 : at * 8])
    return Settled(levels, sums, count), Issued(issued.version, horizon, issued.levels, b"".join(kept))


def _pack(p: Pending, levels: int) -> bytes:
    return _doubles(_ENTRY + len(p.rows)).pack(p.origin, p.close, len(p.rows) // levels, *p.rows)


@functools.cache
def _doubles(count: int) -> struct.Struct:
    return struct.Struct(f"<{count}d")


@functools.lru_cache(maxsize=64)
def _header(version: str, horizon: int, levels: int) -> bytes:
    """What ``to_bytes`` writes before the values: the format, shape and version's name (once per model)."""
    name = version.encode()
    return _HEADER.pack(ISSUED_FORMAT, horizon, levels, len(name)) + name


@functools.cache
def _median(levels: tuple[float, ...]) -> int:
    return levels.index(0.5)
