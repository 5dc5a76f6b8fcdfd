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
every append. The forecasts are kept as packed values, each of one width (all
its H rows, settled ones too), so that a forecast is read where it lies and
dropped, once its last horizon settles, by cutting the bytes before the next.
"""

from __future__ import annotations

import functools
import math
import struct
import sys
from array import array
from collections.abc import Sequence
from dataclasses import dataclass

from latentcast.errors import StateError

# format, horizon, levels, length of the version's name (which follows); then float64 values: each forecast
# as the seq of its last observation (its origin), that observation's close, and its log-return quantiles,
# Q per horizon for horizons 1..H
_HEADER = struct.Struct("<BHHH")
ISSUED_FORMAT = 3
_ENTRY = 2  # origin, close
_ONE = struct.Struct("<d")


@dataclass(frozen=True)
class Pending:
    """An answered forecast some of whose horizons await their outcomes: those settled by observations from
    the session's next on."""

    origin: int  # as_of_seq: the seq of the observation it was made after
    close: float  # that observation's close
    rows: tuple[float, ...]  # log-return quantiles of horizons 1..H, row after row (Q each)


@dataclass(frozen=True)
class Issued:
    """The forecasts of one model version a session answered and some of whose outcomes it still awaits.

    ``body``: each forecast, oldest first, as origin, close, then its quantiles, packed as float64 the way
    ``to_bytes`` stores them (``values`` reads them), each ``_ENTRY + H * Q`` values wide. A forecast is
    kept until the observation that settles its last horizon arrives: ``settle`` then cuts it off the front.
    """

    version: str
    horizon: int
    levels: int
    body: bytes = b""

    @property
    def values(self) -> Sequence[float]:
        return _values(self.body)

    @property
    def pending(self) -> tuple[Pending, ...]:
        values, width = self.values, _width(self.horizon, self.levels)
        return tuple(
            Pending(int(values[at]), values[at + 1], tuple(values[at + _ENTRY : at + width]))
            for at in range(0, len(values) - width + 1, width)
        )

    @property
    def newest(self) -> int | None:
        """The origin of the newest forecast (the last one's); None if there is none (or too few values for
        one: ``settle`` says what does not read)."""
        at = len(self.body) - _width(self.horizon, self.levels) * 8
        return int(_ONE.unpack_from(self.body, at)[0]) if at >= 0 else None

    def with_forecast(self, origin: int, close: float, log_return: Sequence[Sequence[float]]) -> Issued:
        """With the forecast made after observation ``origin`` (H rows of Q log returns) awaiting its outcomes,
        in place of any kept of that origin or later."""
        kept = self.body
        newest = self.newest
        if newest is not None and newest >= origin:
            kept = b"".join(_pack(p) for p in self.pending if p.origin < origin)
        return Issued(self.version, self.horizon, self.levels, kept + _entry(origin, close, log_return))

    def to_bytes(self) -> bytes:
        return _header(self.version, self.horizon, self.levels) + self.body

    @classmethod
    def of(cls, blob: bytes, version: str, horizon: int, levels: int) -> Issued | None:
        """The forecasts ``blob`` holds (``to_bytes``) if they are of ``version``, ``horizon`` and ``levels``;
        None if they are another's or do not read (no whole number of forecasts)."""
        header = _header(version, horizon, levels)
        if blob.startswith(header) and (len(blob) - len(header)) % (_width(horizon, levels) * 8) == 0:
            return cls(version, horizon, levels, blob[len(header) :])
        return None

    @classmethod
    def from_bytes(cls, blob: bytes) -> Issued:
        """Inverse of ``to_bytes``; ``StateError`` naming what does not read."""
        if len(blob) < _HEADER.size:
            raise StateError(f"issued forecasts truncated: {len(blob)} bytes")
        fmt, horizon, levels, length = _HEADER.unpack_from(blob)
        at = _HEADER.size + length
        if fmt != ISSUED_FORMAT or levels == 0 or (len(blob) - at) % (_width(horizon, levels) * 8):
            raise StateError(
                f"issued forecasts of format {fmt}, horizon {horizon}, {levels} levels and {len(blob)} bytes"
                " do not read"
            )
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

    A forecast's horizon h is settled by observation ``origin + h``; a forecast is dropped once its last
    horizon is. ``first_seq`` is the session's next observation: horizons settled by earlier ones were
    settled before. ``levels`` are the model's increasing quantile levels; its outer band is the first to
    the last, and its median the level 0.5 (which every model has).
    """
    settled, kept = settle_body(issued.body, issued.horizon, first_seq, closes, levels)
    return settled, Issued(issued.version, issued.horizon, issued.levels, kept)


def settle_stored(
    blob: bytes,
    version: str,
    horizon: int,
    first_seq: int,
    closes: Sequence[float],
    levels: tuple[float, ...],
    forecast: tuple[int, float, Sequence[Sequence[float]]] | None,
) -> tuple[Settled, bytes] | None:
    """``settle``, then ``with_forecast`` of ``forecast`` (origin, close, H rows of Q log returns), on a record's
    stored forecasts (``Issued.to_bytes``) in one pass, as stored again; None unless they are of ``version``
    and its shape and the newest is of the observation before ``first_seq``, as an append finds them when
    the session's previous append was scored: the caller then reads them as ``Issued``."""
    header = _header(version, horizon, len(levels))
    width = _width(horizon, len(levels)) * 8
    newest_at = len(blob) - width
    if (
        not blob.startswith(header)
        or newest_at < len(header)
        or (len(blob) - len(header)) % width
        or _ONE.unpack_from(blob, newest_at)[0] != first_seq - 1
    ):
        return None
    settled, kept = settle_body(blob[len(header) :], horizon, first_seq, closes, levels)
    if forecast is None:
        return settled, header + kept
    origin, close, log_return = forecast
    if origin < first_seq:  # it would replace a kept forecast: ``with_forecast`` does that
        return None
    return settled, header + kept + _entry(origin, close, log_return)


def settle_body(
    body: bytes, horizon: int, first_seq: int, closes: Sequence[float], levels: tuple[float, ...]
) -> tuple[Settled, bytes]:
    """``settle`` on the packed forecasts (``Issued.body``) of a model of ``horizon``: the sums, and the
    forecasts still open, packed alike."""
    q, weights, median = _weights(levels)
    size = _width(horizon, q)
    if len(body) % (size * 8):
        raise StateError(f"issued forecasts do not read: {len(body)} bytes are no whole forecasts of {size} values")
    values = _values(body)
    log = math.log
    width = q + 4
    sums = [0.0] * (horizon * width)
    count = 0
    last = first_seq + len(closes) - 1
    settled_through = 0  # the values of the forecasts whose last horizon is settled now: the first ones
    # plain comparisons and one list of sums, not min, max and lists per forecast: this runs for each of H
    # forecasts at every append
    for at in range(0, len(values), size):
        origin, close = int(values[at]), values[at + 1]
        h = first_seq - origin  # the first horizon of this forecast that the closes settle
        if h < 1:
            h = 1
        stop = last - origin
        if stop >= horizon:
            stop = horizon
            settled_through = at + size
        row_at = at + _ENTRY + (h - 1) * q
        while h <= stop:
            outcome = log(closes[origin + h - first_seq] / close)
            i = (h - 1) * width
            sums[i] += 1.0
            # the pinball loss at each level: max(level * e, (level - 1) * e) for e = outcome - quantile
            k = row_at
            for above, below in weights:
                e = outcome - values[k]
                i += 1
                k += 1
                sums[i] += above * e if e >= 0 else below * e
            if values[row_at] <= outcome <= values[k - 1]:
                sums[i + 1] += 1.0
            sums[i + 2] += abs(outcome - values[row_at + median])
            sums[i + 3] += abs(outcome)
            count += 1
            h += 1
            row_at = k
    return Settled(levels, sums, count), body[settled_through * 8 :]


def _values(body: bytes) -> array[float]:
    """The float64 values of packed forecasts, little-endian as stored: a float object is made only for each
    value read."""
    values = array("d", body)
    if sys.byteorder != "little":
        values.byteswap()
    return values


def _pack(p: Pending) -> bytes:
    return _doubles(_ENTRY + len(p.rows)).pack(p.origin, p.close, *p.rows)


def _entry(origin: int, close: float, log_return: Sequence[Sequence[float]]) -> bytes:
    """A new forecast as stored: its origin and close, then its rows."""
    values = [origin, close]
    for row in log_return:
        values += row
    return _doubles(len(values)).pack(*values)


@functools.cache
def _doubles(count: int) -> struct.Struct:
    return struct.Struct(f"<{count}d")


@functools.lru_cache(maxsize=64)
def _header(version: str, horizon: int, levels: int) -> bytes:
    """What ``to_bytes`` writes before the values: the format, shape and version's name (once per model)."""
    name = version.encode()
    return _HEADER.pack(ISSUED_FORMAT, horizon, levels, len(name)) + name


def _width(horizon: int, levels: int) -> int:
    """The values of one stored forecast."""
    return _ENTRY + horizon * levels


@functools.cache
def _weights(levels: tuple[float, ...]) -> tuple[int, tuple[tuple[float, float], ...], int]:
    """The number of levels, each level's weights of a positive and a negative error, and the median's index."""
    return len(levels), tuple((level, level - 1.0) for level in levels), levels.index(0.5)
