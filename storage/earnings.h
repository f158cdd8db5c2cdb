/* earnings.h - a creator's earnings as PostgreSQL records them, for the
 * `earnings` request (docs/protocol.md).
 *
 * The ledger consumer raises creator_earnings in the same transaction as
 * the orders that earn them (storage/ledger.h), so the answer counts every
 * gift and tip already in PostgreSQL: an order acked a moment ago may not
 * be in it yet (the ledger's flush, milliseconds when healthy).
 *
 * Requests wait in a bounded queue and are answered in batches, one query
 * per batch on a connection of the module's own (core/pgconn.h), so a
 * burst of dashboards opening costs a few round trips, not one each. With
 * PostgreSQL down, or the queue full, a request is answered `unavailable`
 * at once. */
#ifndef TIPCAST_EARNINGS_H
#define TIPCAST_EARNINGS_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "jwt.h"
#include "pgconn.h"
#include "reply.h"

/* Requests waiting for PostgreSQL; past it they are answered unavailable. */
#define EARNINGS_QUEUE_MAX 1024
/* Requests answered by one query. */
#define EARNINGS_BATCH_MAX 64
/* A query (or a connect) that takes longer has failed. */
#define EARNINGS_TIMEOUT_MS 5000
#define EARNINGS_RETRY_MS 1000

struct earnings_req {
    struct reply r;
    char creator[ID_MAX + 1];
    int64_t total, orders; /* filled by the query's rows; 0 when none */
};

struct earnings {
    struct pgconn *pg;
    /* A ring of waiting requests; the first `batch` of them are those of
     * the query in flight. */
    struct earnings_req queue[EARNINGS_QUEUE_MAX];
    size_t head, count, batch;
    int batch_failed; /* a result of the query in flight was an error */
};

/* Starts connecting; returns at once. 0, or -1 when out of memory. */
int earnings_start(struct earnings *e, uv_loop_t *loop, const char *conninfo);
/* Answers every waiting request `unavailable` and closes the connection
 * (asynchronously). Safe when never started. */
void earnings_stop(struct earnings *e);

/* Answers with the earnings of `creator`, who is who->sub unless an admin
 * names another: {type:"earnings", id, creator, total, orders}. A viewer,
 * or a creator naming someone else, gets `forbidden`. `creator` may be NULL
 * or "" (oneself). */
void earnings_request(struct earnings *e, const struct reply *r, const struct jwt_claims *who,
                      const char *creator);

#endif
