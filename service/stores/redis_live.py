"""The Redis store's live sums: one hash of running sums per model version, mode and horizon.

    {<prefix>}:live    hash: "<version>|<mode>|<horizon>|<sum>" -> number (``service/live/sums.py``)

On one server, a commit that settles forecasts adds to it in the commit's own
script (``COMMIT_SCORED``: the session's compare-and-set, then the sums), so
the sums move exactly when the session does. On a cluster the hash and a
session lie in different hash slots, which no one script may touch together:
there ``LIVE_ADD`` adds once the commit's script has applied it. A process that
stops between the two loses that commit's scores; none is ever added twice,
since the add is marked with the session and its new ``next_seq`` for a minute
and a resent add (the client resends a command once over a fresh connection
when the first one broke) finds the mark.
"""

from __future__ import annotations

import asyncio
import functools
import struct
from typing import Any

from service.live.pairs import SEPARATOR as PAIR_SEPARATOR
from service.live.pairs import PairedLosses
from service.live.scores import Settled
from service.live.shadows import ShadowScores
from service.live.sums import SEPARATOR, LiveSums, from_fields
from service.stores.redis_pipeline import Commands, text
from service.stores.redis_scripts import COMMIT, Script

# LIVE: the live hash. The last ARGV is how many live arguments come before it: now (seconds), the fields'
# prefix ("<version>|<mode>|"), Q, the Q levels' names, then ``Settled.sums`` as float64 values: for each
# horizon 1..H its count, pinball per level, inside, abs error and walk abs error. A horizon of count 0 is
# skipped; each sum is added by HINCRBYFLOAT as 17 digits, which read back as the same double.
_ADD = """
local live_n = tonumber(ARGV[#ARGV])
local first = #ARGV - live_n
local now, prefix, q = ARGV[first], ARGV[first + 1], tonumber(ARGV[first + 2])
local blob = ARGV[first + 3 + q]
local v = {struct.unpack('<' .. string.rep('d', #blob / 8), blob)}
local function add(name, value) redis.call('HINCRBYFLOAT', LIVE, name, string.format('%.17g', value)) end
local width = q + 4
for h = 1, #blob / 8 / width do
  local at = (h - 1) * width + 1
  if v[at] ~= 0 then
    local name = prefix .. string.format('%d', h) .. '|'
    redis.call('HSETNX', LIVE, name .. 'since', now)
    add(name .. 'n', v[at])
    for i = 1, q do add(name .. 'p' .. ARGV[first + 2 + i], v[at + i]) end
    add(name .. 'inside', v[at + q + 1])
    add(name .. 'abs', v[at + q + 2])
    add(name .. 'walk', v[at + q + 3])
  end
end
"""
_APPLIED = "return 1\n"
assert COMMIT.source.endswith(_APPLIED), "COMMIT must end by returning 1 once applied"

# COMMIT, and once it has applied the update, the live add. KEYS: session, live hash. ARGV: COMMIT's, then
# the live arguments.
COMMIT_SCORED = Script(COMMIT.source.removesuffix(_APPLIED) + "local LIVE = KEYS[2]\n" + _ADD + _APPLIED)

# KEYS: the live hash, the commit's mark. ARGV: the mark's lifetime (ms), then the live arguments.
# A mark already there is this commit's add, made before: then nothing is added.
LIVE_ADD = Script(
    """
if not redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[1]) then return 0 end
local LIVE = KEYS[1]
"""
    + _ADD
    + "return 1\n"
)

# how long a commit's mark is kept: longer than the client takes to resend a command
MARK_MS = 60_000


def live_key(prefix: str) -> str:
    return f"{{{prefix}}}:live"


def mark_key(prefix: str, session_id: str, next_seq: int) -> str:
    """The mark of the commit that moved ``session_id`` to ``next_seq``: in the live hash's slot."""
    return f"{{{prefix}}}:live:{session_id}:{next_seq}"


def live_args(version: str, mode: str, settled: Settled, now: float) -> list[Any]:
    """The live arguments of ``_ADD`` for what one commit ``settled``, their count last."""
    names = _level_names(settled.levels)
    sums = settled.sums
    args: list[Any] = [repr(now), SEPARATOR.join((version, mode, "")), len(names), *names]
    args.append(_doubles(len(sums)).pack(*sums))
    return [*args, len(args)]


@functools.cache
def _level_names(levels: tuple[float, ...]) -> tuple[str, ...]:
    return tuple(repr(level) for level in levels)


@functools.cache
def _doubles(count: int) -> struct.Struct:
    return struct.Struct(f"<{count}d")


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
    keys = [live_key(prefix), mark_key(prefix, session_id, update_seq)]
    await commands.run(LIVE_ADD, keys, [MARK_MS, *live_args(version, mode, settled, now)])


async def read_live(commands: Commands, prefix: str) -> LiveSums:
    """The sums every process has added so far."""
    values = await commands.call("HGETALL", live_key(prefix))
    # RESP2: a flat list name, value, ... unless the client pairs it into a dict
    pairs = values.items() if isinstance(values, dict) else zip(values[::2], values[1::2], strict=True)
    return from_fields({text(name): text(value) for name, value in pairs})


# A shadow's scores and paired losses (``service/live/shadows.py``), added once its session's commit is applied.
# KEYS: the live hash, the commit's shadow mark, the pairs' set of list names, then one list per horizon.
# ARGV: the mark's lifetime (ms), how many differences a list keeps, how many lists; for each list its name,
# its count of differences and the differences; then the live arguments.
SHADOW_ADD = Script(
    """
if not redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[1]) then return 0 end
local keep, at = tonumber(ARGV[2]), 4
for i = 1, tonumber(ARGV[3]) do
  local n = tonumber(ARGV[at + 1])
  redis.call('RPUSH', KEYS[3 + i], unpack(ARGV, at + 2, at + 1 + n))
  redis.call('LTRIM', KEYS[3 + i], -keep, -1)
  redis.call('SADD', KEYS[3], ARGV[at])
  at = at + 2 + n
end
local LIVE = KEYS[1]
"""
    + _ADD
    + "return 1\n"
)


def pairs_key(prefix: str, name: str = "") -> str:
    """The set of the pairs' list names, or the list ``name``: in the live hash's slot."""
    return f"{{{prefix}}}:pairs" + (f":{name}" if name else "")


async def add_shadow(
    commands: Commands, prefix: str, session_id: str, update_seq: int, scores: ShadowScores, now: float
) -> None:
    """Add what the applied commit that moved ``session_id`` to ``update_seq`` settled of one of its shadows,
    once."""
    names = [PAIR_SEPARATOR.join((scores.model, scores.version, str(h))) for h in scores.differences]
    mark = mark_key(prefix, f"{session_id}/shadow/{scores.version}", update_seq)  # one per shadow
    keys = [live_key(prefix), mark, pairs_key(prefix)]
    keys += [pairs_key(prefix, name) for name in names]
    args: list[Any] = [MARK_MS, scores.keep, len(names)]
    for (horizon, values), name in zip(scores.differences.items(), names, strict=True):
        times = scores.times.get(horizon) or [None] * len(values)
        args += [name, len(values), *(encode_pair(v, t) for v, t in zip(values, times, strict=True))]
    await commands.run(SHADOW_ADD, keys, [*args, *live_args(scores.version, scores.mode, scores.settled, now)])


async def read_pairs(commands: Commands, prefix: str) -> PairedLosses:
    """The differences every process has kept, per pair and horizon."""
    names = sorted(text(name) for name in await commands.call("SMEMBERS", pairs_key(prefix)))
    lists = await asyncio.gather(*(commands.call("LRANGE", pairs_key(prefix, name), 0, -1) for name in names))
    paired = PairedLosses()
    for name, values in zip(names, lists, strict=True):
        model, shadow, horizon = name.rsplit(PAIR_SEPARATOR, 2)
        kept = [decode_pair(text(v)) for v in values]
        h = int(horizon)
        paired.add(model, shadow, {h: [v for v, _ in kept]}, max(len(kept), 1), {h: [t for _, t in kept]})
    return paired


def encode_pair(difference: float, time: str | None) -> str:
    """A kept difference as a list item: its repr, followed by ``@`` and the time that settled it if any."""
    return repr(difference) if time is None else f"{difference!r}@{time}"


def decode_pair(item: str) -> tuple[float, str | None]:
    """Inverse of ``encode_pair``."""
    value, at, time = item.partition("@")
    return float(value), time if at else None
