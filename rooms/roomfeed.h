/* roomfeed.h - the "rooms" consumer group of the outbox (gifts/consumer.h):
 * turns each gift and tip into its room's event and leaderboard bumps,
 * exactly once.
 *
 * The entries of a read are grouped by room (and by day, since a call bumps
 * one set of period boards), and each group goes to lua/room_apply.lua in
 * one call: it keeps a watermark per (room, shard) of the last stream id
 * applied, so a redelivered entry is recognised and applied no second time,
 * and an entry whose predecessor in the same room did not apply is
 * refused, so nothing is applied out of order. An entry that did not apply
 * goes back to the consumer, which reads its shard's pending entries again.
 * Credits concern no room, and malformed entries can never apply: both are
 * acknowledged as they are (the ledger keeps the order either way). */
#ifndef TIPCAST_ROOMFEED_H
#define TIPCAST_ROOMFEED_H

#include <stddef.h>
#include <stdint.h>

#include "consumer.h"
#include "roomevent.h"

/* Most entries read at once (over every shard read). */
#define FEED_READ_MAX 4096
/* How long one read blocks waiting for new entries. */
#define FEED_BLOCK_MS 100
/* No gather time (consumer.h): measured at 1,000 gifts/s, 5 ms took 15% off
 * tipcastd's CPU per gift but doubled the senders' ack p50 (Redis runs the
 * bigger bursts of room_apply calls ahead of the wallet scripts). */
#define FEED_GATHER_MS 0
/* Most entries in one room_apply call (8 arguments each; the call stays
 * within RLINK_ARGS_MAX). A room's entries of one read past it go in more
 * calls, sent in order. */
#define FEED_APPLY_MAX 36

struct roomfeed {
    struct consumer consumer;
    struct redis *rl;
    int history_len;
    char combo_window[24]; /* combo-window-ms, as room_apply's argument */
    const char *fan_levels; /* fan-levels (the configuration's string) */
    char pin_min[24];       /* pin-min-amount */
    const char *pin_tiers;  /* pin-tiers (the configuration's string) */
    struct rlink_script apply;
    struct entry_batch *batch; /* being applied */
    int waiting;               /* calls not yet answered, plus one while sending */
    /* One call's arguments that are not in the batch (rlink copies them). */
    uint8_t body[FEED_APPLY_MAX][EVENT_BODY_MAX];
    char shard[FEED_APPLY_MAX][16];
    char amount[FEED_APPLY_MAX][24];
    char tgc[FEED_APPLY_MAX][64]; /* "TS:GIFT:COUNT" */
};

/* Prepares the feed on `ob`'s streams and registers its scripts (before
 * rlink_start). */
void roomfeed_init(struct roomfeed *f, struct outbox *ob, uv_loop_t *loop, int history_len, int combo_window_ms,
                   const char *fan_levels, int64_t pin_min_amount, const char *pin_tiers);
/* Starts reading (after redis_start). Returns 0, or -1 when rlink has no
 * connection left (logged). */
int roomfeed_start(struct roomfeed *f);
/* Gives up the leases and stops reading (before rlink_stop). Calls still on
 * their way are dropped: their entries stay pending for the next owner. */
void roomfeed_stop(struct roomfeed *f);

#endif
