/* lease.h - shard leases of one consumer group: exactly one node at a time
 * reads a shard's outbox for a group, the node that holds the lease
 * tc:{w:N}:lease:<group> (lua/outbox_lease.lua).
 *
 * The owner calls lease_tick every LEASE_TICK_MS: it takes or renews the
 * lease of every shard (one script per shard, pipelined) and reports every
 * gain or loss through on_change. A round that changed anything is logged
 * as one line per kind ("outbox shards taken", "outbox shards lost", with
 * the shards as ranges), however many shards it moved. A lease whose renewal has not been
 * confirmed for most of its life counts as lost at once, before another
 * node can have taken it. */
#ifndef TIPCAST_LEASE_H
#define TIPCAST_LEASE_H

#include <stdint.h>

#include "outbox.h"

/* A lease lasts this long unless renewed; it is renewed every tick. */
#define LEASE_MS 5000
#define LEASE_TICK_MS 1000

struct leases {
    struct outbox *ob;
    const char *group;
    uint8_t owned[OUTBOX_SHARDS_MAX];
    int64_t renewed_ms[OUTBOX_SHARDS_MAX];
    void (*on_change)(void *ctx, int shard, int owned);
    void *ctx;
    struct rlink_script script;
    /* The changes of the round under way, logged as one line when its
     * last reply is in (lease.c). */
    uint8_t taken[OUTBOX_SHARDS_MAX];
    uint8_t lost[OUTBOX_SHARDS_MAX];
    int inflight;
};

/* Prepares the leases of `group` and registers the script (before
 * rlink_start). on_change runs from lease_tick or later, on the loop. */
void lease_init(struct leases *l, struct outbox *ob, const char *group,
                void (*on_change)(void *ctx, int shard, int owned), void *ctx);

/* Takes or renews every shard's lease. */
void lease_tick(struct leases *l);

/* Gives up every lease held (at shutdown), without waiting for Redis. */
void lease_release_all(struct leases *l);

/* Shards held now. */
int lease_count(const struct leases *l);

#endif
