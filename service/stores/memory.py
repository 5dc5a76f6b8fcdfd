"""``MemorySessionStore``: records in this process, for one worker."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace

from models.predictor import Observation
from service.stores import EvictionListener
from service.stores.records import SessionRecord, SessionUpdate, StoreLimits


@dataclass
class _Entry:
    record: SessionRecord
    expires: float


class MemorySessionStore:
    """Records in an ordered dict, least recently used first.

    Every method runs without awaiting, so each is atomic on the event loop:
    that is the compare-and-set. Records expire ``ttl_seconds`` after their last
    use; beyond ``max_sessions`` the least recently used is dropped.
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

    async def create(self, record: SessionRecord) -> bool:
        self._expire()
        bound = self.limits.max_sessions_per_owner
        if bound is not None and len(self._owned.get(record.owner, ())) >= bound:
            return False
        dropped = 0
        while len(self._entries) >= self.limits.max_sessions:
            self._drop_first()
            dropped += 1
        self._notify("capacity", dropped)
        kept = _last(record.retained, self.limits.retained_observations)
        record = replace(record, retained=kept, retained_count=len(kept))
        self._entries[record.session_id] = _Entry(record, self._clock() + self.limits.ttl_seconds)
        self._owned.setdefault(record.owner, set()).add(record.session_id)
        return True

    async def get(self, session_id: str, observations: int | None = 0) -> SessionRecord | None:
        entry = self._touch(session_id)
        if entry is None:
            return None
        record = entry.record
        return record if observations is None else replace(record, retained=_last(record.retained, observations))

    async def commit(self, session_id: str, expected_seq: int, update: SessionUpdate) -> bool:
        entry = self._touch(session_id)
        if entry is None or entry.record.next_seq != expected_seq:
            return False
        entry.record = applied(entry.record, update, self.limits)
        return True

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

    async def ping(self) -> None:
        return None

    async def owned(self, owner: str) -> int:
        self._expire()
        return len(self._owned.get(owner, ()))

    async def close(self) -> None:
        self._entries.clear()
        self._owned.clear()

    def _touch(self, session_id: str) -> _Entry | None:
        self._expire()
        entry = self._entries.get(session_id)
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

    def _disown(self, record: SessionRecord) -> None:
        owned = self._owned.get(record.owner)
        if owned is not None:
            owned.discard(record.session_id)
            if not owned:
                del self._owned[record.owner]

    def _notify(self, reason: str, count: int) -> None:
        if count and self._on_evict is not None:
            self._on_evict(reason, count)


def applied(record: SessionRecord, update: SessionUpdate, limits: StoreLimits) -> SessionRecord:
    """``record`` after ``update``, keeping the configured number of observations and replies."""
    retained = _last(record.retained + update.appended, limits.retained_observations)
    replies = (() if update.clear_replies else record.replies) + ((update.reply,) if update.reply else ())
    return replace(
        record,
        next_seq=update.next_seq,
        state=update.state,
        mode=update.mode,
        version=update.version,
        retained=retained,
        retained_count=len(retained),
        replies=replies[-limits.retained_replies :],
        updated=update.updated,
    )


def _last(observations: tuple[Observation, ...], count: int) -> tuple[Observation, ...]:
    return observations[-count:] if count > 0 else ()
