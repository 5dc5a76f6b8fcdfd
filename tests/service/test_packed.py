"""Packed observations read back exactly, in order, cut to their bound."""

from __future__ import annotations

from models.series import Observation
from service.stores.packed import CLOSE_BYTES, EXTRA_BYTES, NO_TIME, PackedObservations

BARS = [
    Observation(close=101.25, open=100.5, high=102.0, low=99.75, volume=3.1e6, time="2024-01-02"),
    Observation(close=0.1 + 0.2),
    Observation(close=99.0, volume=0.0),
    Observation(close=1e-300, high=1.0000000000000002, time="é"),
]


def test_observations_read_back_exactly_and_only_the_last_ones_are_kept():
    closes = PackedObservations.pack([Observation(close=float(c)) for c in range(5)])
    assert closes.extras is None and closes.times is None and len(closes) == 5
    assert len(closes.closes) == 5 * 8  # a close costs its 8 bytes
    mixed = closes.extend(BARS, limit=6)
    assert mixed.last() == (Observation(close=3.0), Observation(close=4.0), *BARS)
    assert mixed.last(2) == tuple(BARS[2:]) and mixed.last(0) == () and mixed.last(99) == mixed.last()
    assert mixed.extend([Observation(close=7.5)], limit=2).last() == (BARS[3], Observation(close=7.5))
    assert closes.extend(BARS, limit=0).last() == ()


def test_closes_after_bars_read_back_as_closes():
    packed = PackedObservations.pack(BARS).extend([Observation(close=float(c)) for c in range(3)], limit=3)
    assert packed.last() == tuple(Observation(close=float(c)) for c in range(3))


def test_the_columns_the_redis_store_keeps_read_back_exactly():
    plain = PackedObservations.pack([Observation(close=float(c)) for c in range(3)])
    assert plain.columns() == (plain.closes, b"", b"")  # no extras, no labels: nothing stored for them
    mixed = plain.extend(BARS, limit=6)
    closes, extras, times = mixed.columns()
    assert (len(closes), len(extras)) == (6 * CLOSE_BYTES, 6 * EXTRA_BYTES)
    assert times[: 2 * len(NO_TIME)] == NO_TIME * 2  # the two plain closes: labels of length 0
    assert PackedObservations.from_columns(closes, extras, times).last() == mixed.last()
    assert PackedObservations.from_columns(*plain.columns()).last() == plain.last()
