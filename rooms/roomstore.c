/* roomstore.c - a room's state in Redis (see roomstore.h). */
#include "roomstore.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "roomkeys.h"

extern const char lua_room_presence[];
extern const char lua_room_publish[];
extern const char lua_room_history[];
extern const char lua_room_combo_sweep[];
extern const char lua_room_goal[];
extern const char lua_room_pins[];

void roomstore_init(struct roomstore *rs, struct redis *rl, const char *node_id, int history_len)
{
    memset(rs, 0, sizeof *rs);
    rs->rl = rl;
    rs->node_id = node_id;
    rs->history_len = history_len;
    rs->presence = (struct rlink_script){.name = "room_presence", .src = lua_room_presence};
    rs->publish = (struct rlink_script){.name = "room_publish", .src = lua_room_publish};
    rs->history = (struct rlink_script){.name = "room_history", .src = lua_room_history};
    redis_script_add(rl, &rs->presence);
    redis_script_add(rl, &rs->publish);
    redis_script_add(rl, &rs->history);
    rs->combo_sweep = (struct rlink_script){.name = "room_combo_sweep", .src = lua_room_combo_sweep};
    redis_script_add(rl, &rs->combo_sweep);
    rs->goal = (struct rlink_script){.name = "room_goal", .src = lua_room_goal};
    redis_script_add(rl, &rs->goal);
    rs->pins = (struct rlink_script){.name = "room_pins", .src = lua_room_pins};
    redis_script_add(rl, &rs->pins);
}

int roomstore_event_at(const struct roomstore_events *ev, size_t i, struct roomstore_event *out)
{
    tc_assert(i < ev->n);
    const redisReply *s = ev->reply->element[ev->from + 3 * i], *k = ev->reply->element[ev->from + 3 * i + 1],
                     *b = ev->reply->element[ev->from + 3 * i + 2];
    if (s->type != REDIS_REPLY_INTEGER || k->type != REDIS_REPLY_STRING || b->type != REDIS_REPLY_STRING ||
        b->len > EVENT_BODY_MAX)
        return -1;
    *out = (struct roomstore_event){s->integer, event_kind_of(k->str, k->len), (const uint8_t *)b->str, b->len};
    return 0;
}

/* The events from element `from` on: (seq, kind, body) triples. */
static struct roomstore_events events_of(const redisReply *r, size_t from)
{
    size_t n = r->elements > from ? (r->elements - from) / 3 : 0;
    return (struct roomstore_events){r, from, n};
}

/* An array reply whose first `ints` elements are integers. */
static int reply_ok(const redisReply *r, size_t ints, const char *what)
{
    if (!r)
        return 0;
    if (r->type == REDIS_REPLY_ERROR) {
        log_msg(LOG_ERROR, "redis %s: %s", what, r->str);
        return 0;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements < ints)
        return 0;
    for (size_t i = 0; i < ints; i++)
        if (r->element[i]->type != REDIS_REPLY_INTEGER)
            return 0;
    return 1;
}

/* A call's callback and context, until Redis answers. */
struct call {
    union {
        roomstore_snapshot_cb *snapshot;
        roomstore_seq_cb *seq;
        roomstore_history_cb *history;
        roomstore_reply_cb *reply;
    } cb;
    void *ctx;
};

/* Runs a script on `link` with the call's callback and context held until
 * Redis answers (done frees them). Returns 0, or -1 (nothing is kept). */
static int eval(struct roomstore *rs, int link, const struct rlink_script *s, int nkeys, int argc,
                const char **argv, const size_t *len, rlink_reply_cb *done, struct call call)
{
    struct call *c = malloc(sizeof *c);
    if (!c)
        return -1;
    *c = call;
    if (redis_eval_on(rs->rl, link, s, nkeys, argc, argv, len, done, c) < 0) {
        free(c);
        return -1;
    }
    return 0;
}

static void on_presence(redisReply *reply, void *priv)
{
    struct call *c = priv;
    roomstore_snapshot_cb *cb = c->cb.snapshot;
    void *ctx = c->ctx;
    free(c);
    if (!cb)
        return;
    if (!reply_ok(reply, 2, "room_presence") || reply->elements < 5 + BOARD_PERIODS ||
        reply->element[4 + BOARD_PERIODS]->type != REDIS_REPLY_STRING) {
        cb(ctx, NULL);
        return;
    }
    struct roomstore_snapshot s = {.seq = reply->element[0]->integer, .members = reply->element[1]->integer};
    for (int p = 0; p < BOARD_PERIODS; p++) {
        if (reply->element[2 + p]->type != REDIS_REPLY_ARRAY) {
            cb(ctx, NULL);
            return;
        }
        board_top_read(reply->element[2 + p], &s.top[p]);
    }
    const redisReply *sums = reply->element[2 + BOARD_PERIODS];
    for (int p = 0; sums->type == REDIS_REPLY_ARRAY && p < BOARD_PERIODS && (size_t)p < sums->elements; p++)
        s.top[p].sum = board_sum_read(sums->element[p]);
    board_goal_read(reply->element[3 + BOARD_PERIODS], &s.goal);
    s.pins = (const uint8_t *)reply->element[4 + BOARD_PERIODS]->str;
    s.pins_len = reply->element[4 + BOARD_PERIODS]->len;
    s.events = events_of(reply, 5 + BOARD_PERIODS);
    cb(ctx, &s);
}

int roomstore_presence(struct roomstore *rs, const char *room, uint32_t members, int events, int top_n,
                       roomstore_snapshot_cb *cb, void *ctx)
{
    struct room_keys k;
    struct board_keys bk;
    char count[16], ttl[16], want[16], top[16];
    room_keys(room, &k);
    /* The periods of now in board-tz, as a push or a request reads them. */
    board_keys(room, clock_wall_ms(), &bk);
    snprintf(count, sizeof count, "%u", members);
    snprintf(ttl, sizeof ttl, "%d", ROOMSTORE_PRESENCE_TTL_MS);
    snprintf(want, sizeof want, "%d", events);
    snprintf(top, sizeof top, "%d", top_n);
    const char *argv[] = {k.seq,
                          k.hist,
                          k.nodes,
                          bk.key[BOARD_ALL],
                          bk.key[BOARD_DAY],
                          bk.key[BOARD_WEEK],
                          bk.key[BOARD_MONTH],
                          bk.sum[BOARD_ALL],
                          bk.sum[BOARD_DAY],
                          bk.sum[BOARD_WEEK],
                          bk.sum[BOARD_MONTH],
                          bk.goal,
                          k.pins,
                          k.pin,
                          rs->node_id,
                          count,
                          ttl,
                          want,
                          top};
    enum { NKEYS = 6 + 2 * BOARD_PERIODS, NARGS = NKEYS + 5 };
    size_t len[NARGS];
    for (int i = 0; i < NARGS; i++)
        len[i] = strlen(argv[i]);
    return eval(rs, RLINK_READ_LINK, &rs->presence, NKEYS, NARGS, argv, len, on_presence,
                (struct call){.cb.snapshot = cb, .ctx = ctx});
}

static void on_published(redisReply *reply, void *priv)
{
    struct call *c = priv;
    roomstore_seq_cb *cb = c->cb.seq;
    void *ctx = c->ctx;
    free(c);
    if (reply && reply->type == REDIS_REPLY_ERROR)
        log_msg(LOG_ERROR, "redis room_publish: %s", reply->str);
    cb(ctx, reply && reply->type == REDIS_REPLY_INTEGER ? reply->integer : -1);
}

int roomstore_publish(struct roomstore *rs, const char *room, enum event_kind kind, const uint8_t *body,
                      size_t len, roomstore_seq_cb *cb, void *ctx)
{
    struct room_keys k;
    char hl[16];
    room_keys(room, &k);
    snprintf(hl, sizeof hl, "%d", rs->history_len);
    const char *kn = event_kind_name(kind);
    const char *argv[] = {k.seq, k.hist, k.chan, (const char *)body, hl, kn};
    size_t lens[] = {strlen(k.seq), strlen(k.hist), strlen(k.chan), len, strlen(hl), strlen(kn)};
    return eval(rs, RLINK_CMD_LINK, &rs->publish, 2, 6, argv, lens, on_published,
                (struct call){.cb.seq = cb, .ctx = ctx});
}

int roomstore_goal(struct roomstore *rs, const char *room, const char *from, const char *role, int64_t now_ms,
                   int64_t target, int64_t gift, int64_t deadline, const char *title, size_t title_len,
                   roomstore_seq_cb *cb, void *ctx)
{
    struct room_keys k;
    struct board_keys bk;
    char hl[16], now[24], tg[24], gf[24], dl[24];
    room_keys(room, &k);
    board_keys(room, now_ms, &bk);
    snprintf(hl, sizeof hl, "%d", rs->history_len);
    snprintf(now, sizeof now, "%lld", (long long)now_ms);
    snprintf(tg, sizeof tg, "%lld", (long long)target);
    snprintf(gf, sizeof gf, "%lld", (long long)gift);
    snprintf(dl, sizeof dl, "%lld", (long long)deadline);
    const char *op = target > 0 ? "set" : "clear";
    const char *argv[] = {k.seq, k.hist, bk.goal, k.chan, hl, op, from, role, now, tg, gf, dl, title};
    size_t lens[13];
    for (int i = 0; i < 13; i++)
        lens[i] = i == 12 ? title_len : strlen(argv[i]);
    return eval(rs, RLINK_CMD_LINK, &rs->goal, 3, target > 0 ? 13 : 9, argv, lens, on_published,
                (struct call){.cb.seq = cb, .ctx = ctx});
}

static void on_pins(redisReply *reply, void *priv)
{
    struct call *c = priv;
    roomstore_reply_cb *cb = c->cb.reply;
    void *ctx = c->ctx;
    free(c);
    cb(ctx, reply_ok(reply, 1, "room_pins") ? reply : NULL);
}

int roomstore_pins(struct roomstore *rs, const char *room, const char *op, const char *who, int privileged,
                   const char *target, roomstore_reply_cb *cb, void *ctx)
{
    struct room_keys k;
    char hl[16];
    room_keys(room, &k);
    snprintf(hl, sizeof hl, "%d", rs->history_len);
    const char *argv[] = {k.seq, k.hist, k.pins, k.pin, k.mods, k.chan, hl, op, who, privileged ? "1" : "0", target};
    size_t lens[11];
    for (int i = 0; i < 11; i++)
        lens[i] = strlen(argv[i]);
    return eval(rs, RLINK_CMD_LINK, &rs->pins, 5, 11, argv, lens, on_pins, (struct call){.cb.reply = cb, .ctx = ctx});
}

static void on_history(redisReply *reply, void *priv)
{
    struct call *c = priv;
    roomstore_history_cb *cb = c->cb.history;
    void *ctx = c->ctx;
    free(c);
    if (!reply_ok(reply, 2, "room_history")) {
        cb(ctx, NULL);
        return;
    }
    struct roomstore_history h = {reply->element[0]->integer, reply->element[1]->integer, events_of(reply, 2)};
    cb(ctx, &h);
}

int roomstore_history(struct roomstore *rs, const char *room, int64_t after_seq, int max,
                      roomstore_history_cb *cb, void *ctx)
{
    struct room_keys k;
    char after[24], most[16];
    room_keys(room, &k);
    snprintf(after, sizeof after, "%lld", (long long)after_seq);
    snprintf(most, sizeof most, "%d", max);
    const char *argv[] = {k.seq, k.hist, after, most};
    size_t len[] = {strlen(k.seq), strlen(k.hist), strlen(after), strlen(most)};
    return eval(rs, RLINK_READ_LINK, &rs->history, 2, 4, argv, len, on_history,
                (struct call){.cb.history = cb, .ctx = ctx});
}

struct combo_call {
    roomstore_combo_cb *cb;
    void *ctx;
    char room[ID_MAX + 1];
};

static void on_combo_swept(redisReply *reply, void *priv)
{
    struct combo_call *c = priv;
    if (reply && reply->type == REDIS_REPLY_ERROR)
        log_msg(LOG_ERROR, "room %s: room_combo_sweep: %s", c->room, reply->str);
    c->cb(c->ctx, c->room, reply && reply->type == REDIS_REPLY_INTEGER ? reply->integer : -1);
    free(c);
}

int roomstore_combo_sweep(struct roomstore *rs, const char *room, roomstore_combo_cb *cb, void *ctx)
{
    struct room_keys k;
    char hl[16];
    room_keys(room, &k);
    snprintf(hl, sizeof hl, "%d", rs->history_len);
    const char *argv[] = {k.seq, k.hist, k.combo, k.combo_due, hl, k.chan};
    size_t lens[] = {strlen(k.seq), strlen(k.hist), strlen(k.combo), strlen(k.combo_due), strlen(hl),
                     strlen(k.chan)};
    struct combo_call *c = malloc(sizeof *c);
    if (!c)
        return -1;
    c->cb = cb;
    c->ctx = ctx;
    snprintf(c->room, sizeof c->room, "%s", room);
    if (redis_eval_on(rs->rl, RLINK_CMD_LINK, &rs->combo_sweep, 4, 6, argv, lens, on_combo_swept, c) < 0) {
        free(c);
        return -1;
    }
    return 0;
}
