-- recon_wallets: a batch of one wallet shard's balances and the shard's
-- cut, read at one instant (settlement/recon.c).
-- KEYS[1] tc:{w:N}:outbox, KEYS[2..] tc:{w:N}:bal:<uid>
-- Returns {last-generated stream id ("0-0" for no stream), balance or nil...}:
-- every entry up to that id has moved these balances, none after it has.
local out = {'0-0'}
if redis.call('EXISTS', KEYS[1]) == 1 then
  local info = redis.call('XINFO', 'STREAM', KEYS[1])
  for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' then
      out[1] = info[i + 1]
    end
  end
end
for i = 2, #KEYS do
  out[i] = redis.call('GET', KEYS[i]) or false
end
return out
