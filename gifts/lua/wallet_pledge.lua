-- wallet_pledge: a pledge to a campaign, on the backer's wallet shard, in
-- one script: every check first, then the debit, the campaign's counters
-- and the tier's stock, the outbox entry and the stored result.
--
-- Where the stock lives (the one-slot rule): a campaign is written to
-- every wallet shard when it opens (campaign_shard.lua), each shard's hash
-- holding that shard's share of each limited tier's stock (the stock S of
-- a tier split over W shards: shard k holds floor(S / W), plus one when
-- k < S mod W). A pledge takes one unit from its own shard's share, so the
-- debit and the stock move in one atomic script on one slot, and the
-- shares never sum to more than S. The price: a tier can be sold out on
-- one shard while another still has some (docs/settlement.md, "Campaigns").
--
-- KEYS[1] tc:{w:N}:bal:<uid>            the balance
-- KEYS[2] tc:{w:N}:idem:<uid>:<req id>  the stored result
-- KEYS[3] tc:{w:N}:outbox               the shard's outbox
-- KEYS[4] tc:{w:N}:camp:<campaign>      the campaign on this shard: st (open |
--         sealed), dl (deadline ms), cr (the creator), sum, n (this shard's pledges), m<t> (tier
--         t's minimum), s<t> (tier t's stock left here; absent: unlimited)
-- ARGV[1] uid  ARGV[2] campaign  ARGV[3] tier (0: none)  ARGV[4] amount
-- ARGV[5] request id  ARGV[6] ts ms  ARGV[7] fingerprint  ARGV[8] idempotency ttl ms
-- ARGV[9] outbox backlog bound  ARGV[10] role
-- Returns {"ok", stream id, balance after, replayed 0|1}
--      or {"err", code, extra}: campaign_not_found, campaign_closed, own_campaign,
--         unknown_tier, below_tier_minimum (extra: the minimum),
--         tier_sold_out, insufficient_balance (extra: balance), backlogged,
--         idempotency_conflict.
local stored = redis.call('GET', KEYS[2])
if stored then
  local fp, sid, bal = string.match(stored, '^([^|]*)|([^|]*)|(-?%d+)$')
  if fp ~= ARGV[7] then
    return {'err', 'idempotency_conflict', 0}
  end
  return {'ok', sid, tonumber(bal), 1}
end
local amount = tonumber(ARGV[4])
if not amount or amount <= 0 or amount ~= math.floor(amount) then
  return {'err', 'bad_amount', 0}
end
local c = redis.call('HMGET', KEYS[4], 'st', 'dl', 'cr')
if not c[1] then
  return {'err', 'campaign_not_found', 0}
end
-- Sealed by the campaign job, or past the deadline by this node's clock
-- before the job got to it: closed either way.
if c[1] ~= 'open' or tonumber(ARGV[6]) >= tonumber(c[2]) then
  return {'err', 'campaign_closed', 0}
end
-- A creator's coins in its own escrow would buy its own target.
if c[3] == ARGV[1] then
  return {'err', 'own_campaign', 0}
end
local tier = ARGV[3]
local stockf = nil
if tier ~= '0' then
  local t = redis.call('HMGET', KEYS[4], 'm' .. tier, 's' .. tier)
  if not t[1] then
    return {'err', 'unknown_tier', 0}
  end
  if amount < tonumber(t[1]) then
    return {'err', 'below_tier_minimum', tonumber(t[1])}
  end
  if t[2] then
    if tonumber(t[2]) <= 0 then
      return {'err', 'tier_sold_out', 0}
    end
    stockf = 's' .. tier
  end
end
if redis.call('XLEN', KEYS[3]) >= tonumber(ARGV[9]) then
  return {'err', 'backlogged', 0}
end
local bal = tonumber(redis.call('GET', KEYS[1]) or '0')
if bal < amount then
  return {'err', 'insufficient_balance', bal}
end
local new = redis.call('DECRBY', KEYS[1], amount)
if stockf then
  redis.call('HINCRBY', KEYS[4], stockf, -1)
end
redis.call('HINCRBY', KEYS[4], 'sum', amount)
redis.call('HINCRBY', KEYS[4], 'n', 1)
local fields = {'k', 'pledge', 'u', ARGV[1], 'r', ARGV[2], 'a', ARGV[4], 'b', new, 'q', ARGV[5],
  'ts', ARGV[6], 'ro', ARGV[10]}
if tier ~= '0' then
  fields[#fields + 1] = 'x'
  fields[#fields + 1] = tier
end
local sid = redis.call('XADD', KEYS[3], '*', unpack(fields))
redis.call('SET', KEYS[2], ARGV[7] .. '|' .. sid .. '|' .. new, 'PX', ARGV[8])
return {'ok', sid, new, 0}
