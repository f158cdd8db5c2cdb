-- wallet_move: one money movement on one wallet shard, atomically: every
-- check first, then the writes, so an error never leaves half a change.
-- KEYS[1] tc:{w:N}:bal:<uid>           the wallet's balance (integer coins)
-- KEYS[2] tc:{w:N}:idem:<uid>:<req id> the stored result of this request
-- KEYS[3] tc:{w:N}:outbox              the shard's outbox stream
-- KEYS[4] tc:{w:N}:risk:<uid>          the wallet's risk hash: day (UTC day
--         number), spent (coins spent on gifts and tips that day), first
--         (ms of the wallet's first credit: the account's age)
-- ARGV[1] kind: gift | tip | credit | recharge | refund | crefund (a campaign
--         refund: ARGV[3] the campaign, ARGV[18] the pledge's order id)
--                                       ARGV[2] uid       ARGV[3] room
-- ARGV[4] gift id   ARGV[5] gift name   ARGV[6] animation ARGV[7] count
-- ARGV[8] unit price ARGV[9] amount     ARGV[10] combo    ARGV[11] text
-- ARGV[12] request id ARGV[13] ts ms    ARGV[14] fingerprint of the request
-- ARGV[15] idempotency ttl ms           ARGV[16] outbox backlog bound
-- ARGV[17] the sender's role (viewer, creator, admin)
-- ARGV[18] recharge, refund: the external reference (entry field x)
-- ARGV[19] refund: the refunded order's created_at in ms (entry field ots)
-- ARGV[20] gift, tip: the client's IP as text, "" when unknown (entry field ip)
-- ARGV[21] gift, tip: the client's device id, "" when unknown (entry field dv)
-- ARGV[22] gift, tip: the daily spend cap in coins, 0 = none
-- ARGV[23] gift, tip: the daily spend cap of a new account, 0 = none
-- ARGV[24] gift, tip: how long an account is new, in ms after its first credit
-- ARGV[25] gift: a coupon's code, "" for none (then KEYS[5] is its marker)
-- ARGV[26] gift with a coupon: the coupon's discount in coins, 1..amount
-- KEYS[5] (coupon only) tc:{w:N}:cpn:<uid>:<code>, the coupon's use: the
--         request id that used it, kept for ever (single use)
-- A coupon gift writes two entries: a credit of the discount charged to the
-- platform (t "coupon:<code>"), then the gift at its full price, so the
-- creator's split and the boards see the full price and the ledger sums to
-- zero with no new kind; the wallet pays amount - discount.
-- ARGV[27] "bonus" or "" (below).
-- ARGV[15] "0" keeps the stored result for ever (the new-user bonus: once
-- per user, whatever the idempotency ttl).
-- credit, recharge and refund add coins: no balance check, and no backlog
-- bound (they are few, decided elsewhere, and a refused recharge would be
-- money paid for nothing until retried).
-- Returns {"ok", stream id, balance after, replayed 0|1}
--      or {"err", code, balance (insufficient_balance), coins still allowed
--          today (spend_cap_exceeded) or 0}.
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
-- ARGV[27] "bonus": the new-user bonus (a credit), only into a wallet that
-- never had coins: no balance key and no first credit time.
if ARGV[27] == 'bonus' and (redis.call('EXISTS', KEYS[1]) == 1 or redis.call('HEXISTS', KEYS[4], 'first') == 1) then
  return {'err', 'not_new', 0}
end
local amount = tonumber(ARGV[9])
if not amount or amount <= 0 or amount ~= math.floor(amount) then
  return {'err', 'bad_amount', 0}
end
local kind = ARGV[1]
local adds = kind == 'credit' or kind == 'recharge' or kind == 'refund' or kind == 'crefund'
local bal = tonumber(redis.call('GET', KEYS[1]) or '0')
local coupon = kind == 'gift' and ARGV[25] and ARGV[25] ~= ''
local disc = 0
if coupon then
  disc = tonumber(ARGV[26])
  if not disc or disc < 1 or disc > amount or disc ~= math.floor(disc) then
    return {'err', 'bad_amount', 0}
  end
  if redis.call('EXISTS', KEYS[5]) == 1 then
    return {'err', 'coupon_used', 0}
  end
end
-- What leaves the wallet: the amount, less a coupon's discount.
local pay = amount - disc
if not adds then
  -- Past the bound the ledger is not keeping up (PostgreSQL down): refuse
  -- rather than let the outbox exhaust Redis memory.
  if redis.call('XLEN', KEYS[3]) >= tonumber(ARGV[16]) then
    return {'err', 'backlogged', 0}
  end
  if bal < pay then
    return {'err', 'insufficient_balance', bal}
  end
end
-- The day's spending is counted only while a cap is set (ARGV[22] or
-- ARGV[23] > 0): with none, a gift pays nothing for it. A cap set during
-- the day therefore counts from then on (docs/operations.md, "Risk control").
local ts = tonumber(ARGV[13])
local day = math.floor(ts / 86400000)
local spent = 0
local cap = tonumber(ARGV[22]) or 0
local newcap = tonumber(ARGV[23]) or 0
local capped = not adds and (cap > 0 or newcap > 0)
if capped then
  local r = redis.call('HMGET', KEYS[4], 'day', 'spent', 'first')
  if tonumber(r[1]) == day then
    spent = tonumber(r[2]) or 0
  end
  local first = tonumber(r[3])
  -- A wallet credited before first times were kept has none: not new.
  if newcap > 0 and first and ts - first < (tonumber(ARGV[24]) or 0) and (cap == 0 or newcap < cap) then
    cap = newcap
  end
  if cap > 0 and spent + pay > cap then
    return {'err', 'spend_cap_exceeded', math.max(0, cap - spent)}
  end
end
local new
if adds then
  new = redis.call('INCRBY', KEYS[1], amount)
  redis.call('HSETNX', KEYS[4], 'first', ARGV[13])
else
  new = redis.call('DECRBY', KEYS[1], pay)
  if capped then
    redis.call('HSET', KEYS[4], 'day', day, 'spent', string.format('%d', spent + pay))
  end
end
if coupon then
  -- The platform's part first: the wallet's balance after it is the one
  -- before the gift.
  redis.call('XADD', KEYS[3], '*', 'k', 'credit', 'u', ARGV[2], 'r', '', 'g', '0', 'gn', '', 'an', '',
    'n', '1', 'p', ARGV[26], 'a', ARGV[26], 'b', new + amount, 'm', '', 't', 'coupon:' .. ARGV[25],
    'q', ARGV[12], 'ts', ARGV[13], 'ro', 'platform')
  redis.call('SET', KEYS[5], ARGV[12])
end
local fields = {'k', kind, 'u', ARGV[2], 'r', ARGV[3], 'g', ARGV[4], 'gn', ARGV[5],
  'an', ARGV[6], 'n', ARGV[7], 'p', ARGV[8], 'a', ARGV[9], 'b', new,
  'm', ARGV[10], 't', ARGV[11], 'q', ARGV[12], 'ts', ARGV[13], 'ro', ARGV[17]}
if kind == 'recharge' or kind == 'refund' or kind == 'crefund' then
  fields[#fields + 1] = 'x'
  fields[#fields + 1] = ARGV[18]
end
if kind == 'refund' then
  fields[#fields + 1] = 'ots'
  fields[#fields + 1] = ARGV[19]
end
if not adds and ARGV[20] ~= '' then
  fields[#fields + 1] = 'ip'
  fields[#fields + 1] = ARGV[20]
end
if not adds and ARGV[21] ~= '' then
  fields[#fields + 1] = 'dv'
  fields[#fields + 1] = ARGV[21]
end
local sid = redis.call('XADD', KEYS[3], '*', unpack(fields))
if ARGV[15] == '0' then
  redis.call('SET', KEYS[2], ARGV[14] .. '|' .. sid .. '|' .. new)
else
  redis.call('SET', KEYS[2], ARGV[14] .. '|' .. sid .. '|' .. new, 'PX', ARGV[15])
end
return {'ok', sid, new, 0}
