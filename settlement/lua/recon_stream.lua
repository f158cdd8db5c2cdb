-- recon_stream: what reconciliation reads of one wallet shard's outbox
-- stream, each answer at one instant (settlement/recon.c).
-- KEYS[1] tc:{w:N}:outbox
-- ARGV[1] "info": returns {last-generated id, {group, pending, last-delivered
--         id, lag (-1 when Redis cannot tell), oldest pending id or "",
--         its idle ms or -1}, ...} ("0-0" and no groups for no stream)
-- ARGV[1] "backlog", ARGV[2] group, ARGV[3] last id to read, ARGV[4] most
--         entries: the entries the group has not acknowledged up to that
--         id, from its oldest pending entry (or just after its
--         last-delivered id when none is pending): {"ok", [[id, fields]...]}
--         or {"too_large", ARGV[4]} when there are more, {"nogroup"}.
if redis.call('EXISTS', KEYS[1]) == 0 then
  if ARGV[1] == 'info' then
    return {'0-0', {}}
  end
  return {'ok', {}}
end

local function groups()
  local out = {}
  for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
    local f = {}
    for i = 1, #g, 2 do
      f[g[i]] = g[i + 1]
    end
    out[#out + 1] = f
  end
  return out
end

if ARGV[1] == 'info' then
  local last = '0-0'
  local info = redis.call('XINFO', 'STREAM', KEYS[1])
  for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' then
      last = info[i + 1]
    end
  end
  local out = {}
  for _, g in ipairs(groups()) do
    local oldest, idle = '', -1
    if g['pending'] > 0 then
      local p = redis.call('XPENDING', KEYS[1], g['name'], '-', '+', 1)
      if p[1] then
        oldest, idle = p[1][1], p[1][3]
      end
    end
    local lag = g['lag']
    if type(lag) ~= 'number' then
      lag = -1
    end
    out[#out + 1] = {g['name'], g['pending'], g['last-delivered-id'], lag, oldest, idle}
  end
  return {last, out}
end

local g = nil
for _, x in ipairs(groups()) do
  if x['name'] == ARGV[2] then
    g = x
  end
end
if g == nil then
  return {'nogroup'}
end
local start = '(' .. g['last-delivered-id']
if g['pending'] > 0 then
  start = redis.call('XPENDING', KEYS[1], ARGV[2])[2]
end
local max = tonumber(ARGV[4])
local entries = redis.call('XRANGE', KEYS[1], start, ARGV[3], 'COUNT', max + 1)
if #entries > max then
  return {'too_large', max}
end
return {'ok', entries}
