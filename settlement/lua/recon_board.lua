-- recon_board: a room's all-time board and its watermarks, at one instant
-- (settlement/recon.c).
-- KEYS[1] tc:{r:ROOM}:board:all, KEYS[2] tc:{r:ROOM}:wm
-- Returns {[user, score, ...], [shard, last stream id applied, ...]}.
return {redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES'), redis.call('HGETALL', KEYS[2])}
