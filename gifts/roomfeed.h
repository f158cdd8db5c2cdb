/* roomfeed.h - the "rooms" consumer group of the wallet outboxes: turns each
 * gift and tip into its room's event and leaderboard bumps, exactly once.
 *
 * The node reads the shards whose "rooms" lease it holds (gifts/outbox.h)
 * on a connection of its own (XREADGROUP ... BLOCK), in stream order. For a
 * shard it has just taken it first claims the pending entries of the
 * consumer that held it (XAUTOCLAIM), then reads its own pending entries,
 * then new ones. Each gift or tip entry goes to room_apply.lua, which keeps
 * a watermark per (room, shard) of the last stream id applied: a
 * redelivered entry is recognised and applied no second time, and an entry
 * whose predecessor in the same room did not apply is refused, so nothing is
 * applied out of order. An entry is acknowledged (XACK) only after its
 * script returned; "credit" entries concern no room and are only
 * acknowledged. Whatever fails (Redis down, an error reply) leaves the
 * entries pending: the shard reads its pending entries again after
 * FEED_RETRY_MS.
 *
 * The event body (msgpack map, the conventions of proto_event_body):
 *   gift: {kind:"gift", from, role, order, gift, name, animation, count,
 *          combo, amount, ts}
 *   tip:  {kind:"tip", from, order, amount, text, ts}
 * `role` is the entry's optional "ro" field, "viewer" when absent.
 */
#ifndef TIPCAST_ROOMFEED_H
#define TIPCAST_ROOMFEED_H

/* Most entries asked for per stream in one read. */
#define FEED_COUNT 256
/* How long one read blocks waiting for new entries. */
#define FEED_BLOCK_MS 100
/* Most streams in one XREADGROUP (rlink's argument bound). */
#define FEED_STREAMS_MAX 100
/* Most entries in one room_apply call (6 arguments each; the call stays
 * within RLINK_ARGS_MAX). A room's entries of one read past it go in more
 * calls, sent in order. */
#define FEED_APPLY_MAX 40
/* The pause before a failed step is tried again. */
#define FEED_RETRY_MS 200

/* Opens the "rooms" connection and starts the lease timer on srv.loop
 * (after rlink_start). Returns 0, or -1 when rlink has no room for another
 * connection (the reason is logged). */
int roomfeed_start(void);
/* Gives up the leases and stops reading (before rlink_stop). Replies still
 * on their way are dropped: their entries stay pending for the next owner. */
void roomfeed_stop(void);

#endif
