-- room_publish: gives an event the room's next sequence number, keeps it in
-- the room's bounded history and publishes it to every node.
-- KEYS[1] tc:{r:ROOM}:seq, KEYS[2] tc:{r:ROOM}:hist
-- ARGV[1] the room's channel (same hash slot), ARGV[2] the event body
-- (msgpack map), ARGV[3] history length, ARGV[4] the event's kind
-- The published message is "<seq>:<kind>:<body>"; a history entry has the
-- fields b (body) and k (kind). Returns the seq.
local seq = redis.call('INCR', KEYS[1])
redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[3], seq .. '-1', 'b', ARGV[2], 'k', ARGV[4])
redis.call('SPUBLISH', ARGV[1], seq .. ':' .. ARGV[4] .. ':' .. ARGV[2])
return seq
