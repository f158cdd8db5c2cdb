-- room_presence: records how many members this node has in a room and
-- answers the room's snapshot, in one atomic step.
-- KEYS[1] tc:{r:ROOM}:seq   the room's last event sequence number
-- KEYS[2] tc:{r:ROOM}:hist  the room's history stream (entry id = "<seq>-1")
-- KEYS[3] tc:{r:ROOM}:nodes hash: node id -> "<members> <valid until ms>"
-- KEYS[4..7] the all-time, day, week and month leaderboards (sorted sets)
-- KEYS[8..11] their periods' totals (strings), KEYS[12] tc:{r:ROOM}:goal,
-- KEYS[13] tc:{r:ROOM}:pins, KEYS[14] tc:{r:ROOM}:pin (room_apply.lua)
-- ARGV[1] node id, ARGV[2] this node's member count, ARGV[3] entry ttl ms,
-- ARGV[4] how many latest events to return, ARGV[5] how many entries of
-- each leaderboard to return (0: none)
-- Returns {seq, members on all live nodes, all, day, week, month,
-- {sum all, sum day, sum week, sum month}, the goal's fields (HMGET of
-- id, target, progress, gift, deadline, reached, title; all nil: none),
-- the pinned tips still pinned (a msgpack array of maps, ending first
-- first),
-- seq1, kind1, body1, seq2, kind2, body2, ...} where each board is
-- {user1, total1, ...}, events oldest first: the boards are read in the
-- same atomic step as seq, so they include exactly the gifts up to seq.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[3])
local count = tonumber(ARGV[2])
if count > 0 then
  redis.call('HSET', KEYS[3], ARGV[1], count .. ' ' .. (now + ttl))
  redis.call('PEXPIRE', KEYS[3], ttl * 2)
else
  redis.call('HDEL', KEYS[3], ARGV[1])
end
-- Entries of nodes that stopped refreshing them (a crashed node) lapse.
local total = 0
local nodes = redis.call('HGETALL', KEYS[3])
for i = 1, #nodes, 2 do
  local c, exp = string.match(nodes[i + 1], '^(%d+) (%d+)$')
  if c and tonumber(exp) > now then
    total = total + tonumber(c)
  else
    redis.call('HDEL', KEYS[3], nodes[i])
  end
end
local out = {tonumber(redis.call('GET', KEYS[1]) or '0'), total}
local top = tonumber(ARGV[5])
for b = 4, 7 do
  out[#out + 1] = top > 0 and redis.call('ZREVRANGE', KEYS[b], 0, top - 1, 'WITHSCORES') or {}
end
out[#out + 1] = top > 0 and redis.call('MGET', KEYS[8], KEYS[9], KEYS[10], KEYS[11]) or {}
out[#out + 1] = redis.call('HMGET', KEYS[12], 'id', 'target', 'progress', 'gift', 'deadline', 'reached', 'title')
local pinned = redis.call('ZRANGEBYSCORE', KEYS[13], '(' .. now, '+inf')
local pins = {string.char(0x90 + #pinned)}
for _, o in ipairs(pinned) do
  pins[#pins + 1] = redis.call('HGET', KEYS[14], o) or string.char(0x80)
end
out[#out + 1] = table.concat(pins)
local want = tonumber(ARGV[4])
if want > 0 then
  local ev = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', want)
  -- An entry's fields are b, body, k, kind (k may be missing: kind "").
  for i = #ev, 1, -1 do
    out[#out + 1] = tonumber(string.match(ev[i][1], '^(%d+)-'))
    out[#out + 1] = ev[i][2][4] or ''
    out[#out + 1] = ev[i][2][2]
  end
end
return out
