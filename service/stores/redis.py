"""``RedisSessionStore``: records in Redis, shared by workers and kept across restarts.

    <prefix>:session:<id>          hash: owner, mode, version, ticker, next_seq, state, created, updated,
                                   calibration (absent in records stored before it: none)
    <prefix>:session:<id>:obs      list: retained observations, oldest first (compact bytes)
    <prefix>:session:<id>:replies  list: recent replies, oldest first
    <prefix>:sessions              sorted set: session id by expiry time (ms), oldest use first
    <prefix>:owner:<owner>         sorted set: the owner's session ids by expiry time (ms)

Every change is one Lua script, so it is atomic: a commit checks ``next_seq``
and writes in one step, and two workers can never both apply a batch. Times
come from the Redis server's clock, the same for every worker.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from data.errors import UnavailableError
from service.stores import EvictionListener
from service.stores.records import (
    SessionRecord,
    SessionUpdate,
    StoredReply,
    StoreLimits,
    observation_from_bytes,
    observation_to_bytes,
)

log = logging.getLogger(__name__)

# session ids read per round trip when counting the sessions of each version
_SCAN_SLICE = 1000

# Redis's Lua has no integer time; milliseconds from TIME (seconds, microseconds)
_NOW = "local t = redis.call('TIME') local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"

# Lua's unpack() is bounded by its C stack: push long lists in slices
_PUSH = """
local function push(key, first, last)
  local i = first
  while i <= last do
    local j = math.min(i + 499, last)
    redis.call('RPUSH', key, unpack(ARGV, i, j))
    i = j + 1
  end
end
"""

# KEYS: index; ARGV: session key prefix. Returns how many expired entries were dropped.
_SWEEP = (
    _NOW
    + """
local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
for _, id in ipairs(gone) do
  local base = ARGV[1] .. id
  redis.call('DEL', base, base .. ':obs', base .. ':replies')
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return #gone
"""
)

# Keeps the owner's index in step with a session used now: KEYS[1] is the session's hash.
_TOUCH_OWNER = """
local function touch_owner(owner_prefix, id, ttl)
  local owner = redis.call('HGET', KEYS[1], 'owner')
  if owner then
    redis.call('ZADD', owner_prefix .. owner, now + ttl, id)
    redis.call('PEXPIRE', owner_prefix .. owner, ttl)
  end
end
"""

# KEYS: hash, obs, replies, index, owner index
# ARGV: id, ttl_ms, max_sessions, key prefix, owner, mode, version, ticker, next_seq, state,
#       created, updated, owner index prefix, max sessions per owner (0: none), calibration,
#       retained observations...
# Returns {expired, evicted, created (1), refused because the owner holds the most it may (0), or
# refused because the store is full of other owners' sessions (-1)}.
_CREATE = (
    _NOW
    + _PUSH
    + """
local function drop(id)
  local base = ARGV[4] .. id
  local owner = redis.call('HGET', base, 'owner')
  if owner then redis.call('ZREM', ARGV[13] .. owner, id) end
  redis.call('DEL', base, base .. ':obs', base .. ':replies')
  redis.call('ZREM', KEYS[4], id)
end
-- ids are random: a record of this id and owner is this create's own, retried after a lost reply
if redis.call('HGET', KEYS[1], 'owner') == ARGV[5] then return {0, 0, 1} end
local bound = tonumber(ARGV[14])
redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now)
if bound > 0 and redis.call('ZCARD', KEYS[5]) >= bound then return {0, 0, 0} end
local expired = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now)
for _, id in ipairs(expired) do drop(id) end
local evicted = 0
while redis.call('ZCARD', KEYS[4]) >= tonumber(ARGV[3]) do
  -- room is made from the owner's own sessions only, least recently used first (lowest expiry)
  local own = redis.call('ZRANGE', KEYS[5], 0, 0)
  if #own == 0 then return {#expired, evicted, -1} end
  drop(own[1])
  evicted = evicted + 1
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
redis.call('HSET', KEYS[1], 'owner', ARGV[5], 'mode', ARGV[6], 'version', ARGV[7], 'ticker', ARGV[8],
           'next_seq', ARGV[9], 'state', ARGV[10], 'created', ARGV[11], 'updated', ARGV[12],
           'calibration', ARGV[15])
push(KEYS[2], 16, #ARGV)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
redis.call('ZADD', KEYS[4], now + tonumber(ARGV[2]), ARGV[1])
redis.call('ZADD', KEYS[5], now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[5], ARGV[2])
return {#expired, evicted, 1}
"""
)

# KEYS: hash, obs, replies, index
# ARGV: id, ttl_ms, observations to read (-1: all), owner index prefix, read the replies (0/1), owner ('': any).
# Returns nil or {hash, observations kept, the last observations asked for, replies (or none)}.
# Another owner's session costs what a missing one does (one HGET, nil), and is not touched.
_GET = (
    _NOW
    + _TOUCH_OWNER
    + """
local owner = redis.call('HGET', KEYS[1], 'owner')
if not owner or (ARGV[6] ~= '' and owner ~= ARGV[6]) then return false end
for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], ARGV[2]) end
redis.call('ZADD', KEYS[4], now + tonumber(ARGV[2]), ARGV[1])
touch_owner(ARGV[4], ARGV[1], tonumber(ARGV[2]))
local wanted = tonumber(ARGV[3])
local observations = {}
if wanted < 0 then
  observations = redis.call('LRANGE', KEYS[2], 0, -1)
elseif wanted > 0 then
  observations = redis.call('LRANGE', KEYS[2], -wanted, -1)
end
local replies = {}
if ARGV[5] == '1' then replies = redis.call('LRANGE', KEYS[3], 0, -1) end
return {redis.call('HGETALL', KEYS[1]), redis.call('LLEN', KEYS[2]), observations, replies}
"""
)

# KEYS: hash, obs, replies, index
# ARGV: id, ttl_ms, expected_seq, next_seq, state, mode, version, updated, retained, kept replies,
#       clear replies (0/1), reply ('' for none), owner index prefix, set calibration (0/1), calibration,
#       appended observations...
# Returns 1 if applied, 0 if next_seq was not the expected one, -1 if there is no such session.
_COMMIT = (
    _NOW
    + _PUSH
    + _TOUCH_OWNER
    + """
local current = redis.call('HGET', KEYS[1], 'next_seq')
if not current then return -1 end
if current ~= ARGV[3] then return 0 end
redis.call('HSET', KEYS[1], 'next_seq', ARGV[4], 'state', ARGV[5], 'mode', ARGV[6], 'version', ARGV[7],
           'updated', ARGV[8])
if ARGV[14] == '1' then redis.call('HSET', KEYS[1], 'calibration', ARGV[15]) end
if #ARGV >= 16 then
  push(KEYS[2], 16, #ARGV)
  local keep = tonumber(ARGV[9])
  if keep > 0 then redis.call('LTRIM', KEYS[2], -keep, -1) else redis.call('DEL', KEYS[2]) end
end
if ARGV[11] == '1' then redis.call('DEL', KEYS[3]) end
if ARGV[12] ~= '' then
  redis.call('RPUSH', KEYS[3], ARGV[12])
  redis.call('LTRIM', KEYS[3], -tonumber(ARGV[10]), -1)
end
for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], ARGV[2]) end
redis.call('ZADD', KEYS[4], now + tonumber(ARGV[2]), ARGV[1])
touch_owner(ARGV[13], ARGV[1], tonumber(ARGV[2]))
return 1
"""
)

# KEYS: hash, obs, replies, index; ARGV: id, owner index prefix. Returns 1 if there was a session.
_DELETE = """
local owner = redis.call('HGET', KEYS[1], 'owner')
if owner then redis.call('ZREM', ARGV[2] .. owner, ARGV[1]) end
redis.call('ZREM', KEYS[4], ARGV[1])
return redis.call('DEL', KEYS[1], KEYS[2], KEYS[3]) > 0 and 1 or 0
"""

# KEYS: owner index. Returns how many of the owner's sessions have not expired.
_OWNED = _NOW + "return redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')\n"


class RedisSessionStore:
    """Records in Redis; see the module docstring for the keys."""

    kind = "redis"

    def __init__(
        self,
        url: str,
        limits: StoreLimits,
        prefix: str = "latentcast",
        timeout: float = 2.0,
        on_evict: EvictionListener | None = None,
    ) -> None:
        self.limits = limits
        self.url = url
        # One retry on a fresh connection when a pooled one turns out dead (Redis restarted since it
        # was last used), never after a timeout (the command may be running). Retrying is safe: a
        # read is one, a create of a record already there is a no-op (its id is random), a commit is
        # a compare-and-set on next_seq (a retry of one applied finds next_seq moved on, and the
        # session service answers from the stored reply), a delete of a deleted record is a no-op.
        retry = Retry(NoBackoff(), retries=1, supported_errors=(RedisConnectionError,))
        self._client = aioredis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout, retry=retry)
        self._session_prefix = f"{prefix}:session:"
        self._index = f"{prefix}:sessions"
        self._owner_prefix = f"{prefix}:owner:"
        self._ttl_ms = max(1, round(limits.ttl_seconds * 1000))
        self._on_evict = on_evict
        self._sweep = self._client.register_script(_SWEEP)
        self._create = self._client.register_script(_CREATE)
        self._get = self._client.register_script(_GET)
        self._commit = self._client.register_script(_COMMIT)
        self._delete = self._client.register_script(_DELETE)
        self._owned = self._client.register_script(_OWNED)

    def _keys(self, session_id: str) -> list[str]:
        base = self._session_prefix + session_id
        return [base, f"{base}:obs", f"{base}:replies", self._index]

    async def create(self, record: SessionRecord) -> bool:
        retained = record.retained[-self.limits.retained_observations :] if self.limits.retained_observations else ()
        args: list[Any] = [
            record.session_id,
            self._ttl_ms,
            self.limits.max_sessions,
            self._session_prefix,
            record.owner,
            record.mode,
            record.version,
            record.ticker or "",
            record.next_seq,
            record.state,
            repr(record.created),
            repr(record.updated),
            self._owner_prefix,
            self.limits.max_sessions_per_owner or 0,
            record.calibration,
            *(observation_to_bytes(o) for o in retained),
        ]
        keys = [*self._keys(record.session_id), self._owner_prefix + record.owner]
        async with _available(self.url):
            expired, evicted, created = await self._create(keys=keys, args=args)
        self._notify("ttl", int(expired))
        self._notify("capacity", int(evicted))
        if int(created) == -1:
            raise self.limits.full()
        return int(created) == 1

    async def get(
        self, session_id: str, observations: int | None = 0, replies: bool = True, owner: str | None = None
    ) -> SessionRecord | None:
        wanted = -1 if observations is None else max(observations, 0)
        async with _available(self.url):
            args: list[Any] = [session_id, self._ttl_ms, wanted, self._owner_prefix, int(replies), owner or ""]
            found = await self._get(keys=self._keys(session_id), args=args)
        return _record(session_id, found)

    async def get_many(self, session_ids: Sequence[str], owner: str | None = None) -> list[SessionRecord | None]:
        # one round trip: the reads pipelined, each its own atomic script
        async with _available(self.url), self._client.pipeline(transaction=False) as pipe:
            for session_id in session_ids:
                args: list[Any] = [session_id, self._ttl_ms, 0, self._owner_prefix, 0, owner or ""]
                await self._get(keys=self._keys(session_id), args=args, client=pipe)
            found = await pipe.execute()
        return [_record(session_id, one) for session_id, one in zip(session_ids, found, strict=True)]

    async def commit(self, session_id: str, expected_seq: int, update: SessionUpdate) -> bool:
        async with _available(self.url):
            result = await self._commit(
                keys=self._keys(session_id), args=self._commit_args(session_id, expected_seq, update)
            )
        return int(result) == 1

    async def commit_many(self, commits: Sequence[tuple[str, int, SessionUpdate]]) -> list[bool]:
        # one round trip: the compare-and-sets pipelined, each its own atomic script
        async with _available(self.url), self._client.pipeline(transaction=False) as pipe:
            for session_id, expected_seq, update in commits:
                args = self._commit_args(session_id, expected_seq, update)
                await self._commit(keys=self._keys(session_id), args=args, client=pipe)
            results = await pipe.execute()
        return [int(result) == 1 for result in results]

    def _commit_args(self, session_id: str, expected_seq: int, update: SessionUpdate) -> list[Any]:
        return [
            session_id,
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
            update.reply.to_bytes() if update.reply else b"",
            self._owner_prefix,
            int(update.calibration is not None),
            update.calibration or b"",
            *(observation_to_bytes(o) for o in update.appended),
        ]

    async def delete(self, session_id: str) -> bool:
        async with _available(self.url):
            deleted = await self._delete(keys=self._keys(session_id), args=[session_id, self._owner_prefix])
        return int(deleted) == 1

    async def count(self) -> int:
        async with _available(self.url):
            expired = await self._sweep(keys=[self._index], args=[self._session_prefix])
            count = await self._client.zcard(self._index)
        self._notify("ttl", int(expired))
        return int(count)

    async def owned(self, owner: str) -> int:
        async with _available(self.url):
            count = await self._owned(keys=[self._owner_prefix + owner])
        return int(count)

    async def versions_in_use(self) -> dict[str, int]:
        # ZSCAN returns every session present from start to end of the scan, whatever is added or
        # removed meanwhile; read in slices, so that a daily prune never holds the server for long
        counts: Counter[str] = Counter()
        async with _available(self.url):
            await self._sweep(keys=[self._index], args=[self._session_prefix])
            ids: list[str] = []
            async for session_id, _ in self._client.zscan_iter(self._index, count=_SCAN_SLICE):
                ids.append(_text(session_id))
                if len(ids) >= _SCAN_SLICE:
                    counts.update(await self._versions_of(ids))
                    ids = []
            counts.update(await self._versions_of(ids))
        return dict(counts)

    async def _versions_of(self, ids: list[str]) -> list[str]:
        async with self._client.pipeline(transaction=False) as pipe:
            for session_id in ids:
                pipe.hget(self._session_prefix + session_id, "version")
            versions = await pipe.execute()
        return [_text(v) for v in versions if v is not None]

    async def ping(self) -> None:
        async with _available(self.url):
            await self._client.ping()

    async def close(self) -> None:
        await self._client.aclose()

    def _notify(self, reason: str, count: int) -> None:
        if count and self._on_evict is not None:
            self._on_evict(reason, count)


@asynccontextmanager
async def _available(url: str) -> AsyncIterator[None]:
    """Turn Redis failures into ``UnavailableError`` (503): its kind for clients, the server in the log.

    The error's own text names the host and port (``Timeout reading from 10.0.0.5:6379``):
    an answer never holds it, and the log never holds the URL's password.
    """
    try:
        yield
    except (RedisError, OSError) as exc:
        where = url.split("://", 1)[-1].rsplit("@", 1)[-1]
        log.warning("redis at %s: %s: %s", where, type(exc).__name__, exc)
        raise UnavailableError(f"session store is unavailable: redis {type(exc).__name__}") from exc


def _record(session_id: str, found: Any) -> SessionRecord | None:
    """The record of a ``_GET`` script's answer; None for none."""
    if not found:
        return None
    flat, kept, read, stored = found
    fields = {flat[i].decode(): flat[i + 1] for i in range(0, len(flat), 2)}
    return SessionRecord(
        session_id=session_id,
        owner=fields["owner"].decode(),
        mode=fields["mode"].decode(),
        version=fields["version"].decode(),
        ticker=fields["ticker"].decode() or None,
        next_seq=int(fields["next_seq"]),
        state=fields["state"],
        retained=tuple(observation_from_bytes(b) for b in read),
        retained_count=int(kept),
        replies=tuple(StoredReply.from_bytes(b) for b in stored),
        created=float(fields["created"]),
        updated=float(fields["updated"]),
        calibration=fields.get("calibration", b""),
    )


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
