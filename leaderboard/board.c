/* board.c - leaderboard keys, top lists and reads (see board.h). */
#include "board.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "calendar.h"
#include "clock.h"
#include "fanlevel.h"
#include "log.h"
#include "message.h"
#include "text.h"

static const char *const period_name[BOARD_PERIODS] = {"all", "day", "week", "month"};
/* The message's field of each period's list ("all" is "top"). */
static const char *const period_field[BOARD_PERIODS] = {"top", "day", "week", "month"};

void board_init(struct board *b, struct redis *rl) { b->rl = rl; }

/* Appends TAG and a date's digits at buf[n]: YYYYMMDD, or YYYYMM when d is
 * 0. (Years before 0 cannot come from the clock of an order.) */
static size_t date_tail(char *buf, size_t n, const char *tag, int64_t y, int m, int d)
{
    n = text_cat(buf, BOARD_KEY_MAX, n, tag);
    n = text_cat_pad(buf, BOARD_KEY_MAX, n, y > 0 ? (uint64_t)y : 0, 4);
    n = text_cat_pad(buf, BOARD_KEY_MAX, n, (uint64_t)m, 2);
    return d ? text_cat_pad(buf, BOARD_KEY_MAX, n, (uint64_t)d, 2) : n;
}

/* tc:{r:ROOM}:WHAT:TAIL into buf (BOARD_KEY_MAX): WHAT is "board" for a
 * board and "sum" for its period's total; TAIL is "all", or the period's
 * letter and its first day in the board's zone (d:YYYYMMDD for a day,
 * w:YYYYMMDD for the week's Monday, m:YYYYMM for a month). */
static void period_key(char *buf, const char *room, const char *what, int p, const struct calendar_date *cd)
{
    size_t n = text_cat(buf, BOARD_KEY_MAX, board_room_key(room, "}:", buf, BOARD_KEY_MAX), what);
    switch (p) {
    case BOARD_DAY: date_tail(buf, n, ":d:", cd->y, cd->m, cd->d); break;
    case BOARD_WEEK: date_tail(buf, n, ":w:", cd->wy, cd->wm, cd->wd); break;
    case BOARD_MONTH: date_tail(buf, n, ":m:", cd->y, cd->m, 0); break;
    default: text_cat(buf, BOARD_KEY_MAX, n, ":all");
    }
}

size_t board_room_key(const char *room, const char *tail, char *buf, size_t cap)
{
    return text_cat(buf, cap, text_cat(buf, cap, text_cat(buf, cap, 0, "tc:{r:"), room), tail);
}

void board_all_key(const char *room, char *buf, size_t cap) { board_room_key(room, "}:board:all", buf, cap); }

void board_day_key(const char *room, int64_t ts_ms, char *buf)
{
    struct calendar_date cd;
    calendar_date_of(ts_ms / 1000, &cd);
    period_key(buf, room, "board", BOARD_DAY, &cd);
}

void board_keys(const char *room, int64_t ts_ms, struct board_keys *k)
{
    struct calendar_date cd;
    calendar_date_of(ts_ms / 1000, &cd);
    for (int p = 0; p < BOARD_PERIODS; p++) {
        period_key(k->key[p], room, "board", p, &cd);
        period_key(k->sum[p], room, "sum", p, &cd);
    }
    k->ttl_s[BOARD_ALL] = 0;
    k->ttl_s[BOARD_DAY] = BOARD_KEEP_PERIODS * 86400LL;
    k->ttl_s[BOARD_WEEK] = BOARD_KEEP_PERIODS * 7 * 86400LL;
    k->ttl_s[BOARD_MONTH] = BOARD_KEEP_PERIODS * 31 * 86400LL;
    board_room_key(room, "}:goal", k->goal, BOARD_KEY_MAX);
}

static int64_t field_int(const redisReply *r)
{
    return r && r->type == REDIS_REPLY_STRING ? strtoll(r->str, NULL, 10) : 0;
}

void board_goal_read(const redisReply *reply, struct board_goal *g)
{
    memset(g, 0, sizeof *g);
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != BOARD_GOAL_NFIELDS)
        return;
    const redisReply *id = reply->element[0], *title = reply->element[6];
    if (id->type != REDIS_REPLY_STRING || id->len < 1 || id->len > BOARD_GOAL_ID_MAX)
        return;
    g->set = 1;
    memcpy(g->id, id->str, id->len);
    g->target = field_int(reply->element[1]);
    g->progress = field_int(reply->element[2]);
    g->gift = field_int(reply->element[3]);
    g->deadline = field_int(reply->element[4]);
    g->reached = field_int(reply->element[5]) != 0;
    if (title->type == REDIS_REPLY_STRING && title->len <= BOARD_GOAL_TITLE_MAX)
        memcpy(g->title, title->str, title->len);
}

void board_goal_enc(struct enc *e, const struct board_goal *g)
{
    if (!g || !g->set)
        return;
    enc_key(e, "goal");
    enc_map(e, 7);
    enc_key(e, "goal_id");
    enc_cstr(e, g->id);
    enc_key(e, "target");
    enc_int(e, g->target);
    enc_key(e, "progress");
    enc_int(e, g->progress);
    enc_key(e, "gift");
    enc_int(e, g->gift);
    enc_key(e, "deadline");
    enc_int(e, g->deadline);
    enc_key(e, "reached");
    enc_bool(e, g->reached);
    enc_key(e, "title");
    enc_cstr(e, g->title);
    enc_end_map(e);
}

void board_top_read(const redisReply *reply, struct board_top *t)
{
    t->n = 0;
    if (!reply || reply->type != REDIS_REPLY_ARRAY)
        return;
    for (size_t i = 0; i + 1 < reply->elements && t->n < BOARD_TOP_N; i += 2) {
        const redisReply *u = reply->element[i], *s = reply->element[i + 1];
        if (u->type != REDIS_REPLY_STRING || u->len < 1 || u->len > ID_MAX)
            continue;
        int64_t total;
        if (s->type == REDIS_REPLY_STRING)
            total = (int64_t)strtod(s->str, NULL); /* a double, exact below 2^53 */
        else if (s->type == REDIS_REPLY_INTEGER)
            total = s->integer;
        else
            continue;
        memcpy(t->user[t->n], u->str, u->len);
        t->user[t->n][u->len] = '\0';
        t->total[t->n] = total;
        t->n++;
    }
}

void board_top_enc(struct enc *e, const struct board_top *t, int levels)
{
    enc_array(e, (uint32_t)t->n);
    for (int i = 0; i < t->n; i++) {
        enc_map(e, levels ? 4 : 2);
        enc_key(e, "user");
        enc_cstr(e, t->user[i]);
        enc_key(e, "total");
        enc_int(e, t->total[i]);
        if (levels) {
            const char *badge;
            enc_key(e, "level");
            enc_int(e, fanlevel_of(t->total[i], &badge));
            enc_key(e, "badge");
            enc_cstr(e, badge);
        }
        enc_end_map(e);
    }
    enc_end_array(e);
}

void board_totals_enc(struct enc *e, const struct board_top tops[BOARD_PERIODS])
{
    enc_key(e, "totals");
    enc_map(e, BOARD_PERIODS);
    for (int p = 0; p < BOARD_PERIODS; p++) {
        enc_key(e, period_name[p]);
        enc_int(e, tops[p].sum);
    }
    enc_end_map(e);
}

int64_t board_sum_read(const redisReply *reply)
{
    if (reply && reply->type == REDIS_REPLY_STRING)
        return strtoll(reply->str, NULL, 10);
    if (reply && reply->type == REDIS_REPLY_INTEGER)
        return reply->integer;
    return 0;
}

struct frame *board_frame(enum fmt fmt, const char *room, const char *req_id,
                          const struct board_top tops[BOARD_PERIODS], const struct board_goal *goal)
{
    struct enc e;
    int with_goal = goal && goal->set;
    message_start(&e, fmt, 320 + 64 * BOARD_PERIODS * BOARD_TOP_N + 256 * with_goal, "leaderboard", req_id,
                  3 + BOARD_PERIODS + with_goal);
    enc_key(&e, "room");
    enc_cstr(&e, room);
    enc_key(&e, "period");
    enc_cstr(&e, period_name[BOARD_ALL]);
    for (int p = 0; p < BOARD_PERIODS; p++) {
        enc_key(&e, period_field[p]);
        board_top_enc(&e, &tops[p], p == BOARD_ALL);
    }
    board_totals_enc(&e, tops);
    board_goal_enc(&e, goal);
    enc_end_map(&e);
    return enc_finish(&e);
}

/* One read of a room's four boards. Owned by the replies: freed when the
 * last of the `waiting` replies has come. */
struct fetch {
    char room[ID_MAX + 1];
    board_read_cb *cb;
    void *ctx;
    int waiting;
    int failed;
    struct part {
        struct fetch *f;
        int period;
    } part[BOARD_PERIODS], sum_part[BOARD_PERIODS];
    struct board_top top[BOARD_PERIODS];
    struct board_goal goal;
};

static void fetch_done(struct fetch *f)
{
    f->cb(f->ctx, f->room, f->failed ? NULL : f->top, f->failed ? NULL : &f->goal);
    free(f);
}

static void on_goal(redisReply *reply, void *priv)
{
    struct fetch *f = priv;
    if (!reply || reply->type == REDIS_REPLY_ERROR) {
        if (reply)
            log_msg(LOG_ERROR, "redis HMGET goal: %s", reply->str);
        f->failed = 1;
    } else {
        board_goal_read(reply, &f->goal);
    }
    tc_assert(f->waiting > 0);
    if (--f->waiting == 0)
        fetch_done(f);
}

static void on_sum(redisReply *reply, void *priv)
{
    struct part *pt = priv;
    struct fetch *f = pt->f;
    if (!reply || reply->type == REDIS_REPLY_ERROR) {
        if (reply)
            log_msg(LOG_ERROR, "redis GET board total: %s", reply->str);
        f->failed = 1;
    } else {
        f->top[pt->period].sum = board_sum_read(reply);
    }
    tc_assert(f->waiting > 0);
    if (--f->waiting == 0)
        fetch_done(f);
}

static void on_board(redisReply *reply, void *priv)
{
    struct part *pt = priv;
    struct fetch *f = pt->f;
    if (!reply || reply->type != REDIS_REPLY_ARRAY) {
        if (reply && reply->type == REDIS_REPLY_ERROR)
            log_msg(LOG_ERROR, "redis ZREVRANGE board: %s", reply->str);
        f->failed = 1;
    } else {
        board_top_read(reply, &f->top[pt->period]);
    }
    tc_assert(f->waiting > 0);
    if (--f->waiting == 0)
        fetch_done(f);
}

int board_read(struct board *b, const char *room, board_read_cb *cb, void *ctx)
{
    struct fetch *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    snprintf(f->room, sizeof f->room, "%s", room);
    f->cb = cb;
    f->ctx = ctx;
    struct board_keys k;
    board_keys(room, clock_wall_ms(), &k);
    char last[16];
    snprintf(last, sizeof last, "%d", BOARD_TOP_N - 1);
    f->waiting = 1; /* held until every command is sent */
    int sent = 0;
    for (int p = 0; p < BOARD_PERIODS; p++) {
        const char *argv[] = {"ZREVRANGE", k.key[p], "0", last, "WITHSCORES"};
        size_t len[] = {9, strlen(k.key[p]), 1, strlen(last), 10};
        f->part[p].f = f;
        f->part[p].period = p;
        if (redis_command(b->rl, RLINK_READ_LINK, 5, argv, len, on_board, &f->part[p]) < 0) {
            f->failed = 1;
            break;
        }
        f->waiting++;
        sent++;
        const char *gv[] = {"GET", k.sum[p]};
        size_t gl[] = {3, strlen(k.sum[p])};
        f->sum_part[p].f = f;
        f->sum_part[p].period = p;
        if (redis_command(b->rl, RLINK_READ_LINK, 2, gv, gl, on_sum, &f->sum_part[p]) < 0) {
            f->failed = 1;
            break;
        }
        f->waiting++;
    }
    const char *hv[] = {"HMGET", k.goal, BOARD_GOAL_FIELDS};
    size_t hl[2 + BOARD_GOAL_NFIELDS];
    for (int i = 0; i < 2 + BOARD_GOAL_NFIELDS; i++)
        hl[i] = strlen(hv[i]);
    if (!f->failed && redis_command(b->rl, RLINK_READ_LINK, 2 + BOARD_GOAL_NFIELDS, hv, hl, on_goal, f) == 0)
        f->waiting++;
    else
        f->failed = 1;
    if (sent == 0) {
        free(f);
        return -1;
    }
    if (--f->waiting == 0)
        fetch_done(f);
    return 0;
}

/* A leaderboard request: the reply handle, until the read answers. */
struct request {
    struct reply r;
};

static void on_request_read(void *ctx, const char *room, const struct board_top *tops,
                            const struct board_goal *goal)
{
    struct request *q = ctx;
    if (tops)
        reply_send(&q->r, board_frame(q->r.fmt, room, q->r.id, tops, goal));
    else
        reply_unavailable(&q->r, "the leaderboard store is unreachable; retry");
    free(q);
}

void board_request(struct board *b, const struct reply *r, const char *room)
{
    struct request *q = malloc(sizeof *q);
    if (q)
        q->r = *r;
    if (!q || board_read(b, room, on_request_read, q) < 0) {
        free(q);
        reply_unavailable(r, "the leaderboard store is unreachable; retry");
    }
}
