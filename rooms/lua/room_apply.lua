-- room_apply: applies outbox entries (gifts and tips) of one room to it,
-- each exactly once and in its shard's stream order: the leaderboards, then
-- one room event per entry (next seq, history, PUBLISH), as room_publish
-- does. One call takes every entry of the room that one read brought, so
-- the watermark, the seq, the history trim, each sender's board bumps and
-- the board expiries are written once per call rather than once per entry.
-- KEYS[1] tc:{r:ROOM}:seq, KEYS[2] tc:{r:ROOM}:hist, KEYS[3] tc:{r:ROOM}:wm
-- (hash: wallet shard -> the last stream id of that shard applied here),
-- KEYS[4..7] the all-time, day, week and month boards (sorted sets), and
-- KEYS[8..11] their periods' totals (strings: the coins of every sender);
-- every entry of the call falls in these periods
-- ARGV[1] history length, ARGV[2] the room's channel,
-- ARGV[3..5] seconds the day, week and month boards live after a bump,
-- ARGV[6] the number of entries n; then 7 arguments per entry, in stream
-- order within each shard:
--   wallet shard, stream id "ms-seq", the stream id of the entry of the same
--   shard and room just before this one in the caller's pipeline (this call
--   or an earlier one) or "", the event body (msgpack map), the sender, the
--   amount, the event's kind
-- An event is published as "<seq>:<kind>:<body>" and kept in the history
-- with the fields b (body) and k (kind), as room_publish does.
-- A refund (kind "refund", body "", the boards those of the refunded
-- order's time) makes no event: it lowers the sender's score in the four
-- boards by its amount (never below nothing: a board that no longer has the
-- sender, expired, is left alone; a score that reaches 0 is removed), and
-- each period's total by what it took off that board.
-- Returns one integer per entry: the event's seq; 0 when the entry was
-- applied before (a redelivery), and for an applied refund; -1 when the entry before it has not been
-- applied, so that nothing is applied out of stream order: the caller reads
-- the shard's pending entries again.
local function parse(id)
  local ms, sq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(sq)
end
-- a < b for stream ids (numerically: ms, then seq; both fit a double).
local function before(a, b)
  local ams, asq = parse(a)
  local bms, bsq = parse(b)
  return ams < bms or (ams == bms and asq < bsq)
end

local n = tonumber(ARGV[6])
if not n or n < 1 or #ARGV ~= 6 + 7 * n then
  return redis.error_reply('ERR room_apply: bad argument count')
end
for i = 0, n - 1 do
  if not parse(ARGV[8 + 7 * i]) then
    return redis.error_reply('ERR room_apply: bad stream id')
  end
end

-- First every check, deciding which entries apply; then the writes.
local wm = {}       -- shard -> watermark (false: none yet)
local moved = {}    -- shards whose watermark moved
local totals = {}   -- sender -> coins applied in this call
local added = 0     -- coins of every event applied in this call
local senders = {}  -- in first-applied order, so the writes are repeatable
local apply = {}    -- entry indexes of events that apply, in order
local refunds = {}  -- entry indexes of refunds that apply, in order
local out = {}
for i = 0, n - 1 do
  local b = 6 + 7 * i
  local shard, id, prev = ARGV[b + 1], ARGV[b + 2], ARGV[b + 3]
  local w = wm[shard]
  if w == nil then
    w = redis.call('HGET', KEYS[3], shard)
    wm[shard] = w
  end
  if w and not before(w, id) then
    out[i + 1] = 0
  elseif prev ~= '' and (not w or before(w, prev)) then
    out[i + 1] = -1
  else
    wm[shard] = id
    moved[shard] = true
    if ARGV[b + 7] == 'refund' then
      refunds[#refunds + 1] = i
      out[i + 1] = 0
    else
      apply[#apply + 1] = i
      local user, amount = ARGV[b + 5], tonumber(ARGV[b + 6])
      added = added + amount
      if totals[user] then
        totals[user] = totals[user] + amount
      else
        totals[user] = amount
        senders[#senders + 1] = user
      end
    end
  end
end
if #apply == 0 and #refunds == 0 then
  return out
end

local seq = 0
if #apply > 0 then
  seq = redis.call('INCRBY', KEYS[1], #apply) - #apply
end
for j, i in ipairs(apply) do
  local body, kind = ARGV[6 + 7 * i + 4], ARGV[6 + 7 * i + 7]
  seq = seq + 1
  -- Only the last add trims: the same history as MAXLEN on every add.
  if j == #apply then
    redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[1], seq .. '-1', 'b', body, 'k', kind)
  else
    redis.call('XADD', KEYS[2], seq .. '-1', 'b', body, 'k', kind)
  end
  redis.call('PUBLISH', ARGV[2], seq .. ':' .. kind .. ':' .. body)
  out[i + 1] = seq
end
local fields = {}
for shard, _ in pairs(moved) do
  fields[#fields + 1] = shard
  fields[#fields + 1] = wm[shard]
end
redis.call('HSET', KEYS[3], unpack(fields))
if added > 0 then
  for k = 8, 11 do
    -- A total that did not exist beside a board that did (a board older
    -- than the totals) starts from the board's sum, read before the bumps.
    if redis.call('INCRBY', KEYS[k], string.format('%d', added)) == added then
      local old = 0
      local z = redis.call('ZRANGE', KEYS[k - 4], 0, -1, 'WITHSCORES')
      for j = 2, #z, 2 do
        old = old + tonumber(z[j])
      end
      if old > 0 then
        redis.call('INCRBY', KEYS[k], string.format('%d', old))
      end
    end
  end
end
for _, user in ipairs(senders) do
  for k = 4, 7 do
    -- %d: a Lua number would be written as %.14g, inexact past 10^14.
    redis.call('ZINCRBY', KEYS[k], string.format('%d', totals[user]), user)
  end
end
if #apply > 0 then
  for k = 5, 7 do
    redis.call('EXPIRE', KEYS[k], ARGV[k - 2])
    redis.call('EXPIRE', KEYS[k + 4], ARGV[k - 2])
  end
end
-- After the bumps: a refund in the same call as the gift it refunds (same
-- shard, later in the stream) finds the gift's coins on the boards.
for _, i in ipairs(refunds) do
  local user, amount = ARGV[6 + 7 * i + 5], tonumber(ARGV[6 + 7 * i + 6])
  for k = 4, 7 do
    local had = redis.call('ZSCORE', KEYS[k], user)
    if had then
      local left = tonumber(redis.call('ZINCRBY', KEYS[k], string.format('%d', -amount), user))
      if left <= 0 then
        redis.call('ZREM', KEYS[k], user)
      end
      local took = math.min(amount, tonumber(had))
      local sum = tonumber(redis.call('GET', KEYS[k + 4]) or '0')
      if sum > 0 then
        redis.call('SET', KEYS[k + 4], string.format('%d', math.max(sum - took, 0)), 'KEEPTTL')
      end
    end
  end
end
return out
