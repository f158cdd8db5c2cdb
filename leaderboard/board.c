/* board.c - room leaderboards: periods, key names, top-10 pushes (see
 * board.h). */
#include "board.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "conn.h"
#include "log.h"
#include "proto.h"
#include "rlink.h"
#include "room.h"
#include "server.h"

static const char *const period_name[BOARD_PERIODS] = {"all", "day", "week", "month"};
/* The message's field of each period's list ("all" is "top"). */
static const char *const period_field[BOARD_PERIODS] = {"top", "day", "week", "month"};

/* ---- Time zone and periods ----------------------------------------------------- */

int board_tz_init(const char *zone, char *err, size_t errlen)
{
    /* Only names of the tz database: a path or a POSIX rule string would
     * be read by glibc as something else, or not at all. */
    if (!zone[0] || zone[0] == '/' || strstr(zone, "..") || strpbrk(zone, " ,<>:")) {
        snprintf(err, errlen, "board-tz '%s' is not a time zone name (e.g. UTC, Asia/Tokyo)", zone);
        return -1;
    }
    const char *dir = getenv("TZDIR");
    char path[CONFIG_STR_MAX + 64];
    snprintf(path, sizeof path, "%s/%s", dir && dir[0] ? dir : "/usr/share/zoneinfo", zone);
    if (access(path, R_OK) != 0) {
        snprintf(err, errlen, "board-tz '%s' is not in the time zone database (%s)", zone, path);
        return -1;
    }
    if (setenv("TZ", zone, 1) != 0) {
        snprintf(err, errlen, "cannot set TZ");
        return -1;
    }
    tzset();
    return 0;
}

/* Days since 1970-01-01 of a proleptic Gregorian date, and back: the
 * civil-calendar arithmetic that makes "the Monday of this week" exact
 * whatever the month or year boundary. */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

void board_all_key(const char *room, char *buf, size_t cap)
{
    snprintf(buf, cap, "tc:{r:%s}:board:all", room);
}

/* The calendar of one second: its day and the Monday of its week. */
struct board_date {
    int64_t y, wy;
    int m, d, wm, wd;
};

static void date_of(time_t t, struct board_date *bd)
{
    /* The rooms feed asks for the keys of every entry, and the entries of
     * one read mostly share their second: the last answer is kept. The
     * zone is set once before the loop starts (board_tz_init). */
    static time_t last_t = (time_t)-1;
    static struct board_date last;
    if (t == last_t) {
        *bd = last;
        return;
    }
    struct tm tm;
    if (!localtime_r(&t, &tm))
        memset(&tm, 0, sizeof tm); /* only for a time past year 2^31 */
    bd->y = tm.tm_year + 1900;
    bd->m = tm.tm_mon + 1;
    bd->d = tm.tm_mday;
    int64_t monday = days_from_civil(bd->y, bd->m, bd->d) - (tm.tm_wday + 6) % 7;
    civil_from_days(monday, &bd->wy, &bd->wm, &bd->wd);
    last = *bd;
    last_t = t;
}

void board_keys(const char *room, int64_t ts_ms, struct board_keys *k)
{
    struct board_date bd;
    date_of((time_t)(ts_ms / 1000), &bd);
    int64_t y = bd.y, wy = bd.wy;
    int m = bd.m, d = bd.d, wm = bd.wm, wd = bd.wd;

    board_all_key(room, k->key[BOARD_ALL], BOARD_KEY_MAX);
    snprintf(k->key[BOARD_DAY], BOARD_KEY_MAX, "tc:{r:%s}:board:d:%04lld%02d%02d", room, (long long)y, m, d);
    snprintf(k->key[BOARD_WEEK], BOARD_KEY_MAX, "tc:{r:%s}:board:w:%04lld%02d%02d", room, (long long)wy, wm, wd);
    snprintf(k->key[BOARD_MONTH], BOARD_KEY_MAX, "tc:{r:%s}:board:m:%04lld%02d", room, (long long)y, m);
    k->ttl_s[BOARD_ALL] = 0;
    k->ttl_s[BOARD_DAY] = BOARD_KEEP_PERIODS * 86400LL;
    k->ttl_s[BOARD_WEEK] = BOARD_KEEP_PERIODS * 7 * 86400LL;
    k->ttl_s[BOARD_MONTH] = BOARD_KEEP_PERIODS * 31 * 86400LL;
}

/* ---- Top lists ------------------------------------------------------------------ */

void board_top_read(const struct redisReply *reply, struct board_top *t)
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

void board_top_enc(struct enc *e, const struct board_top *t)
{
    enc_array(e, (uint32_t)t->n);
    for (int i = 0; i < t->n; i++) {
        enc_map(e, 2);
        enc_key(e, "user");
        enc_cstr(e, t->user[i]);
        enc_key(e, "total");
        enc_int(e, t->total[i]);
        enc_end_map(e);
    }
    enc_end_array(e);
}

/* ---- Reading the four boards ------------------------------------------------------ */

/* One read of a room's four boards: for a push to the room's members
 * (conn_id 0) or the answer to one request. Owned by the replies: freed
 * when the last of the `waiting` replies has come. */
struct fetch {
    char room[ID_MAX + 1];
    uint64_t conn_id;
    char req_id[PROTO_REQ_ID_MAX + 1];
    int waiting;
    int failed;
    struct part {
        struct fetch *f;
        int period;
    } part[BOARD_PERIODS];
    struct board_top top[BOARD_PERIODS];
};

static struct frame *leaderboard_frame(enum fmt fmt, const struct fetch *f)
{
    int has_id = f->req_id[0] != '\0';
    struct enc e;
    enc_init(&e, fmt, 256 + 64 * BOARD_PERIODS * BOARD_TOP_N);
    enc_map(&e, (uint32_t)(3 + has_id + BOARD_PERIODS));
    enc_key(&e, "type");
    enc_cstr(&e, "leaderboard");
    if (has_id) {
        enc_key(&e, "id");
        enc_cstr(&e, f->req_id);
    }
    enc_key(&e, "room");
    enc_cstr(&e, f->room);
    enc_key(&e, "period");
    enc_cstr(&e, period_name[BOARD_ALL]);
    for (int p = 0; p < BOARD_PERIODS; p++) {
        enc_key(&e, period_field[p]);
        board_top_enc(&e, &f->top[p]);
    }
    enc_end_map(&e);
    return enc_finish(&e);
}

static void fetch_done(struct fetch *f)
{
    if (f->conn_id) {
        struct conn *c = conn_find(f->conn_id);
        if (c) {
            if (f->failed)
                conn_send_error(c, f->req_id, "unavailable", "the leaderboard store is unreachable; retry",
                                NULL, "retry_after_ms", 1000);
            else
                conn_send(c, leaderboard_frame(c->fmt, f));
        }
        free(f);
        return;
    }
    struct room *r = room_lookup(f->room);
    if (r) {
        r->board_busy = 0;
        if (!f->failed) {
            /* One frame per subprotocol, shared by every member's queue. */
            struct frame *fr[FMT_COUNT];
            for (int k = 0; k < FMT_COUNT; k++)
                fr[k] = leaderboard_frame((enum fmt)k, f);
            if (fr[FMT_MSGPACK] && fr[FMT_JSON])
                room_broadcast(r, fr);
            else
                log_msg(LOG_ERROR, "room %s: out of memory building the leaderboard", f->room);
            for (int k = 0; k < FMT_COUNT; k++)
                frame_unref(fr[k]);
        }
    }
    free(f);
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
    if (--f->waiting == 0)
        fetch_done(f);
}

/* Sends the four pipelined ZREVRANGEs. Returns 0 (fetch_done will run),
 * or -1 when not even the first could be sent (then `f` is freed). */
static int fetch_start(struct fetch *f)
{
    struct board_keys k;
    board_keys(f->room, now_wall_ms(), &k);
    char last[16];
    snprintf(last, sizeof last, "%d", BOARD_TOP_N - 1);
    f->waiting = 1; /* held until every command is sent */
    for (int p = 0; p < BOARD_PERIODS; p++) {
        const char *argv[] = {"ZREVRANGE", k.key[p], "0", last, "WITHSCORES"};
        size_t len[] = {9, strlen(k.key[p]), 1, strlen(last), 10};
        f->part[p].f = f;
        f->part[p].period = p;
        if (rlink_command(RLINK_CMD_LINK, 5, argv, len, on_board, &f->part[p]) < 0) {
            f->failed = 1;
            break;
        }
        f->waiting++;
    }
    int none_sent = f->waiting == 1;
    if (--f->waiting == 0) {
        if (none_sent) {
            free(f);
            return -1;
        }
        fetch_done(f);
    }
    return 0;
}

static struct fetch *fetch_new(const char *room, uint64_t conn_id, const char *req_id)
{
    struct fetch *f = calloc(1, sizeof *f);
    if (!f)
        return NULL;
    snprintf(f->room, sizeof f->room, "%s", room);
    f->conn_id = conn_id;
    snprintf(f->req_id, sizeof f->req_id, "%s", req_id ? req_id : "");
    return f;
}

void board_request(struct conn *c, const char *room, const char *req_id)
{
    struct fetch *f = fetch_new(room, c->id, req_id);
    /* fetch_start frees `f` when it fails. */
    if (!f || fetch_start(f) < 0)
        conn_send_error(c, req_id, "unavailable", "the leaderboard store is unreachable; retry", NULL,
                        "retry_after_ms", 1000);
}

/* ---- Throttled pushes ---------------------------------------------------------------- */

static struct {
    uv_timer_t timer;
    int started;
    int running;
    struct room *dirty; /* rooms marked since their last push, linked by board_next */
} B;

static void on_tick(uv_timer_t *t)
{
    (void)t;
    int64_t now = now_mono_ms();
    struct room **pp = &B.dirty;
    while (*pp) {
        struct room *r = *pp;
        if (r->board_busy || now - r->board_pushed_ms < srv.cfg.board_push_ms) {
            pp = &r->board_next;
            continue;
        }
        *pp = r->board_next;
        r->board_next = NULL;
        r->board_queued = 0;
        if (r->nmembers == 0)
            continue; /* nobody here to tell */
        r->board_pushed_ms = now;
        /* When Redis is down there is no push: the next gift marks the
         * room again, and a member can always ask. */
        struct fetch *f = fetch_new(r->id, 0, NULL);
        if (f && fetch_start(f) == 0)
            r->board_busy = 1;
    }
    if (!B.dirty && B.running) {
        uv_timer_stop(&B.timer);
        B.running = 0;
    }
}

void board_start(void)
{
    uv_timer_init(srv.loop, &B.timer);
    B.started = 1;
}

void board_stop(void)
{
    if (!B.started)
        return;
    uv_timer_stop(&B.timer);
    uv_close((uv_handle_t *)&B.timer, NULL);
    B.started = 0;
    B.running = 0;
}

void board_mark(struct room *r)
{
    if (r->board_queued)
        return;
    r->board_queued = 1;
    r->board_next = B.dirty;
    B.dirty = r;
    if (B.started && !B.running) {
        uv_timer_start(&B.timer, on_tick, BOARD_TICK_MS, BOARD_TICK_MS);
        B.running = 1;
    }
    /* A room that may push now reads its boards at once: the event that
     * moved them then waits for the push (room.c) and both reach each
     * member in one write. */
    if (B.started && !r->board_busy && now_mono_ms() - r->board_pushed_ms >= srv.cfg.board_push_ms)
        on_tick(&B.timer);
}

void board_forget(struct room *r)
{
    if (!r->board_queued)
        return;
    struct room **pp = &B.dirty;
    while (*pp != r)
        pp = &(*pp)->board_next;
    *pp = r->board_next;
    r->board_next = NULL;
    r->board_queued = 0;
}
