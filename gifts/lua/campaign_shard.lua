-- campaign_shard: a campaign's hash on one wallet shard (see
-- wallet_pledge.lua for its fields and where the stock lives).
-- KEYS[1] tc:{w:N}:camp:<campaign>
-- ARGV[1] "open": ARGV[2] deadline ms, ARGV[3] the creator, then per tier: number, minimum,
--         this shard's stock ("" for unlimited). Writes the hash only when
--         it is absent, so opening again (a retry, another node) never
--         gives back stock already taken, and never reopens a sealed one.
--         Returns 1 when written, 0 when it was there.
-- ARGV[1] "seal": from now on every pledge here is campaign_closed (made
--         sealed even when it was never opened here). Returns {sum, n}:
--         this shard's pledges, final.
if ARGV[1] == 'open' then
  if redis.call('EXISTS', KEYS[1]) == 1 then
    return 0
  end
  local f = {'st', 'open', 'dl', ARGV[2], 'cr', ARGV[3], 'sum', 0, 'n', 0}
  local i = 4
  while i + 2 <= #ARGV do
    f[#f + 1] = 'm' .. ARGV[i]
    f[#f + 1] = ARGV[i + 1]
    if ARGV[i + 2] ~= '' then
      f[#f + 1] = 's' .. ARGV[i]
      f[#f + 1] = ARGV[i + 2]
    end
    i = i + 3
  end
  redis.call('HSET', KEYS[1], unpack(f))
  return 1
end
if ARGV[1] == 'seal' then
  redis.call('HSET', KEYS[1], 'st', 'sealed')
  local r = redis.call('HMGET', KEYS[1], 'sum', 'n')
  return {tonumber(r[1] or '0'), tonumber(r[2] or '0')}
end
return redis.error_reply('campaign_shard: unknown op')
