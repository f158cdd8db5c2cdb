-- outbox_trim: trims one wallet shard's outbox of the entries that every
-- consumer group has acknowledged, and never one entry more.
-- KEYS[1] tc:{w:N}:outbox
-- ARGV    the consumer groups that must all be done with an entry
-- Returns the number of entries trimmed, or -1 (nothing trimmed) when a
-- group does not exist yet (its entries would be lost).
--
-- An entry is still needed by a group when it is pending (delivered, not
-- acknowledged) or not yet delivered (after the last-delivered id). So the
-- first entry to keep is, over all groups, the smallest of the group's
-- oldest pending id and the id just after its last-delivered id;
-- XTRIM MINID removes exactly the entries below it. Never MAXLEN: that
-- would drop entries no group has seen.

-- Stream ids are "ms-seq" with two unsigned 64-bit parts; compared as
-- digit strings (no leading zeros) so that no precision is lost.
local function num_less(a, b)
  if #a ~= #b then
    return #a < #b
  end
  return a < b
end

local function split(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return ms, seq
end

local function id_less(a, b)
  local ams, aseq = split(a)
  local bms, bseq = split(b)
  if ams ~= bms then
    return num_less(ams, bms)
  end
  return num_less(aseq, bseq)
end

-- The id right after `id`. seq + 1 is exact in a Lua number below 2^53;
-- past that (never in practice) the group's last id itself is kept, which
-- is safe: one entry too many stays.
local function id_next(id)
  local ms, seq = split(id)
  if #seq < 15 then
    return ms .. '-' .. string.format('%d', tonumber(seq) + 1)
  end
  return id
end

if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end

local groups = {}
for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local fields = {}
  for i = 1, #g, 2 do
    fields[g[i]] = g[i + 1]
  end
  groups[fields['name']] = fields
end

local keep = nil
for _, name in ipairs(ARGV) do
  local g = groups[name]
  if g == nil then
    return -1
  end
  local first = id_next(g['last-delivered-id'])
  if g['pending'] > 0 then
    local summary = redis.call('XPENDING', KEYS[1], name)
    if id_less(summary[2], first) then
      first = summary[2]
    end
  end
  if keep == nil or id_less(first, keep) then
    keep = first
  end
end
if keep == nil then
  return 0
end
return redis.call('XTRIM', KEYS[1], 'MINID', keep)
