/* room.c - rooms on this node (see room.h). */
#include "room.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "board.h"
#include "log.h"
#include "rlink.h"
#include "server.h"

/* ---- The registry: a chained hash table keyed by room id ---------------- */

static struct {
    struct room **buckets;
    uint32_t nbuckets;
    uint32_t count;
    int64_t last_refresh_ms;
    /* Rooms with events not yet handed to their members, flushed once per
     * loop iteration (after the Redis replies read in it): the events that
     * came in one read go out to each member in one frame. */
    struct room *dirty;
} G;

/* Outside G, which is wiped at shutdown: libuv owns them until closed. */
static uv_check_t flush_check;
static uv_timer_t flush_wait; /* ends ROOM_BOARD_WAIT_MS */
static int flush_init;

static void on_flush(uv_check_t *h);
static void on_flush_wait(uv_timer_t *t);

/* Queues the room for the flush at the end of this loop iteration. */
static void mark_dirty(struct room *r)
{
    if (r->flush_queued || !r->nmembers)
        return;
    r->flush_queued = 1;
    r->dirty_ms = uv_now(srv.loop);
    r->flush_next = G.dirty;
    if (!G.dirty)
        uv_check_start(&flush_check, on_flush);
    G.dirty = r;
}

static uint32_t hash_id(const char *s)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

int room_registry_init(void)
{
    G.nbuckets = 1024;
    G.buckets = calloc(G.nbuckets, sizeof *G.buckets);
    if (!G.buckets)
        return -1;
    if (!flush_init) {
        uv_check_init(srv.loop, &flush_check);
        uv_timer_init(srv.loop, &flush_wait);
        flush_init = 1;
    }
    return 0;
}

static struct room *room_find(const char *id)
{
    if (!G.buckets)
        return NULL; /* a late Redis reply after room_registry_free */
    for (struct room *r = G.buckets[hash_id(id) & (G.nbuckets - 1)]; r; r = r->hnext)
        if (strcmp(r->id, id) == 0)
            return r;
    return NULL;
}

static void registry_grow(void)
{
    uint32_t n = G.nbuckets * 2;
    struct room **b = calloc(n, sizeof *b);
    if (!b)
        return; /* longer chains, still correct */
    for (uint32_t i = 0; i < G.nbuckets; i++) {
        struct room *r = G.buckets[i];
        while (r) {
            struct room *next = r->hnext;
            uint32_t h = hash_id(r->id) & (n - 1);
            r->hnext = b[h];
            b[h] = r;
            r = next;
        }
    }
    free(G.buckets);
    G.buckets = b;
    G.nbuckets = n;
}

static struct room *room_create(const char *id)
{
    struct room *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->ring = calloc(ROOM_RING_EVENTS, sizeof *r->ring);
    if (!r->ring) {
        free(r);
        return NULL;
    }
    snprintf(r->id, sizeof r->id, "%s", id);
    if (G.count >= G.nbuckets)
        registry_grow();
    uint32_t h = hash_id(id) & (G.nbuckets - 1);
    r->hnext = G.buckets[h];
    G.buckets[h] = r;
    G.count++;
    return r;
}

static void ring_drop_oldest(struct room *r)
{
    struct room_event *ev = &r->ring[r->ring_head];
    for (int f = 0; f < FMT_COUNT; f++)
        frame_unref(ev->frame[f]);
    memset(ev, 0, sizeof *ev);
    r->ring_head = (r->ring_head + 1) % ROOM_RING_EVENTS;
    r->ring_count--;
}

static void room_destroy(struct room *r)
{
    assert(r->nmembers == 0);
    if (r->flush_queued) {
        struct room **dp = &G.dirty;
        while (*dp != r)
            dp = &(*dp)->flush_next;
        *dp = r->flush_next;
    }
    struct room **pp = &G.buckets[hash_id(r->id) & (G.nbuckets - 1)];
    while (*pp != r)
        pp = &(*pp)->hnext;
    *pp = r->hnext;
    G.count--;
    board_forget(r);
    while (r->ring_count)
        ring_drop_oldest(r);
    for (int f = 0; f < FMT_COUNT; f++) {
        frame_unref(r->batch[f]);
        frame_unref(r->board_push[f]);
        frame_unref(r->pair[f]);
        frame_unref(r->pair_events[f]);
        frame_unref(r->pair_board[f]);
    }
    free(r->ring);
    free(r->members);
    free(r);
}

void room_registry_free(void)
{
    for (uint32_t i = 0; i < G.nbuckets; i++)
        while (G.buckets[i])
            room_destroy(G.buckets[i]);
    free(G.buckets);
    if (flush_init) {
        uv_close((uv_handle_t *)&flush_check, NULL);
        uv_close((uv_handle_t *)&flush_wait, NULL);
        flush_init = 0;
    }
    memset(&G, 0, sizeof G);
}

/* ---- Keys ----------------------------------------------------------------- */

/* Every key of a room carries the hash tag {r:ROOM}, so a room's scripts
 * touch one hash slot and run unchanged on Redis Cluster. */
void room_keys(const char *id, struct room_keys *k)
{
    snprintf(k->seq, sizeof k->seq, "tc:{r:%s}:seq", id);
    snprintf(k->hist, sizeof k->hist, "tc:{r:%s}:hist", id);
    snprintf(k->nodes, sizeof k->nodes, "tc:{r:%s}:nodes", id);
    snprintf(k->chan, sizeof k->chan, "tc:{r:%s}:ev", id);
    snprintf(k->wm, sizeof k->wm, "tc:{r:%s}:wm", id);
    board_all_key(id, k->board, sizeof k->board);
}

/* The room id in a channel name "tc:{r:ROOM}:ev"; 0 when it is not one. */
static int channel_room(const char *chan, size_t len, char *out)
{
    static const char pre[] = "tc:{r:", suf[] = "}:ev";
    size_t pl = sizeof pre - 1, sl = sizeof suf - 1;
    if (len <= pl + sl || len - pl - sl > ID_MAX || memcmp(chan, pre, pl) != 0 ||
        memcmp(chan + len - sl, suf, sl) != 0)
        return 0;
    memcpy(out, chan + pl, len - pl - sl);
    out[len - pl - sl] = '\0';
    return 1;
}

/* ---- Asynchronous replies refer to their connection by id ----------------- */

struct pending {
    uint64_t conn_id;
    char room[ID_MAX + 1];
    char req_id[PROTO_REQ_ID_MAX + 1];
    int64_t after_seq; /* history requests */
    int refresh;       /* a join of a room joined already */
};

static struct pending *pending_new(const struct conn *c, const char *room, const char *req_id)
{
    struct pending *p = malloc(sizeof *p);
    if (!p)
        return NULL;
    p->conn_id = c ? c->id : 0;
    p->after_seq = 0;
    p->refresh = 0;
    snprintf(p->room, sizeof p->room, "%s", room);
    snprintf(p->req_id, sizeof p->req_id, "%s", req_id ? req_id : "");
    return p;
}

static void send_unavailable(struct conn *c, const char *req_id)
{
    conn_send_error(c, req_id, "unavailable", "the event store is unreachable; retry", NULL,
                    "retry_after_ms", 1000);
}

/* Reads the events in reply->element[from..] ({seq, body} pairs) into an
 * array of events under `key`. */
static void enc_events(struct enc *e, const char *room, const redisReply *reply, size_t from)
{
    size_t n = reply->elements > from ? (reply->elements - from) / 2 : 0;
    enc_key(e, "events");
    enc_array(e, (uint32_t)n);
    for (size_t i = 0; i < n; i++) {
        const redisReply *s = reply->element[from + 2 * i], *b = reply->element[from + 2 * i + 1];
        if (s->type != REDIS_REPLY_INTEGER || b->type != REDIS_REPLY_STRING ||
            enc_event(e, room, s->integer, (const uint8_t *)b->str, b->len) < 0) {
            e->failed = 1;
            return;
        }
    }
    enc_end_array(e);
}

static int reply_ok(const redisReply *r, size_t min_elements)
{
    if (!r)
        return 0;
    if (r->type == REDIS_REPLY_ERROR) {
        log_msg(LOG_ERROR, "redis script error: %s", r->str);
        return 0;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements < min_elements)
        return 0;
    for (size_t i = 0; i < min_elements; i++)
        if (r->element[i]->type != REDIS_REPLY_INTEGER)
            return 0;
    return 1;
}

/* ---- Members ---------------------------------------------------------------- */

static int membership_of(const struct conn *c, const struct room *r)
{
    for (int i = 0; i < c->nrooms; i++)
        if (c->rooms[i].room == r)
            return i;
    return -1;
}

static int presence_call(struct room *r, int snapshot_events, int board_n, rlink_reply_cb *cb, void *priv);

static void on_presence_only(redisReply *reply, void *priv)
{
    (void)reply;
    (void)priv;
}

static void on_snapshot(redisReply *reply, void *priv)
{
    struct pending *p = priv;
    struct conn *c = conn_find(p->conn_id);
    struct room *r = room_find(p->room);
    int i = c && r ? membership_of(c, r) : -1;
    enum member_state want = p->refresh ? MEMBER_LIVE : MEMBER_WAIT_SNAP;
    if (i < 0 || c->rooms[i].state != want) {
        free(p); /* left, or gone, while Redis answered */
        return;
    }
    struct membership *m = &c->rooms[i];
    if (!reply_ok(reply, 2) || reply->elements < 3 || reply->element[2]->type != REDIS_REPLY_ARRAY) {
        send_unavailable(c, p->req_id);
        if (!p->refresh)
            room_leave(c, i);
        free(p);
        return;
    }
    int64_t seq = reply->element[0]->integer;
    struct board_top top;
    board_top_read(reply->element[2], &top);
    struct enc e;
    enc_init(&e, c->fmt, 512);
    enc_map(&e, 8);
    enc_key(&e, "type");
    enc_cstr(&e, "joined");
    enc_key(&e, "id");
    enc_cstr(&e, p->req_id);
    enc_key(&e, "room");
    enc_cstr(&e, r->id);
    enc_key(&e, "owner");
    enc_cstr(&e, r->id);
    enc_key(&e, "members");
    enc_int(&e, reply->element[1]->integer);
    enc_key(&e, "seq");
    enc_int(&e, seq);
    enc_key(&e, "board");
    board_top_enc(&e, &top);
    enc_events(&e, r->id, reply, 3);
    enc_end_map(&e);

    if (p->refresh) {
        /* A member already receives every event: its cursor stays. */
        conn_send(c, enc_finish(&e));
        free(p);
        return;
    }
    /* From here the member receives every event after the snapshot. */
    m->state = MEMBER_LIVE;
    m->next_seq = seq + 1;
    struct room_event *ev = room_next_event(r, m->next_seq);
    m->sent_cum = ev ? ev->cum[c->fmt] - ev->frame[c->fmt]->len : r->cum[c->fmt];
    free(m->join_id);
    m->join_id = NULL;
    conn_send(c, enc_finish(&e));
    if (ev)
        mark_dirty(r); /* events after the snapshot are in the ring already */
    free(p);
}

/* Asks Redis for the snapshot of a member waiting for one. */
static void request_snapshot(struct conn *c, int i)
{
    struct membership *m = &c->rooms[i];
    struct pending *p = pending_new(c, m->room->id, m->join_id);
    m->state = MEMBER_WAIT_SNAP;
    if (!p || presence_call(m->room, srv.cfg.snapshot_events, BOARD_TOP_N, on_snapshot, p) < 0) {
        free(p);
        send_unavailable(c, m->join_id);
        room_leave(c, i);
    }
}

static int subscribe(struct room *r)
{
    struct room_keys k;
    room_keys(r->id, &k);
    if (rlink_subscribe(k.chan, strlen(k.chan)) < 0)
        return -1;
    r->sub = SUB_PENDING;
    return 0;
}

void room_join(struct conn *c, const char *id, const char *req_id)
{
    const struct config *cfg = &srv.cfg;
    struct room *r = room_find(id);
    int i = r ? membership_of(c, r) : -1;
    if (i >= 0) {
        /* Joined already: a fresh snapshot, unless one is on its way.
         * The member keeps receiving events meanwhile. */
        if (c->rooms[i].state != MEMBER_LIVE) {
            conn_send_error(c, req_id, "bad_field", "a join of this room is in progress", "room", NULL, 0);
            return;
        }
        struct pending *p = pending_new(c, id, req_id);
        if (p)
            p->refresh = 1;
        if (!p || presence_call(r, cfg->snapshot_events, BOARD_TOP_N, on_snapshot, p) < 0) {
            free(p);
            send_unavailable(c, req_id);
        }
        return;
    }
    if (c->nrooms >= cfg->max_rooms_per_conn) {
        conn_send_error(c, req_id, "too_many_rooms", "this connection has joined the most rooms it may", NULL, NULL, 0);
        return;
    }
    if (r && r->nmembers >= (uint32_t)cfg->max_members_per_room) {
        conn_send_error(c, req_id, "room_full", "this room has the most members it may have here", NULL, NULL, 0);
        return;
    }
    if (!rlink_cmd_ready()) {
        send_unavailable(c, req_id);
        return;
    }
    if (c->nrooms == c->rooms_cap) {
        /* Grown on demand: most viewers are in one room, and at 100,000
         * connections every byte per connection counts. */
        int cap = c->rooms_cap ? c->rooms_cap * 2 : 1;
        if (cap > cfg->max_rooms_per_conn)
            cap = cfg->max_rooms_per_conn;
        struct membership *rooms = realloc(c->rooms, sizeof *rooms * (size_t)cap);
        if (!rooms) {
            conn_close(c, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION, "out of memory", 1);
            return;
        }
        c->rooms = rooms;
        c->rooms_cap = cap;
    }
    if (!r && !(r = room_create(id))) {
        conn_close(c, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION, "out of memory", 1);
        return;
    }
    if (r->nmembers == r->members_cap) {
        uint32_t cap = r->members_cap ? r->members_cap * 2 : 8;
        struct conn **mm = realloc(r->members, sizeof *mm * cap);
        if (!mm) {
            if (r->nmembers == 0 && r->sub == SUB_NONE)
                room_destroy(r);
            conn_close(c, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION, "out of memory", 1);
            return;
        }
        r->members = mm;
        r->members_cap = cap;
    }
    char *jid = strdup(req_id);
    if (!jid) {
        conn_close(c, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION, "out of memory", 1);
        return;
    }
    i = c->nrooms++;
    struct membership *m = &c->rooms[i];
    memset(m, 0, sizeof *m);
    m->room = r;
    m->idx = r->nmembers;
    m->state = MEMBER_WAIT_SUB;
    m->join_id = jid;
    r->members[r->nmembers++] = c;
    r->empty_since_ms = 0;

    switch (r->sub) {
    case SUB_ACTIVE:
        request_snapshot(c, i);
        break;
    case SUB_NONE:
        if (subscribe(r) < 0) {
            send_unavailable(c, req_id);
            room_leave(c, i);
        }
        break;
    case SUB_LEAVING:
        r->resubscribe = 1;
        break;
    case SUB_PENDING:
        break;
    }
}

void room_leave(struct conn *c, int i)
{
    assert(i >= 0 && i < c->nrooms);
    struct membership *m = &c->rooms[i];
    struct room *r = m->room;
    assert(r->members[m->idx] == c);

    /* Swap-remove from the room, fixing the index of the member moved. */
    struct conn *last = r->members[--r->nmembers];
    if (last != c) {
        r->members[m->idx] = last;
        last->rooms[membership_of(last, r)].idx = m->idx;
    }
    free(m->join_id);
    c->rooms[i] = c->rooms[--c->nrooms];
    /* An empty room is freed by room_sweep, never here: callers may be
     * walking the room's members. */
    if (r->nmembers == 0) {
        r->empty_since_ms = now_mono_ms();
        if (r->sub != SUB_NONE && rlink_cmd_ready())
            presence_call(r, 0, 0, on_presence_only, NULL);
    }
}

/* ---- Redis calls ------------------------------------------------------------- */

static int presence_call(struct room *r, int snapshot_events, int board_n, rlink_reply_cb *cb, void *priv)
{
    struct room_keys k;
    char count[16], ttl[16], want[16], top[16];
    room_keys(r->id, &k);
    snprintf(count, sizeof count, "%u", r->nmembers);
    snprintf(ttl, sizeof ttl, "%d", ROOM_PRESENCE_TTL_MS);
    snprintf(want, sizeof want, "%d", snapshot_events);
    snprintf(top, sizeof top, "%d", board_n);
    const char *argv[] = {k.seq, k.hist, k.nodes, k.board, srv.node_id, count, ttl, want, top};
    size_t len[9];
    for (int i = 0; i < 9; i++)
        len[i] = strlen(argv[i]);
    return rlink_eval(SCRIPT_ROOM_PRESENCE, 4, 9, argv, len, cb, priv);
}

static void on_published(redisReply *reply, void *priv)
{
    struct pending *p = priv;
    struct conn *c = conn_find(p->conn_id);
    if (c) {
        if (!reply || reply->type != REDIS_REPLY_INTEGER) {
            if (reply && reply->type == REDIS_REPLY_ERROR)
                log_msg(LOG_ERROR, "redis room_publish: %s", reply->str);
            send_unavailable(c, p->req_id);
        } else {
            struct enc e;
            enc_init(&e, c->fmt, 128);
            enc_map(&e, 4);
            enc_key(&e, "type");
            enc_cstr(&e, "ack");
            enc_key(&e, "id");
            enc_cstr(&e, p->req_id);
            enc_key(&e, "room");
            enc_cstr(&e, p->room);
            enc_key(&e, "seq");
            enc_int(&e, reply->integer);
            enc_end_map(&e);
            conn_send(c, enc_finish(&e));
        }
    }
    free(p);
}

void room_notice(struct conn *c, const char *id, const char *text, size_t text_len, const char *req_id)
{
    if (c->user.role != ROLE_ADMIN && !(c->user.role == ROLE_CREATOR && strcmp(c->user.sub, id) == 0)) {
        conn_send_error(c, req_id, "forbidden", "only the room's owner or an admin may send a notice",
                        NULL, NULL, 0);
        return;
    }
    uint8_t body[ROOM_BODY_MAX];
    int n = proto_event_body(body, sizeof body, "notice", c->user.sub, c->user.role, text, text_len,
                             now_wall_ms());
    assert(n > 0); /* text is bounded by PROTO_TEXT_MAX, far below ROOM_BODY_MAX */
    struct room_keys k;
    char hl[16];
    room_keys(id, &k);
    snprintf(hl, sizeof hl, "%d", srv.cfg.history_len);
    const char *argv[] = {k.seq, k.hist, k.chan, (const char *)body, hl};
    size_t len[] = {strlen(k.seq), strlen(k.hist), strlen(k.chan), (size_t)n, strlen(hl)};
    struct pending *p = pending_new(c, id, req_id);
    if (!p || rlink_eval(SCRIPT_ROOM_PUBLISH, 2, 5, argv, len, on_published, p) < 0) {
        free(p);
        send_unavailable(c, req_id);
    }
}

static void on_history(redisReply *reply, void *priv)
{
    struct pending *p = priv;
    struct conn *c = conn_find(p->conn_id);
    if (!c) {
        free(p);
        return;
    }
    if (!reply_ok(reply, 2)) {
        send_unavailable(c, p->req_id);
        free(p);
        return;
    }
    int64_t seq = reply->element[0]->integer, oldest = reply->element[1]->integer;
    int64_t after = p->after_seq;
    if (after < seq && (oldest == 0 || oldest > after + 1)) {
        conn_send_error(c, p->req_id, "history_gone",
                        "the events after after_seq are no longer kept; join again for a snapshot", NULL,
                        "oldest_seq", oldest ? oldest : seq + 1);
        free(p);
        return;
    }
    struct enc e;
    enc_init(&e, c->fmt, 1024);
    enc_map(&e, 5);
    enc_key(&e, "type");
    enc_cstr(&e, "history");
    enc_key(&e, "id");
    enc_cstr(&e, p->req_id);
    enc_key(&e, "room");
    enc_cstr(&e, p->room);
    enc_key(&e, "seq");
    enc_int(&e, seq);
    enc_events(&e, p->room, reply, 2);
    enc_end_map(&e);
    conn_send(c, enc_finish(&e));
    free(p);
}

static int history_call(const char *id, int64_t after_seq, rlink_reply_cb *cb, void *priv)
{
    struct room_keys k;
    char after[24], max[16];
    room_keys(id, &k);
    snprintf(after, sizeof after, "%lld", (long long)after_seq);
    snprintf(max, sizeof max, "%d", ROOM_HISTORY_BATCH);
    const char *argv[] = {k.seq, k.hist, after, max};
    size_t len[] = {strlen(k.seq), strlen(k.hist), strlen(after), strlen(max)};
    return rlink_eval(SCRIPT_ROOM_HISTORY, 2, 4, argv, len, cb, priv);
}

void room_history(struct conn *c, const char *id, int64_t after_seq, const char *req_id)
{
    struct pending *p = pending_new(c, id, req_id);
    if (p)
        p->after_seq = after_seq;
    if (!p || history_call(id, after_seq, on_history, p) < 0) {
        free(p);
        send_unavailable(c, req_id);
    }
}

/* ---- Events from Redis ------------------------------------------------------- */

struct room *room_lookup(const char *id) { return room_find(id); }

void room_broadcast(struct room *r, struct frame *const frames[FMT_COUNT])
{
    for (int k = 0; k < FMT_COUNT; k++) {
        frame_unref(r->board_push[k]);
        r->board_push[k] = frame_ref(frames[k]);
    }
    mark_dirty(r);
}

/* 1 when an event body (a msgpack map built by tipcastd, "kind" first) is
 * a gift or a tip, which move the room's leaderboards. */
static int body_moves_board(const uint8_t *body, size_t len)
{
    static const uint8_t gift[] = {0xa4, 'k', 'i', 'n', 'd', 0xa4, 'g', 'i', 'f', 't'};
    static const uint8_t tip[] = {0xa4, 'k', 'i', 'n', 'd', 0xa3, 't', 'i', 'p'};
    if (len < 1 + sizeof tip || (body[0] & 0xf0) != 0x80)
        return 0;
    return (len >= 1 + sizeof gift && memcmp(body + 1, gift, sizeof gift) == 0) ||
           memcmp(body + 1, tip, sizeof tip) == 0;
}

struct room_event *room_next_event(struct room *r, int64_t next_seq)
{
    if (r->ring_count == 0 || r->last_seq < next_seq)
        return NULL;
    /* Binary search for the first event with seq >= next_seq; seqs in the
     * ring increase but may have gaps (events lost while unsubscribed). */
    uint32_t lo = 0, hi = r->ring_count;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        if (r->ring[(r->ring_head + mid) % ROOM_RING_EVENTS].seq < next_seq)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < r->ring_count ? &r->ring[(r->ring_head + lo) % ROOM_RING_EVENTS] : NULL;
}

/* The frame carrying `events` then `board` in one write, shared by the
 * members that get the same two. */
static struct frame *pair_frame(struct room *r, struct frame *events, struct frame *board, enum fmt fmt)
{
    if (!r->pair[fmt] || r->pair_events[fmt] != events || r->pair_board[fmt] != board) {
        struct frame *j = frame_join(events, board);
        if (!j)
            return NULL;
        frame_unref(r->pair[fmt]);
        frame_unref(r->pair_events[fmt]);
        frame_unref(r->pair_board[fmt]);
        r->pair[fmt] = j;
        r->pair_events[fmt] = frame_ref(events);
        r->pair_board[fmt] = frame_ref(board);
    }
    return frame_ref(r->pair[fmt]);
}

struct frame *room_frame_from(struct room *r, struct room_event *ev, enum fmt fmt, struct room_event **last,
                              struct frame *board)
{
    uint32_t pos = (uint32_t)((ev - r->ring) - r->ring_head + ROOM_RING_EVENTS) % ROOM_RING_EVENTS;
    struct frame *frames[ROOM_BATCH_EVENTS];
    size_t bytes = 0;
    int n = 0;
    while (pos + (uint32_t)n < r->ring_count && n < ROOM_BATCH_EVENTS) {
        struct room_event *e = &r->ring[(r->ring_head + pos + (uint32_t)n) % ROOM_RING_EVENTS];
        if (n > 0 && bytes + e->frame[fmt]->len > ROOM_BATCH_BYTES)
            break;
        bytes += e->frame[fmt]->len;
        frames[n++] = e->frame[fmt];
        *last = e;
    }
    struct frame *events = ev->frame[fmt];
    if (n > 1) {
        if (!r->batch[fmt] || r->batch_first[fmt] != ev->seq || r->batch_last[fmt] != (*last)->seq) {
            struct frame *b = proto_batch_frame(fmt, r->id, frames, n);
            if (!b)
                return NULL;
            frame_unref(r->batch[fmt]);
            r->batch[fmt] = b;
            r->batch_first[fmt] = ev->seq;
            r->batch_last[fmt] = (*last)->seq;
        }
        events = r->batch[fmt];
    }
    return board ? pair_frame(r, events, board, fmt) : frame_ref(events);
}

uint64_t room_backlog(const struct room *r, const struct membership *m, enum fmt fmt)
{
    return r->cum[fmt] - m->sent_cum;
}

/* Appends an event to the ring and wakes the room's live members. Members
 * that fall out of the ring or past max-queued-bytes are closed as slow. */
static void room_push(struct room *r, int64_t seq, const uint8_t *body, size_t len)
{
    if (seq <= r->last_seq)
        return; /* seen already (a catch-up overlapping the live stream) */
    struct frame *f[FMT_COUNT];
    for (int k = 0; k < FMT_COUNT; k++) {
        f[k] = proto_event_frame((enum fmt)k, r->id, seq, body, len);
        if (!f[k]) {
            log_msg(LOG_ERROR, "room %s: event %lld is malformed; dropped", r->id, (long long)seq);
            for (int j = 0; j < k; j++)
                frame_unref(f[j]);
            return;
        }
    }
    int64_t evicted = 0;
    if (r->ring_count == ROOM_RING_EVENTS) {
        evicted = r->ring[r->ring_head].seq;
        ring_drop_oldest(r);
    }
    struct room_event *ev = &r->ring[(r->ring_head + r->ring_count) % ROOM_RING_EVENTS];
    ev->seq = seq;
    for (int k = 0; k < FMT_COUNT; k++) {
        ev->frame[k] = f[k];
        r->cum[k] += f[k]->len;
        ev->cum[k] = r->cum[k];
    }
    r->ring_count++;
    r->last_seq = seq;
    if (body_moves_board(body, len))
        board_mark(r);

    /* Walk down, so that a member closed here (swapped out of the array by
     * room_leave) never hides one not yet visited. */
    uint64_t max_queued = (uint64_t)srv.cfg.max_queued_bytes;
    for (uint32_t i = r->nmembers; i-- > 0;) {
        struct conn *c = r->members[i];
        struct membership *m = &c->rooms[membership_of(c, r)];
        if (m->state == MEMBER_LIVE && ((evicted && m->next_seq <= evicted) || conn_backlog(c) > max_queued))
            conn_close(c, CLOSE_SLOW_CONSUMER, "slow consumer", 1);
    }
    mark_dirty(r);
}

/* Hands a room's new events, and its leaderboard push, to its live members:
 * written at once to those that can take them, in one write each
 * (room_frame_from batches the events pending for a member). */
static void flush_room(struct room *r)
{
    int has_board = r->board_push[0] != NULL;
    /* Walk down: conn_deliver may close a slow member (queueing the push),
     * which room_leave swaps out of the array. */
    for (uint32_t i = r->nmembers; i-- > 0;) {
        struct conn *c = r->members[i];
        struct membership *m = &c->rooms[membership_of(c, r)];
        if (m->state == MEMBER_LIVE && (has_board || m->next_seq <= r->last_seq))
            conn_deliver(c, m, r->board_push[c->fmt]);
    }
    if (has_board) {
        for (int k = 0; k < FMT_COUNT; k++) {
            frame_unref(r->board_push[k]);
            frame_unref(r->pair[k]);
            frame_unref(r->pair_events[k]);
            frame_unref(r->pair_board[k]);
            r->board_push[k] = r->pair[k] = r->pair_events[k] = r->pair_board[k] = NULL;
        }
    }
}

/* Flushes the dirty rooms. A room whose leaderboard is being read for a
 * push waits for it (up to ROOM_BOARD_WAIT_MS), so that the event that moved
 * the board and the board go out in one write: half the writes of a big
 * room. The reply is a loop event, so the check runs again when it comes. */
static void flush_rooms(void)
{
    uint64_t now = uv_now(srv.loop);
    struct room *wait = NULL;
    while (G.dirty) {
        struct room *r = G.dirty;
        G.dirty = r->flush_next;
        if (r->board_busy && !r->board_push[0] && now - r->dirty_ms < ROOM_BOARD_WAIT_MS) {
            r->flush_next = wait;
            wait = r;
            continue;
        }
        r->flush_queued = 0;
        r->flush_next = NULL;
        flush_room(r);
    }
    G.dirty = wait;
    if (!wait) {
        uv_check_stop(&flush_check);
        uv_timer_stop(&flush_wait);
    } else if (!uv_is_active((uv_handle_t *)&flush_wait)) {
        uv_timer_start(&flush_wait, on_flush_wait, ROOM_BOARD_WAIT_MS, 0);
    }
}

static void on_flush(uv_check_t *h)
{
    (void)h;
    flush_rooms();
}

static void on_flush_wait(uv_timer_t *t)
{
    (void)t;
    flush_rooms();
}

void room_on_message(const char *chan, size_t chan_len, const char *payload, size_t len)
{
    char id[ID_MAX + 1];
    if (!channel_room(chan, chan_len, id))
        return;
    struct room *r = room_find(id);
    if (!r)
        return;
    /* "<seq>:<body>" */
    int64_t seq = 0;
    size_t i = 0;
    while (i < len && i < 19 && payload[i] >= '0' && payload[i] <= '9')
        seq = seq * 10 + (payload[i++] - '0');
    if (i == 0 || i >= len || payload[i] != ':' || len - i - 1 > ROOM_BODY_MAX) {
        log_msg(LOG_ERROR, "room %s: malformed message on its channel", id);
        return;
    }
    room_push(r, seq, (const uint8_t *)payload + i + 1, len - i - 1);
}

static void on_catch_up(redisReply *reply, void *priv)
{
    struct pending *p = priv;
    struct room *r = room_find(p->room);
    if (r && reply_ok(reply, 2)) {
        for (size_t i = 2; i + 1 < reply->elements; i += 2) {
            const redisReply *s = reply->element[i], *b = reply->element[i + 1];
            if (s->type == REDIS_REPLY_INTEGER && b->type == REDIS_REPLY_STRING)
                room_push(r, s->integer, (const uint8_t *)b->str, b->len);
        }
    }
    free(p);
}

void room_on_subscribed(const char *chan, size_t chan_len)
{
    char id[ID_MAX + 1];
    struct room *r;
    if (!channel_room(chan, chan_len, id) || !(r = room_find(id)))
        return;
    r->sub = SUB_ACTIVE;
    /* Events published while this node was not subscribed (Redis
     * reconnect) are fetched from the history, so live members see no gap
     * when the history still has them. */
    if (r->last_seq > 0) {
        struct pending *p = pending_new(NULL, r->id, NULL);
        if (p && history_call(r->id, r->last_seq, on_catch_up, p) < 0)
            free(p);
    }
    for (uint32_t i = r->nmembers; i-- > 0;) {
        struct conn *c = r->members[i];
        int k = membership_of(c, r);
        if (c->rooms[k].state == MEMBER_WAIT_SUB)
            request_snapshot(c, k);
    }
}

void room_on_unsubscribed(const char *chan, size_t chan_len)
{
    char id[ID_MAX + 1];
    struct room *r;
    if (!channel_room(chan, chan_len, id) || !(r = room_find(id)) || r->sub != SUB_LEAVING)
        return;
    r->sub = SUB_NONE;
    if (r->nmembers == 0 && !r->resubscribe) {
        room_destroy(r);
        return;
    }
    r->resubscribe = 0;
    if (subscribe(r) < 0)
        r->sub = SUB_NONE; /* the subscriber connection is down; on_sub_ready retries */
}

static void for_each_room(void (*fn)(struct room *r))
{
    for (uint32_t b = 0; b < G.nbuckets; b++) {
        struct room *r = G.buckets[b];
        while (r) {
            struct room *next = r->hnext; /* fn may destroy r */
            fn(r);
            r = next;
        }
    }
}

static void sub_lost(struct room *r)
{
    r->sub = SUB_NONE;
    r->resubscribe = 0;
    if (r->nmembers == 0)
        room_destroy(r);
}

static void sub_ready(struct room *r)
{
    if (r->nmembers == 0)
        room_destroy(r);
    else if (r->sub == SUB_NONE)
        subscribe(r);
}

void room_on_sub_lost(void) { for_each_room(sub_lost); }
void room_on_sub_ready(void) { for_each_room(sub_ready); }

static int64_t sweep_now;
static int sweep_refresh;

static void sweep_room(struct room *r)
{
    if (r->nmembers == 0) {
        if (r->sub == SUB_ACTIVE && sweep_now - r->empty_since_ms >= ROOM_EMPTY_LINGER_MS) {
            struct room_keys k;
            room_keys(r->id, &k);
            if (rlink_unsubscribe(k.chan, strlen(k.chan)) == 0)
                r->sub = SUB_LEAVING;
        } else if (r->sub == SUB_NONE) {
            room_destroy(r);
        }
        return;
    }
    if (sweep_refresh && rlink_cmd_ready())
        presence_call(r, 0, 0, on_presence_only, NULL);
}

void room_sweep(int64_t now_ms)
{
    sweep_now = now_ms;
    sweep_refresh = now_ms - G.last_refresh_ms >= ROOM_PRESENCE_REFRESH_MS;
    if (sweep_refresh)
        G.last_refresh_ms = now_ms;
    for_each_room(sweep_room);
}
