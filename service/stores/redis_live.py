"""The Redis store's live sums: one hash of running sums per model version, mode and horizon.

    {<prefix>}:live    hash: "<version>|<mode>|<horizon>|<sum>" -> number (``service/live_sums.py``)

A commit that settles forecasts adds to it by ``LIVE_ADD`` once the session's
compare-and-set has applied the commit: the two keys lie in different hash
slots, so no one script can change both. Every API process sharing the server
adds to the same fields; a process that stops between the two scripts loses
that commit's scores, and none is ever added twice (a retry is answered from
the stored reply, which settles nothing).
"""

from __future__ import annotations

from service.live_scores import Settled
from service.live_sums import LiveSums, fields, from_fields, since_fields
from service.stores.redis_pipeline import Commands, text
from service.stores.redis_scripts import Script

# KEYS: the live hash, the commit's mark. ARGV: mark's lifetime (ms), now (seconds), k, then k "since" fields
# (set if absent), then field, increment pairs. A mark already there is this commit added before (the client
# resends a command once over a fresh connection when the first one broke): then nothing is added.
LIVE_ADD = Script(
    """
if not redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[1]) then return 0 end
local k = tonumber(ARGV[3])
for i = 4, k + 3 do redis.call('HSETNX', KEYS[1], ARGV[i], ARGV[2]) end
for i = k + 4, #ARGV, 2 do redis.call('HINCRBYFLOAT', KEYS[1], ARGV[i], ARGV[i + 1]) end
return 1
"""
)


# how long a commit's mark is kept: longer than the client takes to resend a command
MARK_MS = 60_000


def live_key(prefix: str) -> str:
    return f"{{{prefix}}}:live"


def mark_key(prefix: str, session_id: str, next_seq: int) -> str:
    """The mark of the commit that moved ``session_id`` to ``next_seq``: in the live hash's slot."""
    return f"{{{prefix}}}:live:{session_id}:{next_seq}"


async def add_live(
    commands: Commands,
    prefix: str,
    session_id: str,
    update_seq: int,
    version: str,
    mode: str,
    settled: Settled,
    now: float,
) -> None:
    """Add what the applied commit that moved ``session_id`` to ``update_seq`` settled to the sums, once."""
    since = since_fields(version, mode, settled)
    increments = [v for name, value in fields(version, mode, settled).items() for v in (name, repr(value))]
    keys = [live_key(prefix), mark_key(prefix, session_id, update_seq)]
    await commands.run(LIVE_ADD, keys, [MARK_MS, repr(now), len(since), *since, *increments])


async def read_live(commands: Commands, prefix: str) -> LiveSums:
    """The sums every process has added so far."""
    values = await commands.call("HGETALL", live_key(prefix))
    # RESP2: a flat list name, value, ... unless the client pairs it into a dict
    pairs = values.items() if isinstance(values, dict) else zip(values[::2], values[1::2], strict=True)
    return from_fields({text(name): text(value) for name, value in pairs})
