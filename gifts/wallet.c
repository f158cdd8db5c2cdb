/* wallet.c - gift, tip, credit and balance requests (see wallet.h). */
#include "wallet.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>
#include <openssl/sha.h>

#include "clock.h"
#include "coins.h"
#include "entry.h"
#include "hex.h"
#include "message.h"
#include "log.h"
#include "text.h"
#include "utf8.h"

extern const char lua_wallet_move[];
extern const char lua_wallet_pledge[];
extern const char lua_campaign_shard[];

static const char unreachable[] = "the wallet store is unreachable; retry with the same id";

/* What an answer needs once Redis has answered. */
struct pending {
    struct reply r;
    struct wallet *w;
    enum wallet_kind kind;
    int shard;
    int64_t amount;   /* what the wallet pays */
    int64_t discount; /* a coupon's discount, 0 for none */
};

static const char *const kind_names[WALLET_KINDS] = {"gift", "tip", "credit", "balance", "recharge", "refund",
                                                             "pledge", "crefund"};

const char *wallet_kind_name(enum wallet_kind k)
{
    tc_assert(k >= 0 && k < WALLET_KINDS);
    return kind_names[k];
}

const char *wallet_result_name(int result)
{
    tc_assert(result >= 0 && result < WALLET_RESULTS);
    return result == WALLET_RESULT_OK ? "ok" : result == WALLET_RESULT_REPLAYED ? "replayed"
                                                                                  : err_code((enum err)(result - 2));
}

void wallet_count(struct wallet *w, enum wallet_kind k, int result)
{
    tc_assert(k >= 0 && k < WALLET_KINDS && result >= 0 && result < WALLET_RESULTS);
    w->stats.results[k][result]++;
}

/* An answer went out: counted, and timed when it is an ack. */
static void answered(struct wallet *w, enum wallet_kind k, const struct reply *r, int result)
{
    wallet_count(w, k, result);
    if (result == WALLET_RESULT_OK || result == WALLET_RESULT_REPLAYED)
        histogram_observe(&w->stats.ack[k], clock_mono_us() - r->rx_us);
}

/* Every refusal of a money request goes through here, to be counted. */
static void refuse(struct wallet *w, enum wallet_kind k, const struct reply *r, enum err code, const char *text,
                   const char *field, int64_t extra)
{
    wallet_count(w, k, WALLET_RESULT_ERR(code));
    reply_error(r, code, text, field, extra);
}

static void refuse_unavailable(struct wallet *w, enum wallet_kind k, const struct reply *r)
{
    wallet_count(w, k, WALLET_RESULT_ERR(ERR_UNAVAILABLE));
    reply_unavailable(r, unreachable);
}

void wallet_init(struct wallet *w, struct outbox *ob, const struct catalog *catalog, const struct config *cfg)
{
    memset(w, 0, sizeof *w);
    w->rl = ob->rl;
    w->ob = ob;
    w->catalog = catalog;
    w->cfg = cfg;
    /* The money movements: with redis-wait-replicas, their answers wait for the replicas. */
    w->script = (struct rlink_script){.name = "wallet_move", .src = lua_wallet_move, .durable = 1};
    for (int k = 0; k < WALLET_KINDS; k++)
        histogram_init_latency(&w->stats.ack[k]);
    redis_script_add(w->rl, &w->script);
    w->pledge_script = (struct rlink_script){.name = "wallet_pledge", .src = lua_wallet_pledge, .durable = 1};
    w->campaign_script = (struct rlink_script){.name = "campaign_shard", .src = lua_campaign_shard, .durable = 1};
    redis_script_add(w->rl, &w->pledge_script);
    redis_script_add(w->rl, &w->campaign_script);
}

static void send_ack(const struct reply *r, const char *order, int64_t amount, int64_t balance, int replayed,
                     int64_t discount)
{
    struct enc e;
    message_start(&e, r->fmt, 160, "ack", r->id, discount ? 5 : 4);
    enc_key(&e, "order");
    enc_cstr(&e, order);
    enc_key(&e, "amount");
    enc_int(&e, amount);
    enc_key(&e, "balance");
    enc_int(&e, balance);
    enc_key(&e, "replayed");
    enc_bool(&e, replayed);
    if (discount) {
        enc_key(&e, "discount");
        enc_int(&e, discount);
    }
    enc_end_map(&e);
    reply_send(r, enc_finish(&e));
}

static int str_elem(const redisReply *r, size_t i)
{
    return i < r->elements && r->element[i]->type == REDIS_REPLY_STRING;
}

static int int_elem(const redisReply *r, size_t i)
{
    return i < r->elements && r->element[i]->type == REDIS_REPLY_INTEGER;
}

static void on_moved(redisReply *reply, void *priv)
{
    struct pending *p = priv;
    const struct reply *r = &p->r;
    struct wallet *w = p->w;
    enum wallet_kind k = p->kind;
    if (!reply || reply->type != REDIS_REPLY_ARRAY || !str_elem(reply, 0)) {
        if (reply && reply->type == REDIS_REPLY_ERROR)
            log_msg(LOG_ERROR, "wallet_move: %s", reply->str);
        refuse_unavailable(w, k, r);
    } else if (strcmp(reply->element[0]->str, "ok") == 0 && str_elem(reply, 1) && int_elem(reply, 2) &&
               int_elem(reply, 3)) {
        char order[OUTBOX_ORDER_ID_MAX + 1];
        int replayed = (int)reply->element[3]->integer;
        outbox_order_id(p->shard, reply->element[1]->str, order, sizeof order);
        send_ack(r, order, p->amount, reply->element[2]->integer, replayed, p->discount);
        answered(w, k, r, replayed ? WALLET_RESULT_REPLAYED : WALLET_RESULT_OK);
    } else if (strcmp(reply->element[0]->str, "err") == 0 && str_elem(reply, 1) && int_elem(reply, 2)) {
        const char *code = reply->element[1]->str;
        if (strcmp(code, "insufficient_balance") == 0)
            refuse(w, k, r, ERR_INSUFFICIENT_BALANCE, "the balance is too low", NULL, reply->element[2]->integer);
        else if (strcmp(code, "idempotency_conflict") == 0)
            refuse(w, k, r, ERR_IDEMPOTENCY_CONFLICT, "this request id was used for a different request", NULL, 0);
        else if (strcmp(code, "spend_cap_exceeded") == 0)
            refuse(w, k, r, ERR_SPEND_CAP_EXCEEDED, "the daily spend cap is reached", NULL,
                   reply->element[2]->integer);
        else if (strcmp(code, "coupon_used") == 0)
            refuse(w, k, r, ERR_COUPON_USED, "this coupon was used", "coupon", 0);
        else if (strcmp(code, "backlogged") == 0)
            refuse(w, k, r, ERR_BACKLOGGED, "orders are queued faster than they are stored; retry", NULL, 1000);
        else if (strcmp(code, "campaign_not_found") == 0)
            refuse(w, k, r, ERR_CAMPAIGN_NOT_FOUND, "no such campaign, or it is not open yet", "campaign", 0);
        else if (strcmp(code, "own_campaign") == 0)
            refuse(w, k, r, ERR_FORBIDDEN, "a creator cannot pledge to its own campaign", NULL, 0);
        else if (strcmp(code, "campaign_closed") == 0)
            refuse(w, k, r, ERR_CAMPAIGN_CLOSED, "this campaign is closed", NULL, 0);
        else if (strcmp(code, "unknown_tier") == 0)
            refuse(w, k, r, ERR_BAD_FIELD, "this campaign has no such tier", "tier", 0);
        else if (strcmp(code, "below_tier_minimum") == 0)
            refuse(w, k, r, ERR_BELOW_TIER_MINIMUM, "the amount is below the tier's minimum", "amount",
                   reply->element[2]->integer);
        else if (strcmp(code, "tier_sold_out") == 0)
            refuse(w, k, r, ERR_TIER_SOLD_OUT, "this tier's rewards are sold out", "tier", 0);
        else
            refuse(w, k, r, ERR_INTERNAL, "the movement was refused", NULL, 0);
    } else {
        refuse_unavailable(w, k, r);
    }
    free(p);
}

/* The fingerprint of a request's parameters: a replay must match it. */
static void fingerprint(const char *canon, size_t len, char out[41])
{
    unsigned char d[SHA_DIGEST_LENGTH];
    SHA1((const unsigned char *)canon, len, d);
    hex_lower(d, sizeof d, out);
}

/* One movement's parameters, as wallet_move.lua takes them. */
struct movement {
    enum wallet_kind k;
    const char *kind;
    const char *uid;
    const char *room;
    const struct gift *gift;
    int64_t count;
    int64_t unit;
    int64_t amount;
    const char *combo;
    const char *text;
    size_t text_len;
    const char *ref;     /* recharge, refund: the external reference; "" otherwise */
    int64_t order_ts_ms; /* refund: the refunded order's time */
    const char *req_id;  /* the idempotency key's request id */
    const char *role;
    int64_t ttl_ms;      /* how long the result is kept under req_id; 0: for ever */
    const struct wallet_risk *risk; /* gift, tip: may be NULL */
    const char *coupon;  /* gift: a coupon's code, NULL for none */
    int64_t discount;    /* its discount, 1..amount */
    int bonus;           /* the new-user bonus: its own stored-result key, only into a new wallet */
};

/* Appends s and a '|' to a movement's canonical text. */
static size_t canon_field(char *canon, size_t cap, size_t at, const char *s)
{
    return text_cat(canon, cap, text_cat(canon, cap, at, s), "|");
}

/* Sends one movement to wallet_move.lua on the user's shard; cb(reply,
 * priv) gets its answer. Returns 0, -1 when the request is too large to
 * fingerprint, -2 when it could not be sent (cb never called either way). */
static int submit(struct wallet *w, const struct movement *mv, void (*cb)(redisReply *, void *), void *priv)
{
    int shard = outbox_shard_of(w->ob, mv->uid);
    char bal[OUTBOX_KEY_MAX], idem[OUTBOX_KEY_MAX + REPLY_ID_MAX + ENTRY_REF_MAX], outbox[OUTBOX_KEY_MAX];
    char risk[OUTBOX_KEY_MAX];
    outbox_balance_key(shard, mv->uid, bal, sizeof bal);
    /* Beside the balance, on the same slot: one script reads and writes both. */
    outbox_user_key(shard, "risk", mv->uid, risk, sizeof risk);
    if (mv->bonus) /* a key no client request id can name */
        outbox_user_key(shard, "promo", mv->uid, idem, sizeof idem);
    else
        outbox_idem_key(shard, mv->uid, mv->req_id, idem, sizeof idem);
    outbox_key(shard, outbox, sizeof outbox);
    char cpn[OUTBOX_KEY_MAX + ID_MAX + 8], disc[TEXT_I64_MAX + 1];
    size_t at = outbox_user_key(shard, "cpn", mv->uid, cpn, sizeof cpn);
    text_cat(cpn, sizeof cpn, text_cat(cpn, sizeof cpn, at, ":"), mv->coupon ? mv->coupon : "");
    text_cat_i64(disc, sizeof disc, 0, mv->coupon ? mv->discount : 0);

    enum { NUM = TEXT_I64_MAX + 1 };
    char gid[NUM], count[NUM], unit[NUM], amount[NUM], ts[NUM], ttl[NUM], backlog[NUM], ots[NUM];
    text_cat_i64(gid, NUM, 0, mv->gift ? mv->gift->id : 0);
    text_cat_i64(count, NUM, 0, mv->count);
    text_cat_i64(unit, NUM, 0, mv->unit);
    text_cat_i64(amount, NUM, 0, mv->amount);
    text_cat_i64(ts, NUM, 0, clock_wall_ms());
    text_cat_i64(ttl, NUM, 0, mv->ttl_ms);
    text_cat_i64(backlog, NUM, 0, w->cfg->outbox_max_backlog);
    text_cat_i64(ots, NUM, 0, mv->order_ts_ms);
    static const struct wallet_risk none = {"", "", 0, 0, 0};
    const struct wallet_risk *rk = mv->risk ? mv->risk : &none;
    char cap[NUM], newcap[NUM], newms[NUM];
    text_cat_i64(cap, NUM, 0, rk->day_cap);
    text_cat_i64(newcap, NUM, 0, rk->new_cap);
    text_cat_i64(newms, NUM, 0, rk->new_ms);

    /* Everything that defines the movement, so that a replay with other
     * parameters is told apart from a true retry. The reference and the
     * order time only for the kinds that have them, so that the
     * fingerprints of gifts, tips and credits stay what they were. */
    char canon[WALLET_TIP_TEXT_MAX + ENTRY_REF_MAX + 512];
    const char *const parts[] = {mv->kind, mv->uid, mv->room, gid, count, amount, mv->combo};
    size_t c = 0;
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++)
        c = canon_field(canon, sizeof canon, c, parts[i]);
    if (mv->ref[0])
        c = canon_field(canon, sizeof canon, canon_field(canon, sizeof canon, c, mv->ref), ots);
    /* Only a coupon gift has these: other fingerprints stay what they were. */
    if (mv->coupon) {
        c = canon_field(canon, sizeof canon, text_cat(canon, sizeof canon, c, "coupon="), mv->coupon);
        c = canon_field(canon, sizeof canon, c, disc);
    }
    /* A cut (c then ends the buffer) or no room left for the text. */
    if (c + mv->text_len + 1 >= sizeof canon)
        return -1;
    memcpy(canon + c, mv->text, mv->text_len);
    char fp[41];
    fingerprint(canon, c + mv->text_len, fp);

    /* KEYS[5], the coupon's marker, only with a coupon: a script's keys are
     * all on the wallet's slot either way. */
    int nkeys = mv->coupon ? 5 : 4;
    const char *argv[] = {bal, idem, outbox, risk, cpn, mv->kind, mv->uid, mv->room, gid,
                          mv->gift ? mv->gift->name : "", mv->gift ? mv->gift->animation : "", count, unit,
                          amount, mv->combo, mv->text, mv->req_id, ts, fp, ttl, backlog, mv->role, mv->ref, ots,
                          rk->ip, rk->device, cap, newcap, newms, mv->coupon ? mv->coupon : "", disc,
                          mv->bonus ? "bonus" : ""};
    enum { ARGC = sizeof argv / sizeof argv[0], TEXT = 15 };
    const char *args[ARGC];
    size_t len[ARGC];
    int argc = 0;
    for (int i = 0; i < ARGC; i++) {
        if (i == 4 && nkeys == 4)
            continue;
        args[argc] = argv[i];
        len[argc++] = i == TEXT ? mv->text_len : strlen(argv[i]); /* the text is not NUL-terminated */
    }
    return redis_eval(w->rl, &w->script, nkeys, argc, args, len, cb, priv) < 0 ? -2 : 0;
}

static void move(struct wallet *w, const struct reply *r, const struct jwt_claims *who, struct movement *mv)
{
    mv->ref = "";
    mv->req_id = r->id;
    mv->role = role_name(who->role);
    mv->ttl_ms = (int64_t)w->cfg->idem_ttl_s * 1000;
    struct pending *p = malloc(sizeof *p);
    if (!p) {
        refuse(w, mv->k, r, ERR_INTERNAL, "out of memory", NULL, 0);
        return;
    }
    *p = (struct pending){*r, w, mv->k, outbox_shard_of(w->ob, mv->uid), mv->amount - mv->discount, mv->discount};
    int rc = submit(w, mv, on_moved, p);
    if (rc < 0) {
        free(p);
        if (rc == -1)
            refuse(w, mv->k, r, ERR_INTERNAL, "request too large", NULL, 0);
        else
            refuse_unavailable(w, mv->k, r);
    }
}

/* Gifts and tips go to a live creator's room, never one's own. */
static int room_ok(struct wallet *w, enum wallet_kind k, const struct reply *r, const struct jwt_claims *who,
                   const char *room)
{
    if (!w->checked) {
        refuse_unavailable(w, k, r);
        return 0;
    }
    if (strcmp(room, who->sub) == 0) {
        refuse(w, k, r, ERR_FORBIDDEN, "a creator cannot send gifts or tips to their own room", NULL, 0);
        return 0;
    }
    if (!catalog_room_live(w->catalog, room)) {
        refuse(w, k, r, ERR_ROOM_NOT_LIVE, "this room is not live", NULL, 0);
        return 0;
    }
    return 1;
}

void wallet_gift(struct wallet *w, const struct reply *r, const struct jwt_claims *who, const char *room,
                 int64_t gift, int64_t count, const char *combo, const struct wallet_risk *rk)
{
    wallet_gift_coupon(w, r, who, room, gift, count, combo, rk, NULL);
}

void wallet_gift_coupon(struct wallet *w, const struct reply *r, const struct jwt_claims *who, const char *room,
                        int64_t gift, int64_t count, const char *combo, const struct wallet_risk *rk,
                        const struct wallet_coupon *cp)
{
    if (!room_ok(w, WALLET_GIFT, r, who, room))
        return;
    const struct gift *g = catalog_gift(w->catalog, gift);
    if (!g || !g->enabled) {
        refuse(w, WALLET_GIFT, r, ERR_UNKNOWN_GIFT, "no such gift, or it is not available", "gift", 0);
        return;
    }
    if (count < 1 || count > w->cfg->gift_max_count) {
        char msg[96];
        snprintf(msg, sizeof msg, "'count' must be 1..%d", w->cfg->gift_max_count);
        refuse(w, WALLET_GIFT, r, ERR_BAD_FIELD, msg, "count", 0);
        return;
    }
    /* price <= COINS_MAX and count <= 10^6: the product is far from
     * overflowing int64, but the total must stay in bounds. */
    int64_t total = g->price * count;
    if (total > COINS_MAX) {
        refuse(w, WALLET_GIFT, r, ERR_BAD_FIELD, "the gift's total is too large", "count", 0);
        return;
    }
    struct movement mv = {.k = WALLET_GIFT, .kind = "gift", .uid = who->sub, .room = room, .gift = g, .count = count,
                          .unit = g->price, .amount = total, .combo = combo, .text = "", .text_len = 0, .risk = rk};
    if (cp) {
        if (strcmp(cp->user, who->sub) != 0 || cp->gift != gift || cp->discount < 1 ||
            (cp->expires_ms && cp->expires_ms <= clock_wall_ms())) {
            refuse(w, WALLET_GIFT, r, ERR_COUPON_INVALID, "this coupon is not valid for this gift", "coupon", 0);
            return;
        }
        mv.coupon = cp->code;
        /* A discount above the order's price (the price lowered since) pays
         * the whole order, no more: a coupon never adds coins. */
        mv.discount = cp->discount < total ? cp->discount : total;
    }
    move(w, r, who, &mv);
}

void wallet_tip(struct wallet *w, const struct reply *r, const struct jwt_claims *who, const char *room,
                int64_t amount, const char *text, size_t text_len, const struct wallet_risk *rk)
{
    if (!room_ok(w, WALLET_TIP, r, who, room))
        return;
    if (amount < w->cfg->tip_min || amount > w->cfg->tip_max) {
        char msg[96];
        snprintf(msg, sizeof msg, "'amount' must be %d..%d coins", w->cfg->tip_min, w->cfg->tip_max);
        refuse(w, WALLET_TIP, r, ERR_BAD_FIELD, msg, "amount", 0);
        return;
    }
    struct movement mv = {.k = WALLET_TIP, .kind = "tip", .uid = who->sub, .room = room, .count = 1, .unit = amount,
                          .amount = amount, .combo = "", .text = text ? text : "", .text_len = text_len, .risk = rk};
    move(w, r, who, &mv);
}

void wallet_credit(struct wallet *w, const struct reply *r, const struct jwt_claims *who, const char *user,
                   int64_t amount, const char *text, size_t text_len)
{
    if (who->role != ROLE_ADMIN) {
        refuse(w, WALLET_CREDIT, r, ERR_FORBIDDEN, "only an admin may credit a wallet", NULL, 0);
        return;
    }
    if (!w->checked) {
        refuse_unavailable(w, WALLET_CREDIT, r);
        return;
    }
    struct movement mv = {.k = WALLET_CREDIT, .kind = "credit", .uid = user, .room = "", .count = 1, .unit = amount,
                          .amount = amount, .combo = "", .text = text ? text : "", .text_len = text_len};
    move(w, r, who, &mv);
}

/* ---- The new-user bonus ---------------------------------------------------- */

struct bonus_pending {
    struct wallet *w;
    char user[ID_MAX + 1];
    int64_t amount;
};

static void on_bonus(redisReply *reply, void *priv)
{
    struct bonus_pending *p = priv;
    if (reply && reply->type == REDIS_REPLY_ARRAY && str_elem(reply, 0) && strcmp(reply->element[0]->str, "ok") == 0 &&
        int_elem(reply, 3)) {
        if (reply->element[3]->integer == 0) {
            wallet_count(p->w, WALLET_CREDIT, WALLET_RESULT_OK);
            log_msg(LOG_INFO, "promo: new-user bonus of %" PRId64 " coins credited to %s", p->amount, p->user);
        }
    } else if (reply && reply->type == REDIS_REPLY_ERROR) {
        log_msg(LOG_ERROR, "wallet_move (bonus): %s", reply->str);
    }
    /* not_new, a replay, a changed amount (idempotency_conflict: given
     * already) or Redis gone: nothing to do; the next connection asks again
     * only in the last case. */
    free(p);
}

void wallet_bonus(struct wallet *w, const char *user, int64_t amount)
{
    if (!w->checked || amount < 1 || amount > COINS_MAX || !id_valid(user, strlen(user)))
        return;
    struct bonus_pending *p = malloc(sizeof *p);
    if (!p)
        return;
    p->w = w;
    snprintf(p->user, sizeof p->user, "%s", user);
    p->amount = amount;
    static const char text[] = "new-user bonus";
    struct movement mv = {.k = WALLET_CREDIT, .kind = "credit", .uid = user, .room = "", .count = 1, .unit = amount,
                          .amount = amount, .combo = "", .text = text, .text_len = sizeof text - 1, .ref = "",
                          .req_id = "new-user-bonus", .role = "platform", .ttl_ms = 0, .bonus = 1};
    if (submit(w, &mv, on_bonus, p) < 0)
        free(p);
}

/* ---- Campaigns ---------------------------------------------------------------- */

void wallet_pledge(struct wallet *w, const struct reply *r, const struct jwt_claims *who, int64_t campaign,
                   int64_t tier, int64_t amount)
{
    enum wallet_kind k = WALLET_PLEDGE;
    if (!w->checked) {
        refuse_unavailable(w, k, r);
        return;
    }
    if (campaign < 1 || campaign > INT64_C(999999999999999999)) {
        refuse(w, k, r, ERR_BAD_FIELD, "'campaign' must be a campaign id (a positive integer)", "campaign", 0);
        return;
    }
    if (tier < 0 || tier > 999999999) {
        refuse(w, k, r, ERR_BAD_FIELD, "'tier' must be a tier number (a positive integer)", "tier", 0);
        return;
    }
    int shard = outbox_shard_of(w->ob, who->sub);
    char bal[OUTBOX_KEY_MAX], idem[OUTBOX_KEY_MAX + REPLY_ID_MAX + ENTRY_REF_MAX], outbox[OUTBOX_KEY_MAX];
    char camp[OUTBOX_KEY_MAX];
    outbox_balance_key(shard, who->sub, bal, sizeof bal);
    outbox_idem_key(shard, who->sub, r->id, idem, sizeof idem);
    outbox_key(shard, outbox, sizeof outbox);
    snprintf(camp, sizeof camp, "tc:{w:%d}:camp:%" PRId64, shard, campaign);
    char cid[24], tr[24], amt[24], ts[24], ttl[24], backlog[24], canon[128], fp[41];
    snprintf(cid, sizeof cid, "%" PRId64, campaign);
    snprintf(tr, sizeof tr, "%" PRId64, tier);
    snprintf(amt, sizeof amt, "%" PRId64, amount);
    snprintf(ts, sizeof ts, "%" PRId64, clock_wall_ms());
    snprintf(ttl, sizeof ttl, "%" PRId64, (int64_t)w->cfg->idem_ttl_s * 1000);
    snprintf(backlog, sizeof backlog, "%d", w->cfg->outbox_max_backlog);
    /* A retry must name the same campaign, tier and amount. */
    int n = snprintf(canon, sizeof canon, "pledge|%s|%s|%s", cid, tr, amt);
    fingerprint(canon, (size_t)n, fp);
    const char *argv[] = {bal, idem, outbox, camp, who->sub, cid, tr, amt, r->id, ts, fp, ttl, backlog,
                          role_name(who->role)};
    enum { ARGC = sizeof argv / sizeof argv[0] };
    size_t len[ARGC];
    for (int i = 0; i < ARGC; i++)
        len[i] = strlen(argv[i]);
    struct pending *p = malloc(sizeof *p);
    if (!p) {
        refuse(w, k, r, ERR_INTERNAL, "out of memory", NULL, 0);
        return;
    }
    *p = (struct pending){*r, w, k, shard, amount, 0};
    if (redis_eval(w->rl, &w->pledge_script, 4, ARGC, argv, len, on_moved, p) < 0) {
        free(p);
        refuse_unavailable(w, k, r);
    }
}

int wallet_campaign_shard(struct wallet *w, int shard, int64_t campaign, const char *op, int argc,
                          const char *const *argv, void (*cb)(redisReply *, void *), void *priv)
{
    enum { MAX = 2 + 2 + 3 * 32 };
    if (argc < 0 || argc + 2 > MAX)
        return -1;
    char key[OUTBOX_KEY_MAX];
    snprintf(key, sizeof key, "tc:{w:%d}:camp:%" PRId64, shard, campaign);
    const char *a[MAX];
    size_t len[MAX];
    a[0] = key;
    a[1] = op;
    for (int i = 0; i < argc; i++)
        a[2 + i] = argv[i];
    for (int i = 0; i < argc + 2; i++)
        len[i] = strlen(a[i]);
    return redis_eval(w->rl, &w->campaign_script, 1, argc + 2, a, len, cb, priv) < 0 ? -1 : 0;
}

/* ---- Credits decided by the settlement layer ------------------------------- */

struct ext_pending {
    struct wallet *w;
    enum wallet_kind k;
    void (*done)(void *ctx, int ok, enum err code, int64_t balance);
    void *ctx;
};

static void ext_answer(struct ext_pending *p, int result, int ok, enum err code, int64_t balance)
{
    wallet_count(p->w, p->k, result);
    p->done(p->ctx, ok, code, balance);
    free(p);
}

static void on_external(redisReply *reply, void *priv)
{
    struct ext_pending *p = priv;
    if (!reply || reply->type != REDIS_REPLY_ARRAY || !str_elem(reply, 0)) {
        if (reply && reply->type == REDIS_REPLY_ERROR)
            log_msg(LOG_ERROR, "wallet_move (%s): %s", wallet_kind_name(p->k), reply->str);
        ext_answer(p, WALLET_RESULT_ERR(ERR_UNAVAILABLE), 0, ERR_UNAVAILABLE, 0);
    } else if (strcmp(reply->element[0]->str, "ok") == 0 && str_elem(reply, 1) && int_elem(reply, 2) &&
               int_elem(reply, 3)) {
        int replayed = reply->element[3]->integer != 0;
        ext_answer(p, replayed ? WALLET_RESULT_REPLAYED : WALLET_RESULT_OK, 1, ERR_INTERNAL,
                   reply->element[2]->integer);
    } else if (strcmp(reply->element[0]->str, "err") == 0 && str_elem(reply, 1) &&
               strcmp(reply->element[1]->str, "idempotency_conflict") == 0) {
        ext_answer(p, WALLET_RESULT_ERR(ERR_IDEMPOTENCY_CONFLICT), 0, ERR_IDEMPOTENCY_CONFLICT, 0);
    } else if (strcmp(reply->element[0]->str, "err") == 0) {
        ext_answer(p, WALLET_RESULT_ERR(ERR_INTERNAL), 0, ERR_INTERNAL, 0);
    } else {
        ext_answer(p, WALLET_RESULT_ERR(ERR_UNAVAILABLE), 0, ERR_UNAVAILABLE, 0);
    }
}

/* A reference: 1..ENTRY_REF_MAX bytes of UTF-8 (what the entry parser
 * accepts as x). */
static int ref_valid(const char *ref)
{
    size_t n = ref ? strlen(ref) : 0;
    return n > 0 && n <= ENTRY_REF_MAX && utf8_valid((const uint8_t *)ref, n);
}

void wallet_external(struct wallet *w, enum wallet_ext kind, const char *user, int64_t amount, const char *ref,
                     const char *room, int64_t order_ts_ms,
                     void (*done)(void *ctx, int ok, enum err code, int64_t balance), void *ctx)
{
    int refund = kind == WALLET_EXT_REFUND, crefund = kind == WALLET_EXT_CREFUND;
    enum wallet_kind k = refund ? WALLET_REFUND : crefund ? WALLET_CREFUND : WALLET_RECHARGE;
    if (!user || !id_valid(user, strlen(user)) || amount <= 0 || amount > COINS_MAX || !ref_valid(ref) ||
        (refund && (!room || !id_valid(room, strlen(room)) || order_ts_ms < 0 || order_ts_ms > ENTRY_TS_MS_MAX)) ||
        (crefund && (!room || !id_valid(room, strlen(room))))) {
        wallet_count(w, k, WALLET_RESULT_ERR(ERR_BAD_FIELD));
        done(ctx, 0, ERR_BAD_FIELD, 0);
        return;
    }
    if (!w->checked) {
        wallet_count(w, k, WALLET_RESULT_ERR(ERR_UNAVAILABLE));
        done(ctx, 0, ERR_UNAVAILABLE, 0);
        return;
    }
    char req[ENTRY_REF_MAX + 16];
    const char *kname = refund ? "refund" : crefund ? "crefund" : "recharge";
    snprintf(req, sizeof req, "%s:%s", kname, ref);
    struct movement mv = {.k = k, .kind = kname, .uid = user, .room = refund || crefund ? room : "",
                          .count = 1, .unit = amount, .amount = amount, .combo = "", .text = "", .text_len = 0,
                          .ref = ref, .order_ts_ms = refund ? order_ts_ms : 0, .req_id = req, .role = "admin",
                          .ttl_ms = (int64_t)w->cfg->external_idem_hours * 3600 * 1000};
    struct ext_pending *p = malloc(sizeof *p);
    if (!p) {
        wallet_count(w, k, WALLET_RESULT_ERR(ERR_INTERNAL));
        done(ctx, 0, ERR_INTERNAL, 0);
        return;
    }
    *p = (struct ext_pending){w, k, done, ctx};
    int rc = submit(w, &mv, on_external, p);
    if (rc < 0)
        ext_answer(p, WALLET_RESULT_ERR(rc == -1 ? ERR_INTERNAL : ERR_UNAVAILABLE), 0,
                   rc == -1 ? ERR_INTERNAL : ERR_UNAVAILABLE, 0);
}

static void on_balance(redisReply *reply, void *priv)
{
    struct pending *p = priv;
    const struct reply *r = &p->r;
    if (!reply || (reply->type != REDIS_REPLY_STRING && reply->type != REDIS_REPLY_NIL)) {
        refuse_unavailable(p->w, WALLET_BALANCE, r);
    } else {
        struct enc e;
        message_start(&e, r->fmt, 96, "balance", r->id, 1);
        enc_key(&e, "balance");
        enc_int(&e, reply->type == REDIS_REPLY_STRING ? strtoll(reply->str, NULL, 10) : 0);
        enc_end_map(&e);
        reply_send(r, enc_finish(&e));
        answered(p->w, WALLET_BALANCE, r, WALLET_RESULT_OK);
    }
    free(p);
}

void wallet_balance(struct wallet *w, const struct reply *r, const struct jwt_claims *who)
{
    char key[OUTBOX_KEY_MAX];
    outbox_balance_key(outbox_shard_of(w->ob, who->sub), who->sub, key, sizeof key);
    const char *argv[] = {"GET", key};
    size_t len[] = {3, strlen(key)};
    struct pending *p = malloc(sizeof *p);
    if (!p) {
        refuse(w, WALLET_BALANCE, r, ERR_INTERNAL, "out of memory", NULL, 0);
        return;
    }
    *p = (struct pending){*r, w, WALLET_BALANCE, 0, 0, 0};
    if (redis_command(w->rl, RLINK_CMD_LINK, 2, argv, len, on_balance, p) < 0) {
        free(p);
        refuse_unavailable(w, WALLET_BALANCE, r);
    }
}

/* ---- The checks of a Redis ------------------------------------------------- */

/* The value of "name:" in an INFO reply, copied into out. */
static int info_field(const char *info, const char *name, char *out, size_t cap)
{
    size_t n = strlen(name);
    for (const char *p = info; p && *p;) {
        if (strncmp(p, name, n) == 0 && p[n] == ':') {
            const char *v = p + n + 1;
            size_t len = strcspn(v, "\r\n");
            if (len >= cap)
                return -1;
            memcpy(out, v, len);
            out[len] = '\0';
            return 0;
        }
        p = strchr(p, '\n');
        if (p)
            p++;
    }
    return -1;
}

static void check_done(struct wallet *w, enum redis_check result)
{
    w->checked = result == REDIS_CHECK_PASSED;
    if (result == REDIS_CHECK_PASSED && w->loading) {
        w->loading = 0;
        log_msg(LOG_INFO, "redis: finished loading its data; money moves again");
    }
    w->check_done(w->check_ctx, result);
}

static void on_shards_checked(void *ctx, enum redis_check result) { check_done(ctx, result); }

static void check_next(struct wallet *w);

static void on_info(redisReply *reply, void *priv)
{
    struct wallet *w = priv;
    int unsafe_ok = w->cfg->redis_unsafe;
    char aof[16] = "", policy[64] = "", loading[8] = "";
    if (!reply) {
        check_done(w, REDIS_CHECK_RETRY); /* the link dropped; it is checked again when back */
        return;
    }
    if (reply->type == REDIS_REPLY_STRING && info_field(reply->str, "loading", loading, sizeof loading) == 0 &&
        strcmp(loading, "1") == 0) {
        /* While Redis replays its AOF it reports aof_enabled:0: no verdict
         * on its persistence yet. */
        if (!w->loading)
            log_msg(LOG_INFO, "redis: loading its data (AOF or RDB); money requests answer unavailable "
                              "until it is ready; checking again every %d ms",
                    WALLET_RECHECK_MS);
        w->loading = 1;
        check_done(w, REDIS_CHECK_RETRY);
        return;
    }
    if (reply->type != REDIS_REPLY_STRING || info_field(reply->str, "aof_enabled", aof, sizeof aof) < 0 ||
        info_field(reply->str, "maxmemory_policy", policy, sizeof policy) < 0) {
        log_msg(unsafe_ok ? LOG_WARN : LOG_ERROR, "redis: cannot read INFO to check persistence%s",
                unsafe_ok ? "; going on because redis-unsafe is set" : "; refusing to run");
        if (!unsafe_ok)
            check_done(w, REDIS_CHECK_REFUSED);
        else
            check_next(w);
        return;
    }
    int safe = strcmp(aof, "1") == 0 && strcmp(policy, "noeviction") == 0;
    if (!safe) {
        log_msg(unsafe_ok ? LOG_WARN : LOG_ERROR,
                "redis: appendonly is %s and maxmemory-policy is %s: balances could be lost "
                "(need appendonly yes and maxmemory-policy noeviction)%s",
                strcmp(aof, "1") == 0 ? "on" : "off", policy,
                unsafe_ok ? "; going on because redis-unsafe is set" : "; refusing to run");
        if (!unsafe_ok) {
            check_done(w, REDIS_CHECK_REFUSED);
            return;
        }
    }
    check_next(w);
}

/* INFO to the next master (a cluster's are checked one by one), then the
 * shard count. */
static void check_next(struct wallet *w)
{
    const char *argv[] = {"INFO"};
    size_t len[] = {4};
    if (w->check_master < redis_masters(w->rl)) {
        if (redis_command_master(w->rl, w->check_master++, 1, argv, len, on_info, w) < 0)
            check_done(w, REDIS_CHECK_RETRY);
        return;
    }
    if (outbox_check_shards(w->ob, on_shards_checked, w) < 0)
        check_done(w, REDIS_CHECK_RETRY);
}

int wallet_check_redis(struct wallet *w, void (*done)(void *ctx, enum redis_check result), void *ctx)
{
    w->checked = 0;
    w->check_done = done;
    w->check_ctx = ctx;
    w->check_master = 0;
    if (redis_masters(w->rl) == 0)
        return -1;
    const char *argv[] = {"INFO"};
    size_t len[] = {4};
    return redis_command_master(w->rl, w->check_master++, 1, argv, len, on_info, w);
}
