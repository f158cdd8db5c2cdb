/* pgcheck.c - PostgreSQL reachability for /readyz (see pgcheck.h). The
 * connection itself (reconnection, timeouts) is storage/pgconn.c's. */
#include "pgcheck.h"

#include <string.h>

#include "catalog.h"
#include "log.h"
#include "pgconn.h"
#include "server.h"

#define PGCHECK_TICK_MS 250

/* What the query in flight is. */
enum pg_query { Q_CHECK, Q_LISTEN, Q_CATALOG };

static struct {
    uv_loop_t *loop;
    struct pgconn *pg;
    int64_t last_ok_ms, last_check_ms;
    int ok;
    int logged_down;
    enum pg_query query;
    int query_failed;       /* a result of the query in flight was an error */
    int reload;             /* the catalog changed (or we just connected) */
    uv_timer_t timer;
} P;

static void check_done(void)
{
    P.ok = 1;
    P.last_ok_ms = now_mono_ms();
    if (P.logged_down)
        log_msg(LOG_INFO, "postgres: reachable");
    P.logged_down = 0;
}

static void on_result(PGresult *res, int ok, void *priv)
{
    (void)priv;
    if (!res) {
        /* A failed answer means the connection cannot be trusted: it is
         * made again (and the catalog reloaded after it). */
        if (ok && P.query_failed)
            pgconn_drop(P.pg, "query failed");
        return;
    }
    ExecStatusType st = PQresultStatus(res);
    int good = st == PGRES_TUPLES_OK || (P.query == Q_LISTEN && st == PGRES_COMMAND_OK);
    if (!good) {
        P.query_failed = 1;
        return;
    }
    if (P.query == Q_CATALOG) {
        char err[256];
        if (PQntuples(res) != 1 ||
            catalog_load_json(PQgetvalue(res, 0, 0), (size_t)PQgetlength(res, 0, 0), err, sizeof err) < 0)
            log_msg(LOG_ERROR, "postgres: catalog reload failed; keeping the previous one");
    }
    check_done();
}

static void send_query(enum pg_query q, const char *sql)
{
    P.query = q;
    P.query_failed = 0;
    pgconn_query(P.pg, sql, on_result, NULL); /* a refusal drops the connection: on_down */
}

static void on_up(void *priv)
{
    (void)priv;
    /* Listen first, then load the catalog: a change made between the two
     * is then seen by the load or notified after it. */
    P.reload = 1;
    send_query(Q_LISTEN, "LISTEN tipcast_catalog");
}

static void on_down(const char *what, const char *detail, void *priv)
{
    (void)priv;
    if (!P.logged_down) {
        log_msg(LOG_WARN, "postgres: %s: %s", what, detail);
        P.logged_down = 1;
    }
    P.ok = 0;
}

/* A notification on tipcast_catalog (any payload) asks for a reload. */
static void on_notify(const char *channel, const char *payload, void *priv)
{
    (void)channel;
    (void)payload;
    (void)priv;
    P.reload = 1;
}

static void on_tick(uv_timer_t *t)
{
    (void)t;
    if (!pgconn_up(P.pg) || pgconn_busy(P.pg))
        return;
    int64_t now = now_mono_ms();
    if (P.reload) {
        P.reload = 0;
        P.last_check_ms = now;
        send_query(Q_CATALOG, catalog_query);
    } else if (now - P.last_check_ms >= PGCHECK_INTERVAL_MS) {
        P.last_check_ms = now;
        send_query(Q_CHECK, "SELECT 1");
    }
}

int pgcheck_start(uv_loop_t *loop, const char *conninfo)
{
    static const struct pgconn_hooks hooks = {.on_up = on_up, .on_down = on_down, .on_notify = on_notify};
    const struct pgconn_config cfg = {
        .name = "postgres",
        .conninfo = conninfo,
        .backoff_min_ms = PGCHECK_RETRY_MS,
        .backoff_max_ms = PGCHECK_RETRY_MS,
        .timeout_ms = PGCHECK_TIMEOUT_MS,
    };
    memset(&P, 0, sizeof P);
    P.pg = pgconn_open(loop, &cfg, &hooks, NULL);
    if (!P.pg)
        return -1;
    P.loop = loop;
    uv_timer_init(loop, &P.timer);
    uv_timer_start(&P.timer, on_tick, 0, PGCHECK_TICK_MS);
    return 0;
}

void pgcheck_stop(void)
{
    if (!P.loop)
        return; /* never started */
    uv_timer_stop(&P.timer);
    uv_close((uv_handle_t *)&P.timer, NULL);
    pgconn_close(P.pg);
    P.pg = NULL;
    P.loop = NULL;
}

int pgcheck_ok(void)
{
    return P.ok && now_mono_ms() - P.last_ok_ms < 2 * PGCHECK_INTERVAL_MS + PGCHECK_TIMEOUT_MS;
}
