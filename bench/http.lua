-- wrk script of bench/http.py: POST one close per request to sessions, each fed in seq order.
--
--   wrk -t T -c C -d 4s -s bench/http.lua URL -- SESSIONS CLOSES T C
--
-- SESSIONS has one "session_id next_seq" per line: C sessions to post to and as
-- many spares. Line k belongs to thread (k - 1) % T. A connection sends its next
-- request only once its previous reply has come, so a thread has as many
-- sessions in flight as connections: a request takes a session whose last reply
-- has come, and the reply (which names its session and next_seq) gives it back.
-- A reply that is not a 200 is counted, and its session is replaced by a spare.
-- done() prints one JSON line with the counts and latency percentiles.

local threads = {}
local created = 0

function setup(thread)
  thread:set("index", created)
  created = created + 1
  table.insert(threads, thread)
end

local free, spare, next_seq, closes = {}, {}, {}, {}
bad, mismatched = 0, 0

function init(args)
  local sessions_file, closes_file = args[1], args[2]
  local thread_count, connections = tonumber(args[3]), tonumber(args[4])
  local mine = math.floor(connections / thread_count)
  if index < connections % thread_count then mine = mine + 1 end
  for line in io.lines(closes_file) do
    table.insert(closes, line)
  end
  local k = 0
  for line in io.lines(sessions_file) do
    if k % thread_count == index then
      local id, seq = line:match("^(%S+) (%d+)$")
      next_seq[id] = tonumber(seq)
      if #free < mine then table.insert(free, id) else table.insert(spare, id) end
    end
    k = k + 1
  end
end

local headers = { ["Content-Type"] = "application/json" }

function request()
  -- wrk calls request() once before it connects, to check the script: that session is never posted
  -- to, so a spare stands in for it
  local id = table.remove(free) or table.remove(spare)
  assert(id, "no session left to post to")
  local seq = next_seq[id]
  next_seq[id] = seq + 1
  local body = string.format('{"seq":%d,"observations":[%s]}', seq, closes[seq % #closes + 1])
  return wrk.format("POST", "/v1/sessions/" .. id .. "/observations", headers, body)
end

function response(status, headers, body)
  local id, after = body:match('"session_id":"([^"]+)".-"next_seq":(%d+)')
  if status ~= 200 or id == nil then
    bad = bad + 1
    local replacement = table.remove(spare)
    if replacement then table.insert(free, replacement) end
    return
  end
  if tonumber(after) ~= next_seq[id] then mismatched = mismatched + 1 end
  table.insert(free, id)
end

function done(summary, latency, requests)
  local bad_total, mismatched_total = 0, 0
  for _, thread in ipairs(threads) do
    bad_total = bad_total + thread:get("bad")
    mismatched_total = mismatched_total + thread:get("mismatched")
  end
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"non2xx":%d,"status_errors":%d,' ..
    '"socket_errors":%d,"mismatched":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), bad_total,
    e.status, e.connect + e.read + e.write + e.timeout, mismatched_total))
end
