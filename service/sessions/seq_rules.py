"""Which observations of a batch are new: the seq rules of docs/design.md, as one function.

``seq == next_seq`` applies the whole batch; ``seq > next_seq`` is a gap; an
overlap with what was applied must repeat it exactly (checked against the
retained observations), and only its tail past ``next_seq`` is new. A batch
entirely in the past whose stored reply is no longer kept is refused with the
reason ``already_applied`` when its values equal the retained observations at
its seqs (a resend: it is done), and ``conflict`` when they differ or when the
session no longer retains them (nothing can tell). Every refusal is a
``ConflictError`` naming ``expected_seq`` and its ``reason``.
"""

from __future__ import annotations

from collections.abc import Sequence

from latentcast.errors import ConflictError
from models.series import Observation
from service.stores import SessionRecord
from service.stores.records import observation_to_bytes

ALREADY_APPLIED = "already_applied"


def new_observations(record: SessionRecord, seq: int, batch: Sequence[Observation]) -> Sequence[Observation]:
    """The part of the batch starting at ``seq`` that is not applied yet; ``ConflictError`` if it does not fit."""
    expected = record.next_seq
    if seq > expected:
        raise _conflict(f"seq {seq} leaves a gap: the session expects seq {expected}", expected, "gap")
    overlap = expected - seq
    if overlap and seq < record.first_retained_seq:
        raise _conflict(
            f"seq {seq} is before the observations this session retains (from seq {record.first_retained_seq}); "
            f"the session expects seq {expected}",
            expected,
        )
    for i in range(min(overlap, len(batch))):
        if observation_to_bytes(batch[i]) != observation_to_bytes(record.observation(seq + i)):
            raise _conflict(
                f"observation {seq + i} differs from the one already applied; the session expects seq {expected}",
                expected,
            )
    if overlap >= len(batch):
        raise _conflict(
            f"observations {seq} to {seq + len(batch) - 1} were already applied, with these values, and their reply "
            f"is no longer kept; the session expects seq {expected}",
            expected,
            ALREADY_APPLIED,
        )
    return batch[overlap:]


def _conflict(message: str, expected_seq: int, reason: str = "conflict") -> ConflictError:
    return ConflictError(message, expected_seq=expected_seq, reason=reason)
