-- pk_horizon: up to when has the ledger committed this wallet shard's
-- outbox? (server/pk.c, docs/settlement.md "PK battles": a battle's cut,
-- and the checkpoint of its live scores)
-- KEYS[1] tc:{w:N}:outbox, the shard's outbox stream
-- ARGV[1] the ledger group's name
-- Returns {horizon, now}, ms since the epoch: every entry whose id is
-- before the horizon has been acknowledged by the ledger group (it
-- acknowledges after its COMMIT). The horizon is the oldest entry pending
-- in the group or not yet delivered to it, or Redis's time when there is
-- none; 0 when the group is missing (nothing can be said). An entry's id is
-- at least Redis's time when it is added (XADD *), so no entry added later
-- falls before `now`.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {now, now}
end
local delivered
for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local name, ld
  for i = 1, #g, 2 do
    if g[i] == 'name' then name = g[i + 1] elseif g[i] == 'last-delivered-id' then ld = g[i + 1] end
  end
  if name == ARGV[1] then delivered = ld end
end
if not delivered then
  return {0, now}
end
local function ms(id)
  return tonumber(string.match(id, '^(%d+)-'))
end
local h = now
local pending = redis.call('XPENDING', KEYS[1], ARGV[1])
if pending[1] > 0 and ms(pending[2]) < h then
  h = ms(pending[2])
end
local nxt = redis.call('XRANGE', KEYS[1], '(' .. delivered, '+', 'COUNT', 1)
if #nxt > 0 and ms(nxt[1][1]) < h then
  h = ms(nxt[1][1])
end
return {h, now}
