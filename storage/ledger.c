/* ledger.c - the ledger consumer's wiring: the consumer group, the
 * PostgreSQL connection, start and stop (see ledger.h). */
#include "ledger.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "ledger_txn.h"
#include "log.h"

static void on_pg_up(void *priv)
{
    struct ledger *l = priv;
    if (l->pg_logged_down)
        log_msg(LOG_INFO, "ledger: postgres reachable again");
    l->pg_logged_down = 0;
    consumer_kick(&l->consumer);
}

/* The connection dropped; a transaction in flight has failed (the server
 * rolls it back when it sees the connection go, if it had not committed:
 * either way its entries are not acknowledged, and replaying them is
 * harmless). pgconn ends it right after this. */
static void on_pg_down(const char *what, const char *detail, void *priv)
{
    struct ledger *l = priv;
    if (!l->pg_logged_down) {
        char line[256];
        pgconn_first_line(detail, line, sizeof line);
        log_msg(LOG_WARN, "ledger: postgres %s: %s", what, line);
        l->pg_logged_down = 1;
    }
}

static int ready(void *ctx) { return ledger_txn_ready(ctx); }

static void apply(void *ctx, struct entry_batch *b) { ledger_txn_write(ctx, b); }

void ledger_init(struct ledger *l, struct outbox *ob, uv_loop_t *loop, const struct config *cfg)
{
    memset(l, 0, sizeof *l);
    l->cfg = cfg;
    l->loop = loop;
    static const struct consumer_ops ops = {.ready = ready, .apply = apply};
    const struct consumer_cfg ccfg = {.group = OUTBOX_GROUP_LEDGER, .per_read = cfg->ledger_batch,
                                      .block_ms = cfg->ledger_flush_ms, .gather_ms = cfg->ledger_flush_ms,
                                      .trims = 1};
    consumer_init(&l->consumer, ob, loop, &ccfg, &ops, l);
    histogram_init_latency(&l->stats.flush);
}

int ledger_start(struct ledger *l)
{
    static const struct pgconn_hooks hooks = {.on_up = on_pg_up, .on_down = on_pg_down};
    const struct pgconn_config pcfg = {
        .name = "ledger: postgres",
        .conninfo = l->cfg->pg_conninfo,
        .application_name = "tipcastd-ledger",
        .client_encoding = "UTF8",
        .backoff_min_ms = LEDGER_BACKOFF_MIN_MS,
        .backoff_max_ms = LEDGER_BACKOFF_MAX_MS,
        .timeout_ms = LEDGER_PG_TIMEOUT_MS,
    };
    l->pg = pgconn_open(l->loop, &pcfg, &hooks, l);
    if (!l->pg) {
        log_msg(LOG_ERROR, "ledger: out of memory");
        return -1;
    }
    return consumer_start(&l->consumer);
}

void ledger_stop(struct ledger *l)
{
    consumer_stop(&l->consumer);
    /* A transaction in flight ends here, unacknowledged (its final callback
     * comes from within pgconn_close and finds the consumer stopped). */
    pgconn_close(l->pg);
    l->pg = NULL;
    ledger_sql_free(&l->sql);
    if (l->consumer.started)
        log_msg(LOG_INFO,
                "ledger: stopped (%" PRIu64 " entries in %" PRIu64 " transactions: %" PRIu64 " new orders, %" PRIu64
                " new credits, %" PRIu64 " set aside)",
                l->consumer.stats.entries, l->stats.batches, l->stats.orders, l->stats.credits, l->stats.rejects);
}
