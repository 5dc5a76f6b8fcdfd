"""The Redis store's Lua scripts: each touches one session's key, or the index keys, never both.

A session is one hash. Its fields:

    owner, mode, version, ticker, next_seq, state, created, updated, calibration
    issued    the answered forecasts awaiting outcomes (``service/live/scores.py``), absent if none
    closes    retained closes, float64 each, oldest first
    extras    open, high, low, volume of each (float64, NaN where absent), or absent if no observation has them
    times     each time label behind its 2-byte length, or absent if no observation has one
    replies   the stored replies, each behind its 4-byte length (``records.pack_replies``)

The observation columns are ``PackedObservations.columns`` (service/stores/packed.py),
the memory store's packing: a commit joins the new observations to them and
cuts the oldest, in one value each, inside the script. Empty fields are left
out. Every script's keys come in KEYS; times come from the server's clock.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

# the fields a read returns besides the observation columns and the replies, in this order
META_FIELDS = ("owner", "mode", "version", "ticker", "next_seq", "state", "created", "updated", "calibration", "issued")


@dataclass(frozen=True)
class Script:
    """A Lua script and its SHA1, the name Redis runs it by."""

    source: str
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha", hashlib.sha1(self.source.encode()).hexdigest())


def field_pairs(fields: dict[str, Any]) -> list[Any]:
    """A session's fields as name, value, ... for a script's ARGV, the empty ones left out.

    The owner is kept even if empty (a store without keys has one owner, ""): it marks the record.
    """
    return [v for name, value in fields.items() if name == "owner" or value not in ("", b"") for v in (name, value)]


# Redis's Lua has no integer time; milliseconds from TIME (seconds, microseconds)
_NOW = "local t = redis.call('TIME') local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"

_PUT = """
local function put(name, value)
  if value == '' then redis.call('HDEL', KEYS[1], name) else redis.call('HSET', KEYS[1], name, value) end
end
"""

# KEYS: session. ARGV: ttl_ms, owner, then field name, value pairs (empty ones left out).
# A record of this id and owner is this create's own, retried after a lost reply (ids are random).
CREATE = Script(
    """
if redis.call('HGET', KEYS[1], 'owner') == ARGV[2] then return 1 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
"""
)

# KEYS: session. ARGV: ttl_ms, observations to read (-1: all), read the replies (0/1), owner ('': any),
# float64 bytes, extras bytes per observation.
# Returns nil, or {observations kept, closes, extras, times, replies, META_FIELDS...} with the last
# observations asked for. Another owner's session costs what a missing one does (one HGET) and is not touched.
GET = Script(
    f"""
local owner = redis.call('HGET', KEYS[1], 'owner')
if not owner or (ARGV[4] ~= '' and owner ~= ARGV[4]) then return false end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
local meta = redis.call('HMGET', KEYS[1], '{"', '".join(META_FIELDS)}')
local width = tonumber(ARGV[5])
local kept = redis.call('HSTRLEN', KEYS[1], 'closes') / width
local wanted = tonumber(ARGV[2])
if wanted < 0 or wanted > kept then wanted = kept end
-- a new batch's read (no observations, no replies) copies none of the packed values
local closes, extras, times = '', '', ''
if wanted > 0 then
  local columns = redis.call('HMGET', KEYS[1], 'closes', 'extras', 'times')
  closes = string.sub(columns[1], (kept - wanted) * width + 1)
  extras = columns[2] or ''
  if extras ~= '' then extras = string.sub(extras, (kept - wanted) * tonumber(ARGV[6]) + 1) end
  times = columns[3] or ''
  if times ~= '' then
    local at = 1
    for _ = 1, kept - wanted do at = at + 2 + struct.unpack('<I2', times, at) end
    times = string.sub(times, at)
  end
end
local replies = ''
if ARGV[3] == '1' then replies = redis.call('HGET', KEYS[1], 'replies') or '' end
local out = {{kept, closes, extras, times, replies}}
for i = 1, #meta do out[#out + 1] = meta[i] or '' end
return out
"""
)

# KEYS: session.
# ARGV: 1 ttl_ms, 2 expected_seq, 3 next_seq, 4 state, 5 mode, 6 version, 7 updated, 8 observations kept,
#       9 replies kept, 10 clear the replies (0/1), 11 a reply behind its length ('': none), 12 set the
#       calibration (0/1), 13 calibration, 14 closes, 15 extras, 16 times (of the appended observations),
#       17 float64 bytes, 18 extras of an observation without them, 19 time of an observation without one,
#       20 set the issued forecasts (0/1), 21 issued forecasts.
# Returns 1 if applied, 0 if next_seq was not the expected one, -1 if there is no such session.
COMMIT = Script(
    _PUT
    + """
local current = redis.call('HGET', KEYS[1], 'next_seq')
if not current then return -1 end
if current ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'next_seq', ARGV[3], 'state', ARGV[4], 'mode', ARGV[5], 'version', ARGV[6],
           'updated', ARGV[7])
if ARGV[12] == '1' then put('calibration', ARGV[13]) end
if ARGV[20] == '1' then put('issued', ARGV[21]) end
local function join(old, new, old_n, new_n, absent)
  if old == '' and new == '' then return '' end
  if old == '' then old = string.rep(absent, old_n) end
  if new == '' then new = string.rep(absent, new_n) end
  return old .. new
end
if ARGV[14] ~= '' then
  local width = tonumber(ARGV[17])
  local columns = redis.call('HMGET', KEYS[1], 'closes', 'extras', 'times')
  local closes, extras, times = columns[1] or '', columns[2] or '', columns[3] or ''
  local old_n, new_n = #closes / width, #ARGV[14] / width
  local drop = math.max(old_n + new_n - tonumber(ARGV[8]), 0)
  put('closes', string.sub(closes .. ARGV[14], drop * width + 1))
  put('extras', string.sub(join(extras, ARGV[15], old_n, new_n, ARGV[18]), drop * #ARGV[18] + 1))
  times = join(times, ARGV[16], old_n, new_n, ARGV[19])
  if times ~= '' then
    local at = 1
    for _ = 1, drop do at = at + 2 + struct.unpack('<I2', times, at) end
    times = string.sub(times, at)
  end
  put('times', times)
end
if ARGV[10] == '1' or ARGV[11] ~= '' then
  local replies = ''
  if ARGV[10] ~= '1' then replies = redis.call('HGET', KEYS[1], 'replies') or '' end
  replies = replies .. ARGV[11]
  local count, at = 0, 1
  while at <= #replies do
    count = count + 1
    at = at + 4 + struct.unpack('<I4', replies, at)
  end
  local from = 1
  for _ = 1, count - tonumber(ARGV[9]) do from = from + 4 + struct.unpack('<I4', replies, from) end
  put('replies', string.sub(replies, from))
end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
"""
)

# KEYS: session. Returns its owner, or nil if there was none.
DELETE = Script(
    """
local owner = redis.call('HGET', KEYS[1], 'owner')
redis.call('DEL', KEYS[1])
return owner
"""
)

# The index: KEYS[1] every session by expiry, KEYS[2] owner by session, KEYS[3] the owner's sessions.
# An entry's score is when its session expires at the earliest: a read or a commit renews the session's
# key alone, and the index learns of it when the score has passed (RESCORE).
_INDEX = (
    _NOW
    + """
local function add(id, owner, expiry)
  redis.call('ZADD', KEYS[1], expiry, id)
  redis.call('ZADD', KEYS[3], expiry, id)
  redis.call('HSET', KEYS[2], id, owner)
end
local function remove(id, owner_set)
  redis.call('ZREM', KEYS[1], id)
  redis.call('ZREM', owner_set, id)
  redis.call('HDEL', KEYS[2], id)
end
"""
)

# KEYS: index, owners, owner's set. ARGV: id, owner, ttl_ms, max sessions, max per owner (0: none).
# Returns 1 if the id is entered (or was, by this create), 0 if the owner holds the most it may,
# -1 if the store is full.
RESERVE = Script(
    _INDEX
    + """
if redis.call('HGET', KEYS[2], ARGV[1]) == ARGV[2] then return 1 end
local bound = tonumber(ARGV[5])
if bound > 0 and redis.call('ZCARD', KEYS[3]) >= bound then return 0 end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then return -1 end
add(ARGV[1], ARGV[2], now + tonumber(ARGV[3]))
return 1
"""
)

# KEYS: index, owners, owner's set. ARGV: id, owner, ttl_ms, the owner's session it takes the place of.
# Returns 1 if entered, 0 if that session was no longer entered (another create took its place).
REPLACE = Script(
    _INDEX
    + """
if redis.call('HGET', KEYS[2], ARGV[1]) == ARGV[2] then return 1 end
if not redis.call('ZSCORE', KEYS[3], ARGV[4]) then return 0 end
remove(ARGV[4], KEYS[3])
add(ARGV[1], ARGV[2], now + tonumber(ARGV[3]))
return 1
"""
)

# KEYS: index, owners, owner's set. ARGV: id. Removes the entry.
RELEASE = Script(_INDEX + "remove(ARGV[1], KEYS[3])\nreturn 1\n")

# KEYS: index (or an owner's set), owners. ARGV: most entries returned.
# Returns {id, owner, ...} of the entries whose score has passed: sessions that may have expired.
STALE = Script(
    _NOW
    + """
local out = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))) do
  out[#out + 1] = id
  out[#out + 1] = redis.call('HGET', KEYS[2], id) or ''
end
return out
"""
)

# KEYS: index, owners, then the owner's set of each entry. ARGV: id, its session's expiry (-2: none), ...
# An entry whose session lives gets its expiry as score; one whose session is gone is removed once its
# score has passed (before that, the session may be being created). Returns how many were removed.
RESCORE = Script(
    _INDEX
    + """
local removed = 0
for i = 1, #KEYS - 2 do
  local id, expiry = ARGV[2 * i - 1], tonumber(ARGV[2 * i])
  if expiry > 0 then
    redis.call('ZADD', KEYS[1], 'XX', expiry, id)
    redis.call('ZADD', KEYS[i + 2], 'XX', expiry, id)
  elseif expiry == -2 then
    local score = redis.call('ZSCORE', KEYS[1], id)
    if score and tonumber(score) <= now then
      remove(id, KEYS[i + 2])
      removed = removed + 1
    end
  end
end
return removed
"""
)

# KEYS: index, owners, owner's set. ARGV: id, owner, expiry (ms since the epoch). Enters the id unbounded:
# for a session that was already counted (moved from the earlier layout).
ADOPT = Script(_INDEX + "add(ARGV[1], ARGV[2], tonumber(ARGV[3]))\nreturn 1\n")

SCRIPTS = (CREATE, GET, COMMIT, DELETE, RESERVE, REPLACE, RELEASE, STALE, RESCORE, ADOPT)
