/* pgcheck.c - PostgreSQL reachability for /readyz (see pgcheck.h). The
 * connection itself (reconnection, timeouts) is storage/pgconn.c's. */
#include "pgcheck.h"

#include <string.h>

#include "clock.h"
#include "log.h"

#define PGCHECK_TICK_MS 250

static void check_done(struct pgcheck *p)
{
    p->ok = 1;
    p->last_ok_ms = clock_mono_ms();
    if (p->logged_down)
        log_msg(LOG_INFO, "postgres: reachable");
    p->logged_down = 0;
}

static void on_result(PGresult *res, int ok, void *priv)
{
    struct pgcheck *p = priv;
    if (!res) {
        /* A failed answer means the connection cannot be trusted: it is
         * made again (and the catalog reloaded after it). */
        if (ok && p->query_failed)
            pgconn_drop(p->pg, "query failed");
        return;
    }
    ExecStatusType st = PQresultStatus(res);
    int good = st == PGRES_TUPLES_OK || ((p->query == Q_LISTEN || p->query == Q_LISTEN_RISK) && st == PGRES_COMMAND_OK);
    if (!good) {
        p->query_failed = 1;
        return;
    }
    if (p->query == Q_CATALOG) {
        char err[256];
        if (PQntuples(res) != 1 ||
            catalog_load_json(p->catalog, PQgetvalue(res, 0, 0), (size_t)PQgetlength(res, 0, 0), err, sizeof err) < 0)
            log_msg(LOG_ERROR, "postgres: catalog reload failed; keeping the previous one");
        else if (p->on_catalog)
            p->on_catalog(p->ctx);
    } else if (p->query == Q_RISK) {
        char err[256];
        if (PQntuples(res) != 1 ||
            risk_load_json(p->risk, PQgetvalue(res, 0, 0), (size_t)PQgetlength(res, 0, 0), err, sizeof err) < 0)
            log_msg(LOG_ERROR, "postgres: risk rules reload failed; keeping the previous ones");
    } else if (p->query == Q_LISTEN) {
        p->listen_risk = 1;
    }
    check_done(p);
}

static void send_query(struct pgcheck *p, enum pgcheck_query q, const char *sql)
{
    p->query = q;
    p->query_failed = 0;
    pgconn_query(p->pg, sql, on_result, p); /* a refusal drops the connection: on_down */
}

static void on_up(void *priv)
{
    struct pgcheck *p = priv;
    /* Listen first, then load the catalog: a change made between the two
     * is then seen by the load or notified after it. */
    p->reload = p->reload_risk = 1;
    p->listen_risk = 0;
    send_query(p, Q_LISTEN, "LISTEN tipcast_catalog");
}

static void on_down(const char *what, const char *detail, void *priv)
{
    struct pgcheck *p = priv;
    if (!p->logged_down) {
        log_msg(LOG_WARN, "postgres: %s: %s", what, detail);
        p->logged_down = 1;
    }
    p->ok = 0;
}

/* A notification on tipcast_catalog or tipcast_risk (any payload) asks for
 * a reload of what it names. */
static void on_notify(const char *channel, const char *payload, void *priv)
{
    struct pgcheck *p = priv;
    (void)payload;
    if (strcmp(channel, "tipcast_risk") == 0)
        p->reload_risk = 1;
    else
        p->reload = 1;
}

static void on_tick(uv_timer_t *t)
{
    struct pgcheck *p = t->data;
    if (!pgconn_up(p->pg) || pgconn_busy(p->pg))
        return;
    int64_t now = clock_mono_ms();
    if (p->listen_risk) {
        /* Like the catalog: listen first, then load. */
        p->listen_risk = 0;
        send_query(p, Q_LISTEN_RISK, "LISTEN tipcast_risk");
    } else if (p->reload) {
        p->reload = 0;
        p->last_check_ms = now;
        send_query(p, Q_CATALOG, catalog_query);
    } else if (p->reload_risk) {
        p->reload_risk = 0;
        p->last_check_ms = now;
        send_query(p, Q_RISK, risk_query);
    } else if (now - p->last_check_ms >= PGCHECK_INTERVAL_MS) {
        p->last_check_ms = now;
        send_query(p, Q_CHECK, "SELECT 1");
    }
}

int pgcheck_start(struct pgcheck *p, uv_loop_t *loop, const char *conninfo, struct catalog *catalog,
                  struct risk *risk, void (*on_catalog)(void *ctx), void *ctx)
{
    static const struct pgconn_hooks hooks = {.on_up = on_up, .on_down = on_down, .on_notify = on_notify};
    const struct pgconn_config cfg = {
        .name = "postgres",
        .conninfo = conninfo,
        .backoff_min_ms = PGCHECK_RETRY_MS,
        .backoff_max_ms = PGCHECK_RETRY_MS,
        .timeout_ms = PGCHECK_TIMEOUT_MS,
    };
    memset(p, 0, sizeof *p);
    p->catalog = catalog;
    p->risk = risk;
    p->on_catalog = on_catalog;
    p->ctx = ctx;
    p->pg = pgconn_open(loop, &cfg, &hooks, p);
    if (!p->pg)
        return -1;
    p->loop = loop;
    uv_timer_init(loop, &p->timer);
    p->timer.data = p;
    uv_timer_start(&p->timer, on_tick, 0, PGCHECK_TICK_MS);
    return 0;
}

void pgcheck_stop(struct pgcheck *p)
{
    if (!p->loop)
        return; /* never started */
    uv_timer_stop(&p->timer);
    uv_close((uv_handle_t *)&p->timer, NULL);
    pgconn_close(p->pg);
    p->pg = NULL;
    p->loop = NULL;
}

int pgcheck_ok(const struct pgcheck *p)
{
    return p->ok && clock_mono_ms() - p->last_ok_ms < 2 * PGCHECK_INTERVAL_MS + PGCHECK_TIMEOUT_MS;
}
