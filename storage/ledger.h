/* ledger.h - the `ledger` consumer group of the outbox (gifts/consumer.h):
 * the wallet shards' entries into PostgreSQL, exactly once in effect.
 *
 * Each batch the consumer reads is written in ONE PostgreSQL transaction
 * (ledger_txn.c, tipcast_ledger_apply of 003_ledger_split.sql) and
 * acknowledged only after it committed:
 *   gift, tip  one orders row (unique on the order id) with its revenue
 *              split and, only when it was new, its ledger rows (user -A,
 *              creator +net, agency +share, platform +fee), the creator's
 *              month volume, pending balance and earnings;
 *   credit     two ledger rows (user +A, platform -A), unique on
 *              (movement, account);
 *   recharge   user +A, platform -A under 'recharge:<id>'; the recharge
 *              paid -> credited;
 *   refund     the refund's split reversed under 'refund:<id>'; the
 *              creator's balance lowered; the refund pending -> credited;
 *   malformed  one outbox_rejects row with the raw entry (never blocks the
 *              stream; a non-empty table is an incident).
 * Delivery is at least once (a crash between COMMIT and XACK replays the
 * batch); the unique keys and the state checks make a replay change
 * nothing.
 *
 * While PostgreSQL is down nothing is read or acknowledged: entries wait
 * in the outbox, and the connection (core/pgconn.h) is made again with
 * backoff. This group also trims the outbox of its shards, of the entries
 * that both groups have acknowledged (never by length). */
#ifndef TIPCAST_LEDGER_H
#define TIPCAST_LEDGER_H

#include <stdint.h>

#include <uv.h>

#include "config.h"
#include "consumer.h"
#include "histogram.h"
#include "ledger_sql.h"
#include "pgconn.h"

/* Wait before reconnecting to PostgreSQL; doubles up to max. */
#define LEDGER_BACKOFF_MIN_MS 100
#define LEDGER_BACKOFF_MAX_MS 2000
/* A PostgreSQL connect or transaction that takes longer has failed. */
#define LEDGER_PG_TIMEOUT_MS 30000

struct ledger_stats {
    uint64_t batches;      /* transactions committed */
    uint64_t orders;       /* orders rows inserted (a replay inserts none) */
    uint64_t credits;      /* credit movements inserted */
    uint64_t recharges;    /* recharges credited */
    uint64_t refunds;      /* refunds credited */
    uint64_t rejects;      /* malformed entries set aside in outbox_rejects */
    int64_t last_flush_ms; /* duration of the latest transaction */
    int64_t last_lag_ms;   /* age of its newest entry when it committed */
    struct histogram flush; /* duration of each committed transaction */
};

struct ledger {
    struct consumer consumer;
    const struct config *cfg;
    uv_loop_t *loop;
    struct pgconn *pg;
    int pg_logged_down;
    /* Queue the webhooks of new orders, recharges and refunds (set by the
     * server when a webhook-url is configured; 0 by default). */
    int webhooks;

    /* The transaction in flight (ledger_txn.c). */
    struct entry_batch *batch;
    struct ledger_sql sql;          /* its query and COPY rows, until it ends */
    struct pgconn_copy copies[LEDGER_COPIES];
    int pg_failed;                  /* a statement of it had an error */
    char pg_error[256];
    char pg_sqlstate[6];            /* of that error, "" when unknown */
    int64_t rows_orders, rows_credits, rows_recharges, rows_refunds;
    int64_t started_us;             /* when it was sent (clock_mono_us) */

    struct ledger_stats stats;
};

/* Prepares the ledger on `ob`'s streams (before redis_start); cfg gives
 * pg, ledger-batch and ledger-flush-ms and must outlive it. */
void ledger_init(struct ledger *l, struct outbox *ob, uv_loop_t *loop, const struct config *cfg);

/* Starts the consumer and the PostgreSQL connection (after redis_start).
 * Returns 0, or -1 (no Redis connection left, or out of memory). */
int ledger_start(struct ledger *l);

/* Stops (before rlink_stop): gives up the leases and abandons a transaction
 * in flight (its entries stay pending and are replayed by the next owner).
 * The loop must run until the handles are closed. Safe to call when
 * ledger_start failed or never ran. */
void ledger_stop(struct ledger *l);

#endif
