-- pk_announce: a PK battle's result as a room event, once per room
-- (server/pk.c). room_publish.lua (rooms/lua) with a once-marker: any node
-- may announce a decided battle, and several may try at once.
-- KEYS[1] tc:{r:ROOM}:seq, KEYS[2] tc:{r:ROOM}:hist, KEYS[3] tc:{r:ROOM}:pk:<id>
-- ARGV[1] the room's channel, ARGV[2] the event body (msgpack map),
-- ARGV[3] history length, ARGV[4] how long the marker is kept, ms
-- Returns the event's seq, or 0 when the room had it already.
if not redis.call('SET', KEYS[3], '1', 'NX', 'PX', ARGV[4]) then
  return 0
end
local seq = redis.call('INCR', KEYS[1])
redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[3], seq .. '-1', 'b', ARGV[2], 'k', 'pk_end')
redis.call('SPUBLISH', ARGV[1], seq .. ':pk_end:' .. ARGV[2])
return seq
