/* anchor.c - the ledger's daily anchors (see anchor.h). */
#include "anchor.h"

#include <time.h>

#include "log.h"

static int64_t utc_day(void) { return (int64_t)time(NULL) / 86400; }

static void on_anchored(void *priv, const struct pgpool_result *r)
{
    struct anchor *a = priv;
    a->out = 0;
    if (r->outcome != PGPOOL_OK || PQntuples(r->res) != 1 || PQnfields(r->res) != 3) {
        a->failures++;
        log_msg(LOG_WARN, "ledger anchors: the daily anchor and partition upkeep failed (%s); tried again in a minute",
                r->outcome == PGPOOL_REFUSED ? r->code : "PostgreSQL unavailable");
        return;
    }
    a->runs++;
    log_msg(LOG_INFO, "ledger anchors: %s", PQgetvalue(r->res, 0, 0));
    /* Partitions not made (a lock not had in time): the next tick calls
     * again, anchors and all (both are idempotent). */
    int skipped = PQgetvalue(r->res, 0, 2)[0] == 't';
    log_msg(skipped ? LOG_WARN : LOG_INFO, "partitions: %s", PQgetvalue(r->res, 0, 1));
    if (!skipped)
        a->day_done = utc_day();
}

static void on_tick(uv_timer_t *t)
{
    struct anchor *a = t->data;
    /* (A call that started before midnight and ends after it marks the new
     * day done: the heads it anchored are the new day's, as the SQL takes
     * the day from now() at the call.) */
    if (a->out || a->day_done == utc_day() || !pgpool_up(a->pool))
        return;
    const char *params[1] = {config_webhooks_on(a->cfg) ? "true" : "false"};
    if (pgpool_call(a->pool,
                    "SELECT tipcast_ledger_anchor_daily($1::boolean)::text, u::text, u ? 'skipped' "
                    "FROM tipcast_partitions_upkeep() u", 1,
                    params, on_anchored, a))
        a->out = 1;
}

void anchor_start(struct anchor *a, uv_loop_t *loop, struct pgpool *pool, const struct config *cfg)
{
    a->pool = pool;
    a->cfg = cfg;
    a->day_done = -1;
    uv_timer_init(loop, &a->tick);
    a->tick.data = a;
    /* The first tick soon after start (the pool connects meanwhile), then
     * every ANCHOR_TICK_MS; until the pool is up a tick does nothing. */
    uv_timer_start(&a->tick, on_tick, 200, ANCHOR_TICK_MS);
    a->started = 1;
}

void anchor_stop(struct anchor *a)
{
    if (!a->started)
        return;
    a->started = 0;
    uv_close((uv_handle_t *)&a->tick, NULL);
}
