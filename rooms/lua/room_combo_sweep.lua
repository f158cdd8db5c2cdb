-- room_combo_sweep: closes a room's combos whose window has passed by
-- Redis's clock, each with its combo_end event (next seq, history,
-- PUBLISH), as room_apply.lua does before a call's gifts. A combo is popped
-- from the combo keys in the same atomic step as its event, so whichever
-- of this script (run by every node with members in the room) and
-- room_apply closes it, it closes once.
-- KEYS[1] tc:{r:ROOM}:seq, KEYS[2] tc:{r:ROOM}:hist, KEYS[3] tc:{r:ROOM}:combo,
-- KEYS[4] tc:{r:ROOM}:combo:due
-- ARGV[1] history length, ARGV[2] the room's channel
-- Returns the number of combos still open (closed at most 100 a call).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now, 'LIMIT', 0, 100)
for j, user in ipairs(due) do
  local st = redis.call('HGET', KEYS[3], user)
  redis.call('HDEL', KEYS[3], user)
  redis.call('ZREM', KEYS[4], user)
  if st then
    local gift, count, orders, amount, first, last, id =
      string.match(st, '^(%d+):(%d+):(%d+):(%d+):(%d+):(%d+):(.+)$')
    local body = string.char(0x8a) .. cmsgpack.pack('kind', 'combo_end', 'from', user, 'combo_id', id,
      'gift', tonumber(gift), 'count', tonumber(count), 'orders', tonumber(orders), 'amount', tonumber(amount),
      'started', tonumber(first), 'ended', tonumber(last), 'ts', now)
    local seq = redis.call('INCR', KEYS[1])
    redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[1], seq .. '-1', 'b', body, 'k', 'combo_end')
    redis.call('SPUBLISH', ARGV[2], seq .. ':combo_end:' .. body)
  end
end
return redis.call('ZCARD', KEYS[4])
