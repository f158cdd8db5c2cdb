/* pgcheck.h - keeps a non-blocking libpq connection to PostgreSQL on the
 * loop and checks it with "SELECT 1" every PGCHECK_INTERVAL_MS, for /readyz.
 * The same connection LISTENs on tipcast_catalog and reloads the gift
 * catalog (gifts/catalog.h) when notified and after every reconnect, and
 * likewise on tipcast_risk for the risk rules and freezes (risk/risk.h). The
 * connection (core/pgconn.h) is re-made PGCHECK_RETRY_MS after it fails. */
#ifndef TIPCAST_PGCHECK_H
#define TIPCAST_PGCHECK_H

#include <uv.h>

#include "catalog.h"
#include "risk.h"
#include "pgconn.h"

#define PGCHECK_INTERVAL_MS 2000
/* A check that has not answered within this time counts as a failure. */
#define PGCHECK_TIMEOUT_MS 5000
/* Wait before connecting again after a failure. */
#define PGCHECK_RETRY_MS 1000

/* What the query in flight is. */
enum pgcheck_query { Q_CHECK, Q_LISTEN, Q_LISTEN_RISK, Q_CATALOG, Q_RISK };

struct pgcheck {
    uv_loop_t *loop;
    struct catalog *catalog;
    struct risk *risk; /* rules and freezes: LISTEN tipcast_risk */
    /* After every catalog load (the live creators may have changed). */
    void (*on_catalog)(void *ctx);
    void *ctx;
    struct pgconn *pg;
    int64_t last_ok_ms, last_check_ms;
    int ok;
    int logged_down;
    enum pgcheck_query query;
    int query_failed; /* a result of the query in flight was an error */
    int reload;       /* the catalog changed (or we just connected) */
    int listen_risk;  /* LISTEN tipcast_risk is still to be sent */
    int reload_risk;  /* the risk rules or freezes changed (or we just connected) */
    uv_timer_t timer;
};

/* Starts connecting; returns at once. on_catalog(ctx) runs after every
 * catalog load (may be NULL). 0, or -1 when out of memory. */
int pgcheck_start(struct pgcheck *p, uv_loop_t *loop, const char *conninfo, struct catalog *catalog,
                  struct risk *risk, void (*on_catalog)(void *ctx), void *ctx);
/* Closes the connection and the loop handles (asynchronously). */
void pgcheck_stop(struct pgcheck *p);
/* 1 when the latest check succeeded and is recent. */
int pgcheck_ok(const struct pgcheck *p);

#endif
