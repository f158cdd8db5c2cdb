/* conn.c - one WebSocket connection (see conn.h). */
#include "conn.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "board.h"
#include "catalog.h"
#include "log.h"
#include "room.h"
#include "server.h"
#include "wallet.h"

_Static_assert(PROTO_PRE >= LWS_PRE, "frames need LWS_PRE bytes of headroom");

/* ---- The connection table ---------------------------------------------- */

static struct {
    struct conn **slots;
    uint32_t *free_slots;
    uint32_t cap, nfree;
    uint32_t high;        /* slots at or past this were never used */
    uint64_t serial;
    int count;
} T;

int conn_table_init(int max_connections)
{
    T.cap = (uint32_t)max_connections;
    T.slots = calloc(T.cap, sizeof *T.slots);
    T.free_slots = malloc(sizeof *T.free_slots * T.cap);
    if (!T.slots || !T.free_slots)
        return -1;
    /* Lowest slots first, so the sweep walks a dense prefix. */
    for (uint32_t i = 0; i < T.cap; i++)
        T.free_slots[i] = T.cap - 1 - i;
    T.nfree = T.cap;
    return 0;
}

void conn_table_free(void)
{
    free(T.slots);
    free(T.free_slots);
    memset(&T, 0, sizeof T);
}

struct conn *conn_find(uint64_t id)
{
    uint32_t slot = (uint32_t)(id & 0xffffffffu);
    if (slot >= T.cap || !T.slots[slot] || T.slots[slot]->id != id)
        return NULL;
    return T.slots[slot];
}

int conn_count(void) { return T.count; }

/* ---- Sending ------------------------------------------------------------ */

static void want_write(struct conn *c) { lws_callback_on_writable(c->wsi); }

/* A frame may go out at once, without waiting for WRITEABLE, when nothing
 * is ahead of it: no reply of ours queued, no remainder of an earlier frame
 * held by lws, no close under way. Writing at once saves the WRITEABLE
 * cycle, whose arming and disarming of POLLOUT (epoll_ctl, twice) costs as
 * much as the write itself (docs/benchmarks.md). */
static int can_write_now(struct conn *c)
{
    return c->outq_count == 0 && !c->close_code && !lws_partial_buffered(c->wsi);
}

static int write_frame(struct conn *c, struct frame *f)
{
    enum lws_write_protocol wp = c->fmt == FMT_MSGPACK ? LWS_WRITE_BINARY : LWS_WRITE_TEXT;
    /* Frames joined by frame_join carry their own headers: lws sends them
     * as they are (its "HTTP" write is a raw one on a WebSocket). */
    if (f->wire)
        wp = LWS_WRITE_HTTP;
    int n = lws_write(c->wsi, f->data + PROTO_PRE, f->len, wp);
    return n < (int)f->len ? -1 : 0;
}

/* A write outside WRITEABLE failed: the socket is unusable. Nothing more is
 * written to it, and lws closes it on its next pass (conn_closed follows). */
static void write_failed(struct conn *c)
{
    c->close_code = LWS_CLOSE_STATUS_ABNORMAL_CLOSE;
    c->close_sent = 1;
    lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
}

/* lws passes a pong to us only when it has a payload: the ping carries the
 * time, which the pong brings back. */
static int write_ping(struct conn *c)
{
    uint8_t ping[LWS_PRE + 8];
    uint64_t t = (uint64_t)now_mono_ms();
    for (int i = 0; i < 8; i++)
        ping[LWS_PRE + i] = (uint8_t)(t >> (56 - 8 * i));
    c->ping_due = 0;
    return lws_write(c->wsi, ping + LWS_PRE, 8, LWS_WRITE_PING) < 0 ? -1 : 0;
}

/* Sends membership m its next room frame (one event, or a batch of those
 * pending), with the room's leaderboard push `board` (may be NULL) in the
 * same write. Returns 0, or -1 when out of memory or the write failed. */
static int write_room_frame(struct conn *c, struct membership *m, struct frame *board)
{
    struct room_event *ev = room_next_event(m->room, m->next_seq), *last = NULL;
    struct frame *f = NULL;
    if (ev) {
        f = room_frame_from(m->room, ev, c->fmt, &last, board);
        if (!f)
            return -1;
        m->next_seq = last->seq + 1;
        m->sent_cum = last->cum[c->fmt];
    } else if (board) {
        f = frame_ref(board);
    } else {
        return 0;
    }
    int rc = write_frame(c, f);
    frame_unref(f);
    return rc;
}

size_t conn_backlog(const struct conn *c)
{
    size_t n = c->outq_bytes;
    for (int i = 0; i < c->nrooms; i++)
        if (c->rooms[i].state == MEMBER_LIVE)
            n += room_backlog(c->rooms[i].room, &c->rooms[i], c->fmt);
    return n;
}

static void outq_clear(struct conn *c)
{
    while (c->outq_count) {
        frame_unref(c->outq[c->outq_head]);
        c->outq_head = (c->outq_head + 1) % c->outq_cap;
        c->outq_count--;
    }
    c->outq_bytes = 0;
}

static int outq_grow(struct conn *c)
{
    uint32_t cap = c->outq_cap ? c->outq_cap * 2 : 4;
    if (cap > CONN_OUTQ_MAX)
        return -1;
    struct frame **q = malloc(sizeof *q * cap);
    if (!q)
        return -1;
    for (uint32_t i = 0; i < c->outq_count; i++)
        q[i] = c->outq[(c->outq_head + i) % c->outq_cap];
    free(c->outq);
    c->outq = q;
    c->outq_cap = cap;
    c->outq_head = 0;
    return 0;
}

void conn_send(struct conn *c, struct frame *f)
{
    if (!f) {
        /* Out of memory building a reply: the client would wait forever
         * for it, so it is better told by a close. */
        conn_close(c, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION, "out of memory", 1);
        return;
    }
    if (c->close_code) {
        frame_unref(f);
        return;
    }
    if (conn_backlog(c) + f->len > (size_t)srv.cfg.max_queued_bytes ||
        (c->outq_count == c->outq_cap && outq_grow(c) < 0)) {
        frame_unref(f);
        conn_close(c, CLOSE_SLOW_CONSUMER, "slow consumer", 1);
        return;
    }
    if (can_write_now(c)) {
        int rc = write_frame(c, f);
        frame_unref(f);
        if (rc < 0)
            write_failed(c);
        return;
    }
    c->outq[(c->outq_head + c->outq_count) % c->outq_cap] = f;
    c->outq_count++;
    c->outq_bytes += f->len;
    want_write(c);
}

void conn_deliver(struct conn *c, struct membership *m, struct frame *board)
{
    if (!can_write_now(c)) {
        if (board)
            conn_send(c, frame_ref(board));
        want_write(c);
        return;
    }
    if (write_room_frame(c, m, board) < 0) {
        write_failed(c);
        return;
    }
    /* More than one batch pending: the rest at WRITEABLE, in turn with
     * the connection's other rooms. */
    if (m->room->last_seq >= m->next_seq)
        want_write(c);
}

void conn_send_error(struct conn *c, const char *id, const char *code, const char *message,
                     const char *field, const char *extra_key, int64_t extra_val)
{
    conn_send(c, proto_error_frame(c->fmt, id, code, message, field, extra_key, extra_val));
}

void conn_close(struct conn *c, int code, const char *reason, int drop_queue)
{
    if (c->close_code)
        return;
    c->close_code = code;
    c->close_reason = reason;
    if (drop_queue) {
        outq_clear(c);
        while (c->nrooms > 0)
            room_leave(c, c->nrooms - 1);
    }
    /* A client that reads nothing never makes the socket writeable again:
     * lws drops it if the close frame cannot go out within a few seconds. */
    lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, CONN_CLOSE_ACK_S);
    want_write(c);
}

/* ---- Requests ----------------------------------------------------------- */

static void send_welcome(struct conn *c, const char *id)
{
    const struct config *cfg = &srv.cfg;
    struct enc e;
    int has_id = id && id[0];
    enc_init(&e, c->fmt, 256);
    enc_map(&e, (uint32_t)(5 + has_id));
    enc_key(&e, "type");
    enc_cstr(&e, "welcome");
    if (has_id) {
        enc_key(&e, "id");
        enc_cstr(&e, id);
    }
    enc_key(&e, "user");
    enc_cstr(&e, c->user.sub);
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
    enc_int(&e, PROTO_TEXT_MAX);
    enc_end_map(&e);
    enc_end_map(&e);
    conn_send(c, enc_finish(&e));
}

/* Checks a token; on success the connection is authenticated and welcomed,
 * on failure it is told why and closed with 4003. */
static void authenticate(struct conn *c, const char *token, size_t len, const char *id)
{
    struct jwt_claims claims;
    enum jwt_result r = jwt_verify(&srv.cfg, token, len, now_wall_ms() / 1000, &claims);
    if (r != JWT_OK) {
        int expired = r == JWT_EXPIRED || r == JWT_NOT_YET_VALID;
        char msg[96];
        snprintf(msg, sizeof msg, "token refused: %s", jwt_result_name(r));
        conn_send_error(c, id, expired ? "auth_expired" : "auth_invalid", msg, NULL, NULL, 0);
        conn_close(c, CLOSE_AUTH_FAILED, "authentication failed", 0);
        return;
    }
    c->authed = 1;
    c->user = claims;
    send_welcome(c, id);
}

static void send_pong(struct conn *c, const char *id)
{
    struct enc e;
    enc_init(&e, c->fmt, 96);
    enc_map(&e, 3);
    enc_key(&e, "type");
    enc_cstr(&e, "pong");
    enc_key(&e, "id");
    enc_cstr(&e, id);
    enc_key(&e, "ts");
    enc_int(&e, now_wall_ms());
    enc_end_map(&e);
    conn_send(c, enc_finish(&e));
}

static void send_left(struct conn *c, const char *id, const char *room)
{
    struct enc e;
    enc_init(&e, c->fmt, 128);
    enc_map(&e, 3);
    enc_key(&e, "type");
    enc_cstr(&e, "left");
    enc_key(&e, "id");
    enc_cstr(&e, id);
    enc_key(&e, "room");
    enc_cstr(&e, room);
    enc_end_map(&e);
    conn_send(c, enc_finish(&e));
}

/* The token bucket. Returns 1 when the request may go ahead. A client far
 * past the limit is closed rather than answered forever. */
static int rate_admit(struct conn *c, const char *id)
{
    const struct config *cfg = &srv.cfg;
    int64_t now = now_mono_ms();
    c->tokens += (double)(now - c->bucket_ms) * cfg->max_msgs_per_s / 1000.0;
    if (c->tokens > cfg->max_burst)
        c->tokens = cfg->max_burst;
    c->bucket_ms = now;
    if (c->tokens >= 1.0) {
        c->tokens -= 1.0;
        return 1;
    }
    if (now - c->flood_window_ms >= 1000) {
        c->flood_window_ms = now;
        c->flood_rejected = 0;
    }
    if (++c->flood_rejected > 3 * cfg->max_msgs_per_s) {
        /* The replies already queued go out before the close. */
        conn_close(c, CLOSE_FLOOD, "flood", 0);
        return 0;
    }
    int64_t wait_ms = (int64_t)((1.0 - c->tokens) * 1000.0 / cfg->max_msgs_per_s) + 1;
    conn_send_error(c, id, "rate_limited", "too many messages; slow down", NULL, "retry_after_ms", wait_ms);
    return 0;
}

static int membership_index(const struct conn *c, const char *room)
{
    for (int i = 0; i < c->nrooms; i++)
        if (strcmp(c->rooms[i].room->id, room) == 0)
            return i;
    return -1;
}

static void handle_message(struct conn *c, int binary, const uint8_t *buf, size_t len)
{
    struct request req;
    struct proto_error err;

    if (binary != (c->fmt == FMT_MSGPACK)) {
        if (rate_admit(c, NULL))
            conn_send_error(c, NULL, "wrong_frame_type",
                            c->fmt == FMT_MSGPACK ? "tipcast.v1.msgpack takes binary frames"
                                                  : "tipcast.v1.json takes text frames",
                            NULL, NULL, 0);
        return;
    }
    if (proto_decode(c->fmt, buf, len, &req, &err) < 0) {
        if (rate_admit(c, err.id))
            conn_send_error(c, err.id, err.code, err.message, err.field, NULL, 0);
        return;
    }
    if (!rate_admit(c, req.id))
        goto done;

    if (!c->authed && req.type != REQ_AUTH && req.type != REQ_PING) {
        conn_send_error(c, req.id, "auth_required", "authenticate first", NULL, NULL, 0);
        goto done;
    }
    switch (req.type) {
    case REQ_AUTH:
        if (c->authed)
            conn_send_error(c, req.id, "already_authenticated", "this connection is authenticated", NULL, NULL, 0);
        else
            authenticate(c, req.token, req.token_len, req.id);
        break;
    case REQ_PING:
        send_pong(c, req.id);
        break;
    case REQ_JOIN:
        room_join(c, req.room, req.id);
        break;
    case REQ_LEAVE: {
        int i = membership_index(c, req.room);
        if (i < 0) {
            conn_send_error(c, req.id, "not_member", "not a member of this room", NULL, NULL, 0);
            break;
        }
        room_leave(c, i);
        send_left(c, req.id, req.room);
        break;
    }
    case REQ_NOTICE:
        room_notice(c, req.room, req.text, req.text_len, req.id);
        break;
    case REQ_HISTORY:
        room_history(c, req.room, req.after_seq, req.id);
        break;
    case REQ_CATALOG:
        conn_send(c, catalog_frame(c->fmt, req.id));
        break;
    case REQ_GIFT:
    case REQ_TIP:
    case REQ_CREDIT:
    case REQ_BALANCE:
        wallet_request(c, &req);
        break;
    case REQ_LEADERBOARD:
        board_request(c, req.room, req.id);
        break;
    }
done:
    proto_request_release(&req);
}

/* ---- lws events --------------------------------------------------------- */

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

int conn_opened(struct conn *c, struct lws *wsi, enum fmt fmt)
{
    static char token[JWT_MAX_BYTES + 8];
    memset(c, 0, sizeof *c);
    c->wsi = wsi;
    c->fmt = fmt;
    if (T.nfree == 0 || srv.stopping) {
        static const char reason[] = "server full";
        lws_close_reason(wsi, (enum lws_close_status)1013 /* try again later */, (unsigned char *)reason, sizeof reason - 1);
        return -1;
    }
    c->slot = T.free_slots[--T.nfree];
    c->id = (++T.serial << 32) | c->slot;
    if (c->slot >= T.high)
        T.high = c->slot + 1;
    T.slots[c->slot] = c;
    T.count++;

    int64_t now = now_mono_ms();
    c->opened_ms = c->last_rx_ms = c->last_ping_ms = c->bucket_ms = now;
    c->flood_window_ms = now;
    c->tokens = srv.cfg.max_burst;
    if (srv.cfg.sndbuf_bytes > 0) {
        int fd = lws_get_socket_fd(wsi);
        int v = srv.cfg.sndbuf_bytes;
        if (fd >= 0)
            setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, sizeof v);
    }

    int n = handshake_token(wsi, token, (int)sizeof token);
    if (n < 0) {
        conn_send_error(c, NULL, "auth_invalid", "token refused: malformed", NULL, NULL, 0);
        conn_close(c, CLOSE_AUTH_FAILED, "authentication failed", 0);
    } else if (n > 0) {
        authenticate(c, token, (size_t)n, NULL);
    }
    return 0;
}

int conn_receive(struct conn *c, const void *in, size_t len)
{
    struct lws *wsi = c->wsi;
    size_t max = (size_t)srv.cfg.max_frame_bytes;
    int first = lws_is_first_fragment(wsi);
    int last = lws_is_final_fragment(wsi) && lws_remaining_packet_payload(wsi) == 0;

    c->last_rx_ms = now_mono_ms();
    if (c->close_code)
        return 0; /* closing: what it says no longer matters */
    if (first)
        c->rx_len = 0;
    /* The frame header declares its length: a frame that will pass the
     * bound is refused on its first bytes, not after they all came. */
    if (c->rx_len + len + lws_remaining_packet_payload(wsi) > max) {
        static const char reason[] = "message too big";
        lws_close_reason(wsi, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, (unsigned char *)reason, sizeof reason - 1);
        return -1;
    }
    if (first && last) {
        /* The whole message in one piece, the usual case: no copy. */
        handle_message(c, lws_frame_is_binary(wsi), in, len);
        return 0;
    }
    if (c->rx_len + len > c->rx_cap) {
        size_t cap = c->rx_cap ? c->rx_cap * 2 : 1024;
        while (cap < c->rx_len + len)
            cap *= 2;
        if (cap > max)
            cap = max;
        uint8_t *p = realloc(c->rx, cap);
        if (!p)
            return -1;
        c->rx = p;
        c->rx_cap = cap;
    }
    memcpy(c->rx + c->rx_len, in, len);
    c->rx_len += len;
    if (last) {
        handle_message(c, lws_frame_is_binary(wsi), c->rx, c->rx_len);
        /* Messages come in pieces only when bigger than lws's receive
         * buffer, which is rare (an auth message with its token): an idle
         * connection keeps no buffer for them. */
        free(c->rx);
        c->rx = NULL;
        c->rx_len = 0;
        c->rx_cap = 0;
    }
    return 0;
}

void conn_pong(struct conn *c) { c->last_rx_ms = now_mono_ms(); }

/* Writes the close frame ourselves rather than through lws_close_reason()
 * and a -1 return: the Debian build of lws 4.1 (a _DEBUG build) closes a
 * connection twice when a WRITEABLE callback returns -1, and the second
 * close drops the close frame. The peer answers with its own close, which
 * ends the connection (conn_peer_closed); one that does not is dropped by
 * the timeout set here. */
static int send_close(struct conn *c)
{
    uint8_t buf[LWS_PRE + 125];
    const char *reason = c->close_reason ? c->close_reason : "";
    size_t n = strlen(reason);
    if (n > 123)
        n = 123;
    buf[LWS_PRE] = (uint8_t)(c->close_code >> 8);
    buf[LWS_PRE + 1] = (uint8_t)(c->close_code & 0xff);
    memcpy(buf + LWS_PRE + 2, reason, n);
    log_msg(LOG_DEBUG, "conn %llx: closing with %d (%s)", (unsigned long long)c->id, c->close_code, reason);
    c->close_sent = 1;
    /* 4 is lws's own LWS_WRITE_CLOSE, kept out of its public header. */
    if (lws_write(c->wsi, buf + LWS_PRE, n + 2, (enum lws_write_protocol)4) < 0)
        return -1;
    lws_set_timeout(c->wsi, PENDING_TIMEOUT_CLOSE_ACK, CONN_CLOSE_ACK_S);
    return 0;
}

int conn_peer_closed(struct conn *c)
{
    /* Our close answered: no echo, just close. Otherwise lws echoes the
     * peer's close, as RFC 6455 asks, and nothing may follow it. */
    if (c->close_sent)
        return 1;
    if (!c->close_code) {
        c->close_code = LWS_CLOSE_STATUS_NORMAL;
        c->close_sent = 1;
    }
    return 0;
}

static int has_pending(const struct conn *c)
{
    if (c->close_code)
        return !c->close_sent;
    if (c->outq_count || c->ping_due)
        return 1;
    for (int i = 0; i < c->nrooms; i++) {
        const struct membership *m = &c->rooms[i];
        if (m->state == MEMBER_LIVE && m->room->last_seq >= m->next_seq)
            return 1;
    }
    return 0;
}

int conn_writeable(struct conn *c)
{
    /* One lws_write per WRITEABLE: replies first, then the close, then one
     * room event, taking the rooms in turn. */
    if (c->close_sent)
        return 0;
    if (c->ping_due && !c->close_code) {
        if (write_ping(c) < 0)
            return -1;
    } else if (c->outq_count) {
        struct frame *f = c->outq[c->outq_head];
        c->outq_head = (c->outq_head + 1) % c->outq_cap;
        c->outq_count--;
        c->outq_bytes -= f->len;
        int rc = write_frame(c, f);
        frame_unref(f);
        if (rc < 0)
            return -1;
    } else if (c->close_code) {
        if (!c->close_sent)
            return send_close(c);
        return 0;
    } else {
        for (int k = 0; k < c->nrooms; k++) {
            int i = (c->rr + k) % c->nrooms;
            struct membership *m = &c->rooms[i];
            if (m->state != MEMBER_LIVE || m->room->last_seq < m->next_seq)
                continue;
            c->rr = i + 1;
            if (write_room_frame(c, m, NULL) < 0)
                return -1;
            break;
        }
    }
    if (has_pending(c))
        want_write(c);
    return 0;
}

void conn_closed(struct conn *c)
{
    if (!c->id)
        return; /* refused in conn_opened before it had a slot */
    while (c->nrooms > 0)
        room_leave(c, c->nrooms - 1);
    outq_clear(c);
    free(c->outq);
    free(c->rooms);
    free(c->rx);
    T.slots[c->slot] = NULL;
    T.free_slots[T.nfree++] = c->slot;
    T.count--;
    c->id = 0;
}

void conn_sweep(int64_t now)
{
    const struct config *cfg = &srv.cfg;
    for (uint32_t s = 0; s < T.high; s++) {
        struct conn *c = T.slots[s];
        if (!c || c->close_code)
            continue;
        if (!c->authed) {
            if (now - c->opened_ms >= cfg->auth_timeout_ms)
                conn_close(c, CLOSE_AUTH_TIMEOUT, "authentication timeout", 1);
            continue;
        }
        if (now - c->last_rx_ms >= (int64_t)cfg->idle_timeout_s * 1000) {
            conn_close(c, CLOSE_IDLE, "idle", 1);
            continue;
        }
        if (now - c->last_ping_ms >= (int64_t)cfg->ping_interval_s * 1000) {
            c->last_ping_ms = now;
            if (can_write_now(c)) {
                if (write_ping(c) < 0)
                    write_failed(c);
            } else {
                c->ping_due = 1;
                want_write(c);
            }
        }
    }
}

void conn_close_all(void)
{
    for (uint32_t s = 0; s < T.high; s++)
        if (T.slots[s])
            conn_close(T.slots[s], LWS_CLOSE_STATUS_GOINGAWAY, "server shutting down", 1);
}
