"""``service/live/scores.py``: what a batch of closes settles, and the forecasts kept awaiting outcomes."""

from __future__ import annotations

import math

import pytest

from latentcast.errors import StateError
from service.live.scores import Issued, Pending, settle, settle_stored

LEVELS = (0.1, 0.5, 0.9)


def issued_after(closes: list[float], origin: int) -> Issued:
    """A model of horizon 2 whose forecasts after ``origin`` are known numbers."""
    rows = [[-0.01, 0.0, 0.01], [-0.02, 0.001, 0.02]]
    return Issued("v1", 2, 3).with_forecast(origin, closes[origin], rows)


def test_an_h_step_forecast_is_settled_by_the_observation_h_after_it_and_scored_by_hand() -> None:
    closes = [100.0, 101.0, 99.0]
    settled, left = settle(issued_after(closes, 0), 1, closes[1:2], LEVELS)
    outcome = math.log(101.0 / 100.0)
    pinball = [0.1 * (outcome + 0.01), 0.5 * outcome, 0.1 * (0.01 - outcome)]
    assert settled.levels == LEVELS
    assert settled.by_horizon() == {1: pytest.approx([1, *pinball, 1, outcome, outcome], rel=1e-12)}
    assert settled.count == 1 and len(settled.sums) == 2 * 7
    assert settled.pinball(1) == pytest.approx(pinball, rel=1e-12)
    assert [p.origin for p in left.pending] == [0]  # horizon 2 awaits observation 2
    settled, left = settle(left, 2, closes[2:], LEVELS)
    outcome = math.log(99.0 / 100.0)
    pinball = [0.1 * (outcome + 0.02), 0.5 * (0.001 - outcome), 0.1 * (0.02 - outcome)]
    assert settled.by_horizon()[2] == pytest.approx([1, *pinball, 1, abs(outcome - 0.001), abs(outcome)], rel=1e-12)
    assert left.pending == ()


def test_a_batch_of_several_closes_settles_each_horizon_it_reaches_once() -> None:
    closes = [100.0, 101.0, 99.0, 98.0]
    issued = issued_after(closes, 0).with_forecast(1, closes[1], [[0.0, 0.0, 0.0], [-0.1, 0.0, 0.1]])
    settled, left = settle(issued, 2, closes[2:], LEVELS)
    # origin 0: horizon 2 (its horizon 1 was settled before it was kept); origin 1: horizons 1 and 2
    assert {h: row[0] for h, row in settled.by_horizon().items()} == {2: 2, 1: 1}
    assert left.pending == ()


def test_a_newer_forecast_of_the_same_origin_replaces_the_kept_one() -> None:
    issued = issued_after([100.0], 0).with_forecast(0, 100.0, [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    assert issued.pending == (Pending(0, 100.0, (1.0, 2.0, 3.0, 4.0, 5.0, 6.0)),)


def test_issued_forecasts_read_back_as_written_and_bad_bytes_are_named() -> None:
    closes = [100.0, 101.0, 99.0]
    _, issued = settle(issued_after(closes, 0).with_forecast(1, 101.0, [[0.0] * 3] * 2), 2, [99.0], LEVELS)
    issued = issued.with_forecast(2, 99.0, [[0.5, 0.6, 0.7], [0.8, 0.9, 1.0]])
    assert Issued.from_bytes(issued.to_bytes()) == issued
    blob = issued.to_bytes()
    with pytest.raises(StateError, match="issued forecasts truncated: 3 bytes"):
        Issued.from_bytes(blob[:3])
    size = len(blob)
    with pytest.raises(StateError, match=f"format 3, horizon 2, 3 levels and {size + 1} bytes do not read"):
        Issued.from_bytes(blob + b"\x00")
    with pytest.raises(StateError, match=f"format 3, horizon 2, 3 levels and {size - 8} bytes do not read"):
        Issued.from_bytes(blob[:-8])  # the last forecast's rows cut short
    with pytest.raises(StateError, match="do not read: 120 bytes are no whole forecasts of 8 values"):
        settle(Issued("v1", 2, 3, issued.body[:-8]), 3, [98.0], LEVELS)
    with pytest.raises(StateError, match="issued forecasts of format 2"):
        Issued.from_bytes(b"\x02" + blob[1:])  # the earlier format, which kept only the horizons left


def test_a_forecast_is_kept_as_it_was_read_until_its_last_horizon_settles() -> None:
    rows = [[-0.1, 0.0, 0.1], [-0.2, 0.01, 0.2]]
    issued = issued_after([100.0, 101.0], 0).with_forecast(1, 101.0, rows)
    settled, left = settle(issued, 1, [101.0], LEVELS)  # settles origin 0's horizon 1, nothing of origin 1's
    assert {h: row[0] for h, row in settled.by_horizon().items()} == {1: 1}
    assert left == issued  # origin 0's horizon 2 still awaits observation 2: both kept, byte for byte
    assert left.pending == (
        Pending(0, 100.0, (-0.01, 0.0, 0.01, -0.02, 0.001, 0.02)),
        Pending(1, 101.0, (-0.1, 0.0, 0.1, -0.2, 0.01, 0.2)),
    )
    settled, left = settle(left, 2, [99.0], LEVELS)  # origin 0's horizon 2 and origin 1's horizon 1
    assert {h: row[0] for h, row in settled.by_horizon().items()} == {1: 1, 2: 1}
    assert left.body == issued.body[8 * 8 :]  # origin 0 cut off the front, origin 1 as it was
    assert Issued.from_bytes(left.to_bytes()) == left


def test_issued_forecasts_are_read_only_as_the_version_and_shape_asked_for() -> None:
    issued = issued_after([100.0], 0)
    blob = issued.to_bytes()
    assert Issued.of(blob, "v1", 2, 3) == issued == Issued.from_bytes(blob)
    assert Issued.of(blob, "v2", 2, 3) is None  # another version's (a migration)
    assert Issued.of(blob, "v1", 3, 3) is None and Issued.of(blob, "v1", 2, 5) is None  # another shape's
    assert Issued.of(blob + b"\x00", "v1", 2, 3) is None  # values cut short
    assert Issued.of(b"\x01" + blob[1:], "v1", 2, 3) is None  # another format


def test_settling_the_stored_bytes_in_one_pass_equals_settle_then_the_next_forecast() -> None:
    closes = [100.0, 101.0, 99.0, 98.5]
    rows = [[-0.02, 0.0, 0.02], [-0.03, 0.001, 0.03]]
    issued = issued_after(closes, 0).with_forecast(1, closes[1], rows).with_forecast(2, closes[2], rows)
    settled, left = settle(issued, 3, closes[3:], LEVELS)
    stored = settle_stored(issued.to_bytes(), "v1", 2, 3, closes[3:], LEVELS, (3, closes[3], rows))
    assert stored is not None
    assert stored[0] == settled and stored[1] == left.with_forecast(3, closes[3], rows).to_bytes()
    assert settle_stored(issued.to_bytes(), "v1", 2, 3, closes[3:], LEVELS, None) == (settled, left.to_bytes())
    # anything else is left to ``Issued``: another version, a newest forecast not the last observation's,
    # a forecast that would replace a kept one, bytes that do not read
    assert settle_stored(issued.to_bytes(), "v2", 2, 3, closes[3:], LEVELS, None) is None
    assert settle_stored(issued.to_bytes(), "v1", 2, 4, [98.0], LEVELS, None) is None
    assert settle_stored(issued.to_bytes(), "v1", 2, 3, closes[3:], LEVELS, (2, closes[2], rows)) is None
    assert settle_stored(issued.to_bytes()[:-8], "v1", 2, 3, closes[3:], LEVELS, None) is None
