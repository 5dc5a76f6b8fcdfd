"""The Redis store's live sums: one hash of running sums, a field per model version and mode.

    {<prefix>}:live    hash: "<version>|<mode>|sums" -> float64 values: Q, the Q levels, the H rows of
                       ``Settled.sums`` added up, then when each horizon's first score was added (0: not yet)

A commit's add is a read, a sum and a write of that one field inside a script.
Fields of the earlier layout, one number per sum ("<version>|<mode>|<horizon>|<sum>",
added to by ``HINCRBYFLOAT``: ``service/live/sums.py`` reads them), are read
and added to the field's sums, never written again.

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
import math
import struct
from typing import Any

from service.live.pairs import SEPARATOR as PAIR_SEPARATOR
from service.live.pairs import PairedLosses
from service.live.scores import COUNT, Settled
from service.live.shadows import ShadowScores
from service.live.sums import SEPARATOR, HorizonSums, LiveSums, from_fields
from service.stores.redis_pipeline import Commands, text
from service.stores.redis_scripts import COMMIT, Script

# LIVE: the live hash. The last ARGV is how many live arguments come before it: now (seconds), the field's
# name, Q and the levels as float64 bytes, and ``Settled.sums`` as float64 bytes. A field of another shape
# (none of one version and mode has) is started again rather than refused: a script that has committed a
# session must not stop.
_ADD = """
local live_n = tonumber(ARGV[#ARGV])
local first = #ARGV - live_n
local now, name, head, blob = tonumber(ARGV[first]), ARGV[first + 1], ARGV[first + 2], ARGV[first + 3]
local q, n = #head / 8 - 1, #blob / 8
local horizons = n / (q + 4)
local size = #head / 8 + n + horizons
local add = {struct.unpack('<' .. string.rep('d', n), blob)}
local old = redis.call('HGET', LIVE, name)
local sums
if old and #old == size * 8 and string.sub(old, 1, #head) == head then
  sums = {struct.unpack('<' .. string.rep('d', size), old)}
else
  sums = {struct.unpack('<' .. string.rep('d', q + 1), head)}
  for i = q + 2, size do sums[i] = 0 end
end
local at = q + 1
for i = 1, n do sums[at + i] = sums[at + i] + add[i] end
for h = 1, horizons do
  if add[(h - 1) * (q + 4) + 1] ~= 0 and sums[at + n + h] == 0 then sums[at + n + h] = now end
end
redis.call('HSET', LIVE, name, struct.pack('<' .. string.rep('d', size), unpack(sums, 1, size)))
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

SUMS = "sums"  # the last part of a field's name

# how long a commit's mark is kept: longer than the client takes to resend a command
MARK_MS = 60_000


def live_key(prefix: str) -> str:
    return f"{{{prefix}}}:live"


def mark_key(prefix: str, session_id: str, next_seq: int) -> str:
    """The mark of the commit that moved ``session_id`` to ``next_seq``: in the live hash's slot."""
    return f"{{{prefix}}}:live:{session_id}:{next_seq}"


def live_args(version: str, mode: str, settled: Settled, now: float) -> list[Any]:
    """The live arguments of ``_ADD`` for what one commit ``settled``, their count last."""
    sums = settled.sums
    name = SEPARATOR.join((version, mode, SUMS))
    args = [repr(now), name, _head(settled.levels), _doubles(len(sums)).pack(*sums)]
    return [*args, len(args)]


@functools.cache
def _head(levels: tuple[float, ...]) -> bytes:
    """Q and the levels, as a field's values start."""
    return _doubles(len(levels) + 1).pack(len(levels), *levels)


def _field_sums(blob: bytes) -> list[tuple[int, HorizonSums]]:
    """The horizons of one field's value that have settled forecasts; none if it does not read."""
    if len(blob) < 8 or len(blob) % 8:
        return []
    values = _doubles(len(blob) // 8).unpack(blob)
    q = int(values[0]) if 0 < values[0] < len(values) else 0  # NaN too reads as no levels
    horizons, extra = divmod(len(values) - 1 - q, q + 5) if q > 0 else (0, 1)
    if extra or horizons <= 0:
        return []
    levels, width, at = tuple(values[1 : q + 1]), q + 4, q + 1
    since = values[at + horizons * width :]
    rows = [list(values[at + h * width : at + (h + 1) * width]) for h in range(horizons)]
    return [(h + 1, HorizonSums(levels, row, since[h] or math.inf)) for h, row in enumerate(rows) if row[COUNT]]


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
    fields: dict[str, str] = {}
    packed: list[tuple[str, bytes]] = []
    for name, value in pairs:
        if text(name).endswith(SEPARATOR + SUMS):
            packed.append((text(name), value if isinstance(value, bytes) else value.encode()))
        else:
            fields[text(name)] = text(value)
    live = from_fields(fields)  # the earlier layout's fields
    for name, blob in packed:
        version, mode, _ = name.rsplit(SEPARATOR, 2)
        for horizon, sums in _field_sums(blob):
            live.merge((version, mode, horizon), sums)
    return live


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
