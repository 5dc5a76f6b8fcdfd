"""The records and updates the session-store tests write, and the type of the ``make_store`` fixture."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from models.series import Observation
from service.stores import SessionRecord, SessionStore, SessionUpdate, StoredReply
from service.stores.records import batch_digest

MakeStore = Callable[..., SessionStore]
# these tests are about what the stores keep, not how fast: a loaded machine may be slow to connect to Redis
TIMEOUT = 10.0
BARS = [
    Observation(close=101.25, open=100.5, high=102.0, low=99.75, volume=3.1e6, time="2024-01-02"),
    Observation(close=102.5),
    Observation(close=99.0, volume=0.0),
]


def record(session_id: str = "s1", **fields: Any) -> SessionRecord:
    values: dict[str, Any] = {
        "session_id": session_id,
        "owner": "0123abcd",
        "mode": "latent",
        "version": "latent-20260101T000000-a1b2c3",
        "ticker": "IBM",
        "next_seq": 3,
        "state": b"LCSE\x00\x01binary\xff",
        "retained": tuple(BARS),
        "created": 1700000000.25,
        "updated": 1700000000.5,
    }
    values.update(fields)
    return SessionRecord(**values)


def update(next_seq: int, appended: tuple[Observation, ...] = (), reply_seq: int | None = None, **fields: Any):
    reply = None
    if reply_seq is not None:
        reply = StoredReply(seq=reply_seq, digest=batch_digest(appended), body=b'{"next_seq": %d}' % next_seq)
    values: dict[str, Any] = {"state": b"state-%d" % next_seq, "mode": "latent", "version": "latent-v", "updated": 2.5}
    values.update(fields)
    return SessionUpdate(next_seq=next_seq, appended=appended, reply=reply, **values)
