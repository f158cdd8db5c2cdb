/* board.h - a room's leaderboards: their key names and periods, and the
 * top-10 message pushed to the room's members and answered on request.
 *
 * Every room has four sorted sets of senders' totals in coins (gifts and
 * tips), all under the room's hash tag so that room_apply.lua bumps them in
 * the same atomic step that sequences the gift event:
 *   tc:{r:ROOM}:board:all              since the room began
 *   tc:{r:ROOM}:board:d:YYYYMMDD       the day
 *   tc:{r:ROOM}:board:w:YYYYMMDD       the week, named by its Monday
 *   tc:{r:ROOM}:board:m:YYYYMM         the month
 * Days, weeks and months are those of the board-tz time zone. A period board
 * expires BOARD_KEEP_PERIODS periods after its last bump, so old periods do
 * not live forever. Scores are Redis doubles: totals are exact up to 2^53
 * coins.
 *
 * Time zone: the process's TZ is set to board-tz once, in main() before the
 * loop starts (board_tz_init), and the periods are computed with
 * localtime_r(). Nothing else in tipcastd reads local time (the log uses
 * UTC), so the setting changes nothing but the boards.
 *
 * Pushes: a node marks a room when one of its gift or tip events arrives
 * (board_mark); at most once per board-push-ms per room the node reads the
 * four top-10s (one pipelined round trip) and sends one message, encoded
 * once per subprotocol, to every live member of the room on this node.
 */
#ifndef TIPCAST_BOARD_H
#define TIPCAST_BOARD_H

#include <stddef.h>
#include <stdint.h>

#include "jwt.h"

struct room;
struct conn;

/* Entries in every top list (join snapshot, push, request). */
#define BOARD_TOP_N 10
/* A period board lives this many of its periods after its last bump. */
#define BOARD_KEEP_PERIODS 2
/* The push timer's resolution; board-push-ms is at least this. */
#define BOARD_TICK_MS 50
/* Longest board key: "tc:{r:" ROOM "}:board:w:YYYYMMDD" and a NUL. */
#define BOARD_KEY_MAX (ID_MAX + 32)

enum board_period { BOARD_ALL, BOARD_DAY, BOARD_WEEK, BOARD_MONTH, BOARD_PERIODS };

/* The room's four board keys for the instant ts_ms (ms since the epoch),
 * and the seconds each period board is to live after a bump (0 for all). */
struct board_keys {
    char key[BOARD_PERIODS][BOARD_KEY_MAX];
    int64_t ttl_s[BOARD_PERIODS];
};

/* One top list: senders and their totals, highest first. */
struct board_top {
    int n;
    char user[BOARD_TOP_N][ID_MAX + 1];
    int64_t total[BOARD_TOP_N];
};

/* Reads a ZREVRANGE ... WITHSCORES reply (user, score, user, score...)
 * into `t`; entries past BOARD_TOP_N or with a malformed user are left out.
 * A reply that is not an array gives an empty list. */
struct redisReply;
void board_top_read(const struct redisReply *reply, struct board_top *t);
/* Writes `t` as an array of {"user","total"} maps. */
struct enc;
void board_top_enc(struct enc *e, const struct board_top *t);

/* Sets the process's time zone to `zone` (an IANA name such as
 * Asia/Tokyo). Call once from main() before anything else runs. Returns 0,
 * or -1 with a message in err when the zone is not in the tz database (glibc
 * would otherwise fall back to UTC without a word). */
int board_tz_init(const char *zone, char *err, size_t errlen);

/* The all-time board's key of `room` into buf (BOARD_KEY_MAX bytes). */
void board_all_key(const char *room, char *buf, size_t cap);

/* Fills `k` for room `room` at ts_ms, in the board-tz zone. */
void board_keys(const char *room, int64_t ts_ms, struct board_keys *k);

/* Starts and stops the push timer (on srv.loop). */
void board_start(void);
void board_stop(void);

/* A gift or tip event of room `r` has arrived: its members get a fresh
 * leaderboard within board-push-ms (throttled per room). */
void board_mark(struct room *r);
/* `r` is being freed: forget it. */
void board_forget(struct room *r);

/* Answers a leaderboard request with the room's four top lists. Errors
 * (Redis unreachable) are sent to the connection. */
void board_request(struct conn *c, const char *room, const char *req_id);

#endif
