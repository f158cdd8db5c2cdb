-- room_pins: a room's pinned tips and moderators, changed by a request.
-- KEYS[1] tc:{r:ROOM}:seq, KEYS[2] tc:{r:ROOM}:hist, KEYS[3] tc:{r:ROOM}:pins
-- (sorted set: order id -> pinned until, ms), KEYS[4] tc:{r:ROOM}:pin (hash:
-- order id -> the pin, a msgpack map), KEYS[5] tc:{r:ROOM}:mods (set)
-- ARGV[1] the room's channel, ARGV[2] history length, ARGV[3] the
-- operation, ARGV[4] who asks, ARGV[5] "1" when that is the room's owner
-- or an admin, ARGV[6] the operation's order id or user id
-- Operations and what they return:
--   unpin ORDER: the owner, an admin or a moderator removes a pin (no
--     refund: the tip stands) with a `pins` event (next seq, history,
--     PUBLISH) of the list left: {seq}; {-2} when who may not; {-1} when
--     no such pin is pinned (any more).
--   mod_add USER / mod_remove USER (the owner or an admin, checked by the
--     caller): {0, moderators...}; {-3} when the room has 100 already.
--   mod_list: {0, moderators...}, changing nothing.
local MODS_MAX = 100
local op = ARGV[3]
if op == 'mod_add' or op == 'mod_remove' or op == 'mod_list' then
  if op == 'mod_add' then
    if redis.call('SISMEMBER', KEYS[5], ARGV[6]) == 0 and redis.call('SCARD', KEYS[5]) >= MODS_MAX then
      return {-3}
    end
    redis.call('SADD', KEYS[5], ARGV[6])
  elseif op == 'mod_remove' then
    redis.call('SREM', KEYS[5], ARGV[6])
  end
  local out = {0}
  local mods = redis.call('SMEMBERS', KEYS[5])
  table.sort(mods)
  for _, m in ipairs(mods) do
    out[#out + 1] = m
  end
  return out
end
if op ~= 'unpin' then
  return redis.error_reply('ERR room_pins: unknown operation')
end
if ARGV[5] ~= '1' and redis.call('SISMEMBER', KEYS[5], ARGV[4]) == 0 then
  return {-2}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for _, o in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now)) do
  redis.call('ZREM', KEYS[3], o)
  redis.call('HDEL', KEYS[4], o)
end
if redis.call('ZREM', KEYS[3], ARGV[6]) == 0 then
  return {-1}
end
redis.call('HDEL', KEYS[4], ARGV[6])
local orders = redis.call('ZRANGE', KEYS[3], 0, -1)
local list = {string.char(0x90 + #orders)}
for _, o in ipairs(orders) do
  list[#list + 1] = redis.call('HGET', KEYS[4], o) or string.char(0x80)
end
local body = string.char(0x86) .. cmsgpack.pack('kind', 'pins', 'change', 'removed', 'order', ARGV[6], 'by', ARGV[4],
  'pins') .. table.concat(list) .. cmsgpack.pack('ts', now)
local seq = redis.call('INCR', KEYS[1])
redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[2], seq .. '-1', 'b', body, 'k', 'pins')
redis.call('SPUBLISH', ARGV[1], seq .. ':pins:' .. body)
return {seq}
