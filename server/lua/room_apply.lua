-- room_apply: applies one outbox entry (a gift or a tip) to its room exactly
-- once: the leaderboards, then the room event (next seq, history, PUBLISH),
-- as room_publish does.
-- KEYS[1] tc:{r:ROOM}:seq, KEYS[2] tc:{r:ROOM}:hist, KEYS[3] tc:{r:ROOM}:wm
-- (hash: wallet shard -> the last stream id of that shard applied here),
-- KEYS[4..7] the all-time, day, week and month boards (sorted sets)
-- ARGV[1] wallet shard, ARGV[2] the entry's stream id "ms-seq",
-- ARGV[3] the stream id of the entry of the same shard and room just before
-- this one in the caller's pipeline, or "" when none,
-- ARGV[4] the event body (msgpack map), ARGV[5] history length,
-- ARGV[6] the room's channel, ARGV[7] the sender, ARGV[8] the amount,
-- ARGV[9..11] seconds the day, week and month boards live after a bump
-- Returns the event's seq; 0 when the entry was applied before (a
-- redelivery); -1 when the entry before it (ARGV[3]) has not been applied,
-- so that nothing is applied out of stream order: the caller reads the
-- shard's pending entries again.
local function parse(id)
  local ms, sq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(sq)
end
-- a < b for stream ids (numerically: ms, then seq; both fit a double).
local function before(a, b)
  local ams, asq = parse(a)
  local bms, bsq = parse(b)
  return ams < bms or (ams == bms and asq < bsq)
end

local id = ARGV[2]
if not parse(id) then
  return redis.error_reply('ERR room_apply: bad stream id')
end
local wm = redis.call('HGET', KEYS[3], ARGV[1])
if wm and not before(wm, id) then
  return 0
end
if ARGV[3] ~= '' and (not wm or before(wm, ARGV[3])) then
  return -1
end
redis.call('HSET', KEYS[3], ARGV[1], id)

local amount = tonumber(ARGV[8])
redis.call('ZINCRBY', KEYS[4], amount, ARGV[7])
for i = 5, 7 do
  redis.call('ZINCRBY', KEYS[i], amount, ARGV[7])
  redis.call('EXPIRE', KEYS[i], tonumber(ARGV[i + 4]))
end

local seq = redis.call('INCR', KEYS[1])
redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[5], seq .. '-1', 'b', ARGV[4])
redis.call('PUBLISH', ARGV[6], seq .. ':' .. ARGV[4])
return seq
