/* wallet.c - gift, tip, credit and balance requests (see wallet.h). */
#include "wallet.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>
#include <openssl/sha.h>

#include "catalog.h"
#include "log.h"
#include "outbox.h"
#include "rlink.h"
#include "server.h"

/* What a reply needs once Redis answers: the connection by id (it may be
 * gone), the request id, and the amount for the ack. */
struct wallet_pending {
    uint64_t conn_id;
    int shard;
    int64_t amount;
    char req_id[PROTO_REQ_ID_MAX + 1];
};

static void send_ack(struct conn *c, const char *req_id, const char *order, int64_t amount, int64_t balance,
                     int replayed)
{
    struct enc e;
    enc_init(&e, c->fmt, 160);
    enc_map(&e, 6);
    enc_key(&e, "type");
    enc_cstr(&e, "ack");
    enc_key(&e, "id");
    enc_cstr(&e, req_id);
    enc_key(&e, "order");
    enc_cstr(&e, order);
    enc_key(&e, "amount");
    enc_int(&e, amount);
    enc_key(&e, "balance");
    enc_int(&e, balance);
    enc_key(&e, "replayed");
    enc_bool(&e, replayed);
    enc_end_map(&e);
    conn_send(c, enc_finish(&e));
}

static void send_unavailable(struct conn *c, const char *req_id)
{
    conn_send_error(c, req_id, "unavailable", "the wallet store is unreachable; retry with the same id",
                    NULL, "retry_after_ms", 1000);
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
    struct wallet_pending *p = priv;
    struct conn *c = conn_find(p->conn_id);
    if (!c) {
        free(p);
        return;
    }
    if (!reply || reply->type != REDIS_REPLY_ARRAY || !str_elem(reply, 0)) {
        if (reply && reply->type == REDIS_REPLY_ERROR)
            log_msg(LOG_ERROR, "wallet_move: %s", reply->str);
        send_unavailable(c, p->req_id);
    } else if (strcmp(reply->element[0]->str, "ok") == 0 && str_elem(reply, 1) && int_elem(reply, 2) &&
               int_elem(reply, 3)) {
        char order[OUTBOX_ORDER_ID_MAX + 1];
        outbox_order_id(p->shard, reply->element[1]->str, order, sizeof order);
        send_ack(c, p->req_id, order, p->amount, reply->element[2]->integer, (int)reply->element[3]->integer);
    } else if (strcmp(reply->element[0]->str, "err") == 0 && str_elem(reply, 1) && int_elem(reply, 2)) {
        const char *code = reply->element[1]->str;
        if (strcmp(code, "insufficient_balance") == 0)
            conn_send_error(c, p->req_id, code, "the balance is too low", NULL, "balance",
                            reply->element[2]->integer);
        else if (strcmp(code, "idempotency_conflict") == 0)
            conn_send_error(c, p->req_id, code, "this request id was used for a different request", NULL, NULL,
                            0);
        else if (strcmp(code, "backlogged") == 0)
            conn_send_error(c, p->req_id, code, "orders are queued faster than they are stored; retry", NULL,
                            "retry_after_ms", 1000);
        else
            conn_send_error(c, p->req_id, "internal", "the movement was refused", NULL, NULL, 0);
    } else {
        send_unavailable(c, p->req_id);
    }
    free(p);
}

/* The fingerprint of a request's parameters: a replay must match it. */
static void fingerprint(const char *canon, size_t len, char out[41])
{
    unsigned char d[SHA_DIGEST_LENGTH];
    SHA1((const unsigned char *)canon, len, d);
    for (int i = 0; i < SHA_DIGEST_LENGTH; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
}

struct movement {
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
};

static void move(struct conn *c, const struct request *req, const struct movement *mv)
{
    int shard = outbox_shard_of(mv->uid);
    char bal[128], idem[256], outbox[128];
    outbox_balance_key(shard, mv->uid, bal, sizeof bal);
    outbox_idem_key(shard, mv->uid, req->id, idem, sizeof idem);
    outbox_key(shard, outbox, sizeof outbox);

    char gid[16], count[24], unit[24], amount[24], ts[24], ttl[24], backlog[24];
    snprintf(gid, sizeof gid, "%d", mv->gift ? mv->gift->id : 0);
    snprintf(count, sizeof count, "%" PRId64, mv->count);
    snprintf(unit, sizeof unit, "%" PRId64, mv->unit);
    snprintf(amount, sizeof amount, "%" PRId64, mv->amount);
    snprintf(ts, sizeof ts, "%" PRId64, now_wall_ms());
    snprintf(ttl, sizeof ttl, "%lld", (long long)srv.cfg.idem_ttl_s * 1000);
    snprintf(backlog, sizeof backlog, "%d", srv.cfg.outbox_max_backlog);

    /* Everything that defines the movement, so that a replay with other
     * parameters is told apart from a true retry. */
    char canon[PROTO_TIP_TEXT_MAX + 512];
    int n = snprintf(canon, sizeof canon, "%s|%s|%s|%s|%s|%s|%s|", mv->kind, mv->uid, mv->room, gid, count,
                     amount, mv->combo);
    if (n < 0 || (size_t)n + mv->text_len >= sizeof canon) {
        conn_send_error(c, req->id, "internal", "request too large", NULL, NULL, 0);
        return;
    }
    memcpy(canon + n, mv->text, mv->text_len);
    char fp[41];
    fingerprint(canon, (size_t)n + mv->text_len, fp);

    const char *argv[] = {bal, idem, outbox, mv->kind, mv->uid, mv->room, gid,
                          mv->gift ? mv->gift->name : "", mv->gift ? mv->gift->animation : "", count, unit,
                          amount, mv->combo, mv->text, req->id, ts, fp, ttl, backlog,
                          role_name(c->user.role)};
    size_t len[20];
    for (int i = 0; i < 20; i++)
        len[i] = i == 13 ? mv->text_len : strlen(argv[i]); /* the text is not NUL-terminated */

    struct wallet_pending *p = malloc(sizeof *p);
    if (!p) {
        conn_send_error(c, req->id, "internal", "out of memory", NULL, NULL, 0);
        return;
    }
    p->conn_id = c->id;
    p->shard = shard;
    p->amount = mv->amount;
    snprintf(p->req_id, sizeof p->req_id, "%s", req->id);
    if (rlink_eval(SCRIPT_WALLET_MOVE, 3, 20, argv, len, on_moved, p) < 0) {
        free(p);
        send_unavailable(c, req->id);
    }
}

static void on_balance(redisReply *reply, void *priv)
{
    struct wallet_pending *p = priv;
    struct conn *c = conn_find(p->conn_id);
    if (c) {
        if (!reply || (reply->type != REDIS_REPLY_STRING && reply->type != REDIS_REPLY_NIL)) {
            send_unavailable(c, p->req_id);
        } else {
            struct enc e;
            enc_init(&e, c->fmt, 96);
            enc_map(&e, 3);
            enc_key(&e, "type");
            enc_cstr(&e, "balance");
            enc_key(&e, "id");
            enc_cstr(&e, p->req_id);
            enc_key(&e, "balance");
            enc_int(&e, reply->type == REDIS_REPLY_STRING ? strtoll(reply->str, NULL, 10) : 0);
            enc_end_map(&e);
            conn_send(c, enc_finish(&e));
        }
    }
    free(p);
}

static void balance(struct conn *c, const struct request *req)
{
    char key[128];
    outbox_balance_key(outbox_shard_of(c->user.sub), c->user.sub, key, sizeof key);
    const char *argv[] = {"GET", key};
    size_t len[] = {3, strlen(key)};
    struct wallet_pending *p = malloc(sizeof *p);
    if (!p) {
        conn_send_error(c, req->id, "internal", "out of memory", NULL, NULL, 0);
        return;
    }
    p->conn_id = c->id;
    p->shard = 0;
    p->amount = 0;
    snprintf(p->req_id, sizeof p->req_id, "%s", req->id);
    if (rlink_command(RLINK_CMD_LINK, 2, argv, len, on_balance, p) < 0) {
        free(p);
        send_unavailable(c, req->id);
    }
}

void wallet_request(struct conn *c, const struct request *req)
{
    const struct config *cfg = &srv.cfg;
    struct movement mv = {.uid = c->user.sub, .room = req->room, .count = 1, .combo = "", .text = "",
                          .text_len = 0};
    switch (req->type) {
    case REQ_BALANCE:
        balance(c, req);
        return;
    case REQ_CREDIT:
        if (c->user.role != ROLE_ADMIN) {
            conn_send_error(c, req->id, "forbidden", "only an admin may credit a wallet", NULL, NULL, 0);
            return;
        }
        mv.kind = "credit";
        mv.uid = req->user;
        mv.room = "";
        mv.amount = mv.unit = req->amount;
        mv.text = req->text ? req->text : "";
        mv.text_len = req->text_len;
        move(c, req, &mv);
        return;
    case REQ_GIFT:
    case REQ_TIP:
        break;
    default:
        return;
    }

    if (strcmp(req->room, c->user.sub) == 0) {
        conn_send_error(c, req->id, "forbidden", "a creator cannot send gifts or tips to their own room",
                        NULL, NULL, 0);
        return;
    }
    if (!catalog_room_live(req->room)) {
        conn_send_error(c, req->id, "room_not_live", "this room is not live", NULL, NULL, 0);
        return;
    }
    if (req->type == REQ_GIFT) {
        const struct gift *g = catalog_gift(req->gift);
        if (!g || !g->enabled) {
            conn_send_error(c, req->id, "unknown_gift", "no such gift, or it is not available", "gift", NULL, 0);
            return;
        }
        if (req->count > cfg->gift_max_count) {
            char msg[96];
            snprintf(msg, sizeof msg, "'count' must be 1..%d", cfg->gift_max_count);
            conn_send_error(c, req->id, "bad_field", msg, "count", NULL, 0);
            return;
        }
        /* price <= PROTO_AMOUNT_MAX and count <= 10^6: the product is
         * far from overflowing int64, but the total must stay in bounds. */
        int64_t total = g->price * req->count;
        if (total > PROTO_AMOUNT_MAX) {
            conn_send_error(c, req->id, "bad_field", "the gift's total is too large", "count", NULL, 0);
            return;
        }
        mv.kind = "gift";
        mv.gift = g;
        mv.count = req->count;
        mv.unit = g->price;
        mv.amount = total;
        mv.combo = req->combo;
    } else {
        if (req->amount < cfg->tip_min || req->amount > cfg->tip_max) {
            char msg[96];
            snprintf(msg, sizeof msg, "'amount' must be %d..%d coins", cfg->tip_min, cfg->tip_max);
            conn_send_error(c, req->id, "bad_field", msg, "amount", NULL, 0);
            return;
        }
        mv.kind = "tip";
        mv.amount = mv.unit = req->amount;
        mv.text = req->text ? req->text : "";
        mv.text_len = req->text_len;
    }
    move(c, req, &mv);
}

/* ---- Redis safety -------------------------------------------------------- */

static void (*safety_done)(int safe);

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

static void on_info(redisReply *reply, void *priv)
{
    (void)priv;
    char aof[16] = "", policy[64] = "";
    if (!reply || reply->type != REDIS_REPLY_STRING || info_field(reply->str, "aof_enabled", aof, sizeof aof) < 0 ||
        info_field(reply->str, "maxmemory_policy", policy, sizeof policy) < 0) {
        log_msg(LOG_ERROR, "redis: cannot read INFO to check persistence; refusing to run");
        safety_done(srv.cfg.redis_unsafe);
        return;
    }
    int safe = strcmp(aof, "1") == 0 && strcmp(policy, "noeviction") == 0;
    if (!safe) {
        log_msg(srv.cfg.redis_unsafe ? LOG_WARN : LOG_ERROR,
                "redis: appendonly is %s and maxmemory-policy is %s: balances could be lost "
                "(need appendonly yes and maxmemory-policy noeviction)%s",
                strcmp(aof, "1") == 0 ? "on" : "off", policy,
                srv.cfg.redis_unsafe ? "; going on because redis-unsafe is set" : "; refusing to run");
    }
    safety_done(safe || srv.cfg.redis_unsafe);
}

int wallet_check_redis(void (*done)(int safe))
{
    safety_done = done;
    const char *argv[] = {"INFO"};
    size_t len[] = {4};
    return rlink_command(RLINK_CMD_LINK, 1, argv, len, on_info, NULL);
}
