/* board.h - a room's leaderboards: their key names and periods, reading
 * the four top-10 lists, and the leaderboard message.
 *
 * Every room has four sorted sets of senders' totals in coins (gifts and
 * tips), all under the room's hash tag so that the room script bumps them
 * in the same atomic step that sequences the gift event (rooms/):
 *   tc:{r:ROOM}:board:all              since the room began
 *   tc:{r:ROOM}:board:d:YYYYMMDD       the day
 *   tc:{r:ROOM}:board:w:YYYYMMDD       the week, named by its Monday
 *   tc:{r:ROOM}:board:m:YYYYMM         the month
 * Days, weeks and months are those of the board-tz time zone (calendar.h).
 * Beside each board, the room's total of the period (coins of every gift
 * and tip, all senders; a string key bumped in the same step):
 *   tc:{r:ROOM}:sum:all, tc:{r:ROOM}:sum:d:YYYYMMDD, ...:sum:w:..., ...:sum:m:...
 * A period board and its total expire BOARD_KEEP_PERIODS periods after
 * their last bump, so old periods do not live forever. Scores are Redis doubles: totals are
 * exact up to 2^53 coins.
 *
 * When pushes happen is the server's business (server/fanout.c): this
 * module reads the lists and builds the message. */
#ifndef TIPCAST_BOARD_H
#define TIPCAST_BOARD_H

#include <stddef.h>
#include <stdint.h>

#include "enc.h"
#include "jwt.h"
#include "reply.h"
#include "redis.h"

/* Entries in every top list (join snapshot, push, request). */
#define BOARD_TOP_N 10
/* A period board lives this many of its periods after its last bump. */
#define BOARD_KEEP_PERIODS 2
/* Longest board key: "tc:{r:" ROOM "}:board:w:YYYYMMDD" and a NUL. */
#define BOARD_KEY_MAX (ID_MAX + 32)

enum board_period { BOARD_ALL, BOARD_DAY, BOARD_WEEK, BOARD_MONTH, BOARD_PERIODS };

/* The room's four board keys for the instant ts_ms (ms since the epoch),
 * and the seconds each period board is to live after a bump (0 for all). */
struct board_keys {
    char key[BOARD_PERIODS][BOARD_KEY_MAX];
    char sum[BOARD_PERIODS][BOARD_KEY_MAX]; /* the period's total */
    int64_t ttl_s[BOARD_PERIODS];
    char goal[BOARD_KEY_MAX]; /* tc:{r:ROOM}:goal, the room's goal (struct board_goal) */
};

/* One top list: senders and their totals, highest first, and the total
 * of every sender in the period (the room's income: `totals`). */
struct board_top {
    int64_t sum;
    int n;
    char user[BOARD_TOP_N][ID_MAX + 1];
    int64_t total[BOARD_TOP_N];
};

/* The room's goal, counted by the room script beside the boards (a hash
 * of these fields in Redis; docs/protocol.md "Goals"). */
#define BOARD_GOAL_TITLE_MAX 100
#define BOARD_GOAL_ID_MAX 24
struct board_goal {
    int set;        /* 0: the room has no goal (the rest is unset) */
    char id[BOARD_GOAL_ID_MAX + 1];
    int64_t target, progress, gift, deadline; /* gift, deadline 0: any gift, no deadline */
    int reached;
    char title[BOARD_GOAL_TITLE_MAX + 1];
};
/* The goal's fields in the order board_goal_read reads them (HMGET). */
#define BOARD_GOAL_FIELDS "id", "target", "progress", "gift", "deadline", "reached", "title"
#define BOARD_GOAL_NFIELDS 7

/* Reads an HMGET of BOARD_GOAL_FIELDS; a reply without the goal's id (no
 * goal), or malformed, gives goal->set 0. */
void board_goal_read(const redisReply *reply, struct board_goal *goal);
/* Writes the key "goal" and its map, when goal->set (nothing otherwise). */
void board_goal_enc(struct enc *e, const struct board_goal *goal);

struct board {
    struct redis *rl;
};

void board_init(struct board *b, struct redis *rl);

/* Fills `k` for room `room` at ts_ms, in the board-tz zone. */
void board_keys(const char *room, int64_t ts_ms, struct board_keys *k);
/* "tc:{r:ROOM}" and `tail` into buf: the name of every key of a room (its
 * slot is the room's); returns the length written (text.h). */
size_t board_room_key(const char *room, const char *tail, char *buf, size_t cap);
/* The all-time board's key of `room` into buf. */
void board_all_key(const char *room, char *buf, size_t cap);
/* The day board's key of `room` at ts_ms into buf (BOARD_KEY_MAX): the
 * same as board_keys' key[BOARD_DAY], for when only the day is needed. */
void board_day_key(const char *room, int64_t ts_ms, char *buf);

/* Reads a ZREVRANGE ... WITHSCORES reply (user, score, user, score...) into
 * `t`; entries past BOARD_TOP_N or with a malformed user are left out. A
 * reply that is not an array gives an empty list. */
void board_top_read(const redisReply *reply, struct board_top *t);
/* Writes `t` as an array of {"user","total"} maps; with `levels` (the
 * all-time board, whose totals are the senders' all-time spend) each map
 * also has the sender's fan "level" and "badge" (fanlevel.h). */
void board_top_enc(struct enc *e, const struct board_top *t, int levels);
/* Writes the key "totals" and its map {"all","day","week","month"} of the
 * four periods' sums. */
void board_totals_enc(struct enc *e, const struct board_top tops[BOARD_PERIODS]);
/* A period total's reply (GET: a string of digits, or nil for none yet). */
int64_t board_sum_read(const redisReply *reply);

/* The four top lists of a room and its goal (one pipelined round trip), or
 * NULL when Redis could not answer. `room`, `tops` and `goal` are valid
 * during the call. */
typedef void board_read_cb(void *ctx, const char *room, const struct board_top *tops,
                           const struct board_goal *goal);

/* Reads the room's four top lists now. Returns 0 (cb runs exactly once,
 * later), or -1 (Redis down or out of memory; cb never runs). */
int board_read(struct board *b, const char *room, board_read_cb *cb, void *ctx);

/* The leaderboard message {type:"leaderboard", id?, room, period:"all",
 * top, day, week, month, totals, goal?}; req_id "" for a push; goal NULL
 * or not set: no "goal" key. NULL when out of memory. */
struct frame *board_frame(enum fmt fmt, const char *room, const char *req_id,
                          const struct board_top tops[BOARD_PERIODS], const struct board_goal *goal);

/* Answers a leaderboard request (unavailable when Redis is down). */
void board_request(struct board *b, const struct reply *r, const char *room);

#endif
