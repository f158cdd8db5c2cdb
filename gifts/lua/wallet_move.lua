-- wallet_move: one money movement on one wallet shard, atomically: every
-- check first, then the writes, so an error never leaves half a change.
-- KEYS[1] tc:{w:N}:bal:<uid>           the wallet's balance (integer coins)
-- KEYS[2] tc:{w:N}:idem:<uid>:<req id> the stored result of this request
-- KEYS[3] tc:{w:N}:outbox              the shard's outbox stream
-- ARGV[1] kind: gift | tip | credit | recharge | refund
--                                       ARGV[2] uid       ARGV[3] room
-- ARGV[4] gift id   ARGV[5] gift name   ARGV[6] animation ARGV[7] count
-- ARGV[8] unit price ARGV[9] amount     ARGV[10] combo    ARGV[11] text
-- ARGV[12] request id ARGV[13] ts ms    ARGV[14] fingerprint of the request
-- ARGV[15] idempotency ttl ms           ARGV[16] outbox backlog bound
-- ARGV[17] the sender's role (viewer, creator, admin)
-- ARGV[18] recharge, refund: the external reference (entry field x)
-- ARGV[19] refund: the refunded order's created_at in ms (entry field ots)
-- credit, recharge and refund add coins: no balance check, and no backlog
-- bound (they are few, decided elsewhere, and a refused recharge would be
-- money paid for nothing until retried).
-- Returns {"ok", stream id, balance after, replayed 0|1}
--      or {"err", code, balance (insufficient_balance) or 0}.
-- Balances and amounts stay below 2^53 (Lua numbers are doubles); the C
-- side bounds every amount far below that.
local stored = redis.call('GET', KEYS[2])
if stored then
  local fp, sid, bal = string.match(stored, '^([^|]*)|([^|]*)|(-?%d+)$')
  if fp ~= ARGV[14] then
    return {'err', 'idempotency_conflict', 0}
  end
  return {'ok', sid, tonumber(bal), 1}
end
local amount = tonumber(ARGV[9])
if not amount or amount <= 0 or amount ~= math.floor(amount) then
  return {'err', 'bad_amount', 0}
end
local kind = ARGV[1]
local adds = kind == 'credit' or kind == 'recharge' or kind == 'refund'
local bal = tonumber(redis.call('GET', KEYS[1]) or '0')
if not adds then
  -- Past the bound the ledger is not keeping up (PostgreSQL down): refuse
  -- rather than let the outbox exhaust Redis memory.
  if redis.call('XLEN', KEYS[3]) >= tonumber(ARGV[16]) then
    return {'err', 'backlogged', 0}
  end
  if bal < amount then
    return {'err', 'insufficient_balance', bal}
  end
end
local new
if adds then
  new = redis.call('INCRBY', KEYS[1], amount)
else
  new = redis.call('DECRBY', KEYS[1], amount)
end
local fields = {'k', kind, 'u', ARGV[2], 'r', ARGV[3], 'g', ARGV[4], 'gn', ARGV[5],
  'an', ARGV[6], 'n', ARGV[7], 'p', ARGV[8], 'a', ARGV[9], 'b', new,
  'm', ARGV[10], 't', ARGV[11], 'q', ARGV[12], 'ts', ARGV[13], 'ro', ARGV[17]}
if kind == 'recharge' or kind == 'refund' then
  fields[#fields + 1] = 'x'
  fields[#fields + 1] = ARGV[18]
end
if kind == 'refund' then
  fields[#fields + 1] = 'ots'
  fields[#fields + 1] = ARGV[19]
end
local sid = redis.call('XADD', KEYS[3], '*', unpack(fields))
redis.call('SET', KEYS[2], ARGV[14] .. '|' .. sid .. '|' .. new, 'PX', ARGV[15])
return {'ok', sid, new, 0}
