/* promo.h - what the WebSocket side reads from PostgreSQL for issue 14's
 * platform-wide features: the global boards (`global_board` request) and
 * the gift coupons (a `gift` with `coupon`), on a connection of the
 * module's own (core/pgconn.h), like earnings.h.
 *
 * Global boards: the creators by income, the gifters platform-wide and the
 * hot gifts of the current UTC day, week and month, from the stats rollups
 * the ledger consumer keeps in the orders' own transaction (migrations 009
 * and 012, tipcast_global_boards). All nine are read by one query and kept
 * GBOARD_CACHE_MS: a node asks PostgreSQL at most once per that time
 * however many clients read, and every reader of one fill gets the same
 * lists. They count the orders in PostgreSQL when the cache was filled
 * (the reply's `ts`).
 *
 * Coupons: the coupon is looked up (owner, gift, discount, expiry), then
 * the gift goes to the wallet (gifts/wallet.h wallet_gift_coupon), whose
 * script enforces the single use. Lookups wait in a bounded queue and are
 * answered in batches of one query.
 *
 * With PostgreSQL down, or a queue full, a request is answered
 * `unavailable` at once. */
#ifndef TIPCAST_PROMO_H
#define TIPCAST_PROMO_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "jwt.h"
#include "pgconn.h"
#include "reply.h"
#include "wallet.h"

/* Requests waiting for PostgreSQL, per queue; past it: unavailable. */
#define PROMO_QUEUE_MAX 1024
/* Coupon lookups answered by one query. */
#define PROMO_BATCH_MAX 64
#define PROMO_TIMEOUT_MS 5000
#define PROMO_RETRY_MS 1000
/* Rows per global board. */
#define GBOARD_TOP 10
/* How long a fill of the global boards is served before it is read again. */
#define GBOARD_CACHE_MS 5000
/* Longest gift name kept (64 characters of UTF-8). */
#define GBOARD_NAME_MAX 256

enum gboard_period { GBOARD_DAY, GBOARD_WEEK, GBOARD_MONTH, GBOARD_PERIODS };
enum gboard_kind { GBOARD_CREATORS, GBOARD_GIFTERS, GBOARD_GIFTS, GBOARD_KINDS };

struct gboard_row {
    char id[ID_MAX + 1]; /* user id, or the gift id in decimal */
    char name[GBOARD_NAME_MAX + 1];
    int64_t coins, count;
};

struct gboard_list {
    int n;
    struct gboard_row rows[GBOARD_TOP];
};

/* A gift with a coupon, waiting for the coupon's row. */
struct promo_gift {
    struct reply r;
    struct jwt_claims who; /* who.dev is not used */
    char room[ID_MAX + 1];
    int64_t gift, count;
    char combo[WALLET_COMBO_MAX + 1];
    char code[ID_MAX + 1];
    char ip[WALLET_IP_MAX + 1];
    char device[ID_MAX + 1];
    struct wallet_risk rk; /* ip and device point into the two above when used */
    int found;
    struct wallet_coupon cp;
    char cp_user[ID_MAX + 1];
};

struct promo {
    struct pgconn *pg;
    struct wallet *wallet;
    /* Global boards: the last fill, when it was made (mono ms, 0 = never)
     * and its wall time; readers waiting for the next fill. */
    struct gboard_list boards[GBOARD_KINDS][GBOARD_PERIODS];
    int64_t filled_mono_ms, filled_wall_ms;
    int filling, fill_failed;
    struct gboard_list next[GBOARD_KINDS][GBOARD_PERIODS];
    struct {
        struct reply r;
        enum gboard_period period;
    } readers[PROMO_QUEUE_MAX];
    size_t nreaders;
    /* Coupon gifts: a ring; the first `batch` are those of the query in
     * flight. */
    struct promo_gift *gifts; /* PROMO_QUEUE_MAX of them */
    size_t head, count, batch;
    int batch_failed;
};

/* Starts connecting; returns at once. 0, or -1 when out of memory. */
int promo_start(struct promo *p, uv_loop_t *loop, const char *conninfo, struct wallet *w);
/* Answers every waiting request `unavailable` and closes the connection. */
void promo_stop(struct promo *p);

/* "day", "week", "month" -> the period, or -1. */
int gboard_period_parse(const char *s, size_t len);

/* Answers {type:"global_board", id, period, ts, creators, gifters, gifts}
 * from the cache, or after the next fill. */
void promo_global_board(struct promo *p, const struct reply *r, enum gboard_period period);

/* A gift with coupon `code`: looked up, then wallet_gift_coupon; an
 * unknown code is `coupon_invalid`. `rk` as for wallet_gift (copied). */
void promo_gift(struct promo *p, const struct reply *r, const struct jwt_claims *who, const char *room,
                int64_t gift, int64_t count, const char *combo, const struct wallet_risk *rk, const char *code);

#endif
