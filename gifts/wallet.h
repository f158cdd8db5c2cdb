/* wallet.h - the money requests of a user: gift, tip, credit, balance; and
 * the credits of the settlement layer: recharge, refund.
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
 * shards as this node: wallet_check_redis checks both (on every master of
 * a cluster) whenever the command
 * connection comes up, and until it has passed every money request is
 * answered `unavailable`. */
#ifndef TIPCAST_WALLET_H
#define TIPCAST_WALLET_H

#include <stddef.h>
#include <stdint.h>

#include "catalog.h"
#include "config.h"
#include "errors.h"
#include "histogram.h"
#include "jwt.h"
#include "outbox.h"
#include "reply.h"

/* Longest tip message. */
#define WALLET_TIP_TEXT_MAX 200
/* Longest combo id. */
#define WALLET_COMBO_MAX 64
/* How often a Redis that cannot be checked yet (loading) is checked again. */
#define WALLET_RECHECK_MS 500

/* The money requests, as the metrics page names them (wallet_kind_name). */
enum wallet_kind { WALLET_GIFT, WALLET_TIP, WALLET_CREDIT, WALLET_BALANCE, WALLET_RECHARGE, WALLET_REFUND,
                   WALLET_PLEDGE, WALLET_CREFUND, WALLET_KINDS };

/* The credits the settlement layer decides (wallet_external). */
enum wallet_ext { WALLET_EXT_RECHARGE, WALLET_EXT_REFUND, WALLET_EXT_CREFUND };

/* How a money request was answered: ok, replayed (a retry answered with
 * the first result), or an error code (errors.h) at WALLET_RESULT_ERR. */
#define WALLET_RESULT_OK 0
#define WALLET_RESULT_REPLAYED 1
#define WALLET_RESULT_ERR(e) (2 + (int)(e))
#define WALLET_RESULTS (2 + ERR_COUNT)

/* What the wallet counts for the metrics page. */
struct wallet_stats {
    uint64_t results[WALLET_KINDS][WALLET_RESULTS];
    /* From the request's arrival (reply.rx_us) to its ack (or balance)
     * being handed to the connection, per kind; errors are not counted. */
    struct histogram ack[WALLET_KINDS];
};

struct wallet {
    struct redis *rl;
    struct outbox *ob;
    const struct catalog *catalog;
    const struct config *cfg;
    struct rlink_script script;
    struct rlink_script pledge_script, campaign_script; /* lua/wallet_pledge.lua, lua/campaign_shard.lua */
    int checked; /* the Redis behind the command connection passed the checks */
    int loading; /* the last check found Redis loading its data (said once) */
    void (*check_done)(void *ctx, enum redis_check result);
    void *check_ctx;
    int check_master; /* the next master to check (a cluster has several) */
    struct wallet_stats stats;
};

/* What the risk rules give a gift or tip (risk/, docs/operations.md "Risk
 * control"): the client's address and device for the outbox entry, and the
 * daily spend caps the script enforces (exact across nodes: the day's
 * spending is kept in the wallet's risk hash, on the wallet's shard). */
struct wallet_risk {
    const char *ip;     /* the client's IP as text, "" when unknown */
    const char *device; /* the token's device id, "" when none */
    int64_t day_cap;    /* coins per UTC day, 0 = none */
    int64_t new_cap;    /* the cap of an account younger than new_ms, 0 = none */
    int64_t new_ms;     /* how long after its first credit an account is new */
};
/* Longest IP as text (an IPv6 address). */
#define WALLET_IP_MAX 45

/* Prepares the wallet and registers its script (before redis_start). */
void wallet_init(struct wallet *w, struct outbox *ob, const struct catalog *catalog, const struct config *cfg);

/* A gift of `count` of gift `gift` by `who` into `room`, with the sender's
 * combo id ("" for none). `rk` may be NULL: no cap, no address. A gift past
 * the day's cap is ERR_SPEND_CAP_EXCEEDED with the coins still allowed. */
void wallet_gift(struct wallet *w, const struct reply *r, const struct jwt_claims *who, const char *room,
                 int64_t gift, int64_t count, const char *combo, const struct wallet_risk *rk);
/* A gift coupon as PostgreSQL holds it (storage/promo.h looks it up). */
struct wallet_coupon {
    const char *code;   /* 1..ID_MAX bytes of [A-Za-z0-9_.-] */
    const char *user;   /* the only user who may use it */
    int64_t gift;       /* the only gift id it applies to */
    int64_t discount;   /* coins off the order, >= 1 */
    int64_t expires_ms; /* 0 = never */
};

/* A gift with a coupon (NULL: wallet_gift): the wallet pays the gift's
 * total less the coupon's discount (at most the total), the platform the
 * discount (a credit entry "coupon:<code>" before the gift's entry, in the
 * same script), once per coupon for ever. ERR_COUPON_INVALID when the
 * coupon is another user's, another gift's or expired; ERR_COUPON_USED
 * when a request with another id used it. The ack carries "discount". */
void wallet_gift_coupon(struct wallet *w, const struct reply *r, const struct jwt_claims *who, const char *room,
                        int64_t gift, int64_t count, const char *combo, const struct wallet_risk *rk,
                        const struct wallet_coupon *cp);
/* The new-user bonus: `amount` coins credited to `user`, charged to the
 * platform, once per user for ever and only into a wallet that never had
 * coins (no balance key, no first credit). Asked on every authentication
 * of a viewer while the bonus is set; no answer (logged, counted). */
void wallet_bonus(struct wallet *w, const char *user, int64_t amount);
/* A tip of `amount` coins with a message (text_len bytes, may be 0); `rk`
 * as for a gift. */
void wallet_tip(struct wallet *w, const struct reply *r, const struct jwt_claims *who, const char *room,
                int64_t amount, const char *text, size_t text_len, const struct wallet_risk *rk);
/* A credit of `amount` coins to `user` by an admin, with a reason. */
void wallet_credit(struct wallet *w, const struct reply *r, const struct jwt_claims *who, const char *user,
                   int64_t amount, const char *text, size_t text_len);
/* A credit decided by the settlement layer (docs/admin-api.md, the
 * "wallet" of an API answer): `amount` coins into `user`'s wallet for the
 * recharge or refund `ref` (its id: 1..ENTRY_REF_MAX bytes of UTF-8). A
 * refund also names the refunded order's room and created_at in ms
 * (order_ts_ms), for the leaderboards it is taken off; room and
 * order_ts_ms are ignored for a recharge. `user` (and `room`) are ids
 * (jwt.h id_valid); amount is 1..COINS_MAX.
 *
 * Exactly once per ref: the movement is stored under the request id
 * "recharge:<ref>" / "refund:<ref>" for external-idempotency-hours, so a
 * call made again (the API retried, tipcastd restarted) answers the first
 * result (ok, the balance after the first credit) and moves nothing; the
 * same ref with another user, amount, room or time is
 * ERR_IDEMPOTENCY_CONFLICT. No balance check and no outbox backlog bound:
 * money only comes in. The outbox entry (kind recharge / refund, x = ref,
 * ots for a refund) is then applied by the ledger (the recharge or refund
 * row becomes credited) and, for a refund, by the rooms group (the
 * sender's board scores of the order's periods are lowered).
 *
 * done(ctx, ok, code, balance) is called exactly once: from within this
 * call when it is refused at once (ERR_BAD_FIELD for a bad argument,
 * ERR_UNAVAILABLE before wallet_check_redis has passed or when Redis
 * cannot be reached, ERR_INTERNAL when out of memory), else when Redis
 * answers: ok 1 with the balance after the credit (code is then
 * meaningless), or ok 0 with ERR_UNAVAILABLE (retry with the same ref: safe),
 * ERR_IDEMPOTENCY_CONFLICT or ERR_INTERNAL. The strings need only live
 * during the call. */
void wallet_external(struct wallet *w, enum wallet_ext kind, const char *user, int64_t amount, const char *ref,
                     const char *room, int64_t order_ts_ms,
                     void (*done)(void *ctx, int ok, enum err code, int64_t balance), void *ctx);

/* A pledge of `amount` coins by `who` to campaign `campaign` (> 0), for
 * reward tier `tier` (0: none): lua/wallet_pledge.lua on the backer's
 * shard moves the coins to the campaign's escrow and takes one unit of the
 * tier's stock there, atomically, idempotent by the request id; the ack is
 * the gift's (order, amount, balance, replayed). Refusals:
 * campaign_not_found (not open yet, or no such campaign), campaign_closed,
 * forbidden (the campaign's own creator),
 * bad_field tier (no such tier), below_tier_minimum (with the minimum),
 * tier_sold_out, insufficient_balance, backlogged, idempotency_conflict.
 * The outbox entry (k=pledge, r=campaign, x=tier) becomes the ledger
 * movement user:U -A, escrow:<campaign> +A (013_campaigns.sql). */
void wallet_pledge(struct wallet *w, const struct reply *r, const struct jwt_claims *who, int64_t campaign,
                   int64_t tier, int64_t amount);

/* The campaign's hash on wallet shard `shard` (lua/campaign_shard.lua):
 * op "open" with argv = deadline ms, the creator, then per tier its number, minimum
 * and this shard's stock ("" unlimited), or "seal" (argc 0). cb(reply,
 * priv) as rlink's; returns -1 (cb never called) when it cannot be sent. */
int wallet_campaign_shard(struct wallet *w, int shard, int64_t campaign, const char *op, int argc,
                          const char *const *argv, void (*cb)(redisReply *, void *), void *priv);

/* The balance of `who`'s wallet. */
void wallet_balance(struct wallet *w, const struct reply *r, const struct jwt_claims *who);

/* Counts a money request of kind k answered `result` (WALLET_RESULT_*) by
 * someone else: the session's refusals before the wallet sees it (a bad
 * field, rate_limited, auth_required). */
void wallet_count(struct wallet *w, enum wallet_kind k, int result);

/* "gift", "tip", "credit", "balance", "recharge", "refund", "pledge", "crefund". */
const char *wallet_kind_name(enum wallet_kind k);
/* "ok", "replayed" or the error code of a result. */
const char *wallet_result_name(int result);

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
