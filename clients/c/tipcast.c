/* tipcast.c - libtipcast's client: the connection and its reconnects, the
 * requests and their replies, the rooms and their seq order (the contract
 * is in libtipcast.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <libwebsockets.h>

#include "libtipcast.h"

#define SUBPROTOCOL "tipcast.v1.msgpack"
#define TICK_US (50 * 1000)
#define HISTORY_RETRY_MS 250

enum req_kind { REQ_USER, REQ_ROOM_JOIN, REQ_ROOM_HISTORY, REQ_AUTH };

struct req {
    struct req *next;
    char id[TC_ID_MAX + 1];
    enum req_kind kind;
    int money;
    int sent;              /* on the current connection */
    int user_join;         /* a tc_join(): its reply also tracks the room */
    int failing;           /* to be answered "closed" (lost()) */
    unsigned char *frame;  /* the encoded request, sent again as it is */
    size_t len;
    int64_t deadline_ms;   /* answered "timeout" (or its last error) at this time */
    int64_t resend_at_ms;  /* money: sent again at this time (0: not waiting) */
    char room[TC_ID_MAX + 1];
    tc_reply_cb cb;
    void *ud;
};

/* An event that came ahead of its turn, kept encoded until the gap closes. */
struct pend {
    int64_t seq;
    unsigned char *bytes;
    size_t len;
};

struct room {
    struct room *next;
    char name[TC_ID_MAX + 1];
    int64_t last;     /* the last seq delivered; -1 before the first snapshot */
    int64_t known;    /* the highest seq known to exist */
    int joined;       /* a join was answered on the current connection */
    int fresh;        /* the next snapshot starts over (history_gone) */
    int fetching;     /* a history request is out */
    int gone;         /* left: freed at the next tick */
    int64_t retry_at; /* no history request before this time */
    struct pend *pend;
    size_t npend;
};

struct outframe {
    struct outframe *next;
    size_t len;
    unsigned char buf[]; /* LWS_PRE bytes, then the frame */
};

struct tc_client {
    struct tc_config cfg;
    char *url_host, *url_path, *token;
    int url_port, url_tls;
    struct lws_context *ctx;
    struct lws *wsi;
    lws_sorted_usec_list_t tick;
    enum tc_state state;
    enum tc_close_reason close_reason;
    char close_code[32];
    int ever_open;
    int attempt;
    int64_t reconnect_at;   /* 0: none due */
    int64_t connect_started;
    int closing;            /* close the socket at the next writeable */
    int stop;
    int freeing;
    int peer_close_code;
    int auth_failed;
    struct req *reqs, **reqs_tail;
    struct outframe *outq, **outq_tail;
    struct room *rooms;
    unsigned char *rx;
    size_t rx_len, rx_cap;
    uint64_t id_counter;
    int in_connect;   /* inside lws_client_connect_via_info() */
    unsigned losses;  /* lost() calls, to tell whether one happened */
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t rand64(void)
{
    uint64_t v = 0;
    if (getrandom(&v, sizeof v, 0) != (ssize_t)sizeof v) /* fall back on the clock: ids stay unique by counter */
        v = (uint64_t)now_ms() * 6364136223846793005ull + (uint64_t)clock();
    return v;
}

static void copy_id(char *dst, const char *src, size_t len)
{
    if (len > TC_ID_MAX)
        len = TC_ID_MAX;
    memcpy(dst, src, len);
    dst[len] = '\0';
}

static void set_state(tc_client *c, enum tc_state st, int delay_ms)
{
    if (c->state == st && st != TC_RECONNECTING)
        return;
    c->state = st;
    if (c->cfg.on_state && !c->freeing)
        c->cfg.on_state(c, st, c->attempt, delay_ms, c->cfg.ud);
}

/* ---- Encoding requests ---------------------------------------------------------- */

struct kv {
    const char *key;
    const char *s; /* a string value, or NULL for the integer */
    int64_t i;
};

static int encode(const char *type, const char *id, const struct kv *kv, int n, unsigned char **out, size_t *len)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, (size_t)n + 2);
    msgpack_pack_str_with_body(&pk, "type", 4);
    msgpack_pack_str_with_body(&pk, type, strlen(type));
    msgpack_pack_str_with_body(&pk, "id", 2);
    msgpack_pack_str_with_body(&pk, id, strlen(id));
    for (int i = 0; i < n; i++) {
        msgpack_pack_str_with_body(&pk, kv[i].key, strlen(kv[i].key));
        if (kv[i].s)
            msgpack_pack_str_with_body(&pk, kv[i].s, strlen(kv[i].s));
        else
            msgpack_pack_int64(&pk, kv[i].i);
    }
    if (!sb.data) {
        msgpack_sbuffer_destroy(&sb);
        return -1;
    }
    *out = (unsigned char *)sb.data; /* the sbuffer's malloc'd data is ours now */
    *len = sb.size;
    return 0;
}

/* ---- The outgoing queue ------------------------------------------------------------ */

static void push_frame(tc_client *c, const unsigned char *data, size_t len)
{
    if (!c->wsi)
        return;
    struct outframe *f = malloc(sizeof *f + LWS_PRE + len);
    if (!f)
        return; /* the request's timeout answers it */
    f->next = NULL;
    f->len = len;
    memcpy(f->buf + LWS_PRE, data, len);
    *c->outq_tail = f;
    c->outq_tail = &f->next;
    lws_callback_on_writable(c->wsi);
}

static void clear_outq(tc_client *c)
{
    while (c->outq) {
        struct outframe *f = c->outq;
        c->outq = f->next;
        free(f);
    }
    c->outq_tail = &c->outq;
}

/* ---- Requests ----------------------------------------------------------------------- */

static void unlink_req(tc_client *c, struct req *r)
{
    struct req **pp = &c->reqs;
    while (*pp && *pp != r)
        pp = &(*pp)->next;
    if (*pp)
        *pp = r->next;
    c->reqs_tail = &c->reqs;
    while (*c->reqs_tail)
        c->reqs_tail = &(*c->reqs_tail)->next;
}

static void free_req(struct req *r)
{
    free(r->frame);
    free(r);
}

/* Unlinks r, then answers it: the callback may add or end other requests. */
static void finish_req(tc_client *c, struct req *r, const tc_msg *msg, const char *code)
{
    unlink_req(c, r);
    if (r->cb && !c->freeing)
        r->cb(c, msg, code, r->ud);
    free_req(r);
}

static struct req *find_req(tc_client *c, const char *id, size_t len)
{
    for (struct req *r = c->reqs; r; r = r->next)
        if (strlen(r->id) == len && memcmp(r->id, id, len) == 0)
            return r;
    return NULL;
}

static void send_req(tc_client *c, struct req *r)
{
    if (c->state != TC_OPEN && r->kind != REQ_AUTH)
        return;
    r->sent = 1;
    push_frame(c, r->frame, r->len);
}

static struct req *add_req(tc_client *c, enum req_kind kind, const char *type, const char *id, const struct kv *kv,
                           int n, tc_reply_cb cb, void *ud)
{
    char fresh[TC_ID_MAX + 1];
    if (!id) {
        tc_client_new_id(c, type, fresh, sizeof fresh);
        id = fresh;
    }
    if (strlen(id) == 0 || strlen(id) > TC_ID_MAX)
        return NULL;
    for (int i = 0; i < n; i++)
        if (kv[i].s && strlen(kv[i].s) > 1024) /* far past every text limit: refuse before the server must */
            return NULL;
    struct req *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    if (encode(type, id, kv, n, &r->frame, &r->len) < 0) {
        free(r);
        return NULL;
    }
    snprintf(r->id, sizeof r->id, "%s", id);
    r->kind = kind;
    r->cb = cb;
    r->ud = ud;
    r->deadline_ms = now_ms() + c->cfg.request_timeout_ms;
    *c->reqs_tail = r;
    c->reqs_tail = &r->next;
    send_req(c, r);
    return r;
}

/* ---- Rooms ---------------------------------------------------------------------------- */

static struct room *find_room(tc_client *c, const char *name, size_t len)
{
    for (struct room *rm = c->rooms; rm; rm = rm->next)
        if (!rm->gone && strlen(rm->name) == len && memcmp(rm->name, name, len) == 0)
            return rm;
    return NULL;
}

static struct room *track_room(tc_client *c, const char *name)
{
    struct room *rm = find_room(c, name, strlen(name));
    if (rm)
        return rm;
    rm = calloc(1, sizeof *rm);
    if (!rm)
        return NULL;
    snprintf(rm->name, sizeof rm->name, "%s", name);
    rm->last = -1;
    rm->known = -1;
    rm->next = c->rooms;
    c->rooms = rm;
    return rm;
}

static void clear_pend(struct room *rm)
{
    for (size_t i = 0; i < rm->npend; i++)
        free(rm->pend[i].bytes);
    free(rm->pend);
    rm->pend = NULL;
    rm->npend = 0;
}

static void drop_pend_upto(struct room *rm, int64_t seq)
{
    size_t k = 0;
    while (k < rm->npend && rm->pend[k].seq <= seq)
        free(rm->pend[k++].bytes);
    if (!k)
        return; /* also: pend may be NULL, which memmove must not get */
    memmove(rm->pend, rm->pend + k, (rm->npend - k) * sizeof *rm->pend);
    rm->npend -= k;
}

/* Keeps an event that came ahead of its turn (sorted by seq, no duplicates). */
static void pend_add(struct room *rm, int64_t seq, const msgpack_object *ev)
{
    size_t i = 0;
    while (i < rm->npend && rm->pend[i].seq < seq)
        i++;
    if (i < rm->npend && rm->pend[i].seq == seq)
        return;
    if (rm->npend >= TC_PENDING_MAX) {
        /* Too far ahead: forget the newest; history brings them again. */
        if (i == rm->npend)
            return;
        free(rm->pend[--rm->npend].bytes);
    }
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_object(&pk, *ev);
    if (!sb.data)
        return;
    struct pend *np = realloc(rm->pend, (rm->npend + 1) * sizeof *np);
    if (!np) {
        msgpack_sbuffer_destroy(&sb);
        return;
    }
    rm->pend = np;
    memmove(rm->pend + i + 1, rm->pend + i, (rm->npend - i) * sizeof *np);
    rm->pend[i].seq = seq;
    rm->pend[i].bytes = (unsigned char *)sb.data;
    rm->pend[i].len = sb.size;
    rm->npend++;
}

static void room_history(tc_client *c, struct room *rm);

/* Delivers what is in order, then asks for what is missing. */
static void room_drain(tc_client *c, struct room *rm)
{
    if (rm->last < 0)
        return;
    drop_pend_upto(rm, rm->last);
    while (rm->npend && rm->pend[0].seq == rm->last + 1 && !rm->gone) {
        struct pend p = rm->pend[0];
        memmove(rm->pend, rm->pend + 1, (rm->npend - 1) * sizeof *rm->pend);
        rm->npend--;
        rm->last = p.seq;
        tc_frame f;
        if (tc_frame_decode(p.bytes, p.len, &f) == 0) {
            if (c->cfg.on_event && !c->freeing)
                c->cfg.on_event(c, &f.msg, c->cfg.ud);
            tc_frame_release(&f);
        }
        free(p.bytes);
    }
    if (rm->npend && rm->pend[rm->npend - 1].seq > rm->known)
        rm->known = rm->pend[rm->npend - 1].seq;
    if (rm->known > rm->last)
        room_history(c, rm);
}

static void room_history(tc_client *c, struct room *rm)
{
    if (rm->fetching || !rm->joined || rm->gone || c->state != TC_OPEN || now_ms() < rm->retry_at)
        return;
    struct kv kv[2] = {{"room", rm->name, 0}, {"after_seq", NULL, rm->last}};
    struct req *r = add_req(c, REQ_ROOM_HISTORY, "history", NULL, kv, 2, NULL, NULL);
    if (!r)
        return;
    snprintf(r->room, sizeof r->room, "%s", rm->name);
    rm->fetching = 1;
}

static void room_event(tc_client *c, struct room *rm, const msgpack_object *ev)
{
    tc_msg m = {ev};
    int64_t seq;
    if (!tc_msg_int(&m, "seq", &seq) || rm->gone)
        return;
    if (rm->last >= 0 && seq <= rm->last)
        return; /* delivered already */
    if (seq > rm->known)
        rm->known = seq;
    if (rm->last >= 0 && seq == rm->last + 1 && rm->npend == 0) {
        rm->last = seq; /* the common case: in order, nothing waiting */
        if (c->cfg.on_event && !c->freeing)
            c->cfg.on_event(c, &m, c->cfg.ud);
        return;
    }
    pend_add(rm, seq, ev);
}

static void room_events(tc_client *c, struct room *rm, tc_msg list)
{
    size_t n = tc_msg_len(list);
    for (size_t i = 0; i < n; i++) {
        tc_msg e = tc_msg_at(list, i);
        room_event(c, rm, e.obj);
    }
}

static void room_joined(tc_client *c, struct room *rm, const tc_msg *msg)
{
    int64_t seq = tc_msg_int_or(msg, "seq", 0);
    int reset = rm->fresh;
    rm->joined = 1;
    if (rm->last < 0 || rm->fresh) {
        rm->last = seq; /* a new snapshot: events from here on */
        rm->fresh = 0;
        if (seq > rm->known)
            rm->known = seq;
        drop_pend_upto(rm, seq);
    } else {
        if (seq > rm->known)
            rm->known = seq;
        room_events(c, rm, tc_msg_get(msg, "events"));
    }
    if (c->cfg.on_snapshot && !c->freeing)
        c->cfg.on_snapshot(c, msg, reset, c->cfg.ud);
    room_drain(c, rm);
}

static void room_join(tc_client *c, struct room *rm)
{
    struct kv kv[1] = {{"room", rm->name, 0}};
    struct req *r = add_req(c, REQ_ROOM_JOIN, "join", NULL, kv, 1, NULL, NULL);
    if (r)
        snprintf(r->room, sizeof r->room, "%s", rm->name);
}

/* ---- Replies -------------------------------------------------------------------------- */

static int retryable(const char *code, size_t n)
{
    static const char *const codes[] = {"unavailable", "backlogged", "risk_rate_limited", "rate_limited"};
    for (size_t i = 0; i < sizeof codes / sizeof *codes; i++)
        if (strlen(codes[i]) == n && memcmp(codes[i], code, n) == 0)
            return 1;
    return 0;
}

static void on_reply(tc_client *c, struct req *r, const tc_msg *msg)
{
    int is_error = tc_msg_is(msg, "type", "error");
    size_t clen = 0;
    const char *code = is_error ? tc_msg_str(msg, "code", &clen) : NULL;
    char codebuf[64] = "error";
    if (code)
        copy_id(codebuf, code, clen < sizeof codebuf - 1 ? clen : sizeof codebuf - 1);
    struct room *rm = r->room[0] ? find_room(c, r->room, strlen(r->room)) : NULL;

    if (r->kind == REQ_AUTH) {
        if (is_error) {
            snprintf(c->close_code, sizeof c->close_code, "%s", codebuf);
            c->auth_failed = 1;
        }
        unlink_req(c, r);
        free_req(r);
        return;
    }
    if (r->kind == REQ_ROOM_HISTORY) {
        unlink_req(c, r);
        free_req(r);
        if (!rm)
            return;
        rm->fetching = 0;
        if (is_error) {
            if (tc_msg_is(msg, "code", "history_gone")) {
                rm->fresh = 1;
                clear_pend(rm);
                room_join(c, rm);
            } else {
                rm->retry_at = now_ms() + tc_msg_int_or(msg, "retry_after_ms", HISTORY_RETRY_MS);
            }
            return;
        }
        int64_t before = rm->last, seq;
        if (tc_msg_int(msg, "seq", &seq) && seq > rm->known)
            rm->known = seq;
        room_events(c, rm, tc_msg_get(msg, "events"));
        drop_pend_upto(rm, rm->last);
        size_t pbefore = rm->npend;
        room_drain(c, rm);
        /* A reply that brought nothing new: wait a moment before asking again,
         * rather than asking in a loop (the node may be a few ms behind Redis). */
        if (rm->last == before && rm->npend == pbefore && !rm->fetching)
            rm->retry_at = now_ms() + HISTORY_RETRY_MS;
        return;
    }
    if (r->kind == REQ_ROOM_JOIN || r->user_join) {
        if (!is_error && rm && tc_msg_is(msg, "type", "joined"))
            room_joined(c, rm, msg);
        else if (is_error && rm && r->user_join && rm->last < 0)
            rm->gone = 1; /* never joined: stop tracking it */
        if (r->kind == REQ_ROOM_JOIN) {
            unlink_req(c, r);
            free_req(r);
            return;
        }
    }
    if (is_error && r->money && retryable(code, clen)) {
        int64_t at = now_ms() + tc_msg_int_or(msg, "retry_after_ms", 1000);
        if (at < r->deadline_ms) {
            r->resend_at_ms = at;
            r->sent = 0;
            return;
        }
    }
    finish_req(c, r, msg, is_error ? codebuf : NULL);
}

static void dispatch(tc_client *c, const tc_msg *msg)
{
    size_t n = 0;
    const char *id = tc_msg_str(msg, "id", &n);
    const char *type = tc_msg_str(msg, "type", NULL);
    if (!type)
        return;
    if (tc_msg_is(msg, "type", "event")) {
        size_t rl;
        const char *rn = tc_msg_str(msg, "room", &rl);
        struct room *rm = rn ? find_room(c, rn, rl) : NULL;
        if (rm) {
            room_event(c, rm, msg->obj);
            room_drain(c, rm);
        }
        return;
    }
    if (tc_msg_is(msg, "type", "events")) {
        size_t rl;
        const char *rn = tc_msg_str(msg, "room", &rl);
        struct room *rm = rn ? find_room(c, rn, rl) : NULL;
        if (rm) {
            room_events(c, rm, tc_msg_get(msg, "events"));
            room_drain(c, rm);
        }
        return;
    }
    if (tc_msg_is(msg, "type", "welcome")) {
        struct req *r = id ? find_req(c, id, n) : NULL;
        if (r && r->kind == REQ_AUTH) {
            unlink_req(c, r);
            free_req(r);
        }
        c->attempt = 0;
        c->ever_open = 1;
        set_state(c, TC_OPEN, 0);
        if (c->cfg.on_welcome && !c->freeing)
            c->cfg.on_welcome(c, msg, c->cfg.ud);
        /* Resume: every tracked room (unless a join of the user is on its way),
         * then every request that was waiting for a connection. */
        for (struct room *rm = c->rooms; rm; rm = rm->next) {
            int queued = 0;
            for (struct req *r2 = c->reqs; r2; r2 = r2->next)
                if ((r2->kind == REQ_ROOM_JOIN || r2->user_join) && strcmp(r2->room, rm->name) == 0)
                    queued = 1;
            if (!rm->gone && !queued)
                room_join(c, rm);
        }
        for (struct req *r2 = c->reqs; r2; r2 = r2->next)
            if (!r2->sent && !r2->resend_at_ms)
                send_req(c, r2);
        return;
    }
    if (id) {
        struct req *r = find_req(c, id, n);
        if (r && (r->sent || r->kind == REQ_AUTH)) {
            on_reply(c, r, msg);
            return;
        }
    }
    if (tc_msg_is(msg, "type", "error")) {
        if (tc_msg_is(msg, "code", "auth_invalid") || tc_msg_is(msg, "code", "auth_expired")) {
            tc_msg_strcpy(msg, "code", c->close_code, sizeof c->close_code);
            c->auth_failed = 1;
        }
        if (c->cfg.on_error && !c->freeing)
            c->cfg.on_error(c, msg, c->cfg.ud);
    } else if (tc_msg_is(msg, "type", "leaderboard")) {
        if (c->cfg.on_leaderboard && !c->freeing)
            c->cfg.on_leaderboard(c, msg, c->cfg.ud);
    } else if (tc_msg_is(msg, "type", "room")) {
        if (c->cfg.on_room && !c->freeing)
            c->cfg.on_room(c, msg, c->cfg.ud);
    }
}

/* ---- The connection ------------------------------------------------------------------- */

static int open_socket(tc_client *c);

static void fail_all(tc_client *c, const char *code)
{
    while (c->reqs) {
        struct req *r = c->reqs;
        if (r->kind == REQ_USER)
            finish_req(c, r, NULL, code);
        else {
            unlink_req(c, r);
            free_req(r);
        }
    }
}

static void go_closed(tc_client *c, enum tc_close_reason why)
{
    c->close_reason = why;
    c->reconnect_at = 0;
    set_state(c, TC_CLOSED, 0);
    fail_all(c, "closed");
}

/* The socket is gone (closed, or never opened): forget what was in flight
 * on it, and either reconnect or close for good. */
static void lost(tc_client *c)
{
    c->losses++;
    c->wsi = NULL;
    c->closing = 0;
    clear_outq(c);
    free(c->rx);
    c->rx = NULL;
    c->rx_len = c->rx_cap = 0;
    for (struct room *rm = c->rooms; rm; rm = rm->next) {
        rm->joined = 0;
        rm->fetching = 0;
        rm->retry_at = 0;
    }
    /* Requests: the money ones wait for the next connection; others had
     * their chance on this one. Marked first, answered after: a callback may
     * add or end requests while the list is walked. */
    for (struct req *r = c->reqs, *next; r; r = next) {
        next = r->next;
        if (r->kind != REQ_USER) {
            unlink_req(c, r);
            free_req(r);
        } else if (r->sent) {
            r->sent = 0;
            r->failing = !r->money;
        }
    }
    for (int again = 1; again;) {
        again = 0;
        for (struct req *r = c->reqs; r; r = r->next)
            if (r->failing) {
                finish_req(c, r, NULL, "closed");
                again = 1;
                break;
            }
    }
    if (c->state == TC_CLOSED || c->freeing)
        return;
    if (c->auth_failed || c->peer_close_code == 4003) {
        if (!c->close_code[0])
            snprintf(c->close_code, sizeof c->close_code, "auth_invalid");
        go_closed(c, TC_CLOSE_AUTH);
        return;
    }
    if (!c->cfg.reconnect) {
        go_closed(c, c->ever_open ? TC_CLOSE_LOST : TC_CLOSE_UNREACHABLE);
        return;
    }
    /* Backoff: min * 2^attempt, capped, minus up to half of it at random
     * (so that many clients cut off together do not come back together). */
    double d = c->cfg.reconnect_min_ms;
    for (int i = 0; i < c->attempt && d < c->cfg.reconnect_max_ms; i++)
        d *= 2;
    if (d > c->cfg.reconnect_max_ms)
        d = c->cfg.reconnect_max_ms;
    d -= d * 0.5 * (double)(rand64() % 1000) / 1000.0;
    c->attempt++;
    c->reconnect_at = now_ms() + (int64_t)d;
    set_state(c, TC_RECONNECTING, (int)d);
}

/* Is wsi the client's current connection? While lws_client_connect_via_info()
 * runs, the connection being made has no pointer of ours yet. */
static int mine(tc_client *c, struct lws *wsi)
{
    return wsi == c->wsi || (c->in_connect && !c->wsi);
}

static int ws_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
    tc_client *c = lws_get_opaque_user_data(wsi);
    (void)user;
    if (!c)
        return 0;
    if (!mine(c, wsi) && reason != LWS_CALLBACK_CLIENT_ESTABLISHED)
        return reason == LWS_CALLBACK_CLIENT_RECEIVE || reason == LWS_CALLBACK_CLIENT_WRITEABLE ? -1 : 0;
    switch (reason) {
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
    case LWS_CALLBACK_CLIENT_CLOSED:
    case LWS_CALLBACK_WSI_DESTROY:
        /* Whichever of these lws sends for a connection that ends (it depends
         * on the state it was in), the first one ends it for us. */
        if (mine(c, wsi))
            lost(c);
        return 0;
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        if (!mine(c, wsi))
            return -1;
        c->wsi = wsi;
        c->peer_close_code = 0;
        if (c->cfg.auth_message) {
            struct kv kv[1] = {{"token", c->token, 0}};
            add_req(c, REQ_AUTH, "auth", NULL, kv, 1, NULL, NULL);
        }
        return 0;
    case LWS_CALLBACK_CLIENT_RECEIVE: {
        if (c->rx_len + len > TC_FRAME_MAX)
            return -1; /* a frame past every bound of the protocol: drop the connection and resume */
        if (c->rx_len + len > c->rx_cap) {
            size_t cap = c->rx_cap ? c->rx_cap : 4096;
            while (cap < c->rx_len + len)
                cap *= 2;
            unsigned char *p = realloc(c->rx, cap);
            if (!p)
                return -1;
            c->rx = p;
            c->rx_cap = cap;
        }
        memcpy(c->rx + c->rx_len, in, len);
        c->rx_len += len;
        if (!lws_is_final_fragment(wsi) || lws_remaining_packet_payload(wsi))
            return 0;
        tc_frame f;
        size_t flen = c->rx_len;
        c->rx_len = 0;
        if (tc_frame_decode(c->rx, flen, &f) == 0) {
            dispatch(c, &f.msg);
            tc_frame_release(&f);
        }
        return 0;
    }
    case LWS_CALLBACK_CLIENT_WRITEABLE: {
        if (c->closing) {
            lws_close_reason(wsi, LWS_CLOSE_STATUS_NORMAL, NULL, 0);
            return -1;
        }
        struct outframe *f = c->outq;
        if (!f)
            return 0;
        c->outq = f->next;
        if (!c->outq)
            c->outq_tail = &c->outq;
        int n = lws_write(wsi, f->buf + LWS_PRE, f->len, LWS_WRITE_BINARY);
        free(f);
        if (n < 0)
            return -1;
        if (c->outq)
            lws_callback_on_writable(wsi);
        return 0;
    }
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        if (len >= 2)
            c->peer_close_code = ((const unsigned char *)in)[0] << 8 | ((const unsigned char *)in)[1];
        return 0;
    default:
        return 0;
    }
}

static const struct lws_protocols protocols[] = {
    {"tipcast-client", ws_callback, 0, 0, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

static int open_socket(tc_client *c)
{
    size_t plen = strlen(c->url_path) + strlen(c->token) + 16;
    char *path = malloc(plen);
    if (!path)
        return -1;
    if (c->cfg.auth_message)
        snprintf(path, plen, "%s", c->url_path);
    else
        snprintf(path, plen, "%s%stoken=%s", c->url_path, strchr(c->url_path, '?') ? "&" : "?", c->token);
    struct lws_client_connect_info ci;
    memset(&ci, 0, sizeof ci);
    ci.context = c->ctx;
    ci.address = c->url_host;
    ci.port = c->url_port;
    ci.path = path;
    ci.host = c->url_host;
    ci.protocol = SUBPROTOCOL;
    ci.local_protocol_name = "tipcast-client";
    ci.ssl_connection = c->url_tls ? LCCSCF_USE_SSL : 0;
    ci.opaque_user_data = c;
    c->auth_failed = 0;
    c->peer_close_code = 0;
    c->connect_started = now_ms();
    c->wsi = NULL;
    c->in_connect = 1;
    unsigned losses = c->losses;
    struct lws *w = lws_client_connect_via_info(&ci);
    c->in_connect = 0;
    free(path);
    if (c->losses != losses)
        return -1; /* lws reported the failure from inside the call: handled */
    if (!w) {
        lost(c);
        return -1;
    }
    c->wsi = w;
    return 0;
}

/* ---- Timers ------------------------------------------------------------------------------ */

static void on_tick(lws_sorted_usec_list_t *sul)
{
    tc_client *c = lws_container_of(sul, tc_client, tick);
    int64_t now = now_ms();
    /* Requests past their time, and money waiting to be sent again. */
    for (int again = 1; again;) {
        again = 0;
        for (struct req *r = c->reqs; r; r = r->next) {
            if (r->kind == REQ_USER && now >= r->deadline_ms) {
                finish_req(c, r, NULL, c->state == TC_CLOSED ? "not_connected" : "timeout");
                again = 1; /* the list may have changed under the callback */
                break;
            }
            if (r->kind == REQ_USER && c->state == TC_CLOSED) {
                finish_req(c, r, NULL, "not_connected");
                again = 1;
                break;
            }
            if (r->resend_at_ms && now >= r->resend_at_ms) {
                r->resend_at_ms = 0;
                send_req(c, r);
            }
        }
    }
    if (c->state == TC_OPEN)
        for (struct room *rm = c->rooms; rm; rm = rm->next)
            if (!rm->gone && rm->known > rm->last && rm->last >= 0)
                room_history(c, rm);
    /* Rooms left: freed here, never under a callback that may still hold them. */
    for (struct room **pp = &c->rooms; *pp;) {
        struct room *rm = *pp;
        if (rm->gone) {
            *pp = rm->next;
            clear_pend(rm);
            free(rm);
        } else {
            pp = &rm->next;
        }
    }
    if (c->reconnect_at && now >= c->reconnect_at && c->state == TC_RECONNECTING) {
        c->reconnect_at = 0;
        open_socket(c);
    }
    if (c->wsi && c->state != TC_OPEN && c->state != TC_CLOSED &&
        now - c->connect_started > c->cfg.connect_timeout_ms && !c->closing) {
        lws_set_timeout(c->wsi, PENDING_TIMEOUT_CLOSE_SEND, LWS_TO_KILL_ASYNC);
        c->connect_started = now; /* once */
    }
    if (!c->freeing)
        lws_sul_schedule(c->ctx, 0, &c->tick, on_tick, TICK_US);
}

/* ---- Public --------------------------------------------------------------------------------- */

static int parse_url(tc_client *c, const char *url)
{
    const char *p;
    if (strncmp(url, "ws://", 5) == 0) {
        p = url + 5;
        c->url_port = 80;
    } else if (strncmp(url, "wss://", 6) == 0) {
        p = url + 6;
        c->url_port = 443;
        c->url_tls = 1;
    } else {
        return -1;
    }
    const char *slash = strchr(p, '/');
    size_t hlen = slash ? (size_t)(slash - p) : strlen(p);
    const char *hend = p + hlen, *colon = NULL;
    if (*p == '[') { /* [v6]:port */
        const char *rb = memchr(p, ']', hlen);
        if (!rb)
            return -1;
        colon = rb + 1 < hend && rb[1] == ':' ? rb + 1 : NULL;
        c->url_host = strndup(p + 1, (size_t)(rb - p - 1));
    } else {
        colon = memchr(p, ':', hlen);
        c->url_host = strndup(p, colon ? (size_t)(colon - p) : hlen);
    }
    if (!c->url_host || !c->url_host[0])
        return -1;
    if (colon) {
        char *end;
        long port = strtol(colon + 1, &end, 10);
        if (end != hend || port <= 0 || port > 65535)
            return -1;
        c->url_port = (int)port;
    }
    c->url_path = strdup(slash ? slash : "/ws");
    return c->url_path ? 0 : -1;
}

tc_client *tc_client_new(const struct tc_config *cfg)
{
    if (!cfg || !cfg->url || !cfg->token)
        return NULL;
    tc_client *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->cfg = *cfg;
    c->cfg.url = NULL; /* the caller's strings are not kept */
    c->cfg.token = NULL;
    if (c->cfg.reconnect_min_ms <= 0)
        c->cfg.reconnect_min_ms = 250;
    if (c->cfg.reconnect_max_ms < c->cfg.reconnect_min_ms)
        c->cfg.reconnect_max_ms = c->cfg.reconnect_min_ms > 30000 ? c->cfg.reconnect_min_ms : 30000;
    if (c->cfg.connect_timeout_ms <= 0)
        c->cfg.connect_timeout_ms = 10000;
    if (c->cfg.request_timeout_ms <= 0)
        c->cfg.request_timeout_ms = 10000;
    if (c->cfg.money_retry_ms <= 0)
        c->cfg.money_retry_ms = 120000;
    c->reqs_tail = &c->reqs;
    c->outq_tail = &c->outq;
    c->token = strdup(cfg->token);
    if (!c->token || parse_url(c, cfg->url) < 0) {
        tc_client_free(c);
        return NULL;
    }
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = protocols;
    info.options = c->url_tls ? LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT : 0;
    info.timeout_secs = (unsigned int)((c->cfg.connect_timeout_ms + 999) / 1000);
    info.fd_limit_per_thread = 16; /* one connection; a few fds of lws's own */
    c->ctx = lws_create_context(&info);
    if (!c->ctx) {
        tc_client_free(c);
        return NULL;
    }
    lws_sul_schedule(c->ctx, 0, &c->tick, on_tick, TICK_US);
    return c;
}

int tc_client_connect(tc_client *c)
{
    if (c->state != TC_IDLE)
        return -1;
    set_state(c, TC_CONNECTING, 0);
    open_socket(c);
    return 0;
}

int tc_client_service(tc_client *c)
{
    if (c->stop) {
        c->stop = 0;
        return -1;
    }
    lws_service(c->ctx, 0);
    if (c->stop) {
        c->stop = 0;
        return -1;
    }
    return c->state == TC_CLOSED && !c->wsi ? -1 : 0;
}

void tc_client_stop(tc_client *c)
{
    c->stop = 1;
    if (c->ctx)
        lws_cancel_service(c->ctx);
}

void tc_client_close(tc_client *c)
{
    if (c->state == TC_CLOSED)
        return;
    if (c->wsi) {
        c->closing = 1;
        lws_callback_on_writable(c->wsi);
    }
    go_closed(c, TC_CLOSE_BY_USER);
}

void tc_client_free(tc_client *c)
{
    if (!c)
        return;
    c->freeing = 1;
    if (c->ctx) {
        lws_sul_cancel(&c->tick);
        lws_context_destroy(c->ctx);
    }
    while (c->reqs) {
        struct req *r = c->reqs;
        c->reqs = r->next;
        free_req(r);
    }
    clear_outq(c);
    while (c->rooms) {
        struct room *rm = c->rooms;
        c->rooms = rm->next;
        clear_pend(rm);
        free(rm);
    }
    free(c->rx);
    free(c->url_host);
    free(c->url_path);
    free(c->token);
    free(c);
}

enum tc_state tc_client_state(const tc_client *c)
{
    return c->state;
}

enum tc_close_reason tc_client_close_reason(const tc_client *c)
{
    return c->close_reason;
}

const char *tc_client_close_code(const tc_client *c)
{
    return c->close_code;
}

void tc_client_new_id(tc_client *c, const char *prefix, char *out, size_t out_len)
{
    c->id_counter++;
    char pre[17];
    snprintf(pre, sizeof pre, "%s", prefix && *prefix ? prefix : "r");
    snprintf(out, out_len, "%s-%016llx-%llu", pre, (unsigned long long)rand64(), (unsigned long long)c->id_counter);
}

static int user_req(tc_client *c, const char *type, const char *id, const struct kv *kv, int n, tc_reply_cb cb,
                    void *ud, struct req **out)
{
    struct req *r = add_req(c, REQ_USER, type, id, kv, n, cb, ud);
    if (!r)
        return -1;
    if (out)
        *out = r;
    return 0;
}

static int room_ok(const char *room)
{
    return room && *room && strlen(room) <= TC_ID_MAX;
}

int tc_join(tc_client *c, const char *room, tc_reply_cb cb, void *ud)
{
    if (!room_ok(room))
        return -1;
    struct room *rm = track_room(c, room);
    if (!rm)
        return -1;
    struct kv kv[1] = {{"room", room, 0}};
    struct req *r;
    if (user_req(c, "join", NULL, kv, 1, cb, ud, &r) < 0)
        return -1;
    r->user_join = 1;
    snprintf(r->room, sizeof r->room, "%s", room);
    return 0;
}

int tc_leave(tc_client *c, const char *room, tc_reply_cb cb, void *ud)
{
    if (!room_ok(room))
        return -1;
    struct room *rm = find_room(c, room, strlen(room));
    if (rm)
        rm->gone = 1;
    struct kv kv[1] = {{"room", room, 0}};
    return user_req(c, "leave", NULL, kv, 1, cb, ud, NULL);
}

int tc_history(tc_client *c, const char *room, int64_t after_seq, tc_reply_cb cb, void *ud)
{
    if (!room_ok(room))
        return -1;
    struct kv kv[2] = {{"room", room, 0}, {"after_seq", NULL, after_seq}};
    return user_req(c, "history", NULL, kv, 2, cb, ud, NULL);
}

int tc_leaderboard(tc_client *c, const char *room, tc_reply_cb cb, void *ud)
{
    if (!room_ok(room))
        return -1;
    struct kv kv[1] = {{"room", room, 0}};
    return user_req(c, "leaderboard", NULL, kv, 1, cb, ud, NULL);
}

int tc_catalog(tc_client *c, tc_reply_cb cb, void *ud)
{
    return user_req(c, "catalog", NULL, NULL, 0, cb, ud, NULL);
}

int tc_balance(tc_client *c, tc_reply_cb cb, void *ud)
{
    return user_req(c, "balance", NULL, NULL, 0, cb, ud, NULL);
}

int tc_earnings(tc_client *c, const char *user, tc_reply_cb cb, void *ud)
{
    struct kv kv[1] = {{"user", user, 0}};
    return user_req(c, "earnings", NULL, kv, user ? 1 : 0, cb, ud, NULL);
}

int tc_notice(tc_client *c, const char *room, const char *text, tc_reply_cb cb, void *ud)
{
    if (!room_ok(room) || !text)
        return -1;
    struct kv kv[2] = {{"room", room, 0}, {"text", text, 0}};
    return user_req(c, "notice", NULL, kv, 2, cb, ud, NULL);
}

static int money_req(tc_client *c, const char *type, const char *id, const struct kv *kv, int n, tc_reply_cb cb,
                     void *ud)
{
    struct req *r;
    if (user_req(c, type, id, kv, n, cb, ud, &r) < 0)
        return -1;
    r->money = 1;
    r->deadline_ms = now_ms() + c->cfg.money_retry_ms;
    return 0;
}

int tc_gift(tc_client *c, const struct tc_gift *g, tc_reply_cb cb, void *ud)
{
    if (!g || !room_ok(g->room))
        return -1;
    struct kv kv[4];
    int n = 0;
    kv[n++] = (struct kv){"room", g->room, 0};
    kv[n++] = (struct kv){"gift", NULL, g->gift};
    if (g->count)
        kv[n++] = (struct kv){"count", NULL, g->count};
    if (g->combo)
        kv[n++] = (struct kv){"combo", g->combo, 0};
    return money_req(c, "gift", g->id, kv, n, cb, ud);
}

int tc_tip(tc_client *c, const struct tc_tip *t, tc_reply_cb cb, void *ud)
{
    if (!t || !room_ok(t->room))
        return -1;
    struct kv kv[3];
    int n = 0;
    kv[n++] = (struct kv){"room", t->room, 0};
    kv[n++] = (struct kv){"amount", NULL, t->amount};
    if (t->text)
        kv[n++] = (struct kv){"text", t->text, 0};
    return money_req(c, "tip", t->id, kv, n, cb, ud);
}

int tc_credit(tc_client *c, const char *user, int64_t amount, const char *text, const char *id, tc_reply_cb cb,
              void *ud)
{
    if (!room_ok(user))
        return -1;
    struct kv kv[3];
    int n = 0;
    kv[n++] = (struct kv){"user", user, 0};
    kv[n++] = (struct kv){"amount", NULL, amount};
    if (text)
        kv[n++] = (struct kv){"text", text, 0};
    return money_req(c, "credit", id, kv, n, cb, ud);
}
