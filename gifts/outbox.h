/* outbox.h - the wallet shards and their outbox streams: which shard a
 * user's wallet is on, the key names, the order ids, the consumer groups
 * and what they may trim.
 *
 * Every money movement is one Lua script on one wallet shard (wallet.c)
 * that appends the movement to the shard's outbox stream tc:{w:N}:outbox.
 * Two consumer groups read every stream (consumer.h):
 *   "ledger" - storage/ledger.c: orders, ledger entries and creator
 *              earnings into PostgreSQL, exactly once;
 *   "rooms"  - rooms/roomfeed.c: the room event and the leaderboards,
 *              exactly once per room.
 * An entry's fields are listed in entry.h. The order id of an entry is
 * "<shard>-<stream id>", e.g. "7-1732240000000-0": unique, and derivable by
 * every consumer from where it read the entry.
 *
 * The number of shards (setting wallet-shards) is this module's: it places
 * every wallet, so it is fixed for the life of the data. It is recorded in
 * Redis (tc:wallet-shards) by the first node that starts, and every node
 * checks it at start and refuses to run with another. */
#ifndef TIPCAST_OUTBOX_H
#define TIPCAST_OUTBOX_H

#include <stddef.h>
#include <stdint.h>

#include "redis.h"

#define OUTBOX_GROUP_LEDGER "ledger"
#define OUTBOX_GROUP_ROOMS "rooms"
#define OUTBOX_SHARDS_MAX 1024
/* Longest stream id "ms-seq" (two 64-bit numbers). */
#define OUTBOX_STREAM_ID_MAX 41
/* Longest order id: shard, '-', stream id. */
#define OUTBOX_ORDER_ID_MAX 48
/* Longest key of a shard (tc:{w:N}:outbox, :lease:GROUP, :bal:UID). */
#define OUTBOX_KEY_MAX 128
/* The Redis key that records wallet-shards. */
#define OUTBOX_SHARDS_KEY "tc:wallet-shards"

struct outbox {
    struct redis *rl;
    int shards;
    const char *node_id; /* this node's consumer name */
    struct rlink_script trim_script;
};

/* Prepares the outbox of `shards` wallet shards and registers its script
 * (before redis_start). node_id must outlive ob. */
void outbox_init(struct outbox *ob, struct redis *rl, int shards, const char *node_id);

/* The wallet shard of a user: FNV-1a of the id, modulo the shards. */
int outbox_shard_of(const struct outbox *ob, const char *uid);

/* "tc:{w:N}:", the start of every key of shard N, into buf; returns its
 * length, the position at which to append the rest (text.h). */
size_t outbox_shard_prefix(int shard, char *buf, size_t cap);
/* "tc:{w:N}:WHAT:UID", a key of one user's wallet; returns its length. */
size_t outbox_user_key(int shard, const char *what, const char *uid, char *buf, size_t cap);
/* Key names, written into buf (OUTBOX_KEY_MAX bytes is always enough for
 * the first two; the idempotency key adds the request id). */
void outbox_key(int shard, char *buf, size_t cap);                           /* tc:{w:N}:outbox */
void outbox_balance_key(int shard, const char *uid, char *buf, size_t cap);  /* tc:{w:N}:bal:UID */
void outbox_idem_key(int shard, const char *uid, const char *req_id, char *buf, size_t cap);
void outbox_lease_key(int shard, const char *group, char *buf, size_t cap);  /* tc:{w:N}:lease:GROUP */

/* The shard of a key "tc:{w:N}:outbox" (len bytes), or -1 when it is not
 * one of this outbox's. */
int outbox_key_shard(const struct outbox *ob, const char *key, size_t len);

/* "<shard>-<stream id>" into buf. */
void outbox_order_id(int shard, const char *stream_id, char *buf, size_t cap);

/* Makes sure both consumer groups exist on every shard's stream (XGROUP
 * CREATE ... MKSTREAM, BUSYGROUP ignored). Fire and forget; safe to repeat. */
void outbox_ensure_groups(struct outbox *ob);

/* What a check of a Redis found (outbox_check_shards, wallet_check_redis). */
enum redis_check {
    REDIS_CHECK_REFUSED = 0, /* this Redis must never move money here (reason logged) */
    REDIS_CHECK_PASSED = 1,  /* money may move */
    REDIS_CHECK_RETRY = 2,   /* not yet: Redis is loading its data, or the link dropped */
};

/* Checks the recorded number of shards against this node's, recording it
 * when none is: done(ctx, REDIS_CHECK_PASSED) when they agree,
 * REDIS_CHECK_REFUSED with the reason logged when they do not, and
 * REDIS_CHECK_RETRY when Redis could not answer (loading, link lost).
 * Returns -1 (done never called) when the command connection is down. */
int outbox_check_shards(struct outbox *ob, void (*done)(void *ctx, enum redis_check result), void *ctx);

/* Trims a shard's stream of the entries that both groups have acknowledged
 * (lua/outbox_trim.lua; never by length). Fire and forget: the number
 * trimmed is added to *trimmed when the answer comes (which must stay
 * valid until then). */
void outbox_trim(struct outbox *ob, int shard, uint64_t *trimmed);

#endif
