"""``PackedObservations``: retained observations as float64 columns, not as Python objects.

A session keeps up to ``retained_observations`` raw observations (1,000 by
default) for overlap checks and migration. As objects, every close is a
Python object tracked by the garbage collector; packed, a close costs 8 bytes,
and the other fields cost only in sessions that send them.
Values are exact (float64, as parsed from the request's JSON). Stored values are
finite (batches are validated before they are applied), so NaN marks a field
that was not sent.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence

import numpy as np

from models.series import Observation

EXTRA_FIELDS = ("open", "high", "low", "volume")
CLOSE_BYTES = 8
EXTRA_BYTES = 8 * len(EXTRA_FIELDS)
# a time label's UTF-8 length before it; 0 for none (a label is never empty: "" reads as none)
TIME_LENGTH = struct.Struct("<H")
# an observation without the extra fields, and one without a time label, in their columns
NO_EXTRAS = struct.pack("<4d", *(math.nan,) * len(EXTRA_FIELDS))
NO_TIME = TIME_LENGTH.pack(0)


class PackedObservations:
    """An immutable run of observations, oldest first.

    closes: (n,) float64 as bytes
    extras: (n, 4) float64 as bytes (open, high, low, volume; NaN where absent), or None if all are absent
    times:  the time labels, or None if no observation has one
    """

    __slots__ = ("closes", "extras", "times")

    def __init__(self, closes: bytes = b"", extras: bytes | None = None, times: tuple[str | None, ...] | None = None):
        self.closes = closes
        self.extras = extras
        self.times = times

    @classmethod
    def pack(cls, observations: Sequence[Observation]) -> PackedObservations:
        # a commit packs the observations it appends: list comprehensions, as generators cost more
        closes = np.array([o.close for o in observations], dtype="<f8").tobytes()
        extras = None
        if any(
            [
                o.open is not None or o.high is not None or o.low is not None or o.volume is not None
                for o in observations
            ]
        ):
            values = [[math.nan if v is None else v for v in (o.open, o.high, o.low, o.volume)] for o in observations]
            extras = np.array(values, dtype="<f8").reshape(len(observations), len(EXTRA_FIELDS)).tobytes()
        times = tuple([o.time for o in observations]) if any([o.time is not None for o in observations]) else None
        return cls(closes, extras, times)

    def __len__(self) -> int:
        return len(self.closes) // 8

    def extend(self, observations: Sequence[Observation], limit: int) -> PackedObservations:
        """These observations followed by ``observations``, cut to the last ``limit``."""
        if limit <= 0:
            return PackedObservations()
        new = PackedObservations.pack(observations)
        drop = max(len(self) + len(observations) - limit, 0)
        closes = (self.closes + new.closes)[8 * drop :]
        extras = None
        if self.extras is not None or new.extras is not None:
            extras = (self._extras() + new._extras())[8 * len(EXTRA_FIELDS) * drop :]
        times = None
        if self.times is not None or new.times is not None:
            times = (self._times() + new._times())[drop:]
        return PackedObservations(closes, extras, times)

    def last(self, count: int | None = None) -> tuple[Observation, ...]:
        """The last ``count`` observations (all for None) as objects."""
        n = len(self)
        first = 0 if count is None else max(n - count, 0)
        if first >= n:
            return ()
        closes = np.frombuffer(self.closes, dtype="<f8")[first:].tolist()
        times = self._times()[first:]
        if self.extras is None:
            return tuple(Observation(close=c, time=t) for c, t in zip(closes, times, strict=True))
        extras = np.frombuffer(self.extras, dtype="<f8").reshape(n, len(EXTRA_FIELDS))[first:].tolist()
        return tuple(_observation(c, row, t) for c, row, t in zip(closes, extras, times, strict=True))

    def columns(self) -> tuple[bytes, bytes, bytes]:
        """Closes, extras and time labels as bytes, the way the Redis store keeps them.

        Extras and times are empty when no observation has them; times are each
        label's UTF-8 behind its length (``TIME_LENGTH``), so that a run cut at
        the front stays readable.
        """
        times = b"".join(_time_bytes(t) for t in self.times) if self.times is not None else b""
        return self.closes, self.extras or b"", times

    @classmethod
    def from_columns(cls, closes: bytes, extras: bytes, times: bytes) -> PackedObservations:
        """Inverse of ``columns``."""
        labels: list[str | None] = []
        at = 0
        while at < len(times):
            (size,) = TIME_LENGTH.unpack_from(times, at)
            at += TIME_LENGTH.size
            labels.append(times[at : at + size].decode() or None)
            at += size
        return cls(closes, extras or None, tuple(labels) if times else None)

    def _extras(self) -> bytes:
        if self.extras is not None:
            return self.extras
        return np.full((len(self), len(EXTRA_FIELDS)), math.nan, dtype="<f8").tobytes()

    def _times(self) -> tuple[str | None, ...]:
        return self.times if self.times is not None else (None,) * len(self)


def _time_bytes(time: str | None) -> bytes:
    label = (time or "").encode()
    return TIME_LENGTH.pack(len(label)) + label


def _observation(close: float, extras: list[float], time: str | None) -> Observation:
    open_, high, low, volume = (None if math.isnan(v) else v for v in extras)
    return Observation(close=close, open=open_, high=high, low=low, volume=volume, time=time)
