-- outbox_lease: takes, renews or gives up the lease of one consumer group on
-- one wallet shard, so that one node at a time reads the shard's outbox.
-- KEYS[1] tc:{w:N}:lease:<group>
-- ARGV[1] node id, ARGV[2] lease ms, ARGV[3] "1" take/renew, "0" give up
-- Returns 1 when the caller holds the lease afterwards, else 0.
local cur = redis.call('GET', KEYS[1])
if ARGV[3] == '0' then
  if cur == ARGV[1] then
    redis.call('DEL', KEYS[1])
  end
  return 0
end
if cur == false or cur == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
