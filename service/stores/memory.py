"""``MemorySessionStore``: records in this process, for one worker.

An entry is compact, so that a process holds many sessions (100,000 of the
default model with 1,000 closes each fit in 1 GiB): retained observations are
packed float64 columns, recent replies one bytes string, and the record itself
has slots. Only what a ``get`` asks for is turned back into objects.
"""

from __future__ import annotations

import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from service.live.pairs import PairedLosses
from service.live.sums import LiveSums
from service.stores import EvictionListener
from service.stores.packed import PackedObservations
from service.stores.records import (
    REPLY_LENGTH,
    SessionRecord,
    SessionUpdate,
    StoreLimits,
    pack_replies,
    unpack_replies,
)


@dataclass(slots=True)
class _Entry:
    record: SessionRecord  # its retained observations and replies are kept packed below, not in it
    observations: PackedObservations
    replies: bytes  # each reply's bytes behind their length, oldest first
    reply_count: int
    expires: float

    def read(self, observations: int | None, replies: bool) -> SessionRecord:
        """The record with its last ``observations`` (all for None), and its replies if asked for."""
        if observations == 0 and not replies:
            return self.record  # a new batch's read: the record as it is kept
        retained = self.observations.last(observations) if observations != 0 else ()
        return replace(self.record, retained=retained, replies=unpack_replies(self.replies) if replies else ())


class MemorySessionStore:
    """Records in an ordered dict, least recently used first.

    Every method runs without awaiting, so each is atomic on the event loop:
    that is the compare-and-set. Records expire ``ttl_seconds`` after their last
    use; at ``max_sessions`` a new session takes the place of its owner's least
    recently used one, or is refused if its owner holds none (``StoreLimits``).
    """

    kind = "memory"

    def __init__(
        self,
        limits: StoreLimits,
        on_evict: EvictionListener | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limits = limits
        self._on_evict = on_evict
        self._clock = clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._owned: dict[str, set[str]] = {}  # session ids by owner
        self.live = LiveSums()  # scores of settled forecasts, added in the step that commits them
        self.paired = PairedLosses()  # sessions' and their shadows' loss differences, likewise

    async def create(self, record: SessionRecord) -> bool:
        self._expire()
        bound = self.limits.max_sessions_per_owner
        owned = self._owned.get(record.owner, set())
        if bound is not None and len(owned) >= bound:
            return False
        dropped = 0
        while len(self._entries) >= self.limits.max_sessions:
            if not owned:
                self._notify("capacity", dropped)
                raise self.limits.full()
            # the owner's own least recently used session makes room: the first of its in use order
            self._drop(next(session_id for session_id in self._entries if session_id in owned))
            dropped += 1
        self._notify("capacity", dropped)
        packed = PackedObservations().extend(record.retained, self.limits.retained_observations)
        replies = record.replies[-self.limits.retained_replies :]
        expires = self._clock() + self.limits.ttl_seconds
        record = replace(record, retained=(), retained_count=len(packed), replies=())
        self._entries[record.session_id] = _Entry(record, packed, pack_replies(replies), len(replies), expires)
        self._owned.setdefault(record.owner, set()).add(record.session_id)
        return True

    async def get(
        self, session_id: str, observations: int | None = 0, replies: bool = True, owner: str | None = None
    ) -> SessionRecord | None:
        entry = self._touch(session_id, owner)
        return None if entry is None else entry.read(observations, replies)

    async def get_many(self, session_ids: Sequence[str], owner: str | None = None) -> list[SessionRecord | None]:
        self._expire()
        found = [self._touch(session_id, owner, expire=False) for session_id in session_ids]
        return [None if entry is None else entry.read(0, False) for entry in found]

    async def commit(self, session_id: str, expected_seq: int, update: SessionUpdate) -> bool:
        return self._commit(session_id, expected_seq, update)

    async def commit_many(self, commits: Sequence[tuple[str, int, SessionUpdate]]) -> list[bool]:
        self._expire()
        return [self._commit(session_id, expected, update, expire=False) for session_id, expected, update in commits]

    async def delete(self, session_id: str) -> bool:
        self._expire()
        entry = self._entries.pop(session_id, None)
        if entry is None:
            return False
        self._disown(entry.record)
        return True

    async def count(self) -> int:
        self._expire()
        return len(self._entries)

    async def versions_in_use(self) -> dict[str, int]:
        self._expire()
        return dict(Counter(entry.record.version for entry in self._entries.values()))

    async def live_sums(self) -> LiveSums:
        return self.live

    async def paired_losses(self) -> PairedLosses:
        return self.paired

    async def ping(self) -> None:
        return None

    async def owned(self, owner: str) -> int:
        self._expire()
        return len(self._owned.get(owner, ()))

    async def close(self) -> None:
        self._entries.clear()
        self._owned.clear()

    def _commit(self, session_id: str, expected_seq: int, update: SessionUpdate, expire: bool = True) -> bool:
        entry = self._touch(session_id, expire=expire)
        if entry is None or entry.record.next_seq != expected_seq:
            return False
        apply(entry, update, self.limits)
        if update.scores is not None:
            self.live.add(update.version, update.mode, update.scores, update.updated)
        for shadow in update.shadow_scores:
            self.live.add(shadow.version, shadow.mode, shadow.settled, update.updated)
            self.paired.add(shadow.model, shadow.version, shadow.differences, shadow.keep, shadow.times)
        return True

    def _touch(self, session_id: str, owner: str | None = None, expire: bool = True) -> _Entry | None:
        """The entry, its use recorded; None if there is none or it is not ``owner``'s (then untouched).

        ``expire=False``: the caller has just dropped the expired entries (once for many touches)."""
        if expire:
            self._expire()
        entry = self._entries.get(session_id)
        if entry is not None and owner is not None and entry.record.owner != owner:
            return None
        if entry is not None:
            entry.expires = self._clock() + self.limits.ttl_seconds
            self._entries.move_to_end(session_id)
        return entry

    def _expire(self) -> None:
        # entries are in order of last use and the TTL is the same for all,
        # so the expired ones are all at the front
        now, dropped = self._clock(), 0
        while self._entries:
            first = next(iter(self._entries.values()))
            if first.expires > now:
                break
            self._drop_first()
            dropped += 1
        self._notify("ttl", dropped)

    def _drop_first(self) -> None:
        _, entry = self._entries.popitem(last=False)
        self._disown(entry.record)

    def _drop(self, session_id: str) -> None:
        self._disown(self._entries.pop(session_id).record)

    def _disown(self, record: SessionRecord) -> None:
        owned = self._owned.get(record.owner)
        if owned is not None:
            owned.discard(record.session_id)
            if not owned:
                del self._owned[record.owner]

    def _notify(self, reason: str, count: int) -> None:
        if count and self._on_evict is not None:
            self._on_evict(reason, count)


def apply(entry: _Entry, update: SessionUpdate, limits: StoreLimits) -> None:
    """Change ``entry`` by ``update``, keeping the configured number of observations and replies."""
    entry.observations = entry.observations.extend(update.appended, limits.retained_observations)
    if update.clear_replies:
        entry.replies, entry.reply_count = b"", 0
    if update.reply is not None:
        reply = update.reply.to_bytes()  # pack_replies of one reply, without its loops
        entry.replies += REPLY_LENGTH.pack(len(reply)) + reply
        entry.reply_count += 1
        while entry.reply_count > limits.retained_replies:  # the oldest goes, still packed
            (size,) = REPLY_LENGTH.unpack_from(entry.replies)
            entry.replies = entry.replies[REPLY_LENGTH.size + size :]
            entry.reply_count -= 1
    old = entry.record
    # built field by field: dataclasses.replace costs as much as the rest of a commit
    entry.record = SessionRecord(
        old.session_id,
        old.owner,
        update.mode,
        update.version,
        old.ticker,
        update.next_seq,
        update.state,
        retained_count=len(entry.observations),
        created=old.created,
        updated=update.updated,
        calibration=old.calibration if update.calibration is None else update.calibration,
        issued=old.issued if update.issued is None else update.issued,
    )
