-- room_history: the room's events after a sequence number.
-- KEYS[1] tc:{r:ROOM}:seq, KEYS[2] tc:{r:ROOM}:hist
-- ARGV[1] after seq, ARGV[2] most events to return
-- Returns {seq, oldest kept seq (0 if none), seq1, kind1, body1, ...}. When
-- the oldest kept event is past after+1 the events in between are gone.
local seq = tonumber(redis.call('GET', KEYS[1]) or '0')
local after = tonumber(ARGV[1])
local out = {seq, 0}
local first = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)
if #first > 0 then
  out[2] = tonumber(string.match(first[1][1], '^(%d+)-'))
end
if after >= seq or out[2] == 0 or out[2] > after + 1 then
  return out
end
local ev = redis.call('XRANGE', KEYS[2], '(' .. after .. '-1', '+', 'COUNT', tonumber(ARGV[2]))
-- An entry's fields are b, body, k, kind (k is missing from entries of
-- versions that did not write it: their kind is "").
for i = 1, #ev do
  out[#out + 1] = tonumber(string.match(ev[i][1], '^(%d+)-'))
  out[#out + 1] = ev[i][2][4] or ''
  out[#out + 1] = ev[i][2][2]
end
return out
