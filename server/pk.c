/* pk.c - PK battles on this node: live scores, the cut, the decision and
 * its announcement (see pk.h). */
#include "pk.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include "clock.h"
#include "log.h"
#include "message.h"
#include "outbox.h"
#include "room.h"
#include "roomkeys.h"

extern const char lua_pk_horizon[];
extern const char lua_pk_announce[];

static void tick(struct pk *p);

/* PostgreSQL is up and answering nothing else: a query may go. */
static int pg_free(const struct pk *p) { return p->pg && pgconn_up(p->pg) && !pgconn_busy(p->pg); }

/* ---- Live scores ------------------------------------------------------------ */

static struct frame *score_frame(const struct pk_battle *b, const char *room, enum fmt fmt)
{
    struct enc e;
    message_start(&e, fmt, 256, "pk_score", "", 6);
    enc_key(&e, "room");
    enc_cstr(&e, room);
    enc_key(&e, "pk");
    enc_int(&e, b->id);
    enc_key(&e, "room_a");
    enc_cstr(&e, b->room_a);
    enc_key(&e, "room_b");
    enc_cstr(&e, b->room_b);
    enc_key(&e, "scores");
    enc_array(&e, 2);
    enc_int(&e, b->score_a);
    enc_int(&e, b->score_b);
    enc_end_array(&e);
    enc_key(&e, "ends_at");
    enc_int(&e, b->end_ms);
    enc_end_map(&e);
    return enc_finish(&e);
}

/* Sends the battle's scores to this node's members of `room`, if any. */
static void push_room(struct pk *p, const struct pk_battle *b, const char *room)
{
    struct room *r = room_find(p->rooms, room);
    if (!r)
        return;
    struct frame *f[FMT_COUNT] = {NULL};
    /* Down: a send may close a member (room_leave). */
    for (uint32_t i = r->nmembers; i-- > 0;) {
        struct conn *c = r->members[i];
        if (!f[c->fmt])
            f[c->fmt] = score_frame(b, room, c->fmt);
        conn_send(c, f[c->fmt] ? frame_ref(f[c->fmt]) : NULL);
    }
    for (int k = 0; k < FMT_COUNT; k++)
        if (f[k])
            frame_unref(f[k]);
}

/* A new member of a room in running battles gets their scores at once. */
static void on_member_joined(void *ctx, struct conn *c, const struct room *r)
{
    struct pk *p = ctx;
    for (int i = 0; i < p->nbattles; i++) {
        const struct pk_battle *b = &p->battles[i];
        if (b->running && (strcmp(b->room_a, r->id) == 0 || strcmp(b->room_b, r->id) == 0))
            conn_send(c, score_frame(b, r->id, c->fmt));
    }
}

/* Pushes the running battles whose scores changed since the last push, or
 * pushed PK_REPUSH_MS ago (or never by this node), and forgets the battles
 * no longer running. */
static void push_scores(struct pk *p)
{
    struct pk_pushed next[PK_BATTLES_MAX];
    int n = 0;
    int64_t now = clock_mono_us() / 1000;
    for (int i = 0; i < p->nbattles; i++) {
        const struct pk_battle *b = &p->battles[i];
        if (!b->running)
            continue;
        const struct pk_pushed *old = NULL;
        for (int j = 0; j < p->npushed; j++)
            if (p->pushed[j].id == b->id)
                old = &p->pushed[j];
        if (!old || old->score_a != b->score_a || old->score_b != b->score_b || now - old->at_ms >= PK_REPUSH_MS) {
            push_room(p, b, b->room_a);
            push_room(p, b, b->room_b);
            next[n++] = (struct pk_pushed){b->id, b->score_a, b->score_b, now};
        } else {
            next[n++] = *old;
        }
    }
    memcpy(p->pushed, next, (size_t)n * sizeof next[0]);
    p->npushed = n;
}

/* ---- The decision ----------------------------------------------------------- */

static void step_done(struct pk *p)
{
    p->busy = 0;
}

static void on_decided(PGresult *res, int ok, void *priv)
{
    struct pk *p = priv;
    const struct pk_battle *b = &p->cur;
    (void)ok; /* not decided this time: the next tick asks again */
    if (res) {
        if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1 || PQnfields(res) != 5) {
            char line[PGCONN_ERROR_MAX];
            pgconn_first_line(PQresultErrorMessage(res), line, sizeof line);
            log_msg(LOG_WARN, "pk: battle %" PRId64 " not decided: %s", b->id, line);
            return;
        }
        const char *winner = PQgetisnull(res, 0, 2) ? "" : PQgetvalue(res, 0, 2);
        int stored = PQgetvalue(res, 0, 3)[0] == 't', same = PQgetvalue(res, 0, 4)[0] == 't';
        /* The same line on every node that decides it: tests compare them. */
        log_msg(same ? LOG_INFO : LOG_ERROR,
                "pk: battle %" PRId64 " decided: %s %s, %s %s, %s%s (%s)", b->id, b->room_a, PQgetvalue(res, 0, 0),
                b->room_b, PQgetvalue(res, 0, 1), winner[0] ? "winner " : "draw", winner,
                stored ? "stored by this node" : same ? "as stored" : "DIFFERS FROM THE STORED RESULT");
        p->verified[p->nverified++ % PK_BATTLES_MAX] = b->id;
        if (stored)
            p->stats.stored++;
        else if (same)
            p->stats.verified++;
        else
            p->stats.differs++;
        return;
    }
    step_done(p);
}

static void decide(struct pk *p)
{
    char id[24];
    snprintf(id, sizeof id, "%" PRId64, p->cur.id);
    const char *params[] = {id, p->node_id};
    if (pgconn_query_params(p->pg, "SELECT score_a, score_b, winner, stored, same FROM tipcast_pk_decide($1, $2)",
                            2, params, on_decided, p) < 0)
        step_done(p);
}

/* ---- The ledger's horizon ---------------------------------------------------- */

static void on_horizon(redisReply *reply, void *priv)
{
    struct pk *p = priv;
    int64_t h = 0, now = 0;
    if (reply && reply->type == REDIS_REPLY_ARRAY && reply->elements == 2 &&
        reply->element[0]->type == REDIS_REPLY_INTEGER && reply->element[1]->type == REDIS_REPLY_INTEGER) {
        h = reply->element[0]->integer;
        now = reply->element[1]->integer;
    }
    if (h < p->horizon_ms)
        p->horizon_ms = h;
    if (now < p->redis_now_ms)
        p->redis_now_ms = now;
    if (--p->waiting == 0)
        p->horizon_done(p);
}

/* Asks every wallet shard how far the ledger has committed its outbox
 * (lua/pk_horizon.lua); `done` runs once every answer is in, with
 * horizon_ms the earliest shard's (0 when one could not say) and
 * redis_now_ms the earliest clock. Answers come later (rlink's contract),
 * so counting the calls sent is enough. */
static void ask_horizon(struct pk *p, void (*done)(struct pk *p))
{
    p->horizon_ms = p->redis_now_ms = INT64_MAX;
    p->horizon_done = done;
    p->waiting = 0;
    for (int k = 0; k < p->ob->shards; k++) {
        char key[OUTBOX_KEY_MAX];
        outbox_key(k, key, sizeof key);
        const char *argv[] = {key, OUTBOX_GROUP_LEDGER};
        size_t len[] = {strlen(key), strlen(OUTBOX_GROUP_LEDGER)};
        if (redis_eval(p->rl, &p->horizon_script, 1, 2, argv, len, on_horizon, p) == 0)
            p->waiting++;
        else
            p->horizon_ms = p->redis_now_ms = 0;
    }
    if (p->waiting == 0) {
        p->horizon_ms = p->redis_now_ms = 0;
        done(p);
    }
}

/* The cut of a battle past its end: every shard's clock past the end (by
 * the grace: no order can fall before it any more) and its ledger past it
 * too (every order before the end is stored). Then it is decided; else the
 * next tick asks again. */
static void on_cut(struct pk *p)
{
    int64_t end = p->cur.end_ms;
    if (p->horizon_ms < end || p->redis_now_ms < end + PK_CUT_GRACE_MS || !pg_free(p)) {
        step_done(p);
        return;
    }
    decide(p);
}

/* ---- The announcement ------------------------------------------------------- */

static void on_marked(PGresult *res, int ok, void *priv)
{
    struct pk *p = priv;
    /* not marked: the next tick announces again, and the rooms' markers make that a no-op */
    (void)ok;
    if (res && PQresultStatus(res) == PGRES_COMMAND_OK)
        p->stats.announced++;
    if (!res)
        step_done(p);
}

static void on_announced(redisReply *reply, void *priv)
{
    struct pk *p = priv;
    if (!reply || reply->type != REDIS_REPLY_INTEGER)
        p->failed++;
    if (--p->waiting > 0)
        return;
    if (p->failed || !pg_free(p)) {
        step_done(p);
        return;
    }
    char id[24];
    snprintf(id, sizeof id, "%" PRId64, p->cur.id);
    const char *params[] = {id};
    if (pgconn_query_params(p->pg, "UPDATE pk_battles SET announced = true WHERE id = $1", 1, params, on_marked,
                            p) < 0)
        step_done(p);
}

static void pack_str(msgpack_packer *pk, const char *s) { msgpack_pack_str_with_body(pk, s, strlen(s)); }

/* The body of the pk_end event: {kind:"pk_end", pk, room_a, room_b,
 * score_a, score_b, winner, result, ts}. */
static void end_body(const struct pk_battle *b, msgpack_sbuffer *sb)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 9);
    pack_str(&pk, "kind");
    pack_str(&pk, "pk_end");
    pack_str(&pk, "pk");
    msgpack_pack_int64(&pk, b->id);
    pack_str(&pk, "room_a");
    pack_str(&pk, b->room_a);
    pack_str(&pk, "room_b");
    pack_str(&pk, b->room_b);
    pack_str(&pk, "score_a");
    msgpack_pack_int64(&pk, b->score_a);
    pack_str(&pk, "score_b");
    msgpack_pack_int64(&pk, b->score_b);
    pack_str(&pk, "winner");
    pack_str(&pk, b->winner);
    pack_str(&pk, "result");
    pack_str(&pk, !b->winner[0] ? "draw" : strcmp(b->winner, b->room_a) == 0 ? "a" : "b");
    pack_str(&pk, "ts");
    msgpack_pack_int64(&pk, b->end_ms);
}

static void announce(struct pk *p)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    end_body(&p->cur, &sb);
    char hist[24], ttl[24];
    snprintf(hist, sizeof hist, "%d", p->cfg->history_len);
    snprintf(ttl, sizeof ttl, "%lld", PK_ANNOUNCED_TTL_MS);
    p->failed = p->waiting = 0;
    const char *rooms[] = {p->cur.room_a, p->cur.room_b};
    for (int i = 0; i < 2; i++) {
        struct room_keys k;
        room_keys(rooms[i], &k);
        char marker[ROOM_KEY_MAX + 32];
        snprintf(marker, sizeof marker, "tc:{r:%s}:pk:%" PRId64, rooms[i], p->cur.id);
        const char *argv[] = {k.seq, k.hist, marker, k.chan, sb.data, hist, ttl};
        size_t len[] = {strlen(k.seq), strlen(k.hist), strlen(marker), strlen(k.chan), sb.size, strlen(hist),
                        strlen(ttl)};
        if (redis_eval(p->rl, &p->announce_script, 3, 7, argv, len, on_announced, p) == 0)
            p->waiting++;
        else
            p->failed++;
    }
    msgpack_sbuffer_destroy(&sb);
    if (p->waiting == 0)
        step_done(p);
}

/* ---- The tick --------------------------------------------------------------- */

static int verified(const struct pk *p, int64_t id)
{
    int n = p->nverified < PK_BATTLES_MAX ? p->nverified : PK_BATTLES_MAX;
    for (int i = 0; i < n; i++)
        if (p->verified[i] == id)
            return 1;
    return 0;
}

/* A running battle's row of the tick: its scores so far were counted
 * since the battle's checkpoint; what this node had counted for good
 * before it is added, and the orders before cut_ms are now counted for
 * good too (next_live, kept once the whole tick is read). */
static void count_live(struct pk *p, struct pk_battle *b, int64_t cut_ms, int64_t settled_a, int64_t settled_b)
{
    struct pk_live prev = {b->id, 0, 0, 0};
    for (int j = 0; j < p->nlive; j++)
        if (p->live[j].id == b->id)
            prev = p->live[j];
    b->score_a += prev.settled_a;
    b->score_b += prev.settled_b;
    p->next_live[p->nnext_live++] = (struct pk_live){b->id, cut_ms, prev.settled_a + settled_a, prev.settled_b + settled_b};
}

static void on_tick(PGresult *res, int ok, void *priv)
{
    struct pk *p = priv;
    if (res) {
        if (PQresultStatus(res) != PGRES_TUPLES_OK || PQnfields(res) != 13) {
            p->nbattles = -1;
            return;
        }
        int n = PQntuples(res) < PK_BATTLES_MAX ? PQntuples(res) : PK_BATTLES_MAX;
        p->nnext_live = 0;
        for (int i = 0; i < n; i++) {
            struct pk_battle *b = &p->battles[i];
            b->id = strtoll(PQgetvalue(res, i, 0), NULL, 10);
            b->running = strcmp(PQgetvalue(res, i, 1), "running") == 0;
            snprintf(b->room_a, sizeof b->room_a, "%s", PQgetvalue(res, i, 2));
            snprintf(b->room_b, sizeof b->room_b, "%s", PQgetvalue(res, i, 3));
            b->start_ms = strtoll(PQgetvalue(res, i, 4), NULL, 10);
            b->end_ms = strtoll(PQgetvalue(res, i, 5), NULL, 10);
            b->score_a = strtoll(PQgetvalue(res, i, 6), NULL, 10);
            b->score_b = strtoll(PQgetvalue(res, i, 7), NULL, 10);
            snprintf(b->winner, sizeof b->winner, "%s", PQgetisnull(res, i, 8) ? "" : PQgetvalue(res, i, 8));
            b->announced = PQgetvalue(res, i, 9)[0] == 't';
            if (b->running)
                count_live(p, b, strtoll(PQgetvalue(res, i, 10), NULL, 10), strtoll(PQgetvalue(res, i, 11), NULL, 10),
                           strtoll(PQgetvalue(res, i, 12), NULL, 10));
        }
        p->nbattles = n;
        return;
    }
    if (ok && p->nbattles >= 0) {
        memcpy(p->live, p->next_live, (size_t)p->nnext_live * sizeof p->live[0]);
        p->nlive = p->nnext_live;
    }
    if (!ok || p->nbattles < 0) {
        p->nbattles = 0;
        step_done(p);
        return;
    }
    push_scores(p);
    /* One decision or one announcement per tick: battles are few, and one
     * step at a time keeps the node's work per tick bounded. */
    int64_t now = clock_wall_ms();
    for (int i = 0; i < p->nbattles; i++) {
        const struct pk_battle *b = &p->battles[i];
        if (b->running && now >= b->end_ms + PK_CUT_GRACE_MS) {
            p->cur = *b;
            ask_horizon(p, on_cut);
            return;
        }
    }
    for (int i = 0; i < p->nbattles; i++) {
        const struct pk_battle *b = &p->battles[i];
        if (!b->running && !verified(p, b->id)) {
            p->cur = *b;
            decide(p);
            return;
        }
    }
    for (int i = 0; i < p->nbattles; i++) {
        if (!p->battles[i].running && !p->battles[i].announced) {
            p->cur = p->battles[i];
            announce(p);
            return;
        }
    }
    step_done(p);
}

int pk_running(const struct pk *p)
{
    int n = 0;
    for (int i = 0; i < p->nbattles; i++)
        n += p->battles[i].running;
    return n;
}

/* Reads the battles, with the checkpoint the ledger's horizon allows (less
 * the grace: an order's created_at may be a little before its entry's id). */
static void query_tick(struct pk *p)
{
    if (!pg_free(p)) {
        step_done(p);
        return;
    }
    /* The battles this node counts, and their checkpoints: "{1,2}", "{...}". */
    char ids[PK_BATTLES_MAX * 21 + 3], froms[PK_BATTLES_MAX * 21 + 3], stored[24];
    size_t li = 0, lf = 0;
    ids[li++] = froms[lf++] = '{';
    for (int i = 0; i < p->nlive; i++) {
        li += (size_t)snprintf(ids + li, sizeof ids - li, "%s%" PRId64, i ? "," : "", p->live[i].id);
        lf += (size_t)snprintf(froms + lf, sizeof froms - lf, "%s%" PRId64, i ? "," : "", p->live[i].from_ms);
    }
    snprintf(ids + li, sizeof ids - li, "}");
    snprintf(froms + lf, sizeof froms - lf, "}");
    snprintf(stored, sizeof stored, "%" PRId64, p->horizon_ms > PK_CUT_GRACE_MS ? p->horizon_ms - PK_CUT_GRACE_MS : 0);
    const char *params[] = {ids, froms, stored};
    p->nbattles = 0;
    if (pgconn_query_params(p->pg,
                            "SELECT id, state, room_a, room_b, start_ms, end_ms, score_a, score_b, winner, announced, "
                            "cut_ms, settled_a, settled_b FROM tipcast_pk_tick($1::bigint[], $2::bigint[], $3::bigint)",
                            3, params, on_tick, p) < 0)
        step_done(p);
}

static void tick(struct pk *p)
{
    if (p->busy || !pg_free(p) || !redis_cmd_ready(p->rl))
        return;
    p->busy = 1;
    if (pk_running(p)) {
        ask_horizon(p, query_tick);
    } else {
        p->horizon_ms = 0; /* nothing to count: the battles only */
        query_tick(p);
    }
}

static void on_timer(uv_timer_t *t) { tick(t->data); }

static void on_up(void *priv) { (void)priv; }

static void on_down(const char *what, const char *detail, void *priv)
{
    (void)priv;
    char line[PGCONN_ERROR_MAX];
    pgconn_first_line(detail, line, sizeof line);
    log_msg(LOG_DEBUG, "pk: postgres: %s: %s", what, line);
}

void pk_init(struct pk *p, const struct config *cfg, const char *node_id, uv_loop_t *loop, struct redis *rl,
             struct outbox *ob, struct rooms *rooms)
{
    memset(p, 0, sizeof *p);
    p->cfg = cfg;
    p->node_id = node_id;
    p->loop = loop;
    p->rl = rl;
    p->ob = ob;
    p->rooms = rooms;
    rooms->on_joined = on_member_joined;
    rooms->on_joined_ctx = p;
    p->horizon_script = (struct rlink_script){.name = "pk_horizon", .src = lua_pk_horizon};
    p->announce_script = (struct rlink_script){.name = "pk_announce", .src = lua_pk_announce};
    redis_script_add(rl, &p->horizon_script);
    redis_script_add(rl, &p->announce_script);
}

int pk_start(struct pk *p)
{
    static const struct pgconn_hooks hooks = {.on_up = on_up, .on_down = on_down};
    const struct pgconn_config cfg = {
        .name = "pk: postgres",
        .conninfo = p->cfg->pg_conninfo,
        .application_name = "tipcastd-pk",
        .backoff_min_ms = PK_TICK_MS,
        .backoff_max_ms = PK_TICK_MS,
        .timeout_ms = PK_TIMEOUT_MS,
    };
    p->pg = pgconn_open(p->loop, &cfg, &hooks, p);
    if (!p->pg)
        return -1;
    uv_timer_init(p->loop, &p->timer);
    p->timer.data = p;
    uv_timer_start(&p->timer, on_timer, PK_TICK_MS, PK_TICK_MS);
    p->started = 1;
    return 0;
}

void pk_stop(struct pk *p)
{
    if (!p->started)
        return;
    p->started = 0;
    uv_timer_stop(&p->timer);
    uv_close((uv_handle_t *)&p->timer, NULL);
    struct pgconn *pg = p->pg;
    p->pg = NULL;
    pgconn_close(pg); /* a query in flight ends from within */
}
