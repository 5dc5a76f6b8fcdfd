"""``RedisSessionStore``: records in Redis (one server or a cluster), shared by workers, kept across restarts.

A session is one hash in its own hash slot (``service/stores/redis_keys.py``),
its retained observations and replies packed in it as the memory store packs
them (``service/stores/redis_scripts.py``). Every change to a session is one
Lua script on its key, so it is atomic: a commit checks ``next_seq`` and writes
in one step, and two workers can never both apply a batch. A session expires by
its key's TTL, renewed by every read and commit. The bounds on sessions are kept
by an index in a slot of its own (``service/stores/redis_index.py``): a session
is entered there before it is written, so the bounds hold on a cluster without
a transaction across slots. Times come from the Redis servers' clocks.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from typing import Any

from service.live.pairs import PairedLosses
from service.live.sums import LiveSums
from service.stores import EvictionListener
from service.stores.packed import CLOSE_BYTES, EXTRA_BYTES, NO_EXTRAS, NO_TIME, PackedObservations
from service.stores.records import (
    REPLY_LENGTH,
    SessionRecord,
    SessionUpdate,
    StoreLimits,
    pack_replies,
    unpack_replies,
)
from service.stores.redis_index import Entry, SessionIndex
from service.stores.redis_keys import Keys
from service.stores.redis_live import (
    COMMIT_SCORED,
    add_live,
    add_shadow,
    live_args,
    live_key,
    read_live,
    read_pairs,
)
from service.stores.redis_pipeline import Commands, available, connect, text
from service.stores.redis_scripts import COMMIT, CREATE, DELETE, GET, SCRIPTS, field_pairs
from service.stores.redis_upgrade import LegacyUpgrade


class RedisSessionStore:
    """Records in Redis; see the module docstring. ``cluster``: ``url`` names a node of a Redis Cluster."""

    kind = "redis"

    def __init__(
        self,
        url: str,
        limits: StoreLimits,
        prefix: str = "latentcast",
        timeout: float = 2.0,
        on_evict: EvictionListener | None = None,
        cluster: bool = False,
    ) -> None:
        self.limits = limits
        self.url = url
        self.cluster = cluster
        self._commands = Commands(connect(url, cluster, timeout))
        self._keys = Keys(prefix)
        self._ttl_ms = max(1, round(limits.ttl_seconds * 1000))
        self._index = SessionIndex(self._commands, self._keys, self._ttl_ms)
        self._on_evict = on_evict
        # the earlier layout never ran on a cluster: only one server may hold it
        self._upgrade = None if cluster else LegacyUpgrade(self._commands, prefix, self._keys, limits)
        self._ready_event = asyncio.Event()
        self._readying = asyncio.Lock()

    async def create(self, record: SessionRecord) -> bool:
        async with available(self.url):
            await self._ready()
            entry = Entry(record.session_id, record.owner)
            if not await self._enter(entry):
                return False
            # if this fails, the entry stays: the write may have happened (a timeout), and a session the
            # index does not count could exceed the bounds; if it did not, a sweep removes the entry
            # once its score passes
            args = [self._ttl_ms, record.owner, *field_pairs(self._fields(record))]
            await self._commands.run(CREATE, [self._keys.session(record.session_id)], args)
        return True

    def _fields(self, record: SessionRecord) -> dict[str, Any]:
        """What the session's hash holds (``service/stores/redis_scripts.py``)."""
        packed = PackedObservations().extend(record.retained, self.limits.retained_observations)
        closes, extras, times = packed.columns()
        return {
            "owner": record.owner,
            "mode": record.mode,
            "version": record.version,
            "ticker": record.ticker or "",
            "next_seq": record.next_seq,
            "state": record.state,
            "created": repr(record.created),
            "updated": repr(record.updated),
            "calibration": record.calibration,
            "issued": record.issued,
            "closes": closes,
            "extras": extras,
            "times": times,
            "replies": pack_replies(record.replies[-self.limits.retained_replies :]),
        }

    async def _enter(self, entry: Entry) -> bool:
        """Reserve ``entry``'s place in the index, making room from its owner's sessions if the store is full."""
        swept_owner = swept_all = False
        while True:
            entered = await self._index.reserve(entry, self.limits.max_sessions, self.limits.max_sessions_per_owner)
            if entered == 1:
                return True
            if entered == 0:  # the owner's count may hold expired sessions: check them once
                if swept_owner:
                    return False
                self._notify("ttl", await self._index.sweep(self._keys.owner(entry.owner)))
                swept_owner = True
            elif not swept_all:
                self._notify("ttl", await self._index.sweep(self._keys.index))
                swept_all = True
            else:
                victim, expired = await self._index.least_recently_used(entry.owner)
                self._notify("ttl", expired)
                if victim is None:
                    raise self.limits.full()
                if await self._commands.run(DELETE, [self._keys.session(victim)], []) is not None:
                    self._notify("capacity", 1)
                if await self._index.replace(entry, victim):
                    return True

    async def get(
        self, session_id: str, observations: int | None = 0, replies: bool = True, owner: str | None = None
    ) -> SessionRecord | None:
        wanted = -1 if observations is None else max(observations, 0)
        args = [self._ttl_ms, wanted, int(replies), owner or "", CLOSE_BYTES, EXTRA_BYTES]
        async with available(self.url):
            await self._ready()
            found = await self._commands.run(GET, [self._keys.session(session_id)], args)
        if not found:
            return None
        kept, closes, extras, times, stored, *meta = found
        fields = dict(zip(("owner", "mode", "version", "ticker", "next_seq"), (text(m) for m in meta), strict=False))
        state, created, updated, calibration, issued = meta[5:10]
        return SessionRecord(
            session_id=session_id,
            owner=fields["owner"],
            mode=fields["mode"],
            version=fields["version"],
            ticker=fields["ticker"] or None,
            next_seq=int(fields["next_seq"]),
            state=state,
            retained=PackedObservations.from_columns(closes, extras, times).last(),
            retained_count=int(kept),
            replies=unpack_replies(stored),
            created=float(created),
            updated=float(updated),
            calibration=calibration,
            issued=issued,
        )

    async def get_many(self, session_ids: Sequence[str], owner: str | None = None) -> list[SessionRecord | None]:
        # issued together, the reads go as one pipeline (one per node on a cluster), each its own script
        return list(await asyncio.gather(*(self.get(i, 0, False, owner) for i in session_ids)))

    async def commit(self, session_id: str, expected_seq: int, update: SessionUpdate) -> bool:
        closes, extras, times = PackedObservations.pack(update.appended).columns()
        reply = b""
        if update.reply is not None:
            body = update.reply.to_bytes()
            reply = REPLY_LENGTH.pack(len(body)) + body
        args: list[Any] = [
            self._ttl_ms,
            expected_seq,
            update.next_seq,
            update.state,
            update.mode,
            update.version,
            repr(update.updated),
            self.limits.retained_observations,
            self.limits.retained_replies,
            int(update.clear_replies),
            reply,
            int(update.calibration is not None),
            update.calibration or b"",
            closes,
            extras,
            times,
            CLOSE_BYTES,
            NO_EXTRAS,
            NO_TIME,
            int(update.issued is not None),
            update.issued or b"",
        ]
        script, keys = COMMIT, [self._keys.session(session_id)]
        scores = update.scores
        if scores is not None and not self.cluster:  # the sums move in the commit's own script
            script, keys = COMMIT_SCORED, [*keys, live_key(self._keys.prefix)]
            args += live_args(update.version, update.mode, scores, update.updated)
        async with available(self.url):
            await self._ready()
            result = await self._commands.run(script, keys, args)
            if int(result) == 1 and scores is not None and self.cluster:
                await add_live(
                    self._commands,
                    self._keys.prefix,
                    session_id,
                    update.next_seq,
                    update.version,
                    update.mode,
                    scores,
                    update.updated,
                )
            for shadow in update.shadow_scores if int(result) == 1 else ():
                await add_shadow(self._commands, self._keys.prefix, session_id, update.next_seq, shadow, update.updated)
        return int(result) == 1

    async def commit_many(self, commits: Sequence[tuple[str, int, SessionUpdate]]) -> list[bool]:
        # issued together, the compare-and-sets go as one pipeline (one per node on a cluster)
        return list(await asyncio.gather(*(self.commit(*one) for one in commits)))

    async def delete(self, session_id: str) -> bool:
        async with available(self.url):
            await self._ready()
            owner = await self._commands.run(DELETE, [self._keys.session(session_id)], [])
            if owner is None:
                return False
            await self._index.release(Entry(session_id, text(owner)))
        return True

    async def count(self) -> int:
        async with available(self.url):
            await self._ready()
            count, expired = await self._index.count()
        self._notify("ttl", expired)
        return count

    async def owned(self, owner: str) -> int:
        async with available(self.url):
            await self._ready()
            count, expired = await self._index.owned(owner)
        self._notify("ttl", expired)
        return count

    async def versions_in_use(self) -> dict[str, int]:
        # HSCAN returns every session present from start to end of the scan, whatever is added or
        # removed meanwhile; read in slices, so that a daily prune never holds a server for long
        counts: Counter[str] = Counter()
        async with available(self.url):
            await self._ready()
            self._notify("ttl", await self._index.sweep(self._keys.index))
            cursor = -1
            while cursor != 0:
                cursor, ids = await self._index.ids(max(cursor, 0))
                keys = [self._keys.session(i) for i in ids]
                versions = await asyncio.gather(*(self._commands.call("HGET", key, "version") for key in keys))
                counts.update(text(v) for v in versions if v is not None)
        return dict(counts)

    async def live_sums(self) -> LiveSums:
        async with available(self.url):
            await self._ready()
            return await read_live(self._commands, self._keys.prefix)

    async def paired_losses(self) -> PairedLosses:
        async with available(self.url):
            await self._ready()
            return await read_pairs(self._commands, self._keys.prefix)

    @property
    def pipelines_sent(self) -> int:
        """Round trips to Redis so far (one per node on a cluster): commands issued together count once."""
        return self._commands.sent

    async def ping(self) -> None:
        async with available(self.url):
            await self._commands.call("PING")

    async def close(self) -> None:
        await self._commands.close()

    async def _ready(self) -> None:
        """Before the first command of this store: its scripts loaded, sessions of the earlier layout moved."""
        if self._ready_event.is_set():
            return
        async with self._readying:
            if not self._ready_event.is_set():
                await asyncio.gather(*(self._commands.load(script) for script in SCRIPTS))
                if self._upgrade is not None:
                    await self._upgrade.run()
                self._ready_event.set()

    def _notify(self, reason: str, count: int) -> None:
        if count and self._on_evict is not None:
            self._on_evict(reason, count)
