from __future__ import annotations

import pytest

from latentcast.errors import ConflictError
from models.series import Observation
from service.sessions.seq_rules import new_observations
from service.stores import SessionRecord


def record(next_seq: int, retained: list[float]) -> SessionRecord:
    kept = tuple(Observation(close=c) for c in retained)
    return SessionRecord("s", "", "latent", "v", None, next_seq, b"", kept, len(kept))


def obs(*closes: float) -> list[Observation]:
    return [Observation(close=c) for c in closes]


def test_the_expected_seq_applies_the_whole_batch():
    assert new_observations(record(3, [1.0, 2.0, 3.0]), 3, obs(4.0, 5.0)) == obs(4.0, 5.0)


def test_an_exact_overlap_applies_only_the_new_tail():
    assert new_observations(record(3, [1.0, 2.0, 3.0]), 2, obs(3.0, 4.0)) == obs(4.0)


@pytest.mark.parametrize(
    ("seq", "batch", "message", "reason"),
    [
        (5, obs(6.0), "seq 5 leaves a gap: the session expects seq 3", "gap"),
        (2, obs(9.0, 4.0), "observation 2 differs from the one already applied; the session expects seq 3", "conflict"),
        (0, obs(1.0, 7.0), "observation 1 differs from the one already applied; the session expects seq 3", "conflict"),
        (
            1,
            obs(2.0, 3.0),
            "observations 1 to 2 were already applied, with these values, and their reply is no longer kept; "
            "the session expects seq 3",
            "already_applied",
        ),
    ],
)
def test_gaps_different_overlaps_and_stale_batches_are_refused_each_with_its_reason(seq, batch, message, reason):
    with pytest.raises(ConflictError) as err:
        new_observations(record(3, [1.0, 2.0, 3.0]), seq, batch)
    assert str(err.value) == message
    assert err.value.details == {"expected_seq": 3, "reason": reason}


def test_an_overlap_before_the_retained_observations_is_a_conflict():
    with pytest.raises(ConflictError) as err:
        new_observations(record(10, [9.0, 10.0]), 7, obs(1.0, 2.0, 3.0, 4.0))
    assert str(err.value) == (
        "seq 7 is before the observations this session retains (from seq 8); the session expects seq 10"
    )
    # a stale batch the session no longer retains cannot be told from a different one: a conflict
    with pytest.raises(ConflictError) as err:
        new_observations(record(10, [9.0, 10.0]), 7, obs(1.0))
    assert err.value.details == {"expected_seq": 10, "reason": "conflict"}
