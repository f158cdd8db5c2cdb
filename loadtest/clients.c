/* clients.c - the bench's connections: opening them, their lws callback, what
 * they send (joins, credits, gifts, peer frames) and what comes back (acks,
 * errors and deliveries, measured against their scheduled time). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "run.h"
#include "jwt.h"
#include "wire.h"

_Static_assert(FRAME_PRE >= LWS_PRE, "request frames need LWS_PRE bytes of headroom");

/* A message reassembled from fragments past this is dropped (tipcastd's
 * batches are at most 32 KiB). */
#define BENCH_RX_MAX (256 * 1024)
#define BENCH_FUND_COINS 1000000000LL
#define BENCH_TOKEN_TTL_S 7200

/* ---- Connections ------------------------------------------------------------ */

static void room_name(const struct bench *b, uint32_t room, char *buf, size_t cap)
{
    snprintf(buf, cap, bench_tipcast(b) ? "bench-room-%u" : "benchroom%u", (unsigned)b->o.room_base + room);
}

static void resolve(struct bench *b, struct bconn *c, enum cstate st)
{
    int was_pending = c->state == CS_CONNECTING || c->state == CS_OPEN || c->state == CS_AUTHED;
    c->state = (uint8_t)st;
    if (was_pending)
        b->resolved++;
}

static void conn_received(struct bconn *c, const uint8_t *buf, size_t len);
static void conn_established(struct bconn *c);
static void conn_peer_closed(struct bconn *c, int code);
static void conn_closed(struct bconn *c);

/* What rawrx.c reports. */
static const struct conn_events raw_events = {conn_established, conn_received, conn_peer_closed, conn_closed};

int conn_open(struct bconn *c)
{
    struct bench *b = c->b;
    char path[JWT_MAX_BYTES + 64], room[80];
    const char *protocol = NULL;
    room_name(b, c->room, room, sizeof room);
    if (bench_tipcast(b)) {
        char user[ID_MAX + 1], token[1024];
        int admin = c->role == ROLE_FUNDER;
        if (admin)
            snprintf(user, sizeof user, "bench-admin");
        else
            snprintf(user, sizeof user, "bench-u%u", (unsigned)b->o.user_base + c->idx);
        if (jwt_sign(b->o.secret, strlen(b->o.secret), NULL, user, admin ? ROLE_ADMIN : ROLE_VIEWER,
                     (int64_t)(wall_us() / 1000000u) + BENCH_TOKEN_TTL_S, token, sizeof token) < 0)
            return -1;
        snprintf(path, sizeof path, "/ws?token=%s", token);
        protocol = b->o.json ? "tipcast.v1.json" : "tipcast.v1.msgpack";
    } else {
        snprintf(path, sizeof path, "/%s/%s", c->role == ROLE_SENDER ? "pub" : "sub", room);
    }
    c->state = CS_CONNECTING;
    if (b->raw) {
        if (rawrx_open(c, path, protocol, &raw_events) == 0)
            return 0;
        if (c->state == CS_CONNECTING) {
            resolve(b, c, CS_FAILED);
            b->r.conn_failed++;
            bench_error(b, "connect_failed");
        }
        return -1;
    }
    struct lws_client_connect_info ci;
    memset(&ci, 0, sizeof ci);
    ci.protocol = protocol;
    /* No lws keepalive timers: lws keeps every connection's in one sorted
     * list, so each insert walks all of them (quadratic in connections). */
    static const lws_retry_bo_t no_validity;
    ci.retry_and_idle_policy = &no_validity;
    ci.context = b->ctx;
    ci.address = b->o.host;
    ci.port = b->o.port;
    ci.path = path;
    ci.host = b->o.host;
    ci.local_protocol_name = "tipcast-bench";
    ci.iface = b->src[b->o.src_lo + (int)(c->idx % (uint32_t)(b->o.src_hi - b->o.src_lo + 1))];
    ci.opaque_user_data = c;
    ci.pwsi = &c->wsi;
    if (!lws_client_connect_via_info(&ci)) {
        /* The error callback may or may not have run: resolve once. */
        if (c->state == CS_CONNECTING) {
            resolve(b, c, CS_FAILED);
            b->r.conn_failed++;
            bench_error(b, "connect_failed");
        }
        c->wsi = NULL;
        return -1;
    }
    return 0;
}

static int writeable(struct bench *b, struct bconn *c);

void conn_want_write(struct bconn *c)
{
    if (c->raw)
        writeable(c->b, c); /* a raw connection's requests are queued by libuv: at once */
    else if (c->wsi)
        lws_callback_on_writable(c->wsi);
}

/* ---- What comes back -------------------------------------------------------- */

/* When the frame being handled came: read once, for its first answer or
 * delivery (the events of a batch arrived together). */
static uint64_t rx_now(struct bench *b)
{
    if (!b->rx_us)
        b->rx_us = wall_us();
    return b->rx_us;
}

static void on_delivery(struct bench *b, uint64_t sched_us, int own)
{
    if (sched_us < b->run_start_us)
        return; /* an event of an earlier run */
    uint64_t now = rx_now(b);
    uint64_t lat = now > sched_us ? now - sched_us : 0;
    if (own)
        b->r.delivered++;
    else
        b->r.delivered_foreign++;
    b->sec_deliveries++;
    hist_record(&b->sec_deliv, lat);
    if (b->measuring && sched_us >= b->measure_start_us) {
        b->r.deliveries_measured++;
        hist_record(&b->r.deliv, lat);
    }
    if (b->step_on && sched_us >= b->step_start_us)
        hist_record(&b->step_deliv, lat);
}

/* "t<usec>.<run id>": the combo of a gift the bench sent. */
static void on_combo(void *ctx, const char *s, size_t n)
{
    struct bench *b = ctx;
    if (n < 2 || s[0] != 't')
        return;
    uint64_t t = 0;
    size_t i = 1;
    unsigned digit;
    for (; i < n && (digit = (unsigned)(unsigned char)s[i] - '0') <= 9; i++)
        t = t * 10 + digit;
    if (i == 1)
        return;
    size_t idlen = b->run_id_len;
    int own = n - i == idlen + 1 && s[i] == '.' && memcmp(s + i + 1, b->o.run_id, idlen) == 0;
    on_delivery(b, t, own);
}

/* A gift's request id: "g<run id>-<scheduled usec>-<n>". Returns the
 * scheduled time, 0 when the id is not one of this run's gifts. */
static uint64_t gift_time(const struct bench *b, const char *id)
{
    size_t idlen = b->run_id_len;
    if (id[0] != 'g' || strncmp(id + 1, b->o.run_id, idlen) != 0 || id[1 + idlen] != '-')
        return 0;
    return strtoull(id + 2 + idlen, NULL, 10);
}

static void on_gift_answer(struct bench *b, struct bconn *c, uint64_t sched_us, const char *error_code)
{
    uint64_t now = rx_now(b);
    uint64_t lat = now > sched_us ? now - sched_us : 0;
    int in_step = b->step_on && sched_us >= b->step_start_us;
    b->answered++;
    if (in_step)
        b->step_answered++;
    if (error_code) {
        bench_error(b, error_code);
        if (in_step)
            b->step_errors++;
        return;
    }
    b->r.acked++;
    b->r.expected_deliveries += b->members[c->room];
    b->sec_acks++;
    hist_record(&b->sec_ack, lat);
    if (b->measuring && sched_us >= b->measure_start_us) {
        b->r.acks_measured++;
        hist_record(&b->r.ack, lat);
    }
    if (in_step)
        hist_record(&b->step_ack, lat);
}

static void handle_tipcast(struct bench *b, struct bconn *c, const uint8_t *buf, size_t len)
{
    struct wire_msg m;
    if (wire_read(b->o.json, buf, len, &m, on_combo, b) < 0) {
        bench_error(b, "bench_unreadable_frame");
        return;
    }
    char code[WIRE_CODE_MAX + 16];
    uint64_t t;
    switch (m.type) {
    case WIRE_WELCOME:
        if (c->state == CS_OPEN) {
            c->state = CS_AUTHED;
            b->r.conn_authed++;
            if (c->role == ROLE_FUNDER) {
                resolve(b, c, CS_READY);
            } else {
                c->want_join = 1;
                conn_want_write(c);
            }
        }
        break;
    case WIRE_JOINED:
        if (c->state == CS_AUTHED) {
            resolve(b, c, CS_READY);
            b->r.conn_joined++;
            b->members[c->room]++;
        }
        break;
    case WIRE_ACK:
        if ((t = gift_time(b, m.id)))
            on_gift_answer(b, c, t, NULL);
        else if (strncmp(m.id, "bench-fund-", 11) == 0)
            b->fund_answered++;
        break;
    case WIRE_ERROR:
        if ((t = gift_time(b, m.id))) {
            on_gift_answer(b, c, t, m.code[0] ? m.code : "error");
        } else if (strncmp(m.id, "bench-fund-", 11) == 0) {
            b->fund_answered++;
            snprintf(code, sizeof code, "fund_%s", m.code);
            bench_error(b, code);
        } else if (c->state == CS_AUTHED) {
            snprintf(code, sizeof code, "join_%s", m.code);
            bench_error(b, code);
            resolve(b, c, CS_FAILED);
            b->r.conn_failed++;
        } else {
            snprintf(code, sizeof code, "%s", m.code[0] ? m.code : "error");
            bench_error(b, code);
        }
        break;
    default:
        break; /* events were counted by on_combo; leaderboards etc. are not measured */
    }
}

static void handle_peer(struct bench *b, struct bconn *c, const uint8_t *buf, size_t len)
{
    if (c->role != ROLE_SUB || len < 16)
        return;
    uint64_t t = 0;
    for (int i = 0; i < 8; i++)
        t = t << 8 | buf[i];
    on_delivery(b, t, memcmp(buf + 8, b->tag, 8) == 0);
}

static void conn_received(struct bconn *c, const uint8_t *buf, size_t len)
{
    struct bench *b = c->b;
    b->rx_us = 0;
    if (bench_tipcast(b))
        handle_tipcast(b, c, buf, len);
    else
        handle_peer(b, c, buf, len);
}

static void receive(struct bench *b, struct bconn *c, struct lws *wsi, const uint8_t *in, size_t len)
{
    int first = lws_is_first_fragment(wsi);
    int last = lws_is_final_fragment(wsi) && lws_remaining_packet_payload(wsi) == 0;
    if (first && last) {
        conn_received(c, in, len); /* the usual case: no copy */
        return;
    }
    if (first) {
        c->rx_len = 0;
        c->rx_drop = 0;
    }
    if (!c->rx_drop && c->rx_len + len > BENCH_RX_MAX) {
        c->rx_drop = 1;
        bench_error(b, "bench_frame_too_big");
    }
    if (!c->rx_drop) {
        if (c->rx_len + len > c->rx_cap) {
            uint32_t cap = c->rx_cap ? c->rx_cap : 4096;
            while (cap < c->rx_len + len)
                cap *= 2;
            uint8_t *p = realloc(c->rx, cap);
            if (!p) {
                c->rx_drop = 1;
                bench_error(b, "bench_out_of_memory");
                return;
            }
            c->rx = p;
            c->rx_cap = cap;
        }
        memcpy(c->rx + c->rx_len, in, len);
        c->rx_len += (uint32_t)len;
    }
    if (last) {
        if (!c->rx_drop)
            conn_received(c, c->rx, c->rx_len);
        c->rx_len = 0;
        /* Thousands of idle connections should not each keep a buffer. */
        free(c->rx);
        c->rx = NULL;
        c->rx_cap = 0;
    }
}

/* ---- What goes out: one lws_write per WRITEABLE ------------------------------ */

/* Writes a request frame of wire.h and drops it. */
static int write_frame(struct bconn *c, struct frame *f)
{
    if (!f)
        return -1;
    int rc;
    if (c->raw) {
        rc = rawrx_send(c, f->fmt == FMT_JSON, frame_payload(f), f->len);
    } else {
        enum lws_write_protocol kind = f->fmt == FMT_JSON ? LWS_WRITE_TEXT : LWS_WRITE_BINARY;
        rc = lws_write(c->wsi, frame_payload(f), f->len, kind) < (int)f->len ? -1 : 0;
    }
    frame_unref(f);
    return rc;
}

/* A peer's frame: --frame-bytes, the scheduled time in the first 8 bytes,
 * the run's tag in the next 8. */
static int write_peer(struct bench *b, struct bconn *c, uint64_t t)
{
    size_t n = (size_t)b->o.frame_bytes;
    /* Written whole every time: lws masks a client frame in place. */
    uint8_t *p = b->payload + LWS_PRE;
    memset(p, 'x', n);
    memcpy(p + 8, b->tag, 8);
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(t >> (56 - 8 * i));
    if (c->raw)
        return rawrx_send(c, 0, p, n);
    return lws_write(c->wsi, p, n, LWS_WRITE_BINARY) < (int)n ? -1 : 0;
}

static int writeable(struct bench *b, struct bconn *c)
{
    char id[WIRE_ID_MAX + 1], room[80], user[24], combo[64];
    int rc = 0;
    room_name(b, c->room, room, sizeof room);
    if (c->want_join) {
        c->want_join = 0;
        rc = write_frame(c, wire_join(b->o.json, "j", room));
    } else if (c->role == ROLE_FUNDER) {
        if (b->phase != PH_FUND || b->fund_next >= b->nready)
            return 0;
        struct bconn *s = &b->c[b->ready[b->fund_next++]];
        snprintf(user, sizeof user, "bench-u%u", (unsigned)b->o.user_base + s->idx);
        snprintf(id, sizeof id, "bench-fund-%s-%s", user, b->o.run_id);
        rc = write_frame(c, wire_credit(b->o.json, id, user, BENCH_FUND_COINS));
        if (b->fund_next < b->nready)
            conn_want_write(c);
        return rc;
    } else if (c->qcount) {
        uint64_t t = c->q[c->qhead];
        c->qhead = (uint16_t)((c->qhead + 1) % BENCH_SENDQ);
        c->qcount--;
        if (bench_tipcast(b)) {
            snprintf(id, sizeof id, "g%s-%llu-%u", b->o.run_id, (unsigned long long)t, ++c->seq);
            snprintf(combo, sizeof combo, "t%llu.%s", (unsigned long long)t, b->o.run_id);
            rc = write_frame(c, wire_gift(b->o.json, id, room, b->o.gift, combo));
        } else {
            rc = write_peer(b, c, t);
            /* No acks from the peers: the send itself is the answer. */
            b->r.expected_deliveries += b->members[c->room];
        }
        if (rc == 0) {
            b->r.sent++;
            b->sec_sent++;
            if (b->step_on && t >= b->step_start_us)
                b->step_sent++;
        }
    }
    if (c->qcount)
        conn_want_write(c);
    return rc;
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
    struct bconn *c = lws_get_opaque_user_data(wsi);
    (void)user;
    if (!c)
        return 0;
    struct bench *b = c->b;
    switch (reason) {
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
        if (c->state == CS_CONNECTING) {
            resolve(b, c, CS_FAILED);
            b->r.conn_failed++;
            bench_error(b, "connect_failed");
        }
        c->wsi = NULL;
        return 0;
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        c->wsi = wsi;
        conn_established(c);
        return 0;
    case LWS_CALLBACK_CLIENT_RECEIVE:
        receive(b, c, wsi, in, len);
        return 0;
    case LWS_CALLBACK_CLIENT_WRITEABLE:
        return c->wsi ? writeable(b, c) : 0;
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        if (len >= 2)
            conn_peer_closed(c, ((const uint8_t *)in)[0] << 8 | ((const uint8_t *)in)[1]);
        return 0;
    case LWS_CALLBACK_CLIENT_CLOSED:
        c->wsi = NULL;
        conn_closed(c);
        return 0;
    default:
        return 0;
    }
}

static void conn_established(struct bconn *c)
{
    struct bench *b = c->b;
    c->state = CS_OPEN;
    b->r.conn_opened++;
    if (!bench_tipcast(b)) {
        resolve(b, c, CS_READY);
        if (c->role == ROLE_SUB)
            b->members[c->room]++;
    }
}

static void conn_peer_closed(struct bconn *c, int code)
{
    if (c->b->phase != PH_DONE) {
        char text[32];
        snprintf(text, sizeof text, "close_%d", code);
        bench_error(c->b, text);
    }
}

static void conn_closed(struct bconn *c)
{
    struct bench *b = c->b;
    if (c->state == CS_CONNECTING) { /* it never opened */
        resolve(b, c, CS_FAILED);
        b->r.conn_failed++;
        bench_error(b, "connect_failed");
    } else {
        if (c->state == CS_READY && (c->role == ROLE_SUB || bench_tipcast(b)) && c->role != ROLE_FUNDER)
            b->members[c->room]--;
        if (b->phase != PH_DONE) {
            b->r.conn_lost++;
            bench_error(b, "connection_lost");
        }
        resolve(b, c, CS_CLOSED);
    }
    free(c->rx);
    c->rx = NULL;
    c->rx_cap = c->rx_len = 0;
}

const struct lws_protocols *conn_protocols(void)
{
    static const struct lws_protocols protocols[] = {
        {"tipcast-bench", callback, 0, 0, 0, NULL, 0},
        {NULL, NULL, 0, 0, 0, NULL, 0},
    };
    return protocols;
}
