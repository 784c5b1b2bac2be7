package redisq

import "github.com/redis/go-redis/v9"

// Every change of a destination's state is one Lua script, so it is atomic across broker
// nodes. A destination's keys share the prefix base (ARGV[1]) and, through its {hash tag},
// one cluster slot:
//
//	base.."s"        stream of ready or claimed messages (entry field "id"), consumer group
//	base.."r"        sorted set: retrying message ids, score = not-before (unix µs)
//	base.."a"        sorted set: every unfinished message id, score = enqueue time (µs)
//	base.."d"        dead-letter stream (entry field "id")
//	base.."k"        hash: key -> id of the message that holds the key
//	base.."p:"..key  list: ids waiting behind the holder of key, in enqueue order
//	base.."m:"..id   hash: the message (k key, i idempotency key, b body, a attempt,
//	                 t enqueued µs, e last error, s state, x stream entry, dx dead entry)
//
// State s: "q" in the stream, "r" waiting to retry, "p" parked behind its key's holder,
// "d" dead. The stream holds at most one message per key, so order per key needs no check at
// claim time: a key's next message enters the stream only when its holder is acknowledged or
// dead-lettered.
const luaCommon = `
local function ensureGroup(base, group)
  if redis.call('EXISTS', base..'s') == 0 then
    redis.call('XGROUP', 'CREATE', base..'s', group, '0', 'MKSTREAM')
  end
end
local function toStream(base, id)
  local x = redis.call('XADD', base..'s', '*', 'id', id)
  redis.call('HSET', base..'m:'..id, 's', 'q', 'x', x)
end
-- place puts a new or replayed message in line: in the stream, or parked behind its key.
local function place(base, group, id, key)
  if key ~= '' then
    if redis.call('HGET', base..'k', key) then
      redis.call('RPUSH', base..'p:'..key, id)
      redis.call('HSET', base..'m:'..id, 's', 'p')
      return
    end
    redis.call('HSET', base..'k', key, id)
  end
  ensureGroup(base, group)
  toStream(base, id)
end
-- release hands key on from the finished message id to the next parked one.
local function release(base, id, key)
  if key == '' or redis.call('HGET', base..'k', key) ~= id then return end
  local nxt = redis.call('LPOP', base..'p:'..key)
  if nxt then
    redis.call('HSET', base..'k', key, nxt)
    toStream(base, nxt)
  else
    redis.call('HDEL', base..'k', key)
  end
end
-- unlink takes a claimed or retrying message out of the stream or the retry set.
local function unlink(base, group, id, st, x)
  if st == 'q' then
    redis.call('XACK', base..'s', group, x)
    redis.call('XDEL', base..'s', x)
    redis.call('HDEL', base..'m:'..id, 'x')
  elseif st == 'r' then
    redis.call('ZREM', base..'r', id)
  end
end
`

// KEYS: stream, set of destinations. ARGV: base, group, destination, then per message: id,
// key, idempotency key, body, enqueued µs.
var enqueueScript = redis.NewScript(luaCommon + `
local base, group = ARGV[1], ARGV[2]
redis.call('SADD', KEYS[2], ARGV[3])
for i = 4, #ARGV, 5 do
  local id, key, t = ARGV[i], ARGV[i+1], ARGV[i+4]
  redis.call('HSET', base..'m:'..id, 'k', key, 'i', ARGV[i+2], 'b', ARGV[i+3], 't', t, 'a', 0, 'e', '')
  redis.call('ZADD', base..'a', t, id)
  place(base, group, id, key)
end
return #ARGV
`)

// ARGV: base, group, consumer, n, now µs, lease horizon ms, idle ms to set, due limit.
//
// Leases use the consumer group's idle time: every claimed entry gets idle = horizon - lease,
// so it reaches the horizon, the XAUTOCLAIM min-idle, exactly when its lease ends, whatever
// lease each consumer asked for.
//
// Returns per message: id, key, idempotency key, body, attempt, enqueued µs, last error.
var claimScript = redis.NewScript(luaCommon + `
local base, group, consumer = ARGV[1], ARGV[2], ARGV[3]
local n, now, horizon, idle = tonumber(ARGV[4]), ARGV[5], ARGV[6], ARGV[7]
local s = base..'s'
local due = redis.call('ZRANGEBYSCORE', base..'r', '-inf', now, 'LIMIT', 0, tonumber(ARGV[8]))
for _, id in ipairs(due) do
  redis.call('ZREM', base..'r', id)
  ensureGroup(base, group)
  toStream(base, id)
end
if redis.call('EXISTS', s) == 0 then return {} end
local entries = {}
local function take(list)
  for _, e in ipairs(list) do
    if type(e) == 'table' and type(e[2]) == 'table' then
      entries[#entries+1] = e
    end
  end
end
local cursor = '0-0'
for _ = 1, 16 do
  if #entries >= n then break end
  local r = redis.call('XAUTOCLAIM', s, group, consumer, horizon, cursor, 'COUNT', n - #entries)
  take(r[2])
  cursor = r[1]
  if cursor == '0-0' then break end
end
if #entries < n then
  local r = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', n - #entries, 'STREAMS', s, '>')
  if r then take(r[1][2]) end
end
local out = {}
for _, e in ipairs(entries) do
  local x, f = e[1], e[2]
  local id
  for j = 1, #f, 2 do if f[j] == 'id' then id = f[j+1] end end
  local m = id and redis.call('HMGET', base..'m:'..id, 's', 'x', 'k', 'i', 'b', 'a', 't', 'e')
  if m and m[1] == 'q' and m[2] == x then
    redis.call('XCLAIM', s, group, consumer, 0, x, 'IDLE', idle, 'JUSTID')
    out[#out+1] = {id, m[3], m[4], m[5], m[6], m[7], m[8]}
  else
    -- An entry whose message moved on (cannot happen through these scripts; be safe).
    redis.call('XACK', s, group, x)
    redis.call('XDEL', s, x)
  end
end
return out
`)

// ARGV: base, group, id. Returns 1 when a message was finished.
var ackScript = redis.NewScript(luaCommon + `
local base, group, id = ARGV[1], ARGV[2], ARGV[3]
local m = redis.call('HMGET', base..'m:'..id, 's', 'x', 'k')
if m[1] ~= 'q' and m[1] ~= 'r' then return 0 end
unlink(base, group, id, m[1], m[2])
redis.call('DEL', base..'m:'..id)
redis.call('ZREM', base..'a', id)
release(base, id, m[3])
return 1
`)

// ARGV: base, group, id, not-before µs, last error. Returns 0 when there is no such message.
// The message keeps its key: later messages of the key wait for it.
var retryScript = redis.NewScript(luaCommon + `
local base, group, id = ARGV[1], ARGV[2], ARGV[3]
local m = redis.call('HMGET', base..'m:'..id, 's', 'x')
if m[1] ~= 'q' and m[1] ~= 'r' then return 0 end
unlink(base, group, id, m[1], m[2])
redis.call('HINCRBY', base..'m:'..id, 'a', 1)
redis.call('HSET', base..'m:'..id, 's', 'r', 'e', ARGV[5])
redis.call('ZADD', base..'r', ARGV[4], id)
return 1
`)

// ARGV: base, group, id, last error. Returns 0 when there is no such message.
var deadLetterScript = redis.NewScript(luaCommon + `
local base, group, id = ARGV[1], ARGV[2], ARGV[3]
local m = redis.call('HMGET', base..'m:'..id, 's', 'x', 'k')
if m[1] ~= 'q' and m[1] ~= 'r' then return 0 end
unlink(base, group, id, m[1], m[2])
local dx = redis.call('XADD', base..'d', '*', 'id', id)
redis.call('HSET', base..'m:'..id, 's', 'd', 'e', ARGV[4], 'dx', dx)
redis.call('ZREM', base..'a', id)
release(base, id, m[3])
return 1
`)

// ARGV: base, group, now µs, ids... (none: every dead letter). Returns how many moved.
var replayScript = redis.NewScript(luaCommon + `
local base, group, now = ARGV[1], ARGV[2], ARGV[3]
local ids = {}
if #ARGV == 3 then
  for _, e in ipairs(redis.call('XRANGE', base..'d', '-', '+')) do
    for j = 1, #e[2], 2 do if e[2][j] == 'id' then ids[#ids+1] = e[2][j+1] end end
  end
else
  for i = 4, #ARGV do ids[#ids+1] = ARGV[i] end
end
local moved = 0
for _, id in ipairs(ids) do
  local m = redis.call('HMGET', base..'m:'..id, 's', 'dx', 'k')
  if m[1] == 'd' then
    redis.call('XDEL', base..'d', m[2])
    redis.call('HDEL', base..'m:'..id, 'dx')
    redis.call('HSET', base..'m:'..id, 'a', 0, 't', now)
    redis.call('ZADD', base..'a', now, id)
    place(base, group, id, m[3])
    moved = moved + 1
  end
end
return moved
`)

// ARGV: base, limit (0: all). Returns dead letters oldest first, fields as claimScript.
var deadLettersScript = redis.NewScript(`
local base, limit = ARGV[1], tonumber(ARGV[2])
local r
if limit > 0 then
  r = redis.call('XRANGE', base..'d', '-', '+', 'COUNT', limit)
else
  r = redis.call('XRANGE', base..'d', '-', '+')
end
local out = {}
for _, e in ipairs(r) do
  local id
  for j = 1, #e[2], 2 do if e[2][j] == 'id' then id = e[2][j+1] end end
  if id then
    local m = redis.call('HMGET', base..'m:'..id, 'k', 'i', 'b', 'a', 't', 'e')
    if m[1] then out[#out+1] = {id, m[1], m[2], m[3], m[4], m[5], m[6]} end
  end
end
return out
`)
