/* campaign.h - the campaign job (docs/settlement.md, "Campaigns"): every
 * campaign-interval-ms, one node at a time (tipcast_campaign_tick takes a
 * transaction-level advisory lock; the other nodes' ticks return nothing),
 * PostgreSQL decides what can be decided from the ledger (a sealed
 * campaign succeeds, with its payout to the creator, or starts refunding;
 * refunding ends; surges raise alerts) and hands this node the actions that
 * touch Redis and the rooms, each idempotent, so that a node that dies
 * halfway leaves nothing another node's next tick cannot finish:
 *   open    write the campaign to every wallet shard (stock split over the
 *           shards, lua/campaign_shard.lua), then approved -> open;
 *   seal    seal it on every shard (no pledge after that) and record the
 *           shards' totals: open -> closing;
 *   refund  credit a held pledge back (campaign-refunds-per-tick at most
 *           per tick) (wallet_external, kind crefund,
 *           idempotent by the pledge's order id): the ledger consumer
 *           marks it refunded when its outbox entry lands, and the next
 *           tick sends only the pledges still held;
 *   event   a campaign_progress or campaign_update room event, through the
 *           publish hook the server gives (roomstore_publish).
 * No new tick starts while the actions of the last one are out. */
#ifndef TIPCAST_CAMPAIGN_H
#define TIPCAST_CAMPAIGN_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "config.h"
#include "pgpool.h"
#include "wallet.h"

/* Tiers of one campaign at most (the admin API refuses more). */
#define CAMPAIGN_TIERS_MAX 20
/* The window of the pledge-surge alert. */
#define CAMPAIGN_SURGE_WINDOW_S 60

struct campaign_stats {
    uint64_t ticks, tick_failures;
    uint64_t opened, sealed, events;
    uint64_t refunds_sent, refund_failures;
};

typedef void campaign_publish_fn(void *ctx, const char *room, const uint8_t *body, size_t len);

struct campaign_job {
    struct pgpool *pool;
    struct wallet *wallet;
    const struct config *cfg;
    campaign_publish_fn *publish;
    void *publish_ctx;
    uv_timer_t timer;
    int started;
    int tick_out; /* the tick's call is out */
    int work_out; /* its actions still out */
    struct campaign_stats stats;
};

void campaign_start(struct campaign_job *j, uv_loop_t *loop, struct pgpool *pool, struct wallet *w,
                    const struct config *cfg, campaign_publish_fn *publish, void *publish_ctx);
/* Stops the timer (asynchronously). Safe when never started. */
void campaign_stop(struct campaign_job *j);

/* The msgpack map of a flat JSON object (strings, integers, booleans,
 * null) into out; its length, or -1 when it does not fit or holds
 * something else. Pure. */
int campaign_event_body(const char *json, uint8_t *out, size_t cap);

#endif
