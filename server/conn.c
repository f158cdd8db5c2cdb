/* conn.c - the connection table and each connection's reads, writes and
 * timeouts (see conn.h). */
#include "conn.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "message.h"

_Static_assert(FRAME_PRE >= LWS_PRE, "frames need LWS_PRE bytes of headroom");

/* ---- The table ----------------------------------------------------------- */

static void sink_send(void *ctx, uint64_t id, struct frame *f)
{
    struct conn *c = conn_find(ctx, id);
    if (c)
        conn_send(c, f);
    else
        frame_unref(f); /* gone meanwhile */
}

int conns_init(struct conns *t, const struct config *cfg, const struct conn_hooks *hooks)
{
    memset(t, 0, sizeof *t);
    t->cfg = cfg;
    t->hooks = *hooks;
    t->sink = (struct reply_sink){sink_send, t};
    t->cap = (uint32_t)cfg->max_connections;
    t->slots = calloc(t->cap, sizeof *t->slots);
    t->free_slots = malloc(sizeof *t->free_slots * t->cap);
    if (!t->slots || !t->free_slots) {
        conns_free(t);
        return -1;
    }
    /* Lowest slots first, so the sweep walks a dense prefix. */
    for (uint32_t i = 0; i < t->cap; i++)
        t->free_slots[i] = t->cap - 1 - i;
    t->nfree = t->cap;
    histogram_init_latency(&t->stats.delivery);
    return 0;
}

void conns_free(struct conns *t)
{
    free(t->slots);
    free(t->free_slots);
    t->slots = NULL;
    t->free_slots = NULL;
    t->cap = t->nfree = t->high = 0;
}

struct conn *conn_find(struct conns *t, uint64_t id)
{
    uint32_t slot = (uint32_t)(id & 0xffffffffu);
    if (slot >= t->cap || !t->slots[slot] || t->slots[slot]->id != id)
        return NULL;
    return t->slots[slot];
}

void conn_reply(const struct conn *c, const char *id, struct reply *r)
{
    r->sink = &c->t->sink;
    r->conn = c->id;
    r->fmt = c->fmt;
    size_t n = id ? strlen(id) : 0;
    tc_assert(n <= REPLY_ID_MAX);
    memcpy(r->id, id ? id : "", n + 1);
    r->rx_us = c->rx_us;
}

/* The codes of RFC 6455 and ours (conn.h, docs/protocol.md) that clients
 * and operators meet; the order is that of the metrics page. */
static const int close_codes[CONN_CLOSE_CODES] = {
    1000, 1001, 1002, 1003, 1005, 1006, 1007, 1008, 1009, 1011, 1013,
    CLOSE_AUTH_TIMEOUT, CLOSE_AUTH_FAILED, CLOSE_FLOOD, CLOSE_SLOW_CONSUMER, CLOSE_IDLE, CLOSE_TOO_MANY,
    4000,
};

int conn_close_code_at(int i)
{
    tc_assert(i >= 0 && i < CONN_CLOSE_CODES);
    return close_codes[i];
}

static void count_close(struct conns *t, int code)
{
    int i = 0;
    while (i < CONN_CLOSE_CODES && close_codes[i] != code)
        i++;
    t->stats.closes[i]++;
}

/* ---- Writing ------------------------------------------------------------ */

static int send_close(struct conn *c);

/* Asks lws for WRITEABLE once until it comes: under libuv each ask
 * restarts the socket's poll (an epoll_ctl DEL now and an ADD at the next
 * poll), which a connection that waits long, like a stalled one, would
 * otherwise pay again at every frame or ping meant for it. lws keeps POLLOUT
 * armed until it calls WRITEABLE. */
static void want_write(struct conn *c)
{
    if (c->write_asked)
        return;
    c->write_asked = 1;
    lws_callback_on_writable(c->wsi);
}

/* After a write: a socket that could not take all of it (lws keeps the
 * remainder and writes it itself as the socket drains) makes the
 * connection stalled, from the first such write until WRITEABLE. */
static void note_stall(struct conn *c)
{
    if (!c->stalled_ms && lws_partial_buffered(c->wsi))
        c->stalled_ms = clock_mono_ms();
}

/* A frame may go out at once, without waiting for WRITEABLE, when nothing
 * is ahead of it: no reply of ours queued, no remainder of an earlier frame
 * held by lws, no close under way. Writing at once saves the WRITEABLE
 * cycle, whose arming and disarming of POLLOUT (epoll_ctl, twice) costs as
 * much as the write itself (docs/architecture.md). */
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
    int n = lws_write(c->wsi, frame_payload(f), f->len, wp);
    if (n < (int)f->len)
        return -1;
    c->bytes_out += f->len;
    note_stall(c);
    return 0;
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
 * time, which the pong brings back. The payload is ASCII digits: browsers
 * echo it, and lws checks the pong of a connection that has carried text
 * as UTF-8 (raw clock bytes got browsers closed with 1007). */
static int write_ping(struct conn *c)
{
    uint8_t ping[LWS_PRE + 24];
    int n = snprintf((char *)ping + LWS_PRE, sizeof ping - LWS_PRE, "%lld", (long long)clock_mono_ms());
    tc_assert(n > 0 && (size_t)n < sizeof ping - LWS_PRE);
    c->ping_due = 0;
    if (lws_write(c->wsi, ping + LWS_PRE, (size_t)n, LWS_WRITE_PING) < 0)
        return -1;
    note_stall(c);
    return 0;
}

/* The frame membership m is sent next: its events from next_seq (one, or a
 * batch of those pending), with the room's leaderboard push `board` (may be
 * NULL) in the same frame; next_seq moves past them. *f is NULL when there
 * is nothing to send; *ev the frame's oldest event (NULL for the push
 * alone). Returns 0, or -1 when out of memory. */
static int next_room_frame(struct conn *c, struct membership *m, struct frame *board, struct frame **f,
                           struct ring_event **ev)
{
    struct ring_event *last = NULL;
    *ev = ring_next(m->ring, m->next_seq);
    *f = NULL;
    if (*ev) {
        *f = ring_frame_from(m->ring, *ev, c->fmt, &last, board);
        if (!*f)
            return -1;
        m->next_seq = last->seq + 1;
        m->sent_cum = last->cum[c->fmt];
    } else if (board) {
        *f = frame_ref(board);
    }
    return 0;
}

/* One clock reading per frame written, beside its send(): the latency of
 * the oldest event it carries. */
static void note_delivery(struct conn *c, int64_t rx_us)
{
    histogram_observe(&c->t->stats.delivery, clock_mono_us() - rx_us);
}

/* Writes membership m its next room frame (next_room_frame). Returns 0, or
 * -1 when out of memory or the write failed. */
static int write_room_frame(struct conn *c, struct membership *m, struct frame *board)
{
    struct frame *f;
    struct ring_event *ev;
    if (next_room_frame(c, m, board, &f, &ev) < 0)
        return -1;
    if (!f)
        return 0;
    int rc = write_frame(c, f);
    frame_unref(f);
    if (rc == 0 && ev)
        note_delivery(c, ev->rx_us);
    return rc;
}

size_t conn_backlog(const struct conn *c)
{
    size_t n = c->outq_bytes;
    for (int i = 0; i < c->nrooms; i++) {
        const struct membership *m = &c->rooms[i];
        if (m->state == MEMBER_LIVE)
            n += m->ring->cum[c->fmt] - m->sent_cum;
    }
    return n;
}

/* The slow-consumer rule, checked when the connection is about to be sent
 * room events and by the sweep while it is stalled (never per event and
 * member, which cost a room of thousands a walk per event): it has lost
 * events to a room's ring, or its unsent backlog passed max-queued-bytes. */
static int is_slow(const struct conn *c)
{
    for (int i = 0; i < c->nrooms; i++) {
        const struct membership *m = &c->rooms[i];
        if (m->state == MEMBER_LIVE && ring_lost(m->ring, m->next_seq))
            return 1;
    }
    return conn_backlog(c) > (size_t)c->t->cfg->max_queued_bytes;
}

static void outq_clear(struct conn *c)
{
    while (c->outq_count) {
        frame_unref(c->outq[c->outq_head]);
        c->outq_head = (c->outq_head + 1) % c->outq_cap;
        c->outq_count--;
    }
    c->t->queued_bytes -= c->outq_bytes;
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
    if (conn_backlog(c) + f->len > (size_t)c->t->cfg->max_queued_bytes ||
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
    tc_assert(c->outq_count < c->outq_cap);
    c->outq[(c->outq_head + c->outq_count) % c->outq_cap] = f;
    c->outq_count++;
    c->outq_bytes += f->len;
    c->t->queued_bytes += f->len;
    want_write(c);
}

void conn_send_error(struct conn *c, const char *id, enum err code, const char *text, const char *field,
                     int64_t extra)
{
    conn_send(c, message_error(c->fmt, id, code, text, field, extra));
}

int conn_deliver_prepare(struct conn *c, struct membership *m, struct frame *board, struct conn_write *w,
                         struct send_job *j)
{
    tc_assert(m->state == MEMBER_LIVE);
    if (!c->close_code && is_slow(c)) {
        conn_close(c, CLOSE_SLOW_CONSUMER, "slow consumer", 1);
        return 0;
    }
    if (!can_write_now(c)) {
        if (board)
            conn_send(c, frame_ref(board));
        want_write(c);
        return 0;
    }
    if (lws_is_ssl(c->wsi)) { /* written through lws's TLS, here */
        if (write_room_frame(c, m, board) < 0)
            write_failed(c);
        else if (m->ring->last_seq >= m->next_seq)
            want_write(c);
        return 0;
    }
    struct frame *f;
    struct ring_event *ev;
    if (next_room_frame(c, m, board, &f, &ev) < 0) {
        write_failed(c);
        return 0;
    }
    if (!f)
        return 0;
    uint8_t *start;
    j->len = frame_wire(f, &start);
    j->bytes = start;
    j->fd = (int)lws_get_socket_fd(c->wsi);
    j->sent = 0;
    w->c = c;
    w->m = m;
    w->f = f;
    w->rx_us = ev ? ev->rx_us : 0;
    return 1;
}

/* The part of a room frame the socket did not take, handed to lws, which
 * writes it at WRITEABLE (the connection is stalled now): a copy of its
 * own, as a raw write, since lws may use the headroom in front of what it
 * is given and the frame's is shared. Returns 0, or -1. */
static int hand_rest(struct conn *c, enum fmt fmt, const uint8_t *bytes, size_t len)
{
    struct frame *tail = frame_new(fmt, len);
    if (!tail)
        return -1;
    memcpy(frame_payload(tail), bytes, len);
    tail->len = (uint32_t)len;
    tail->wire = 1;
    int rc = write_frame(c, tail);
    frame_unref(tail);
    return rc;
}

void conn_deliver_finish(struct conn_write *w, const struct send_job *j)
{
    struct conn *c = w->c;
    int rc = j->sent < 0 ? -1 : 0;
    if (rc == 0) {
        c->bytes_out += (uint64_t)j->sent;
        if ((size_t)j->sent < j->len)
            rc = hand_rest(c, (enum fmt)w->f->fmt, j->bytes + j->sent, j->len - (size_t)j->sent);
    }
    frame_unref(w->f);
    w->f = NULL;
    if (rc < 0) {
        write_failed(c);
        return;
    }
    if (w->rx_us)
        note_delivery(c, w->rx_us);
    if (w->m->ring->last_seq >= w->m->next_seq)
        want_write(c);
}

void conn_close(struct conn *c, int code, const char *reason, int drop)
{
    if (c->close_code)
        return;
    c->close_code = code;
    c->close_reason = reason;
    if (code == CLOSE_SLOW_CONSUMER)
        c->t->stats.slow_consumer++;
    if (drop) {
        outq_clear(c);
        if (c->nrooms)
            c->t->hooks.on_leave_all(c->t->hooks.ctx, c);
        tc_assert(c->nrooms == 0);
    }
    /* A client that reads nothing never makes the socket writeable again:
     * the sweep drops it if the close frame cannot go out within a few
     * seconds (not lws_set_timeout: see CONN_SWEEP_DROPS). */
    c->close_ms = clock_mono_ms();
    if (drop && lws_partial_buffered(c->wsi)) {
        /* Stalled: WRITEABLE would come only once lws has written the
         * remainder it holds. The close goes behind that remainder now (lws
         * appends it), with nothing else queued, so a client that reads
         * again within CONN_CLOSE_ACK_S gets the rest of the frame in
         * flight and then the close. */
        if (send_close(c) < 0)
            lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
        return;
    }
    want_write(c);
}

/* ---- The request rate ------------------------------------------------------ */

int conn_admit(struct conn *c, const char *id)
{
    const struct config *cfg = c->t->cfg;
    int64_t now = clock_mono_ms();
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
    conn_send_error(c, id, ERR_RATE_LIMITED, "too many messages; slow down", NULL, wait_ms);
    return 0;
}

/* ---- lws events --------------------------------------------------------- */

int conn_opened(struct conns *t, struct conn *c, struct lws *wsi, enum fmt fmt)
{
    memset(c, 0, sizeof *c);
    c->t = t;
    c->wsi = wsi;
    c->fmt = fmt;
    if (t->nfree == 0 || t->stopping) {
        static const char reason[] = "server full";
        lws_close_reason(wsi, (enum lws_close_status)1013 /* try again later */, (unsigned char *)reason,
                         sizeof reason - 1);
        t->stats.refused++;
        return -1;
    }
    t->stats.opened++;
    c->slot = t->free_slots[--t->nfree];
    c->id = (++t->serial << 32) | c->slot;
    if (c->slot >= t->high)
        t->high = c->slot + 1;
    tc_assert(!t->slots[c->slot]);
    t->slots[c->slot] = c;
    t->count++;

    int64_t now = clock_mono_ms();
    c->opened_ms = c->last_ping_ms = c->bucket_ms = now;
    c->rx_us = now * 1000;
    c->flood_window_ms = now;
    c->tokens = t->cfg->max_burst;
    int fd = lws_get_socket_fd(wsi);
    if (t->cfg->sndbuf_bytes > 0 && fd >= 0) {
        int v = t->cfg->sndbuf_bytes;
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, sizeof v);
    }
    /* The kernel then takes no more than about this much that the network
     * has not taken yet, whatever the buffer grew to: a client that stops
     * reading fills it within moments, and is stalled (skipped by its
     * rooms) instead of being sent megabytes it will never read. */
    if (t->cfg->max_unsent_bytes > 0 && fd >= 0) {
        int v = t->cfg->max_unsent_bytes;
        setsockopt(fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &v, sizeof v);
    }
    t->hooks.on_open(t->hooks.ctx, c);
    return 0;
}

int conn_receive(struct conn *c, const void *in, size_t len)
{
    struct lws *wsi = c->wsi;
    size_t max = (size_t)c->t->cfg->max_frame_bytes;
    int first = lws_is_first_fragment(wsi);
    int last = lws_is_final_fragment(wsi) && lws_remaining_packet_payload(wsi) == 0;

    /* One clock reading: the idle timer's and the ack latency's start. */
    c->rx_us = clock_mono_us();
    c->bytes_in += len;
    if (c->close_code)
        return 0; /* closing: what it says no longer matters */
    if (first)
        c->rx_len = 0;
    /* The frame header declares its length: a frame that will pass the
     * bound is refused on its first bytes, not after they all came. */
    if (c->rx_len + len + lws_remaining_packet_payload(wsi) > max) {
        static const char reason[] = "message too big";
        lws_close_reason(wsi, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, (unsigned char *)reason, sizeof reason - 1);
        c->close_code = LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE; /* for the close line */
        c->close_reason = reason;
        return -1;
    }
    if (first && last) {
        /* The whole message in one piece, the usual case: no copy. */
        c->t->hooks.on_message(c->t->hooks.ctx, c, lws_frame_is_binary(wsi), in, len);
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
        c->rx_cap = (uint32_t)cap;
    }
    if (len)
        memcpy(c->rx + c->rx_len, in, len);
    c->rx_len += (uint32_t)len;
    if (last) {
        c->t->hooks.on_message(c->t->hooks.ctx, c, lws_frame_is_binary(wsi), c->rx, c->rx_len);
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

void conn_pong(struct conn *c) { c->rx_us = clock_mono_us(); }

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
    c->close_ms = clock_mono_ms();
    return 0;
}

int conn_peer_closed(struct conn *c, const void *in, size_t len)
{
    const uint8_t *p = in;
    c->peer_close_code = len >= 2 ? (uint16_t)(p[0] << 8 | p[1]) : LWS_CLOSE_STATUS_NO_STATUS;
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
        if (m->state == MEMBER_LIVE && m->ring->last_seq >= m->next_seq)
            return 1;
    }
    return 0;
}

int conn_writeable(struct conn *c)
{
    c->write_asked = 0;
    /* lws calls WRITEABLE only once it has written every byte it held: a
     * stalled connection is drained, and its rooms serve it again (those
     * that lost events to their ring close it as slow, below). */
    if (c->stalled_ms) {
        c->stalled_ms = 0;
        if (!c->close_code && is_slow(c))
            conn_close(c, CLOSE_SLOW_CONSUMER, "slow consumer", 1);
        else if (c->nrooms)
            c->t->hooks.on_resume(c->t->hooks.ctx, c);
    }
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
        c->t->queued_bytes -= f->len;
        int rc = write_frame(c, f);
        frame_unref(f);
        if (rc < 0)
            return -1;
    } else if (c->close_code) {
        return send_close(c);
    } else {
        for (int k = 0; k < c->nrooms; k++) {
            int i = (c->rr + k) % c->nrooms;
            struct membership *m = &c->rooms[i];
            if (m->state != MEMBER_LIVE || m->ring->last_seq < m->next_seq)
                continue;
            c->rr = (uint16_t)(i + 1);
            if (is_slow(c)) {
                conn_close(c, CLOSE_SLOW_CONSUMER, "slow consumer", 1);
                return send_close(c);
            }
            if (write_room_frame(c, m, NULL) < 0)
                return -1;
            break;
        }
    }
    if (has_pending(c))
        want_write(c);
    return 0;
}

int conn_end_code(const struct conn *c, const char **by)
{
    if (c->close_reason) {
        *by = "server";
        return c->close_code;
    }
    if (c->peer_close_code) {
        *by = "client";
        return c->peer_close_code;
    }
    /* A write that failed (close_code 1006 without a reason) or a
     * connection that ended without a close frame. */
    *by = "network";
    return LWS_CLOSE_STATUS_ABNORMAL_CLOSE;
}

void conn_closed(struct conn *c)
{
    if (!c->id)
        return; /* refused in conn_opened before it had a slot */
    struct conns *t = c->t;
    t->hooks.on_closed(t->hooks.ctx, c);
    if (c->nrooms)
        t->hooks.on_leave_all(t->hooks.ctx, c);
    tc_assert(c->nrooms == 0);
    const char *by;
    count_close(t, conn_end_code(c, &by));
    outq_clear(c);
    free(c->outq);
    free(c->rooms);
    free(c->rx);
    free(c->dev);
    c->dev = NULL;
    tc_assert(t->slots[c->slot] == c && t->count > 0);
    t->slots[c->slot] = NULL;
    t->free_slots[t->nfree++] = c->slot;
    t->count--;
    c->id = 0;
}

void conns_sweep(struct conns *t, int64_t now)
{
    const struct config *cfg = t->cfg;
    int drops = 0;
    for (uint32_t s = 0; s < t->high; s++) {
        struct conn *c = t->slots[s];
        if (!c)
            continue;
        if (c->close_code) {
            /* Our close not taken or not answered in time: dropped without
             * more ado (lws then treats the socket as unusable). */
            if (c->close_ms && now - c->close_ms >= CONN_CLOSE_ACK_S * 1000 && drops < CONN_SWEEP_DROPS) {
                c->close_ms = 0;
                lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
                drops++;
            }
            continue;
        }
        if (!c->authed) {
            if (now - c->opened_ms >= cfg->auth_timeout_ms)
                conn_close(c, CLOSE_AUTH_TIMEOUT, "authentication timeout", 1);
            continue;
        }
        /* A stalled connection costs its rooms nothing (they skip it), so
         * the rules that other members meet as they are sent events are
         * applied to it here: the rooms may have dropped what it has not
         * been sent, and a client that has not read for slow-consumer-ms is
         * told so rather than held on to. */
        if (c->stalled_ms && (now - c->stalled_ms >= cfg->slow_consumer_ms || is_slow(c))) {
            conn_close(c, CLOSE_SLOW_CONSUMER, "slow consumer", 1);
            continue;
        }
        if (now - c->rx_us / 1000 >= (int64_t)cfg->idle_timeout_s * 1000) {
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

void conns_close_all(struct conns *t)
{
    t->stopping = 1;
    for (uint32_t s = 0; s < t->high; s++)
        if (t->slots[s])
            conn_close(t->slots[s], LWS_CLOSE_STATUS_GOINGAWAY, "server shutting down", 1);
}
