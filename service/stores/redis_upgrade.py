"""``LegacyUpgrade``: sessions stored in the earlier Redis layout, moved into the current one.

The earlier layout (``LegacyKeys``) kept a session as a hash, a list entry per
retained observation (``observation_to_bytes``) and a list of replies, with an
index sorted set and a sorted set per owner. It ran on one server only. Before
a store's first command, its sessions are moved, each by one script that checks
the record is still the one read (``next_seq``), writes it in the current layout
with the same expiry and removes the earlier keys; its index entry is made
first, so the bounds count it throughout. Several workers starting at once
move each session once: a moved session is no longer in the earlier index.
"""

from __future__ import annotations

import asyncio
from typing import Any

from service.stores.packed import PackedObservations
from service.stores.records import StoredReply, StoreLimits, observation_from_bytes, pack_replies
from service.stores.redis_index import SWEEP_SLICE
from service.stores.redis_keys import Keys, LegacyKeys
from service.stores.redis_pipeline import Commands, text
from service.stores.redis_scripts import ADOPT, Script, field_pairs

# the hash fields the earlier layout kept, copied as they are
_FIELDS = ("owner", "mode", "version", "ticker", "next_seq", "state", "created", "updated", "calibration")

# KEYS: the earlier hash, observations, replies, index and owner's set; then the session's key.
# ARGV: id, next_seq read, expiry (ms since the epoch), then field name, value pairs.
# Returns 1 if moved, 0 if the record changed or went since it was read.
_MOVE = Script(
    """
if redis.call('HGET', KEYS[1], 'next_seq') ~= ARGV[2] then return 0 end
redis.call('DEL', KEYS[6])
redis.call('HSET', KEYS[6], unpack(ARGV, 4))
redis.call('PEXPIREAT', KEYS[6], ARGV[3])
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('ZREM', KEYS[5], ARGV[1])
return 1
"""
)


class LegacyUpgrade:
    """Moves every session of the earlier layout under ``prefix`` into ``keys``' layout."""

    def __init__(self, commands: Commands, prefix: str, keys: Keys, limits: StoreLimits) -> None:
        self._commands = commands
        self._legacy = LegacyKeys(prefix)
        self._keys = keys
        self._limits = limits

    async def run(self) -> None:
        while True:
            flat = await self._commands.call("ZRANGE", self._legacy.index, 0, SWEEP_SLICE - 1)
            if not flat:
                return
            await asyncio.gather(*(self._move(text(session_id)) for session_id in flat))

    async def _move(self, session_id: str) -> None:
        keys = self._legacy.session(session_id)
        while True:
            fields, observations, replies, expiry = await asyncio.gather(
                self._commands.call("HGETALL", keys[0]),
                self._commands.call("LRANGE", keys[1], 0, -1),
                self._commands.call("LRANGE", keys[2], 0, -1),
                self._commands.call("PEXPIRETIME", keys[0]),
            )
            record = {text(name): value for name, value in fields.items()}  # redis-py reads HGETALL as a dict
            if "owner" not in record:  # expired, or moved by another worker
                await self._commands.call("ZREM", self._legacy.index, session_id)
                return
            owner = text(record["owner"])
            await self._commands.run(ADOPT, self._keys.bookkeeping(owner), [session_id, owner, int(expiry)])
            packed = PackedObservations.pack([observation_from_bytes(b) for b in observations])
            packed = packed.extend((), self._limits.retained_observations)
            kept = [StoredReply.from_bytes(b) for b in replies][-self._limits.retained_replies :]
            closes, extras, times = packed.columns()
            values: dict[str, Any] = {name: record[name] for name in _FIELDS if name in record}
            values |= {"closes": closes, "extras": extras, "times": times, "replies": pack_replies(kept)}
            move_keys = [*keys, self._legacy.index, self._legacy.owner(owner), self._keys.session(session_id)]
            args = [session_id, record["next_seq"], int(expiry), *field_pairs(values)]
            if int(await self._commands.run(_MOVE, move_keys, args)):
                return
