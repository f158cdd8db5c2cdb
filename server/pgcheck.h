/* pgcheck.h - keeps a non-blocking libpq connection to PostgreSQL on the
 * loop and checks it with "SELECT 1" every PGCHECK_INTERVAL_MS, for /readyz.
 * The same connection LISTENs on tipcast_catalog and reloads the gift
 * catalog (gifts/catalog.h) when notified and after every reconnect. The
 * connection (storage/pgconn.h) is re-made PGCHECK_RETRY_MS after it fails. */
#ifndef TIPCAST_PGCHECK_H
#define TIPCAST_PGCHECK_H

#include <uv.h>

#define PGCHECK_INTERVAL_MS 2000
/* A check that has not answered within this time counts as a failure. */
#define PGCHECK_TIMEOUT_MS 5000
/* Wait before connecting again after a failure. */
#define PGCHECK_RETRY_MS 1000

/* Starts connecting; returns at once. 0, or -1 when out of memory. */
int pgcheck_start(uv_loop_t *loop, const char *conninfo);
/* Closes the connection and the loop handles (asynchronously). */
void pgcheck_stop(void);
/* 1 when the latest check succeeded and is recent. */
int pgcheck_ok(void);

#endif
