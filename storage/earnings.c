/* earnings.c - a creator's earnings from PostgreSQL (see earnings.h). */
#include "earnings.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "message.h"

/* "SELECT ... IN (" + a quoted id (at most 2 * ID_MAX + 3 bytes, escaped)
 * and a comma per request of a batch. */
#define EARNINGS_SQL_MAX (128 + EARNINGS_BATCH_MAX * (2 * ID_MAX + 4))

static struct earnings_req *at(struct earnings *e, size_t i)
{
    return &e->queue[(e->head + i) % EARNINGS_QUEUE_MAX];
}

static void answer(const struct earnings_req *q)
{
    struct enc enc;
    message_start(&enc, q->r.fmt, 128, "earnings", q->r.id, 3);
    enc_key(&enc, "creator");
    enc_cstr(&enc, q->creator);
    enc_key(&enc, "total");
    enc_int(&enc, q->total);
    enc_key(&enc, "orders");
    enc_int(&enc, q->orders);
    enc_end_map(&enc);
    reply_send(&q->r, enc_finish(&enc));
}

/* Answers and drops the first n waiting requests: with their rows, or
 * `unavailable` when the query failed. */
static void finish(struct earnings *e, size_t n, int ok)
{
    tc_assert(n <= e->count);
    for (size_t i = 0; i < n; i++) {
        struct earnings_req *q = at(e, i);
        if (ok)
            answer(q);
        else
            reply_unavailable(&q->r, "PostgreSQL is unreachable; retry");
    }
    e->head = (e->head + n) % EARNINGS_QUEUE_MAX;
    e->count -= n;
}

static void pump(struct earnings *e);

static void on_result(PGresult *res, int ok, void *priv)
{
    struct earnings *e = priv;
    if (res) {
        if (PQresultStatus(res) != PGRES_TUPLES_OK || PQnfields(res) != 3) {
            e->batch_failed = 1;
            return;
        }
        for (int row = 0; row < PQntuples(res); row++) {
            const char *creator = PQgetvalue(res, row, 0);
            int64_t total = strtoll(PQgetvalue(res, row, 1), NULL, 10);
            int64_t orders = strtoll(PQgetvalue(res, row, 2), NULL, 10);
            for (size_t i = 0; i < e->batch; i++) {
                struct earnings_req *q = at(e, i);
                if (strcmp(q->creator, creator) == 0) {
                    q->total = total;
                    q->orders = orders;
                }
            }
        }
        return;
    }
    size_t n = e->batch;
    e->batch = 0;
    if (!ok) { /* connection lost or timed out: nobody answers the rest either */
        finish(e, e->count, 0);
        return;
    }
    finish(e, n, !e->batch_failed);
    if (e->batch_failed)
        pgconn_drop(e->pg, "earnings query failed"); /* on_down answers the rest */
    pump(e);
}

static const char *creator_of(void *ctx, size_t i) { return at(ctx, i)->creator; }

/* Sends the query of the next batch, when connected and idle. */
static void pump(struct earnings *e)
{
    if (e->batch || e->count == 0 || !e->pg || !pgconn_up(e->pg) || pgconn_busy(e->pg))
        return;
    char sql[EARNINGS_SQL_MAX];
    size_t n = e->count < EARNINGS_BATCH_MAX ? e->count : EARNINGS_BATCH_MAX;
    int head = snprintf(sql, sizeof sql, "SELECT creator, total, orders FROM creator_earnings WHERE creator IN (");
    if (pgconn_in_list(e->pg, sql, sizeof sql, (size_t)head, n, creator_of, e) < 0) {
        finish(e, e->count, 0);
        return;
    }
    e->batch = n;
    e->batch_failed = 0;
    if (pgconn_query(e->pg, sql, on_result, e) < 0) {
        e->batch = 0;
        finish(e, e->count, 0); /* the connection dropped: on_down ran */
    }
}

static void on_up(void *priv) { pump(priv); }

static void on_down(const char *what, const char *detail, void *priv)
{
    struct earnings *e = priv;
    char line[PGCONN_ERROR_MAX];
    pgconn_first_line(detail, line, sizeof line);
    log_msg(LOG_DEBUG, "earnings: postgres: %s: %s", what, line);
    /* A batch in flight ends in its own final callback, just after. */
    if (e->batch == 0)
        finish(e, e->count, 0);
}

int earnings_start(struct earnings *e, uv_loop_t *loop, const char *conninfo)
{
    static const struct pgconn_hooks hooks = {.on_up = on_up, .on_down = on_down};
    const struct pgconn_config cfg = {
        .name = "earnings: postgres",
        .conninfo = conninfo,
        .application_name = "tipcastd-earnings",
        .backoff_min_ms = EARNINGS_RETRY_MS,
        .backoff_max_ms = EARNINGS_RETRY_MS,
        .timeout_ms = EARNINGS_TIMEOUT_MS,
    };
    e->head = e->count = e->batch = 0;
    e->pg = pgconn_open(loop, &cfg, &hooks, e);
    return e->pg ? 0 : -1;
}

void earnings_stop(struct earnings *e)
{
    if (!e->pg)
        return;
    struct pgconn *pg = e->pg;
    e->pg = NULL;
    pgconn_close(pg); /* a batch in flight ends from within, answered unavailable */
    finish(e, e->count, 0);
}

void earnings_request(struct earnings *e, const struct reply *r, const struct jwt_claims *who,
                      const char *creator)
{
    if (!creator || !creator[0])
        creator = who->sub;
    if (who->role != ROLE_ADMIN && (who->role != ROLE_CREATOR || strcmp(creator, who->sub) != 0)) {
        reply_error(r, ERR_FORBIDDEN, "only a creator (their own) or an admin may read earnings", NULL, 0);
        return;
    }
    if (!e->pg || !pgconn_up(e->pg)) {
        reply_unavailable(r, "PostgreSQL is unreachable; retry");
        return;
    }
    if (e->count == EARNINGS_QUEUE_MAX) {
        reply_unavailable(r, "too many earnings requests waiting; retry");
        return;
    }
    struct earnings_req *q = at(e, e->count);
    q->r = *r;
    snprintf(q->creator, sizeof q->creator, "%s", creator);
    q->total = q->orders = 0;
    e->count++;
    pump(e);
}
