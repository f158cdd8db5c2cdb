/* outbox.h - the wallet shards' outbox streams: key names, the entry format,
 * and the leases that let exactly one consumer per group read a shard.
 *
 * Every money movement is one Lua script on one wallet shard (gifts/wallet.c)
 * that appends the movement to the shard's outbox stream tc:{w:N}:outbox.
 * Two consumer groups read every stream:
 *   "ledger" - storage/ledger.c: orders, ledger entries and creator earnings
 *              into PostgreSQL, exactly once (ON CONFLICT on the order id);
 *   "rooms"  - gifts/roomfeed.c: the room event, the leaderboards, exactly
 *              once per room (a per-shard watermark of applied stream ids).
 * A shard's stream is read by one consumer of a group at a time: the node
 * that holds the lease tc:{w:N}:lease:<group>.
 *
 * Entry fields (all values are strings, as Redis stores them):
 *   k   kind: "gift", "tip" or "credit"
 *   u   the user whose wallet moved (the sender; the credited user for credit)
 *   r   room id (= the creator's user id); "" for credit
 *   g   gift id (gift), "0" otherwise
 *   gn  gift name (gift), "" otherwise
 *   an  gift animation key (gift), "" otherwise
 *   n   count (gift), "1" otherwise
 *   p   unit price in coins (gift), = a otherwise
 *   a   amount in coins, > 0 (the debit for gift/tip, the credit for credit)
 *   b   the wallet's balance after the movement
 *   m   combo id (gift, may be ""), "" otherwise
 *   t   message text (tip, may be ""), the reason for credit
 *   q   the client's request id (idempotency key, per user)
 *   ts  server time in ms since the epoch
 *   ro  the role of the user who made the request (viewer, creator, admin)
 * The order id of an entry is "<shard>-<stream id>", e.g. "7-1732240000000-0":
 * unique, and derivable by every consumer from where it read the entry.
 */
#ifndef TIPCAST_OUTBOX_H
#define TIPCAST_OUTBOX_H

#include <stddef.h>
#include <stdint.h>

#define OUTBOX_GROUP_LEDGER "ledger"
#define OUTBOX_GROUP_ROOMS "rooms"
#define OUTBOX_SHARDS_MAX 1024
/* A lease lasts this long unless renewed; it is renewed every tick. */
#define OUTBOX_LEASE_MS 5000
#define OUTBOX_LEASE_TICK_MS 1000
/* Longest order id: shard, '-', stream id "ms-seq". */
#define OUTBOX_ORDER_ID_MAX 48

/* The wallet shard of a user: FNV-1a of the id, modulo wallet-shards. */
int outbox_shard_of(const char *uid);

/* Key names, written into buf (cap bytes, >= 128 is always enough). */
void outbox_key(int shard, char *buf, size_t cap);           /* tc:{w:N}:outbox */
void outbox_balance_key(int shard, const char *uid, char *buf, size_t cap); /* tc:{w:N}:bal:UID */
void outbox_idem_key(int shard, const char *uid, const char *req_id, char *buf, size_t cap);
void outbox_lease_key(int shard, const char *group, char *buf, size_t cap);

/* "<shard>-<stream id>" into buf. */
void outbox_order_id(int shard, const char *stream_id, char *buf, size_t cap);

/* Leases of one consumer group. The owner calls outbox_lease_tick() every
 * OUTBOX_LEASE_TICK_MS; it tries to take or renew the lease of every shard
 * (one pipelined script per shard) and calls on_change(shard, owned) when
 * this node gains or loses a shard. `owned` is an array of wallet-shards
 * bytes, 1 where this node holds the lease. A shard whose renewal cannot be
 * confirmed (Redis down) counts as lost at once. */
struct outbox_leases {
    const char *group;
    uint8_t owned[OUTBOX_SHARDS_MAX];
    int64_t renewed_ms[OUTBOX_SHARDS_MAX];
    void (*on_change)(int shard, int owned);
};
void outbox_lease_tick(struct outbox_leases *l);
/* Gives up every lease (at shutdown) without waiting for the answer. */
void outbox_lease_release_all(struct outbox_leases *l);

/* Makes sure both consumer groups exist on every shard's stream (XGROUP
 * CREATE ... MKSTREAM, BUSYGROUP ignored). Fire and forget; safe to repeat. */
void outbox_ensure_groups(void);

#endif
