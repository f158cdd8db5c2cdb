/* wallet.h - the money requests of a user: gift, tip, credit, balance.
 *
 * Each movement is one call of lua/wallet_move.lua on the user's wallet
 * shard: all checks, then the debit or credit, the outbox entry and the
 * stored result under the request id, atomically. The answer (ack or
 * error) goes through the request's reply handle when the script returns;
 * a connection gone by then is skipped, and the movement stands in the
 * outbox.
 *
 * Money moves only on a Redis that keeps what it acknowledges (appendonly
 * on, maxmemory-policy noeviction) and holds the same number of wallet
 * shards as this node: wallet_check_redis checks both whenever the command
 * connection comes up, and until it has passed every money request is
 * answered `unavailable`. */
#ifndef TIPCAST_WALLET_H
#define TIPCAST_WALLET_H

#include <stddef.h>
#include <stdint.h>

#include "catalog.h"
#include "config.h"
#include "jwt.h"
#include "outbox.h"
#include "reply.h"

/* Longest tip message. */
#define WALLET_TIP_TEXT_MAX 200
/* Longest combo id. */
#define WALLET_COMBO_MAX 64
/* How often a Redis that cannot be checked yet (loading) is checked again. */
#define WALLET_RECHECK_MS 500

struct wallet {
    struct rlink *rl;
    struct outbox *ob;
    const struct catalog *catalog;
    const struct config *cfg;
    struct rlink_script script;
    int checked; /* the Redis behind the command connection passed the checks */
    int loading; /* the last check found Redis loading its data (said once) */
    void (*check_done)(void *ctx, enum redis_check result);
    void *check_ctx;
};

/* Prepares the wallet and registers its script (before rlink_start). */
void wallet_init(struct wallet *w, struct outbox *ob, const struct catalog *catalog, const struct config *cfg);

/* A gift of `count` of gift `gift` by `who` into `room`, with the sender's
 * combo id ("" for none). */
void wallet_gift(struct wallet *w, const struct reply *r, const struct jwt_claims *who, const char *room,
                 int64_t gift, int64_t count, const char *combo);
/* A tip of `amount` coins with a message (text_len bytes, may be 0). */
void wallet_tip(struct wallet *w, const struct reply *r, const struct jwt_claims *who, const char *room,
                int64_t amount, const char *text, size_t text_len);
/* A credit of `amount` coins to `user` by an admin, with a reason. */
void wallet_credit(struct wallet *w, const struct reply *r, const struct jwt_claims *who, const char *user,
                   int64_t amount, const char *text, size_t text_len);
/* The balance of `who`'s wallet. */
void wallet_balance(struct wallet *w, const struct reply *r, const struct jwt_claims *who);

/* Checks the Redis behind the command connection (call whenever it comes
 * up): persistence, then the number of wallet shards. Calls done(ctx,
 * REDIS_CHECK_PASSED) when money may move (also when redis-unsafe allows a
 * Redis that could lose balances), REDIS_CHECK_REFUSED with the reason
 * logged when it must not, and REDIS_CHECK_RETRY when Redis cannot tell
 * yet: it is loading its AOF or RDB (INFO then says loading:1 and
 * aof_enabled:0, which is no verdict on its persistence), or the link
 * dropped; the caller checks again later. Returns -1 (done never called)
 * when the connection is down. Money requests answer `unavailable` from
 * this call until done(…, REDIS_CHECK_PASSED). */
int wallet_check_redis(struct wallet *w, void (*done)(void *ctx, enum redis_check result), void *ctx);

#endif
