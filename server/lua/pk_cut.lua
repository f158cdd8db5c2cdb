-- pk_cut: has the ledger every entry of this wallet shard before a PK
-- battle's end (server/pk.c, docs/settlement.md "PK battles")?
-- KEYS[1] tc:{w:N}:outbox, the shard's outbox stream
-- ARGV[1] the end, ms since the epoch   ARGV[2] the ledger group's name
-- ARGV[3] grace, ms: Redis's clock must be this far past the end
-- Returns {1, why} when every entry with an id before the end has been
-- acknowledged by the ledger group (it acknowledges after its COMMIT), and
-- no entry before the end can be added any more; {0, why} when not yet.
-- An entry's id is at least Redis's time when it is added (XADD *), so once
-- the clock is past the end no new entry falls before it; the grace covers
-- a clock stepped back a little.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local stop = tonumber(ARGV[1])
if now < stop + tonumber(ARGV[3]) then
  return {0, 'clock'}
end
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {1, 'empty'}
end
local last = redis.call('XREVRANGE', KEYS[1], string.format('%d', stop - 1) .. '-18446744073709551615', '-',
  'COUNT', 1)
if #last == 0 then
  return {1, 'none'}
end
local lid = last[1][1]
local delivered
for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local name, ld
  for i = 1, #g, 2 do
    if g[i] == 'name' then name = g[i + 1] elseif g[i] == 'last-delivered-id' then ld = g[i + 1] end
  end
  if name == ARGV[2] then delivered = ld end
end
if not delivered then
  return {0, 'no group'}
end
local function parts(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local dm, ds = parts(delivered)
local lm, ls = parts(lid)
if dm < lm or (dm == lm and ds < ls) then
  return {0, 'undelivered'}
end
if #redis.call('XPENDING', KEYS[1], ARGV[2], '-', lid, 1) > 0 then
  return {0, 'pending'}
end
return {1, 'stored'}
