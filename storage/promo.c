/* promo.c - global boards and coupon lookups from PostgreSQL (see promo.h). */
#include "promo.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "message.h"

static const char *const period_names[GBOARD_PERIODS] = {"day", "week", "month"};
static const char *const kind_names[GBOARD_KINDS] = {"creators", "gifters", "gifts"};

#define PROMO_SQL_MAX (256 + PROMO_BATCH_MAX * (2 * ID_MAX + 4))

static const char unreachable[] = "PostgreSQL is unreachable; retry";

int gboard_period_parse(const char *s, size_t len)
{
    for (int i = 0; i < GBOARD_PERIODS; i++)
        if (strlen(period_names[i]) == len && memcmp(period_names[i], s, len) == 0)
            return i;
    return -1;
}

static void pump(struct promo *p);

/* ---- Global boards --------------------------------------------------------- */

static void enc_list(struct enc *e, enum gboard_kind k, const struct gboard_list *l)
{
    enc_key(e, kind_names[k]);
    enc_array(e, (uint32_t)l->n);
    for (int i = 0; i < l->n; i++) {
        const struct gboard_row *row = &l->rows[i];
        if (k == GBOARD_GIFTS) {
            enc_map(e, 4);
            enc_key(e, "gift");
            enc_int(e, strtoll(row->id, NULL, 10));
            enc_key(e, "name");
            enc_cstr(e, row->name);
            enc_key(e, "count");
            enc_int(e, row->count);
            enc_key(e, "coins");
            enc_int(e, row->coins);
        } else {
            enc_map(e, 2);
            enc_key(e, "user");
            enc_cstr(e, row->id);
            enc_key(e, "total");
            enc_int(e, row->coins);
        }
        enc_end_map(e);
    }
    enc_end_array(e);
}

static void board_answer(const struct promo *p, const struct reply *r, enum gboard_period per)
{
    struct enc e;
    message_start(&e, r->fmt, 2048, "global_board", r->id, 2 + GBOARD_KINDS);
    enc_key(&e, "period");
    enc_cstr(&e, period_names[per]);
    enc_key(&e, "ts");
    enc_int(&e, p->filled_wall_ms);
    for (int k = 0; k < GBOARD_KINDS; k++)
        enc_list(&e, (enum gboard_kind)k, &p->boards[k][per]);
    enc_end_map(&e);
    reply_send(r, enc_finish(&e));
}

static void readers_finish(struct promo *p, int ok)
{
    for (size_t i = 0; i < p->nreaders; i++) {
        if (ok)
            board_answer(p, &p->readers[i].r, p->readers[i].period);
        else
            reply_unavailable(&p->readers[i].r, unreachable);
    }
    p->nreaders = 0;
}

static int lookup(const char *const *names, int n, const char *s)
{
    for (int i = 0; i < n; i++)
        if (strcmp(names[i], s) == 0)
            return i;
    return -1;
}

static void on_fill(PGresult *res, int ok, void *priv)
{
    struct promo *p = priv;
    if (res) {
        if (PQresultStatus(res) != PGRES_TUPLES_OK || PQnfields(res) != 7) {
            p->fill_failed = 1;
            return;
        }
        for (int row = 0; row < PQntuples(res); row++) {
            int k = lookup(kind_names, GBOARD_KINDS, PQgetvalue(res, row, 0));
            int per = lookup(period_names, GBOARD_PERIODS, PQgetvalue(res, row, 1));
            struct gboard_list *l = k >= 0 && per >= 0 ? &p->next[k][per] : NULL;
            if (!l || l->n == GBOARD_TOP)
                continue; /* the query's own bound is GBOARD_TOP: nothing is lost */
            struct gboard_row *out = &l->rows[l->n++];
            snprintf(out->id, sizeof out->id, "%s", PQgetvalue(res, row, 3));
            snprintf(out->name, sizeof out->name, "%s", PQgetvalue(res, row, 4));
            out->coins = strtoll(PQgetvalue(res, row, 5), NULL, 10);
            out->count = strtoll(PQgetvalue(res, row, 6), NULL, 10);
        }
        return;
    }
    p->filling = 0;
    if (ok && !p->fill_failed) {
        memcpy(p->boards, p->next, sizeof p->boards);
        p->filled_mono_ms = clock_mono_us() / 1000;
        p->filled_wall_ms = clock_wall_ms();
        readers_finish(p, 1);
    } else {
        readers_finish(p, 0);
        if (ok)
            pgconn_drop(p->pg, "global boards query failed");
    }
    pump(p);
}

static int fill(struct promo *p)
{
    char sql[160];
    snprintf(sql, sizeof sql,
             "SELECT board, period, rank, id, left(coalesce(name, ''), 64), coins, count "
             "FROM tipcast_global_boards(now(), %d)",
             GBOARD_TOP);
    memset(p->next, 0, sizeof p->next);
    p->fill_failed = 0;
    p->filling = 1;
    if (pgconn_query(p->pg, sql, on_fill, p) < 0) {
        p->filling = 0;
        readers_finish(p, 0);
        return -1;
    }
    return 0;
}

static int fresh(const struct promo *p)
{
    return p->filled_mono_ms && clock_mono_us() / 1000 - p->filled_mono_ms < GBOARD_CACHE_MS;
}

void promo_global_board(struct promo *p, const struct reply *r, enum gboard_period period)
{
    if (fresh(p)) {
        board_answer(p, r, period);
        return;
    }
    if (!p->pg || !pgconn_up(p->pg)) {
        reply_unavailable(r, unreachable);
        return;
    }
    if (p->nreaders == PROMO_QUEUE_MAX) {
        reply_unavailable(r, "too many global board requests waiting; retry");
        return;
    }
    p->readers[p->nreaders].r = *r;
    p->readers[p->nreaders].period = period;
    p->nreaders++;
    pump(p);
}

/* ---- Coupon gifts ---------------------------------------------------------- */

static struct promo_gift *at(struct promo *p, size_t i) { return &p->gifts[(p->head + i) % PROMO_QUEUE_MAX]; }

static void gifts_finish(struct promo *p, size_t n, int ok)
{
    tc_assert(n <= p->count);
    for (size_t i = 0; i < n; i++) {
        struct promo_gift *g = at(p, i);
        if (!ok) {
            wallet_count(p->wallet, WALLET_GIFT, WALLET_RESULT_ERR(ERR_UNAVAILABLE));
            reply_unavailable(&g->r, unreachable);
        } else if (!g->found) {
            wallet_count(p->wallet, WALLET_GIFT, WALLET_RESULT_ERR(ERR_COUPON_INVALID));
            reply_error(&g->r, ERR_COUPON_INVALID, "no such coupon", "coupon", 0);
        } else {
            g->cp.code = g->code;
            g->cp.user = g->cp_user;
            g->rk.ip = g->ip;
            g->rk.device = g->device;
            wallet_gift_coupon(p->wallet, &g->r, &g->who, g->room, g->gift, g->count, g->combo, &g->rk, &g->cp);
        }
    }
    p->head = (p->head + n) % PROMO_QUEUE_MAX;
    p->count -= n;
}

static void on_coupons(PGresult *res, int ok, void *priv)
{
    struct promo *p = priv;
    if (res) {
        if (PQresultStatus(res) != PGRES_TUPLES_OK || PQnfields(res) != 5) {
            p->batch_failed = 1;
            return;
        }
        for (int row = 0; row < PQntuples(res); row++) {
            const char *code = PQgetvalue(res, row, 0);
            for (size_t i = 0; i < p->batch; i++) {
                struct promo_gift *g = at(p, i);
                if (strcmp(g->code, code) != 0)
                    continue;
                g->found = 1;
                snprintf(g->cp_user, sizeof g->cp_user, "%s", PQgetvalue(res, row, 1));
                g->cp.gift = strtoll(PQgetvalue(res, row, 2), NULL, 10);
                g->cp.discount = strtoll(PQgetvalue(res, row, 3), NULL, 10);
                g->cp.expires_ms = strtoll(PQgetvalue(res, row, 4), NULL, 10);
            }
        }
        return;
    }
    size_t n = p->batch;
    p->batch = 0;
    if (!ok) {
        gifts_finish(p, p->count, 0);
        return;
    }
    gifts_finish(p, n, !p->batch_failed);
    if (p->batch_failed)
        pgconn_drop(p->pg, "coupon query failed");
    pump(p);
}

static const char *code_of(void *ctx, size_t i) { return at(ctx, i)->code; }

static void lookups(struct promo *p)
{
    char sql[PROMO_SQL_MAX];
    size_t n = p->count < PROMO_BATCH_MAX ? p->count : PROMO_BATCH_MAX;
    int head = snprintf(sql, sizeof sql,
                        "SELECT code, user_id, gift_id, discount, "
                        "coalesce((extract(epoch FROM expires_at) * 1000)::bigint, 0) "
                        "FROM coupons WHERE revoked_at IS NULL AND code IN (");
    if (pgconn_in_list(p->pg, sql, sizeof sql, (size_t)head, n, code_of, p) < 0) {
        gifts_finish(p, p->count, 0);
        return;
    }
    p->batch = n;
    p->batch_failed = 0;
    if (pgconn_query(p->pg, sql, on_coupons, p) < 0) {
        p->batch = 0;
        gifts_finish(p, p->count, 0);
    }
}

void promo_gift(struct promo *p, const struct reply *r, const struct jwt_claims *who, const char *room,
                int64_t gift, int64_t count, const char *combo, const struct wallet_risk *rk, const char *code)
{
    if (!p->pg || !pgconn_up(p->pg) || !p->gifts) {
        wallet_count(p->wallet, WALLET_GIFT, WALLET_RESULT_ERR(ERR_UNAVAILABLE));
        reply_unavailable(r, unreachable);
        return;
    }
    if (p->count == PROMO_QUEUE_MAX) {
        wallet_count(p->wallet, WALLET_GIFT, WALLET_RESULT_ERR(ERR_UNAVAILABLE));
        reply_unavailable(r, "too many coupon gifts waiting; retry");
        return;
    }
    struct promo_gift *g = at(p, p->count);
    memset(g, 0, sizeof *g);
    g->r = *r;
    g->who = *who;
    g->who.dev = NULL;
    snprintf(g->room, sizeof g->room, "%s", room);
    g->gift = gift;
    g->count = count;
    snprintf(g->combo, sizeof g->combo, "%s", combo);
    snprintf(g->code, sizeof g->code, "%s", code);
    if (rk) {
        g->rk = *rk;
        snprintf(g->ip, sizeof g->ip, "%s", rk->ip ? rk->ip : "");
        snprintf(g->device, sizeof g->device, "%s", rk->device ? rk->device : "");
    }
    p->count++;
    pump(p);
}

/* ---- The connection -------------------------------------------------------- */

/* One query at a time: a due fill of the boards first (readers wait on it
 * all together), then the next batch of coupon lookups. */
static void pump(struct promo *p)
{
    if (!p->pg || !pgconn_up(p->pg) || pgconn_busy(p->pg) || p->filling || p->batch)
        return;
    if (p->nreaders) {
        if (fresh(p)) { /* filled meanwhile */
            readers_finish(p, 1);
        } else {
            fill(p);
            return;
        }
    }
    if (p->count)
        lookups(p);
}

static void on_up(void *priv) { pump(priv); }

static void on_down(const char *what, const char *detail, void *priv)
{
    struct promo *p = priv;
    char line[PGCONN_ERROR_MAX];
    pgconn_first_line(detail, line, sizeof line);
    log_msg(LOG_DEBUG, "promo: postgres: %s: %s", what, line);
    /* A query in flight ends in its own final callback, just after. */
    if (!p->filling)
        readers_finish(p, 0);
    if (p->batch == 0)
        gifts_finish(p, p->count, 0);
}

int promo_start(struct promo *p, uv_loop_t *loop, const char *conninfo, struct wallet *w)
{
    static const struct pgconn_hooks hooks = {.on_up = on_up, .on_down = on_down};
    const struct pgconn_config cfg = {
        .name = "promo: postgres",
        .conninfo = conninfo,
        .application_name = "tipcastd-promo",
        .backoff_min_ms = PROMO_RETRY_MS,
        .backoff_max_ms = PROMO_RETRY_MS,
        .timeout_ms = PROMO_TIMEOUT_MS,
    };
    memset(p, 0, sizeof *p);
    p->wallet = w;
    p->gifts = calloc(PROMO_QUEUE_MAX, sizeof *p->gifts);
    if (!p->gifts)
        return -1;
    p->pg = pgconn_open(loop, &cfg, &hooks, p);
    return p->pg ? 0 : -1;
}

void promo_stop(struct promo *p)
{
    if (!p->pg) {
        free(p->gifts);
        p->gifts = NULL;
        return;
    }
    struct pgconn *pg = p->pg;
    p->pg = NULL;
    pgconn_close(pg); /* a query in flight ends from within, answered unavailable */
    readers_finish(p, 0);
    gifts_finish(p, p->count, 0);
    free(p->gifts);
    p->gifts = NULL;
}
