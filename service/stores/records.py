"""What a session store keeps: records, their updates, and compact bytes for observations.

A record is immutable; a store replaces it by applying a ``SessionUpdate`` only
when the stored ``next_seq`` is still the one the update was computed from
(compare-and-set), so that one batch is never applied twice.
"""

from __future__ import annotations

import hashlib
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from latentcast.errors import StateError, UnavailableError
from models.series import Observation
from service.live.scores import Settled
from service.live.shadows import ShadowScores

# presence bits, then close, open, high, low, volume; the time string follows
_OBSERVATION = struct.Struct("<B5d")
_NUMERIC_FIELDS = ("close", "open", "high", "low", "volume")
# seq, then a digest of the batch; the reply's JSON follows
_REPLY_HEADER = struct.Struct("<Q16s")
DIGEST_BYTES = 16
# each stored reply's bytes behind their length, when a store keeps several as one value
REPLY_LENGTH = struct.Struct("<I")


@dataclass(frozen=True, slots=True)
class StoredReply:
    """The reply given to the batch that started at ``seq``, kept to answer its retries."""

    seq: int
    digest: bytes
    body: bytes  # what the session service rebuilds the reply from (opaque to stores)

    def to_bytes(self) -> bytes:
        return _REPLY_HEADER.pack(self.seq, self.digest) + self.body

    @classmethod
    def from_bytes(cls, blob: bytes) -> StoredReply:
        if len(blob) < _REPLY_HEADER.size:
            raise StateError("stored reply truncated")
        seq, digest = _REPLY_HEADER.unpack_from(blob)
        return cls(seq=seq, digest=digest, body=blob[_REPLY_HEADER.size :])


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """One session as stored.

    owner:     a hash of the API key that opened it ("" without keys)
    next_seq:  the number of observations applied (the seq the next batch must carry)
    state:     ``Predictor.state_to_bytes`` of the session's model
    retained:  the last raw observations read from the store, oldest first; a store
               keeps up to its bound (to check overlaps, to migrate to another model)
               and returns only as many as ``get`` asks for
    retained_count: how many observations the store keeps
    replies:   the last replies, oldest first (to answer retried batches)
    created, updated: seconds since the epoch
    calibration: the session's adaptive offsets (``AdaptiveOffsets.to_bytes``), or
               empty when the session has none (records stored before them too)
    issued:    the answered forecasts awaiting outcomes (``service.live.scores.Issued``),
               or empty when live scoring has kept none
    """

    session_id: str
    owner: str
    mode: str
    version: str
    ticker: str | None
    next_seq: int
    state: bytes
    retained: tuple[Observation, ...] = ()
    retained_count: int = 0
    replies: tuple[StoredReply, ...] = ()
    created: float = 0.0
    updated: float = 0.0
    calibration: bytes = b""
    issued: bytes = b""

    @property
    def first_retained_seq(self) -> int:
        """The seq of the oldest observation the store keeps."""
        return self.next_seq - self.retained_count

    def observation(self, seq: int) -> Observation:
        """The retained observation ``seq``, which must be among those read."""
        first_read = self.next_seq - len(self.retained)
        assert first_read <= seq < self.next_seq, (seq, first_read)
        return self.retained[seq - first_read]


@dataclass(frozen=True)
class SessionUpdate:
    """A change to a record, applied only if its ``next_seq`` is still the expected one.

    ``appended`` joins the retained observations (the oldest dropped beyond the
    store's bound); ``reply`` joins the recent replies; ``clear_replies`` drops
    them first (after a migration they came from another model). ``calibration``
    replaces the record's adaptive offsets; None leaves them as they are.
    ``issued`` likewise replaces the forecasts awaiting outcomes, and ``scores``
    (what the update settles) join the store's live sums when, and only when,
    the update is applied; so do ``shadow_scores`` (one per shadow) and their paired losses.
    """

    next_seq: int
    state: bytes
    mode: str
    version: str
    updated: float
    appended: tuple[Observation, ...] = ()
    reply: StoredReply | None = None
    clear_replies: bool = False
    calibration: bytes | None = None
    issued: bytes | None = None
    scores: Settled | None = None
    shadow_scores: tuple[ShadowScores, ...] = ()  # what it settles of each shadow (service/live/shadows.py)


@dataclass(frozen=True)
class StoreLimits:
    """Bounds every store applies: lifetime, count and what each session keeps.

    ``max_sessions_per_owner`` (None: no bound) refuses a new session to an owner
    that holds that many. At ``max_sessions``, a new session takes the place of its
    owner's own least recently used one; an owner holding none is refused
    (``full``): no owner's session is ever dropped to make room for another's.
    """

    ttl_seconds: float
    max_sessions: int
    retained_observations: int
    retained_replies: int
    max_sessions_per_owner: int | None = None

    def full(self) -> UnavailableError:
        """The error of a new session with no room for it: the store's sessions are all other owners'."""
        return UnavailableError(
            f"the session store holds its most sessions ({self.max_sessions}, LATENTCAST_MAX_SESSIONS), "
            "none of them this API key's: try again once some expire or are deleted",
            limit=self.max_sessions,
        )


def observation_to_bytes(obs: Observation) -> bytes:
    """Exact, compact bytes of one observation (float64 values, UTF-8 time)."""
    values = [getattr(obs, name) for name in _NUMERIC_FIELDS]
    present = sum(1 << i for i, v in enumerate(values) if v is not None)
    packed = _OBSERVATION.pack(present, *(math.nan if v is None else float(v) for v in values))
    return packed + (obs.time or "").encode()


def observation_from_bytes(blob: bytes) -> Observation:
    """Inverse of ``observation_to_bytes``."""
    if len(blob) < _OBSERVATION.size:
        raise StateError("stored observation truncated")
    present, close, *rest = _OBSERVATION.unpack_from(blob)
    open_, high, low, volume = (v if present & (1 << i) else None for i, v in enumerate(rest, start=1))
    time = blob[_OBSERVATION.size :].decode() or None
    return Observation(close=close, open=open_, high=high, low=low, volume=volume, time=time)


def batch_digest(observations: Sequence[Observation]) -> bytes:
    """A digest of a batch's content: equal batches, equal digests."""
    digest = hashlib.sha256()
    for obs in observations:
        packed = observation_to_bytes(obs)
        digest.update(len(packed).to_bytes(4, "little") + packed)
    return digest.digest()[:DIGEST_BYTES]


def pack_replies(replies: Sequence[StoredReply]) -> bytes:
    """Replies as one value, oldest first: each one's bytes behind their length (``REPLY_LENGTH``)."""
    parts = [reply.to_bytes() for reply in replies]
    return b"".join(REPLY_LENGTH.pack(len(part)) + part for part in parts)


def unpack_replies(blob: bytes) -> tuple[StoredReply, ...]:
    """Inverse of ``pack_replies``."""
    replies, at = [], 0
    while at < len(blob):
        (size,) = REPLY_LENGTH.unpack_from(blob, at)
        at += REPLY_LENGTH.size
        replies.append(StoredReply.from_bytes(blob[at : at + size]))
        at += size
    return tuple(replies)
