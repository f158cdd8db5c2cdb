/* jobs.h - settlement's work that no request starts:
 *   settlement  every settlement-interval-s, the net earnings of orders
 *               older than settlement-delay-days move from pending to
 *               available (tipcast_settle_run). The cutoff is rounded down
 *               to the interval, so that every node running it in one
 *               interval names the same cutoff, and the second run of a
 *               cutoff finds nothing left to settle;
 *   credits     recharges paid and refunds accepted whose wallet credit did
 *               not happen (Redis down at the time, or tipcastd stopped
 *               between the SQL and the script) are credited again every
 *               few seconds (tipcast_wallet_redrive); the credit is
 *               idempotent by its reference, so a credit that did happen is
 *               only answered again.
 * Both run on the admin API's PostgreSQL connections, as do the ledger's
 * daily anchors (anchor.h), started and stopped with them. */
#ifndef TIPCAST_JOBS_H
#define TIPCAST_JOBS_H

#include <stdint.h>

#include <jansson.h>
#include <uv.h>

#include "anchor.h"
#include "config.h"
#include "pgpool.h"
#include "wallet.h"

#define JOBS_REDRIVE_MS 5000
/* A credit younger than this is still being made by its request. */
#define JOBS_REDRIVE_AGE_S "10"
/* Credits re-driven per round at most. */
#define JOBS_REDRIVE_MAX 200

struct jobs_stats {
    uint64_t settle_runs, settle_failures;
    uint64_t redriven, redrive_failures;
};

struct jobs {
    struct pgpool *pool;
    struct wallet *wallet;
    const struct config *cfg;
    uv_timer_t settle, redrive;
    int started;
    int settle_out, redrive_out; /* a call of each is out */
    int credits_out;             /* wallet scripts of a round still out */
    struct jobs_stats stats;
    struct anchor anchor; /* the ledger's daily anchors (anchor.h) */
};

void jobs_start(struct jobs *j, uv_loop_t *loop, struct pgpool *pool, struct wallet *w, const struct config *cfg);
/* Stops the timers (asynchronously). Safe when never started. */
void jobs_stop(struct jobs *j);

/* Runs the wallet movement a settlement function asked for
 * ({"kind": "recharge"|"refund", "user", "amount", "ref", "room",
 * "order_ts_ms"}, docs/admin-api.md): done(ctx, ok, code, balance) when the
 * script returns. Returns -1 (done never called) when `w` is not such an
 * object. */
int jobs_credit(struct wallet *w, const json_t *move, void (*done)(void *ctx, int ok, enum err code, int64_t balance),
                void *ctx);

#endif
