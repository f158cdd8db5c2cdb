/* session.c - what a connection's messages mean: authentication (from the
 * handshake or an auth message), the request table's dispatch to the
 * modules that answer, and the session's own replies (welcome, pong). */
#include "server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "clock.h"
#include "connlog.h"
#include "request.h"

/* What conn->tallied records. */
#define TALLIED_ADDR 1
#define TALLIED_USER 2

static void send_welcome(struct server *s, struct conn *c, const char *id)
{
    const struct config *cfg = &s->cfg;
    struct enc e;
    int overlay = c->user.role == ROLE_OVERLAY;
    message_start(&e, c->fmt, 256, "welcome", id, 4 + overlay);
    enc_key(&e, "user");
    enc_cstr(&e, c->user.sub);
    if (overlay) {
        /* An overlay token reads one room: the one named by its subject. */
        enc_key(&e, "room");
        enc_cstr(&e, c->user.sub);
    }
    enc_key(&e, "role");
    enc_cstr(&e, role_name(c->user.role));
    enc_key(&e, "exp");
    enc_int(&e, c->user.exp);
    enc_key(&e, "limits");
    enc_map(&e, 5);
    enc_key(&e, "max_frame_bytes");
    enc_int(&e, cfg->max_frame_bytes);
    enc_key(&e, "max_msgs_per_s");
    enc_int(&e, cfg->max_msgs_per_s);
    enc_key(&e, "max_burst");
    enc_int(&e, cfg->max_burst);
    enc_key(&e, "max_rooms");
    enc_int(&e, cfg->max_rooms_per_conn);
    enc_key(&e, "max_text_bytes");
    enc_int(&e, REQUEST_NOTICE_MAX);
    enc_end_map(&e);
    enc_end_map(&e);
    conn_send(c, enc_finish(&e));
}

/* Checks a token; on success the connection is authenticated and welcomed,
 * on failure it is told why and closed with 4003. */
static void authenticate(struct server *s, struct conn *c, const char *token, size_t len, const char *id)
{
    struct jwt_claims claims;
    enum jwt_result r = jwt_verify(&s->cfg, token, len, clock_wall_ms() / 1000, &claims);
    if (r != JWT_OK) {
        int expired = r == JWT_EXPIRED || r == JWT_NOT_YET_VALID;
        char msg[96];
        snprintf(msg, sizeof msg, "token refused: %s", jwt_result_name(r));
        conn_send_error(c, id, expired ? ERR_AUTH_EXPIRED : ERR_AUTH_INVALID, msg, NULL, 0);
        conn_close(c, CLOSE_AUTH_FAILED, "authentication failed", 0);
        return;
    }
    if (role_staff(claims.role)) {
        /* Staff roles are for the admin API (docs/admin-api.md): on the
         * WebSocket they would be a viewer with a staff name. */
        conn_send_error(c, id, ERR_AUTH_INVALID, "token refused: staff roles use the admin API", NULL, 0);
        conn_close(c, CLOSE_AUTH_FAILED, "authentication failed", 0);
        return;
    }
    c->authed = 1;
    c->user = claims;
    c->user.dev = NULL;
    free(c->dev);
    c->dev = claims.dev ? strdup(claims.dev) : NULL; /* out of memory: the device is unknown */
    /* Counted once authenticated: before, the user is unknown, and an
     * unauthenticated connection ends at auth-timeout-ms anyway. */
    int n = tally_take(&s->conns_by_user, claims.sub, strlen(claims.sub), (uint32_t)s->cfg.max_conns_per_user);
    if (n <= 0) {
        conn_close(c, CLOSE_TOO_MANY, "too many connections for this user", 0);
        return;
    }
    c->tallied |= TALLIED_USER;
    send_welcome(s, c, id);
    /* Promotions: a viewer's new wallet gets the new-user bonus once (the
     * script gives it only into a wallet that never had coins). */
    if (c->user.role == ROLE_VIEWER && s->risk.rule[RISK_NEW_USER_BONUS] > 0)
        wallet_bonus(&s->wallet, c->user.sub, s->risk.rule[RISK_NEW_USER_BONUS]);
}

/* The key a peer's connections are counted under: its IPv4 address, or the
 * /64 of its IPv6 address (what one subscriber line gets). 0 when the
 * address is unknown or exempt (conns-per-address-exempt). */
static size_t address_key(const struct config *cfg, const struct conn *c, uint8_t key[9])
{
    int v6 = c->peer_family == AF_INET6;
    if (!c->peer_family)
        return 0;
    for (int i = 0; i < cfg->conns_exempt.n; i++)
        if (cidr_contains(&cfg->conns_exempt.block[i], v6, c->peer_addr))
            return 0;
    key[0] = (uint8_t)v6;
    memcpy(key + 1, c->peer_addr, v6 ? 8 : 4);
    return v6 ? 9 : 5;
}

/* The token from the handshake: ?token=... or Authorization: Bearer ...
 * Returns its length (0 when there is none), or -1 when it is too long. */
static int handshake_token(struct lws *wsi, char *buf, int cap)
{
    /* lws copies "token=VALUE" into buf and answers a pointer to VALUE. */
    const char *v = lws_get_urlarg_by_name(wsi, "token=", buf, cap);
    if (v) {
        size_t n = strlen(v);
        memmove(buf, v, n + 1);
        return (int)n;
    }
    int n = lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_AUTHORIZATION);
    if (n <= 0)
        return 0;
    if (n >= cap)
        return -1;
    if (lws_hdr_copy(wsi, buf, cap, WSI_TOKEN_HTTP_AUTHORIZATION) < 0)
        return -1;
    if (strncasecmp(buf, "Bearer ", 7) != 0)
        return -1;
    memmove(buf, buf + 7, strlen(buf + 7) + 1);
    return (int)strlen(buf);
}

void session_open(void *ctx, struct conn *c)
{
    struct server *s = ctx;
    connlog_opened(c);
    uint8_t key[9];
    size_t klen = address_key(&s->cfg, c, key);
    if (klen) {
        if (tally_take(&s->conns_by_addr, key, klen, (uint32_t)s->cfg.max_conns_per_address) <= 0) {
            conn_close(c, CLOSE_TOO_MANY, "too many connections from this address", 0);
            return;
        }
        c->tallied |= TALLIED_ADDR;
    }
    char token[JWT_MAX_BYTES + 8];
    int n = handshake_token(c->wsi, token, (int)sizeof token);
    if (n < 0) {
        conn_send_error(c, NULL, ERR_AUTH_INVALID, "token refused: malformed", NULL, 0);
        conn_close(c, CLOSE_AUTH_FAILED, "authentication failed", 0);
    } else if (n > 0) {
        authenticate(s, c, token, (size_t)n, NULL);
    }
}

static void send_pong(struct conn *c, const char *id)
{
    struct enc e;
    message_start(&e, c->fmt, 96, "pong", id, 1);
    enc_key(&e, "ts");
    enc_int(&e, clock_wall_ms());
    enc_end_map(&e);
    conn_send(c, enc_finish(&e));
}

/* The risk rules of a gift or tip (risk/risk.h): 1 when it may go on, with
 * what the wallet script needs in rk (ip points into ip_buf); 0 when it
 * was refused here (answered and counted). */
static int risk_ok(struct server *s, struct conn *c, const struct request *req, struct wallet_risk *rk,
                   char ip_buf[INET6_ADDRSTRLEN])
{
    uint8_t key[9];
    size_t klen = address_key(&s->cfg, c, key);
    int64_t retry_ms;
    int code = risk_gate(&s->risk, c->user.sub, key, klen, clock_mono_us(), &retry_ms);
    if (code >= 0) {
        enum wallet_kind k = req->type == REQ_GIFT ? WALLET_GIFT : req->type == REQ_TIP ? WALLET_TIP : WALLET_PLEDGE;
        wallet_count(&s->wallet, k, WALLET_RESULT_ERR(code));
        if (code == ERR_ACCOUNT_FROZEN)
            conn_send_error(c, req->id, ERR_ACCOUNT_FROZEN, "this account is frozen", NULL, 0);
        else
            conn_send_error(c, req->id, (enum err)code, "too many gifts and tips; retry later", NULL, retry_ms);
        return 0;
    }
    risk_wallet(&s->risk, rk);
    ip_buf[0] = '\0';
    if (c->peer_family && !inet_ntop(c->peer_family, c->peer_addr, ip_buf, INET6_ADDRSTRLEN))
        ip_buf[0] = '\0';
    rk->ip = ip_buf;
    rk->device = c->dev ? c->dev : "";
    return 1;
}

/* The request table's second half: who answers each type. */
static void dispatch(struct server *s, struct conn *c, const struct request *req)
{
    struct reply r;
    conn_reply(c, req->id, &r);
    struct wallet_risk rk;
    char ip[INET6_ADDRSTRLEN];
    switch (req->type) {
    case REQ_AUTH:
        if (c->authed)
            conn_send_error(c, req->id, ERR_ALREADY_AUTHENTICATED, "this connection is authenticated", NULL, 0);
        else
            authenticate(s, c, req->token, req->token_len, req->id);
        break;
    case REQ_PING:
        send_pong(c, req->id);
        break;
    case REQ_JOIN:
        room_join(&s->rooms, c, req->room, req->id);
        break;
    case REQ_LEAVE:
        room_leave_request(&s->rooms, c, req->room, req->id);
        break;
    case REQ_NOTICE:
        room_notice(&s->rooms, c, req->room, req->text, req->text_len, req->id);
        break;
    case REQ_HISTORY:
        room_history(&s->rooms, c, req->room, req->after_seq, req->id);
        break;
    case REQ_CATALOG:
        conn_send(c, catalog_frame(&s->catalog, c->fmt, req->id));
        break;
    case REQ_GIFT:
        if (!risk_ok(s, c, req, &rk, ip))
            break;
        if (req->coupon[0])
            promo_gift(&s->promo, &r, &c->user, req->room, req->gift, req->count, req->combo, &rk, req->coupon);
        else
            wallet_gift(&s->wallet, &r, &c->user, req->room, req->gift, req->count, req->combo, &rk);
        break;
    case REQ_TIP:
        if (risk_ok(s, c, req, &rk, ip))
            wallet_tip(&s->wallet, &r, &c->user, req->room, req->amount, req->text, req->text_len, &rk);
        break;
    case REQ_PLEDGE:
        if (risk_ok(s, c, req, &rk, ip))
            wallet_pledge(&s->wallet, &r, &c->user, req->campaign, req->tier, req->amount);
        break;
    case REQ_CREDIT:
        wallet_credit(&s->wallet, &r, &c->user, req->user, req->amount, req->text, req->text_len);
        break;
    case REQ_BALANCE:
        wallet_balance(&s->wallet, &r, &c->user);
        break;
    case REQ_LEADERBOARD:
        board_request(&s->board, &r, req->room);
        break;
    case REQ_EARNINGS:
        earnings_request(&s->earnings, &r, &c->user, req->user);
        break;
    case REQ_GOAL:
    case REQ_GOAL_CLEAR:
        room_goal(&s->rooms, c, req->room, req->type == REQ_GOAL ? req->amount : 0, req->gift, req->deadline,
                  req->text ? req->text : "", req->text_len, req->id);
        break;
    case REQ_UNPIN:
        room_unpin(&s->rooms, c, req->room, req->order, req->id);
        break;
    case REQ_MODERATOR_ADD:
        room_moderators(&s->rooms, c, req->room, "mod_add", req->user, req->id);
        break;
    case REQ_MODERATOR_REMOVE:
        room_moderators(&s->rooms, c, req->room, "mod_remove", req->user, req->id);
        break;
    case REQ_MODERATORS:
        room_moderators(&s->rooms, c, req->room, "mod_list", "", req->id);
        break;
    case REQ_GLOBAL_BOARD:
        promo_global_board(&s->promo, &r, (enum gboard_period)req->period);
        break;
    case REQ_COUNT: /* not a type */
        break;
    }
}

/* 1 when an overlay's connection may make request `req`: an overlay token
 * reads its own room (its subject) and nothing else; it never moves money. */
static int overlay_allows(const struct conn *c, const struct request *req)
{
    switch (req->type) {
    case REQ_AUTH:
    case REQ_PING:
    case REQ_CATALOG:
        return 1;
    case REQ_JOIN:
    case REQ_LEAVE:
    case REQ_HISTORY:
    case REQ_LEADERBOARD:
        return strcmp(req->room, c->user.sub) == 0;
    default:
        return 0;
    }
}

/* The wallet's kind of a money request type, or -1. */
static int money_kind(int type)
{
    switch (type) {
    case REQ_GIFT:
        return WALLET_GIFT;
    case REQ_TIP:
        return WALLET_TIP;
    case REQ_CREDIT:
        return WALLET_CREDIT;
    case REQ_PLEDGE:
        return WALLET_PLEDGE;
    case REQ_BALANCE:
        return WALLET_BALANCE;
    default:
        return -1;
    }
}

/* A money request refused here, before the wallet saw it, still counts
 * among the wallet's results. */
static void money_refused(struct server *s, int type, enum err code)
{
    int k = money_kind(type);
    if (k >= 0)
        wallet_count(&s->wallet, (enum wallet_kind)k, WALLET_RESULT_ERR(code));
}

void session_message(void *ctx, struct conn *c, int binary, const uint8_t *buf, size_t len)
{
    struct server *s = ctx;
    struct request req;
    struct request_error err;

    if (binary != (c->fmt == FMT_MSGPACK)) {
        s->metrics.messages[METRICS_MSG_INVALID]++;
        if (conn_admit(c, NULL))
            conn_send_error(c, NULL, ERR_WRONG_FRAME_TYPE,
                            c->fmt == FMT_MSGPACK ? "tipcast.v1.msgpack takes binary frames"
                                                  : "tipcast.v1.json takes text frames",
                            NULL, 0);
        return;
    }
    if (request_decode(c->fmt, buf, len, &req, &err) < 0) {
        /* A request of a known type with a bad field counts as its type. */
        s->metrics.messages[err.type >= 0 ? err.type : METRICS_MSG_INVALID]++;
        if (conn_admit(c, err.id)) {
            money_refused(s, err.type, err.code);
            conn_send_error(c, err.id, err.code, err.message, err.field, 0);
        } else {
            money_refused(s, err.type, ERR_RATE_LIMITED);
        }
        return;
    }
    s->metrics.messages[req.type]++;
    if (!conn_admit(c, req.id)) {
        money_refused(s, (int)req.type, ERR_RATE_LIMITED);
        goto done;
    }
    if (!c->authed && req.type != REQ_AUTH && req.type != REQ_PING) {
        money_refused(s, (int)req.type, ERR_AUTH_REQUIRED);
        conn_send_error(c, req.id, ERR_AUTH_REQUIRED, "authenticate first", NULL, 0);
    } else if (c->authed && c->user.role == ROLE_OVERLAY && !overlay_allows(c, &req)) {
        money_refused(s, (int)req.type, ERR_FORBIDDEN);
        conn_send_error(c, req.id, ERR_FORBIDDEN, "an overlay token only reads its own room", NULL, 0);
    } else {
        dispatch(s, c, &req);
    }
done:
    request_release(&req);
}

void session_leave_all(void *ctx, struct conn *c)
{
    struct server *s = ctx;
    rooms_leave_all(&s->rooms, c);
}

void session_closed(void *ctx, const struct conn *c)
{
    struct server *s = ctx;
    connlog_closed(c);
    if (c->tallied & TALLIED_USER)
        tally_give(&s->conns_by_user, c->user.sub, strlen(c->user.sub));
    if (c->tallied & TALLIED_ADDR) {
        uint8_t key[9];
        size_t klen = address_key(&s->cfg, c, key);
        tc_assert(klen > 0); /* the settings do not change while running */
        tally_give(&s->conns_by_addr, key, klen);
    }
}
