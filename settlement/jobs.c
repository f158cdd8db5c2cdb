/* jobs.c - the settlement run and the re-driven wallet credits (see
 * jobs.h). */
#include "jobs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

int jobs_credit(struct wallet *w, const json_t *move, void (*done)(void *ctx, int ok, enum err code, int64_t balance),
                void *ctx)
{
    const char *kind = json_string_value(json_object_get(move, "kind"));
    const char *user = json_string_value(json_object_get(move, "user"));
    const char *ref = json_string_value(json_object_get(move, "ref"));
    const char *room = json_string_value(json_object_get(move, "room"));
    json_t *amount = json_object_get(move, "amount"), *ots = json_object_get(move, "order_ts_ms");
    enum wallet_ext ek;
    if (kind && strcmp(kind, "recharge") == 0)
        ek = WALLET_EXT_RECHARGE;
    else if (kind && strcmp(kind, "refund") == 0)
        ek = WALLET_EXT_REFUND;
    else
        return -1;
    if (!user || !ref || !json_is_integer(amount) || (ek == WALLET_EXT_REFUND && (!room || !json_is_integer(ots))))
        return -1;
    wallet_external(w, ek, user, json_integer_value(amount), ref, room ? room : "",
                    json_is_integer(ots) ? json_integer_value(ots) : 0, done, ctx);
    return 0;
}

/* ---- Settlement ------------------------------------------------------------------ */

static void on_settled(void *priv, const struct pgpool_result *r)
{
    struct jobs *j = priv;
    j->settle_out = 0;
    if (r->outcome != PGPOOL_OK) {
        j->stats.settle_failures++;
        log_msg(LOG_WARN, "settlement: the run failed (%s); the next one settles what it left",
                r->outcome == PGPOOL_REFUSED ? r->code : "PostgreSQL unavailable");
        return;
    }
    j->stats.settle_runs++;
    log_msg(LOG_INFO, "settlement: %s", PQntuples(r->res) == 1 ? PQgetvalue(r->res, 0, 0) : "done");
}

static void on_settle_timer(uv_timer_t *t)
{
    struct jobs *j = t->data;
    if (j->settle_out || !pgpool_up(j->pool))
        return;
    char interval[16], days[16];
    snprintf(interval, sizeof interval, "%d", j->cfg->settlement_interval_s);
    snprintf(days, sizeof days, "%d", j->cfg->settlement_delay_days);
    const char *params[2] = {interval, days};
    /* The cutoff rounded down to the interval: the same on every node. */
    if (pgpool_call(j->pool,
                    "SELECT tipcast_settle_run(to_timestamp(floor(extract(epoch FROM now()) / $1::int) * $1::int)"
                    " - make_interval(days => $2::int))::text",
                    2, params, on_settled, j))
        j->settle_out = 1;
}

/* ---- Re-driven credits --------------------------------------------------------------- */

static void on_credit(void *ctx, int ok, enum err code, int64_t balance)
{
    struct jobs *j = ctx;
    (void)balance;
    j->credits_out--;
    if (ok) {
        j->stats.redriven++;
    } else {
        j->stats.redrive_failures++;
        log_msg(LOG_DEBUG, "settlement: a re-driven credit failed (%s); it is tried again", err_code(code));
    }
}

static void on_redrive(void *priv, const struct pgpool_result *r)
{
    struct jobs *j = priv;
    j->redrive_out = 0;
    if (r->outcome != PGPOOL_OK)
        return;
    int n = PQntuples(r->res);
    if (n > 0)
        log_msg(LOG_INFO, "settlement: %d wallet credits (recharges paid, refunds accepted) not made yet: made now",
                n);
    for (int i = 0; i < n && i < JOBS_REDRIVE_MAX; i++) {
        json_t *move = json_loads(PQgetvalue(r->res, i, 0), 0, NULL);
        j->credits_out++; /* on_credit may run from within jobs_credit */
        if (!move || jobs_credit(j->wallet, move, on_credit, j) < 0) {
            j->credits_out--;
            log_msg(LOG_ERROR, "settlement: tipcast_wallet_redrive returned a movement that cannot be read");
        }
        json_decref(move);
    }
}

static void on_redrive_timer(uv_timer_t *t)
{
    struct jobs *j = t->data;
    if (j->redrive_out || j->credits_out || !pgpool_up(j->pool))
        return;
    const char *params[1] = {JOBS_REDRIVE_AGE_S};
    if (pgpool_call(j->pool, "SELECT m::text FROM tipcast_wallet_redrive($1::int) AS m", 1, params, on_redrive, j))
        j->redrive_out = 1;
}

void jobs_start(struct jobs *j, uv_loop_t *loop, struct pgpool *pool, struct wallet *w, const struct config *cfg)
{
    j->pool = pool;
    j->wallet = w;
    j->cfg = cfg;
    uv_timer_init(loop, &j->settle);
    uv_timer_init(loop, &j->redrive);
    j->settle.data = j->redrive.data = j;
    uv_timer_start(&j->settle, on_settle_timer, (uint64_t)cfg->settlement_interval_s * 1000,
                   (uint64_t)cfg->settlement_interval_s * 1000);
    uv_timer_start(&j->redrive, on_redrive_timer, JOBS_REDRIVE_MS, JOBS_REDRIVE_MS);
    anchor_start(&j->anchor, loop, pool, cfg);
    j->started = 1;
}

void jobs_stop(struct jobs *j)
{
    if (!j->started)
        return;
    j->started = 0;
    uv_close((uv_handle_t *)&j->settle, NULL);
    uv_close((uv_handle_t *)&j->redrive, NULL);
    anchor_stop(&j->anchor);
}
