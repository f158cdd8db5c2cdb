-- room_apply: applies outbox entries (gifts and tips) of one room to it,
-- each exactly once and in its shard's stream order: the leaderboards, the
-- senders' combos and fan levels, then one room event per entry (next seq,
-- history, PUBLISH), as room_publish does. One call takes every entry of
-- the room that one read brought, so the watermark, the seq, the history
-- trim, each sender's board bumps and the board expiries are written once
-- per call rather than once per entry.
-- KEYS[1] tc:{r:ROOM}:seq, KEYS[2] tc:{r:ROOM}:hist, KEYS[3] tc:{r:ROOM}:wm
-- (hash: wallet shard -> the last stream id of that shard applied here),
-- KEYS[4..7] the all-time, day, week and month boards (sorted sets), and
-- KEYS[8..11] their periods' totals (strings: the coins of every sender);
-- every entry of the call falls in these periods;
-- KEYS[12] tc:{r:ROOM}:combo (hash: sender -> its open combo,
-- "GIFT:COUNT:ORDERS:AMOUNT:FIRST_TS:LAST_TS:ID"), KEYS[13] tc:{r:ROOM}:combo:due (sorted set: sender -> the ms at
-- which its combo closes), KEYS[14] tc:{r:ROOM}:goal (hash: the room's goal,
-- see room_goal.lua; absent: none), KEYS[15] tc:{r:ROOM}:pins (sorted set:
-- order id -> pinned until, ms), KEYS[16] tc:{r:ROOM}:pin (hash: order id
-- -> the pin, a msgpack map {order, from, amount, text, until})
-- ARGV[1] history length, ARGV[2] the room's channel,
-- ARGV[3..5] seconds the day, week and month boards live after a bump,
-- ARGV[6] combo-window-ms, ARGV[7] fan-levels ("THRESHOLD:BADGE,...",
-- thresholds increasing), ARGV[8] pin-min-amount, ARGV[9] pin-tiers
-- ("AMOUNT:SECONDS,...", amounts increasing), ARGV[10] the number of
-- entries n; then 8 arguments
-- per entry, in stream order within each shard:
--   wallet shard, stream id "ms-seq", the stream id of the entry of the same
--   shard and room just before this one in the caller's pipeline (this call
--   or an earlier one) or "", the event body (msgpack map), the sender, the
--   amount, the event's kind, "TS:GIFT:COUNT" (the entry's time in ms, and
--   for a gift its gift id and count; 0 for a tip)
-- An event is published as "<seq>:<kind>:<body>" and kept in the history
-- with the fields b (body) and k (kind), as room_publish does.
-- A gift's or tip's body arrives with its map header counting the fields
-- this script appends: a gift's combo_id, combo_count, level and badge; a
-- tip's level, badge and pinned_until (docs/protocol.md).
-- Pins: a tip of at least pin-min-amount is pinned until its entry's time
-- plus the seconds of the highest tier it reaches (the first tier's below
-- it), unless that time has passed; at most 10 pins, a new one taking the
-- place of the one ending first. Each pin makes a `pins` event (the whole
-- list) just after its tip's.
-- Goal: a gift or tip paid (by its entry's time) from the goal's `since`
-- until its deadline (0: none), of the goal's gift (0: any gift or tip),
-- adds its amount to the goal's progress; the first entry that takes it
-- to the target makes a goal_reached event just after its own. Refunds
-- leave the goal alone (docs/protocol.md, "Goals").
-- Combos: a sender's gift of the same gift id as its open combo, at most
-- combo-window-ms after the combo's last gift (by the entries' times),
-- joins it; any other gift closes the open combo (a combo_end event, just
-- before the gift's) and opens a new one, whose id is the first gift's
-- order id. Tips and refunds leave combos alone. A combo whose window has
-- passed by Redis's clock is closed by the next call for the room (here)
-- or by room_combo_sweep.lua, whichever comes first: both pop it from
-- KEYS[12..13] in the same atomic step as its combo_end event, so it is
-- closed exactly once.
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

local F = 10  -- fixed arguments; entry i's are ARGV[F + 8 * i + 1 .. F + 8 * i + 8]
local n = tonumber(ARGV[F])
if not n or n < 1 or #ARGV ~= F + 8 * n then
  return redis.error_reply('ERR room_apply: bad argument count')
end
local e_ts, e_gift, e_count = {}, {}, {}  -- entry index -> its time, gift id, count
for i = 0, n - 1 do
  local ts, gift, count = string.match(ARGV[F + 8 * i + 8], '^(%d+):(%d+):(%d+)$')
  if not parse(ARGV[F + 8 * i + 2]) or not ts then
    return redis.error_reply('ERR room_apply: bad stream id or entry time')
  end
  e_ts[i], e_gift[i], e_count[i] = tonumber(ts), tonumber(gift), tonumber(count)
end
local window = tonumber(ARGV[6])
local levels = {}
for t, badge in string.gmatch(ARGV[7], '(%d+):([^,]+)') do
  levels[#levels + 1] = {tonumber(t), badge}
end
-- The fan level of an all-time spend: the last threshold it reaches.
local function level_of(spend)
  local l, badge = 0, ''
  for k, lv in ipairs(levels) do
    if spend < lv[1] then
      break
    end
    l, badge = k, lv[2]
  end
  return l, badge
end

local pin_min = tonumber(ARGV[8])
local tiers = {}
for a, secs in string.gmatch(ARGV[9], '(%d+):(%d+)') do
  tiers[#tiers + 1] = {tonumber(a), tonumber(secs)}
end
local PIN_MAX = 10
-- How long a tip of `amount` is pinned (ms), 0 for none.
local function pin_ms(amount)
  if amount < pin_min or #tiers == 0 then
    return 0
  end
  local secs = tiers[1][2]
  for _, t in ipairs(tiers) do
    if amount < t[1] then
      break
    end
    secs = t[2]
  end
  return secs * 1000
end

-- First every check, deciding which entries apply; then the writes.
local wm = {}       -- shard -> watermark (false: none yet)
local moved = {}    -- shards whose watermark moved
local totals = {}   -- sender -> coins applied in this call
local added = 0     -- coins of every event applied in this call
local senders = {}  -- in first-applied order, so the writes are repeatable
local apply = {}    -- entry indexes of events that apply, in order
local refunds = {}  -- entry indexes of refunds that apply, in order
local applied = {}  -- entry indexes of both, in order
local out = {}
for i = 0, n - 1 do
  local b = F + 8 * i
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
    applied[#applied + 1] = i
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

-- The boards first (the refunds come after the events, below).
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
-- Each sender's all-time spend before this call, for its fan levels: what
-- the all-time bump answers, less this call's coins.
local spend = {}    -- sender -> all-time spend so far
for _, user in ipairs(senders) do
  for k = 4, 7 do
    -- %d: a Lua number would be written as %.14g, inexact past 10^14.
    local score = redis.call('ZINCRBY', KEYS[k], string.format('%d', totals[user]), user)
    if k == 4 then
      spend[user] = tonumber(score) - totals[user]
    end
  end
end
if #apply > 0 then
  for k = 5, 7 do
    redis.call('EXPIRE', KEYS[k], ARGV[k - 2])
    redis.call('EXPIRE', KEYS[k + 4], ARGV[k - 2])
  end
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
-- The events to write, in seq order: body, kind, and the entry index or
-- false (parallel arrays: no table per event).
local ev_body, ev_kind, ev_entry = {}, {}, {}
local function emit(body, kind, i)
  local k = #ev_body + 1
  ev_body[k], ev_kind[k], ev_entry[k] = body, kind, i
end
local function combo_end(user, st)
  local gift, count, orders, amount, first, last, id =
    string.match(st, '^(%d+):(%d+):(%d+):(%d+):(%d+):(%d+):(.+)$')
  local body = string.char(0x8a) .. cmsgpack.pack('kind', 'combo_end', 'from', user, 'combo_id', id,
    'gift', tonumber(gift), 'count', tonumber(count), 'orders', tonumber(orders), 'amount', tonumber(amount),
    'started', tonumber(first), 'ended', tonumber(last), 'ts', now)
  emit(body, 'combo_end', false)
end
-- Combos whose window has passed close first, before this call's gifts.
local due = redis.call('ZRANGEBYSCORE', KEYS[13], '-inf', now, 'LIMIT', 0, 100)
for _, user in ipairs(due) do
  local st = redis.call('HGET', KEYS[12], user)
  if st then
    combo_end(user, st)
  end
  redis.call('HDEL', KEYS[12], user)
  redis.call('ZREM', KEYS[13], user)
end

-- The pins whose time has passed leave (a pin's end makes no event: every
-- pin carries its end); the list of those left, a msgpack array of pins
-- ending first first.
local function pins_expire()
  local gone = redis.call('ZRANGEBYSCORE', KEYS[15], '-inf', now)
  for _, o in ipairs(gone) do
    redis.call('ZREM', KEYS[15], o)
    redis.call('HDEL', KEYS[16], o)
  end
end
local function pins_list()
  local orders = redis.call('ZRANGE', KEYS[15], 0, -1)
  local out = {string.char(0x90 + #orders)}
  for _, o in ipairs(orders) do
    out[#out + 1] = redis.call('HGET', KEYS[16], o) or string.char(0x80)
  end
  return table.concat(out)
end

local goal = nil    -- the room's goal, loaded by the first event; false: none
local function goal_of()
  if goal == nil then
    local g = redis.call('HMGET', KEYS[14], 'id', 'target', 'progress', 'gift', 'deadline', 'reached', 'since')
    goal = false
    if g[1] then
      goal = {id = g[1], target = tonumber(g[2]), progress = tonumber(g[3]), gift = tonumber(g[4]),
              deadline = tonumber(g[5]), reached = g[6] == '1', since = tonumber(g[7]), moved = false}
    end
  end
  return goal
end

local combos = {}   -- sender -> {gift, count, orders, amount, first, last, id}, or false
local touched = {}  -- senders whose combo changed, in order
for _, i in ipairs(applied) do
  local b = F + 8 * i
  local user, amount, kind = ARGV[b + 5], tonumber(ARGV[b + 6]), ARGV[b + 7]
  if spend[user] == nil then -- a sender with refunds only in this call
    spend[user] = tonumber(redis.call('ZSCORE', KEYS[4], user) or '0')
  end
  if kind == 'refund' then
    -- As the boards below take it off: never below nothing.
    spend[user] = math.max(spend[user] - amount, 0)
  else
    spend[user] = spend[user] + amount
    local level, badge = level_of(spend[user])
    local body = ARGV[b + 4]
    local ts, gift, count = e_ts[i], e_gift[i], e_count[i]
    if kind == 'gift' then
      local c = combos[user]
      if c == nil then
        local st = redis.call('HGET', KEYS[12], user)
        c = false
        if st then
          local g, k, o, a, f, l, id = string.match(st, '^(%d+):(%d+):(%d+):(%d+):(%d+):(%d+):(.+)$')
          c = {tonumber(g), tonumber(k), tonumber(o), tonumber(a), tonumber(f), tonumber(l), id}
        end
        touched[#touched + 1] = user
      end
      if c and not (c[1] == gift and ts - c[6] <= window) then
        combo_end(user, string.format('%d:%d:%d:%d:%d:%d:%s', c[1], c[2], c[3], c[4], c[5], c[6], c[7]))
        c = false
      end
      if not c then
        c = {gift, 0, 0, 0, ts, ts, ARGV[b + 1] .. '-' .. ARGV[b + 2]}
      end
      c[2], c[3], c[4], c[6] = c[2] + count, c[3] + 1, c[4] + amount, math.max(c[6], ts)
      combos[user] = c
      body = body .. cmsgpack.pack('combo_id', c[7], 'combo_count', c[2], 'level', level, 'badge', badge)
      emit(body, kind, i)
    else
      local order = ARGV[b + 1] .. '-' .. ARGV[b + 2]
      local ms = pin_ms(amount)
      local until_ms = ms > 0 and ts + ms > now and ts + ms or 0
      body = body .. cmsgpack.pack('level', level, 'badge', badge, 'pinned_until', until_ms)
      emit(body, kind, i)
      if until_ms > 0 then
        pins_expire()
        if redis.call('ZCARD', KEYS[15]) >= PIN_MAX then
          local first = redis.call('ZPOPMIN', KEYS[15])
          redis.call('HDEL', KEYS[16], first[1])
        end
        local tip = cmsgpack.unpack(body)
        redis.call('ZADD', KEYS[15], string.format('%d', until_ms), order)
        redis.call('HSET', KEYS[16], order, string.char(0x85) .. cmsgpack.pack('order', order, 'from', user,
          'amount', amount, 'text', tip.text or '', 'until', until_ms))
        local ev = string.char(0x85) .. cmsgpack.pack('kind', 'pins', 'change', 'pinned', 'order', order, 'pins')
        emit(ev .. pins_list() .. cmsgpack.pack('ts', now), 'pins', false)
      end
    end
    local g = goal_of()
    if g and ts >= g.since and (g.deadline == 0 or ts <= g.deadline) and (g.gift == 0 or g.gift == gift) then
      g.progress, g.moved = g.progress + amount, true
      if not g.reached and g.progress >= g.target then
        g.reached = true
        emit(string.char(0x87) .. cmsgpack.pack('kind', 'goal_reached', 'goal_id', g.id, 'target', g.target,
          'progress', g.progress, 'by', user, 'order', ARGV[b + 1] .. '-' .. ARGV[b + 2], 'ts', now),
          'goal_reached', false)
      end
    end
  end
end
if goal and goal.moved then
  redis.call('HSET', KEYS[14], 'progress', string.format('%d', goal.progress), 'reached', goal.reached and '1' or '0')
end
for _, user in ipairs(touched) do
  local c = combos[user]
  redis.call('HSET', KEYS[12], user, string.format('%d:%d:%d:%d:%d:%d:%s', c[1], c[2], c[3], c[4], c[5], c[6], c[7]))
  redis.call('ZADD', KEYS[13], string.format('%d', c[6] + window), user)
end

local seq = 0
if #ev_body > 0 then
  seq = redis.call('INCRBY', KEYS[1], #ev_body) - #ev_body
end
for j = 1, #ev_body do
  local body, kind = ev_body[j], ev_kind[j]
  seq = seq + 1
  -- Only the last add trims: the same history as MAXLEN on every add.
  if j == #ev_body then
    redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[1], seq .. '-1', 'b', body, 'k', kind)
  else
    redis.call('XADD', KEYS[2], seq .. '-1', 'b', body, 'k', kind)
  end
  redis.call('SPUBLISH', ARGV[2], seq .. ':' .. kind .. ':' .. body)
  if ev_entry[j] then
    out[ev_entry[j] + 1] = seq
  end
end
local fields = {}
for shard, _ in pairs(moved) do
  fields[#fields + 1] = shard
  fields[#fields + 1] = wm[shard]
end
redis.call('HSET', KEYS[3], unpack(fields))
-- After the bumps: a refund in the same call as the gift it refunds (same
-- shard, later in the stream) finds the gift's coins on the boards.
for _, i in ipairs(refunds) do
  local user, amount = ARGV[F + 8 * i + 5], tonumber(ARGV[F + 8 * i + 6])
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
