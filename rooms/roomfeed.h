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

#include "config.h"
#include "consumer.h"
#include "roomevent.h"

/* Most entries read at once (over every shard read). */
#define FEED_READ_MAX 4096
/* How long one read blocks waiting for new entries. */
#define FEED_BLOCK_MS 100
/* When the rooms group gathers (rooms-gather-ms, consumer.h): a gather
 * time pays when a room's entries of that time share one room_apply call
 * (about 80 us of Redis for one entry, 50 an entry for four). Over each
 * window of FEED_GATHER_WINDOW_MS, the entries of rooms that had at least
 * two per gather time are counted; from rooms-gather-from of them a second
 * on, the next window's reads gather. Below it (quiet rooms, or few gifts),
 * an event is applied as soon as its order is read. At most
 * FEED_GATHER_ROOMS rooms are counted in a window (a room that finds no
 * slot counts as quiet). */
#define FEED_GATHER_WINDOW_MS 1000
#define FEED_GATHER_ROOMS 4096
/* Most entries in one room_apply call (8 arguments each; the call stays
 * within RLINK_ARGS_MAX). A room's entries of one read past it go in more
 * calls, sent in order. */
#define FEED_APPLY_MAX 36
/* Most entries of a batch in room_apply calls on their way at once (a
 * call is sent when fewer are): the rest are sent as answers come, so that
 * a wallet script sent meanwhile on the same connection waits behind a few
 * milliseconds of Redis at most, not behind a whole gathered batch. */
#define FEED_ENTRIES_IN_FLIGHT 16

struct room_group;

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
    struct room_group *groups; /* the batch's calls, one per room and day (cap) */
    uint32_t *next;            /* each entry's next of its group (cap) */
    size_t cap;
    int ngroups, sent;         /* calls of the batch, and sent so far */
    int in_flight;             /* entries in calls not yet answered */
    int gather_ms;             /* rooms-gather-ms */
    int gather_from;           /* rooms-gather-from */
    uint64_t calls;            /* room_apply calls sent */
    int gathering;             /* this window's reads gather */
    int64_t window_ms;         /* the counting window's start */
    struct feed_room_count {   /* the window's rooms (FEED_GATHER_ROOMS slots), NULL: never gathers */
        uint32_t hash;         /* the room's name hashed, 0: a free slot */
        uint32_t count;        /* its entries in the window */
    } *rooms;
    /* One call's arguments that are not in the batch (rlink copies them). */
    uint8_t body[FEED_APPLY_MAX][EVENT_BODY_MAX];
    char shard[FEED_APPLY_MAX][16];
    char amount[FEED_APPLY_MAX][24];
    char tgc[FEED_APPLY_MAX][64]; /* "TS:GIFT:COUNT" */
};

/* Prepares the feed on `ob`'s streams and registers its scripts (before
 * rlink_start). */
void roomfeed_init(struct roomfeed *f, struct outbox *ob, uv_loop_t *loop, const struct config *cfg);
/* Starts reading (after redis_start). Returns 0, or -1 when rlink has no
 * connection left (logged). */
int roomfeed_start(struct roomfeed *f);
/* Gives up the leases and stops reading (before rlink_stop). Calls still on
 * their way are dropped: their entries stay pending for the next owner. */
void roomfeed_stop(struct roomfeed *f);
/* Frees the grouping buffers (after rlink_stop: no answer comes after). */
void roomfeed_free(struct roomfeed *f);

#endif
