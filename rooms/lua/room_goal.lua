-- room_goal: sets or clears a room's goal and makes its room event (next
-- seq, history, PUBLISH) in one atomic step, so that the goal the room
-- script counts from and the event that announces it agree.
-- KEYS[1] tc:{r:ROOM}:seq, KEYS[2] tc:{r:ROOM}:hist, KEYS[3] tc:{r:ROOM}:goal
-- ARGV[1] the room's channel, ARGV[2] history length, ARGV[3] "set" or
-- "clear", ARGV[4] who (user id), ARGV[5] its role, ARGV[6] now (ms),
-- and for "set": ARGV[7] target coins, ARGV[8] gift id (0: any), ARGV[9]
-- deadline ms (0: none), ARGV[10] title
-- The goal's hash: id ("g" and the seq of its goal event), target,
-- progress (room_apply.lua counts it), gift, deadline, reached (0/1),
-- title, since (ARGV[6]: entries paid before it do not count). It lives
-- until replaced or cleared, or a day past its deadline.
-- Returns the event's seq; 0 for "clear" when the room has no goal.
local now = tonumber(ARGV[6])
local body, kind
if ARGV[3] == 'set' then
  local seq = tonumber(redis.call('GET', KEYS[1]) or '0') + 1
  local id = 'g' .. seq
  redis.call('DEL', KEYS[3])
  redis.call('HSET', KEYS[3], 'id', id, 'target', ARGV[7], 'progress', '0', 'gift', ARGV[8],
    'deadline', ARGV[9], 'reached', '0', 'title', ARGV[10], 'since', ARGV[6])
  if tonumber(ARGV[9]) > 0 then
    redis.call('PEXPIREAT', KEYS[3], string.format('%d', tonumber(ARGV[9]) + 86400000))
  end
  kind = 'goal'
  body = string.char(0x89) .. cmsgpack.pack('kind', 'goal', 'from', ARGV[4], 'role', ARGV[5], 'goal_id', id,
    'target', tonumber(ARGV[7]), 'gift', tonumber(ARGV[8]), 'deadline', tonumber(ARGV[9]), 'title', ARGV[10],
    'ts', now)
else
  local g = redis.call('HMGET', KEYS[3], 'id', 'progress')
  if not g[1] then
    return 0
  end
  redis.call('DEL', KEYS[3])
  kind = 'goal_cleared'
  body = string.char(0x86) .. cmsgpack.pack('kind', 'goal_cleared', 'from', ARGV[4], 'role', ARGV[5],
    'goal_id', g[1], 'progress', tonumber(g[2]), 'ts', now)
end
local seq = redis.call('INCR', KEYS[1])
redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[2], seq .. '-1', 'b', body, 'k', kind)
redis.call('SPUBLISH', ARGV[1], seq .. ':' .. kind .. ':' .. body)
return seq
