"""``SessionIndex``: which sessions the Redis store holds, by owner, for its bounds and counts.

The index lives in one hash slot (``service/stores/redis_keys.py``), apart from
the sessions: a session's id is entered (reserved) before its record is written
and removed after its record is deleted, each by one script on the index alone.
So the index holds every session (never fewer: the bounds are never exceeded),
and for a moment after a crash between the two steps, or after an expiry, an id
whose session is gone. An entry's score is when its session expires at the
earliest; reads and commits renew the session's key only (they never touch the
index, which would make its slot every request's), and the index checks the
keys of the entries whose score has passed when it needs an exact count
(``sweep``): entries of live sessions take their key's expiry, the others go.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from service.stores.redis_keys import Keys
from service.stores.redis_pipeline import Commands, text
from service.stores.redis_scripts import RELEASE, REPLACE, RESCORE, RESERVE, STALE

# entries checked against their sessions' keys per round trip
SWEEP_SLICE = 1000
# an owner's sessions checked per round when looking for its least recently used one
LRU_SLICE = 16
# rounds of that search before giving up (each makes the entries it read exact, so few are needed)
LRU_ROUNDS = 8


@dataclass(frozen=True)
class Entry:
    """A session as the index knows it: its id and its owner."""

    session_id: str
    owner: str


class SessionIndex:
    """Reservations and counts of sessions, on the index keys of ``keys``."""

    def __init__(self, commands: Commands, keys: Keys, ttl_ms: int) -> None:
        self._commands = commands
        self._keys = keys
        self._ttl_ms = ttl_ms

    async def reserve(self, entry: Entry, max_sessions: int, max_per_owner: int | None) -> int:
        """1 if ``entry`` is entered, 0 if its owner holds ``max_per_owner`` sessions, -1 if the store is full."""
        keys = self._keys.bookkeeping(entry.owner)
        args = [entry.session_id, entry.owner, self._ttl_ms, max_sessions, max_per_owner or 0]
        return int(await self._commands.run(RESERVE, keys, args))

    async def replace(self, entry: Entry, victim: str) -> bool:
        """Enter ``entry`` in place of ``victim``, a session of the same owner; False if it is no longer entered."""
        keys = self._keys.bookkeeping(entry.owner)
        args = [entry.session_id, entry.owner, self._ttl_ms, victim]
        return int(await self._commands.run(REPLACE, keys, args)) == 1

    async def release(self, entry: Entry) -> None:
        await self._commands.run(RELEASE, self._keys.bookkeeping(entry.owner), [entry.session_id])

    async def count(self) -> tuple[int, int]:
        """Sessions entered, after a sweep; and how many expired sessions the sweep removed."""
        expired = await self.sweep(self._keys.index)
        return int(await self._commands.call("ZCARD", self._keys.index)), expired

    async def owned(self, owner: str) -> tuple[int, int]:
        """``count`` for ``owner``'s sessions."""
        expired = await self.sweep(self._keys.owner(owner))
        return int(await self._commands.call("ZCARD", self._keys.owner(owner))), expired

    async def sweep(self, entries: str) -> int:
        """Check the entries of ``entries`` (the index or an owner's set) whose score has passed; how many went."""
        removed = 0
        while True:
            flat = await self._commands.run(STALE, [entries, self._keys.owners], [SWEEP_SLICE])
            stale = [Entry(text(flat[i]), text(flat[i + 1])) for i in range(0, len(flat), 2)]
            removed += await self._rescore(stale)
            # a full slice of entries of live sessions moves them all past now: the next slice is new
            if len(stale) < SWEEP_SLICE:
                return removed

    async def least_recently_used(self, owner: str) -> tuple[str | None, int]:
        """The owner's session used least recently (None if it has none), and the expired ones removed meanwhile.

        Scores are lower bounds of the expiries, so an entry whose expiry is at most the
        score of every entry not yet checked is the least recently used one.
        """
        removed = 0
        for _ in range(LRU_ROUNDS):
            flat = await self._commands.call("ZRANGE", self._keys.owner(owner), 0, LRU_SLICE - 1, "WITHSCORES")
            if not flat:
                return None, removed
            ids = [text(flat[i]) for i in range(0, len(flat), 2)]
            expiries = await self._expiries(ids)
            removed += await self._rescore([Entry(i, owner) for i in ids], expiries)
            live = sorted((expiry, i) for i, expiry in zip(ids, expiries, strict=True) if expiry > 0)
            if live and (len(ids) < LRU_SLICE or live[0][0] <= float(flat[-1])):
                return live[0][1], removed
        return None, removed

    async def ids(self, cursor: int) -> tuple[int, list[str]]:
        """One slice of the entered session ids from ``cursor`` (0 to start; 0 back when done)."""
        # the owners hash holds the same ids as the index; redis-py reads HSCAN's answer as a dict
        cursor, found = await self._commands.call("HSCAN", self._keys.owners, cursor, "COUNT", SWEEP_SLICE)
        return int(cursor), [text(session_id) for session_id in found]

    async def _expiries(self, ids: list[str]) -> list[int]:
        answers = await asyncio.gather(*(self._commands.call("PEXPIRETIME", self._keys.session(i)) for i in ids))
        return [int(a) for a in answers]

    async def _rescore(self, entries: list[Entry], expiries: list[int] | None = None) -> int:
        if not entries:
            return 0
        if expiries is None:
            expiries = await self._expiries([e.session_id for e in entries])
        keys = [self._keys.index, self._keys.owners, *(self._keys.owner(e.owner) for e in entries)]
        args = [v for e, expiry in zip(entries, expiries, strict=True) for v in (e.session_id, expiry)]
        return int(await self._commands.run(RESCORE, keys, args))
