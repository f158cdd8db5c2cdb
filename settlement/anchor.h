/* anchor.h - the ledger's daily anchors inside tipcastd: at start, and then
 * at the first tick after each UTC midnight, every hash chain's head is
 * anchored for that UTC day (tipcast_ledger_anchor_daily,
 * 006_ledger_chain.sql). Every node does it; the anchors' primary key (day,
 * chain) keeps the first, so nodes agree without talking. With webhooks on,
 * a ledger.anchored webhook carries the day's anchors out of the database:
 * anchors kept only inside it can be rewritten by a superuser along with
 * the ledger, so the platform should keep that webhook (or the output of
 * tipcast-admin anchor-ledger) somewhere else. Runs on the admin API's
 * PostgreSQL connections; a failed call is tried again at the next tick.
 * The same call keeps orders' and ledger's monthly partitions made ahead
 * (tipcast_partitions_upkeep, 016_partitions.sql); when that could not have
 * its locks in time, the day is not done and the next tick calls again. */
#ifndef TIPCAST_ANCHOR_H
#define TIPCAST_ANCHOR_H

#include <stdint.h>

#include <uv.h>

#include "config.h"
#include "pgpool.h"

/* How often the UTC day is looked at. */
#define ANCHOR_TICK_MS 60000

struct anchor {
    struct pgpool *pool;
    const struct config *cfg;
    uv_timer_t tick;
    int started, out;
    int64_t day_done; /* the UTC day (days since the epoch) anchored last; -1: none yet */
    uint64_t runs, failures;
};

/* Starts the ticks; the first is at once. */
void anchor_start(struct anchor *a, uv_loop_t *loop, struct pgpool *pool, const struct config *cfg);
/* Stops the ticks (asynchronously). Safe when never started. */
void anchor_stop(struct anchor *a);

#endif
