/* roomjoin.c - the room requests of a connection: join (with its
 * snapshot), leave, history and notice (see room.h). */
#include "room.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "message.h"
#include "mpack.h"
#include "request.h"

/* A request waiting for Redis: the connection by id (it may be gone) and
 * the room by name (it may have been freed). A join's waits in its room's
 * snapshot queue first (wait: the link, first). */
struct pending {
    struct snap_wait wait;
    struct rooms *rs;
    uint64_t conn_id;
    char room[ID_MAX + 1];
    char req_id[REPLY_ID_MAX + 1];
    int64_t after_seq; /* history requests */
    int refresh;       /* a join of a room joined already */
};

static struct pending *pending_new(struct rooms *rs, const struct conn *c, const char *room, const char *req_id)
{
    struct pending *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->rs = rs;
    p->conn_id = c->id;
    snprintf(p->room, sizeof p->room, "%s", room);
    snprintf(p->req_id, sizeof p->req_id, "%s", req_id ? req_id : "");
    return p;
}

static void send_unavailable(struct conn *c, const char *req_id)
{
    struct reply r;
    conn_reply(c, req_id, &r);
    reply_unavailable(&r, "the event store is unreachable; retry");
}

/* Writes the events of a list as an array under "events". */
static void enc_events(struct enc *e, const char *room, const struct roomstore_events *events)
{
    enc_key(e, "events");
    enc_array(e, (uint32_t)events->n);
    for (size_t i = 0; i < events->n; i++) {
        struct roomstore_event ev;
        if (roomstore_event_at(events, i, &ev) < 0 || message_enc_event(e, room, ev.seq, ev.body, ev.len) < 0) {
            e->failed = 1;
            return;
        }
    }
    enc_end_array(e);
}

/* ---- Join -------------------------------------------------------------------- */

static struct frame *joined_frame(const struct conn *c, const struct room *r, const struct pending *p,
                                  const struct roomstore_snapshot *s)
{
    struct enc e;
    message_start(&e, c->fmt, 1024 + 2 * s->pins_len, "joined", p->req_id, 12 + s->goal.set);
    enc_key(&e, "room");
    enc_cstr(&e, p->room);
    enc_key(&e, "owner");
    enc_cstr(&e, p->room); /* a room is its creator's (docs/protocol.md) */
    enc_key(&e, "live");
    enc_bool(&e, r->live);
    enc_key(&e, "members");
    enc_int(&e, s->members);
    enc_key(&e, "seq");
    enc_int(&e, s->seq);
    /* board is the all-time list (the leaderboard message's top). */
    static const char *const names[BOARD_PERIODS] = {"board", "day", "week", "month"};
    for (int p = 0; p < BOARD_PERIODS; p++) {
        enc_key(&e, names[p]);
        board_top_enc(&e, &s->top[p], p == BOARD_ALL);
    }
    board_totals_enc(&e, s->top);
    board_goal_enc(&e, &s->goal);
    /* The pins as the room script wrote them (msgpack): spliced in, or
     * turned into JSON, as an event body is. */
    enc_key(&e, "pins");
    struct mpack pins = mpack_of(s->pins, s->pins_len);
    if (enc_mpack(&e, &pins, MESSAGE_DEPTH_MAX - 1) < 0 || pins.p != pins.end)
        e.failed = 1;
    enc_events(&e, p->room, &s->events);
    enc_end_map(&e);
    return enc_finish(&e);
}

/* Answers one join with snapshot s (NULL: Redis did not answer). */
static void answer_join(struct pending *p, const struct roomstore_snapshot *s)
{
    struct rooms *rs = p->rs;
    struct conn *c = conn_find(rs->conns, p->conn_id);
    struct room *r = room_find(rs, p->room);
    int i = c && r ? room_membership(c, r) : -1;
    enum member_state want = p->refresh ? MEMBER_LIVE : MEMBER_WAIT_SNAP;
    if (i < 0 || c->rooms[i].state != want) {
        free(p); /* left, or gone, while Redis answered */
        return;
    }
    if (!s) {
        send_unavailable(c, p->req_id);
        if (!p->refresh)
            room_leave(rs, c, i);
        free(p);
        return;
    }
    struct frame *joined = joined_frame(c, r, p, s);
    if (p->refresh) {
        /* A member already receives every event: its cursor stays. */
        conn_send(c, joined);
        free(p);
        return;
    }
    /* From here the member receives every event after the snapshot. */
    struct membership *m = &c->rooms[i];
    m->state = MEMBER_LIVE;
    m->next_seq = s->seq + 1;
    struct ring_event *ev = ring_next(&r->ring, m->next_seq);
    m->sent_cum = ev ? ev->cum[c->fmt] - ev->frame[c->fmt]->len : r->ring.cum[c->fmt];
    free(m->join_id);
    m->join_id = NULL;
    conn_send(c, joined);
    if (rs->on_joined && room_membership(c, r) >= 0)
        rs->on_joined(rs->on_joined_ctx, c, r);
    if (ev)
        fanout_mark(rs, r); /* events after the snapshot are in the ring already */
    free(p);
}

/* One snapshot read of a room and the joins it answers, in the order they
 * came. */
struct snap_read {
    struct rooms *rs;
    uint64_t id; /* the room's snap_busy while it is in flight */
    char room[ID_MAX + 1];
    struct snap_wait *joins;
};

static void answer_all(struct snap_wait *w, const struct roomstore_snapshot *s)
{
    while (w) {
        struct snap_wait *next = w->next;
        answer_join((struct pending *)w, s);
        w = next;
    }
}

static void snapshot_send(struct rooms *rs, struct room *r);

static void on_snapshot(void *ctx, const struct roomstore_snapshot *s)
{
    struct snap_read *q = ctx;
    struct rooms *rs = q->rs;
    /* Members that fail leave (room_leave), but an empty room is freed by
     * the sweep only: r stays valid through the answers. */
    answer_all(q->joins, s);
    struct room *r = room_find(rs, q->room);
    if (r && r->snap_busy == q->id) {
        r->snap_busy = 0;
        if (r->snap_queue)
            snapshot_send(rs, r);
    }
    free(q);
}

/* Reads the snapshot for every join in r's queue, in one call: a snapshot
 * read after a join came is right for it (the node is subscribed to the
 * room before any snapshot is read, so the events after the snapshot's
 * seq reach the ring), and a storm of joins of one room costs Redis one
 * read per round trip instead of one per join. */
static void snapshot_send(struct rooms *rs, struct room *r)
{
    struct snap_read *q = malloc(sizeof *q);
    struct snap_wait *joins = r->snap_queue;
    r->snap_queue = NULL; /* the next request starts the queue again */
    if (q) {
        q->rs = rs;
        q->id = ++rs->snap_reads;
        snprintf(q->room, sizeof q->room, "%s", r->id);
        q->joins = joins;
        if (roomstore_presence(rs->store, r->id, r->nmembers, rs->cfg->snapshot_events, BOARD_TOP_N, on_snapshot,
                               q) == 0) {
            r->snap_busy = q->id;
            return;
        }
        free(q);
    }
    answer_all(joins, NULL);
}

/* Queues join p for r's next snapshot read, and sends it unless a read is
 * in flight (its answer sends the next). */
static void snapshot_request(struct rooms *rs, struct room *r, struct pending *p)
{
    rs->snap_joins++;
    p->wait.next = NULL;
    if (!r->snap_queue)
        r->snap_tail = &r->snap_queue;
    *r->snap_tail = &p->wait;
    r->snap_tail = &p->wait.next;
    if (!r->snap_busy)
        snapshot_send(rs, r);
}

void room_request_snapshot(struct rooms *rs, struct conn *c, int i)
{
    struct membership *m = &c->rooms[i];
    struct room *r = m->room;
    struct pending *p = pending_new(rs, c, r->id, m->join_id);
    m->state = MEMBER_WAIT_SNAP;
    if (!p) {
        send_unavailable(c, m->join_id);
        room_leave(rs, c, i);
        return;
    }
    snapshot_request(rs, r, p);
}

/* A join of a room the connection is in: a fresh snapshot, unless one is
 * on its way. The member keeps receiving events meanwhile. */
static void join_again(struct rooms *rs, struct conn *c, struct room *r, int i, const char *req_id)
{
    if (c->rooms[i].state != MEMBER_LIVE) {
        conn_send_error(c, req_id, ERR_BAD_FIELD, "a join of this room is in progress", "room", 0);
        return;
    }
    struct pending *p = pending_new(rs, c, r->id, req_id);
    if (!p) {
        send_unavailable(c, req_id);
        return;
    }
    p->refresh = 1;
    snapshot_request(rs, r, p);
}

/* Room for one more entry in c->rooms and in r->members. */
static int make_room(struct conn *c, struct room *r, int max_rooms)
{
    if (c->nrooms == c->rooms_cap) {
        /* Grown on demand: most viewers are in one room, and at 100,000
         * connections every byte per connection counts. */
        int cap = c->rooms_cap ? c->rooms_cap * 2 : 1;
        if (cap > max_rooms)
            cap = max_rooms;
        struct membership *rooms = realloc(c->rooms, sizeof *rooms * (size_t)cap);
        if (!rooms)
            return -1;
        c->rooms = rooms;
        c->rooms_cap = (uint16_t)cap;
    }
    if (r->nmembers == r->members_cap) {
        uint32_t cap = r->members_cap ? r->members_cap * 2 : 8;
        struct conn **mm = realloc(r->members, sizeof *mm * cap);
        if (!mm)
            return -1;
        r->members = mm;
        r->members_cap = cap;
    }
    return 0;
}

void room_join(struct rooms *rs, struct conn *c, const char *id, const char *req_id)
{
    const struct config *cfg = rs->cfg;
    struct room *r = room_find(rs, id);
    int i = r ? room_membership(c, r) : -1;
    if (i >= 0) {
        join_again(rs, c, r, i, req_id);
        return;
    }
    if (c->nrooms >= cfg->max_rooms_per_conn) {
        conn_send_error(c, req_id, ERR_TOO_MANY_ROOMS, "this connection has joined the most rooms it may", NULL, 0);
        return;
    }
    if (r && r->nmembers >= (uint32_t)cfg->max_members_per_room) {
        conn_send_error(c, req_id, ERR_ROOM_FULL, "this room has the most members it may have here", NULL, 0);
        return;
    }
    if (!redis_up(rs->rl, RLINK_READ_LINK)) {
        send_unavailable(c, req_id);
        return;
    }
    int created = !r;
    if (!r && !(r = room_create(rs, id))) {
        conn_close(c, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION, "out of memory", 1);
        return;
    }
    char *jid = strdup(req_id);
    if (!jid || make_room(c, r, cfg->max_rooms_per_conn) < 0) {
        free(jid);
        if (created)
            room_destroy(rs, r);
        conn_close(c, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION, "out of memory", 1);
        return;
    }
    i = c->nrooms++;
    struct membership *m = &c->rooms[i];
    *m = (struct membership){.room = r, .ring = &r->ring, .idx = r->nmembers, .state = MEMBER_WAIT_SUB,
                             .join_id = jid};
    r->members[r->nmembers++] = c;
    r->empty_since_ms = 0;

    switch (r->sub) {
    case SUB_ACTIVE:
        room_request_snapshot(rs, c, i);
        break;
    case SUB_NONE:
        if (room_subscribe(rs, r) < 0) {
            send_unavailable(c, req_id);
            room_leave(rs, c, i);
        }
        break;
    case SUB_LEAVING:
        r->resubscribe = 1;
        break;
    case SUB_PENDING:
        break;
    }
}

void room_leave_request(struct rooms *rs, struct conn *c, const char *id, const char *req_id)
{
    struct room *r = room_find(rs, id);
    int i = r ? room_membership(c, r) : -1;
    if (i < 0) {
        conn_send_error(c, req_id, ERR_NOT_MEMBER, "not a member of this room", NULL, 0);
        return;
    }
    room_leave(rs, c, i);
    struct enc e;
    message_start(&e, c->fmt, 128, "left", req_id, 1);
    enc_key(&e, "room");
    enc_cstr(&e, id);
    enc_end_map(&e);
    conn_send(c, enc_finish(&e));
}

/* ---- Notices ------------------------------------------------------------------ */

static void on_published(void *ctx, int64_t seq)
{
    struct pending *p = ctx;
    struct conn *c = conn_find(p->rs->conns, p->conn_id);
    if (c && seq < 0) {
        send_unavailable(c, p->req_id);
    } else if (c) {
        struct enc e;
        message_start(&e, c->fmt, 128, "ack", p->req_id, 2);
        enc_key(&e, "room");
        enc_cstr(&e, p->room);
        enc_key(&e, "seq");
        enc_int(&e, seq);
        enc_end_map(&e);
        conn_send(c, enc_finish(&e));
    }
    free(p);
}

void room_notice(struct rooms *rs, struct conn *c, const char *id, const char *text, size_t text_len,
                 const char *req_id)
{
    if (c->user.role != ROLE_ADMIN && !(c->user.role == ROLE_CREATOR && strcmp(c->user.sub, id) == 0)) {
        conn_send_error(c, req_id, ERR_FORBIDDEN, "only the room's owner or an admin may send a notice", NULL, 0);
        return;
    }
    uint8_t body[EVENT_BODY_MAX];
    int n = event_body_notice(body, sizeof body, c->user.sub, c->user.role, text, text_len, clock_wall_ms());
    tc_assert(n > 0); /* the text is bounded far below EVENT_BODY_MAX by the decoder */
    struct pending *p = pending_new(rs, c, id, req_id);
    if (!p || roomstore_publish(rs->store, id, EVENT_NOTICE, body, (size_t)n, on_published, p) < 0) {
        free(p);
        send_unavailable(c, req_id);
    }
}

/* ---- Goals --------------------------------------------------------------------- */

static void on_goal(void *ctx, int64_t seq)
{
    struct pending *p = ctx;
    if (seq != 0) {
        on_published(ctx, seq); /* the ack, or unavailable; frees p */
        return;
    }
    struct conn *c = conn_find(p->rs->conns, p->conn_id);
    if (c)
        conn_send_error(c, p->req_id, ERR_BAD_FIELD, "this room has no goal", "room", 0);
    free(p);
}

void room_goal(struct rooms *rs, struct conn *c, const char *id, int64_t target, int64_t gift, int64_t deadline,
               const char *title, size_t title_len, const char *req_id)
{
    _Static_assert(REQUEST_GOAL_TITLE_MAX <= BOARD_GOAL_TITLE_MAX, "a goal's title fits the board's");
    if (c->user.role != ROLE_ADMIN && !(c->user.role == ROLE_CREATOR && strcmp(c->user.sub, id) == 0)) {
        conn_send_error(c, req_id, ERR_FORBIDDEN, "only the room's owner or an admin may set its goal", NULL, 0);
        return;
    }
    int64_t now = clock_wall_ms();
    if (deadline && deadline <= now) {
        conn_send_error(c, req_id, ERR_BAD_FIELD, "the deadline has passed", "deadline", 0);
        return;
    }
    struct pending *p = pending_new(rs, c, id, req_id);
    if (!p || roomstore_goal(rs->store, id, c->user.sub, role_name(c->user.role), now, target, gift, deadline, title,
                             title_len, on_goal, p) < 0) {
        free(p);
        send_unavailable(c, req_id);
    }
}

/* ---- Pins and moderators ------------------------------------------------------- */

/* The room's owner (its creator) or an admin. */
static int owns(const struct conn *c, const char *room)
{
    return c->user.role == ROLE_ADMIN || (c->user.role == ROLE_CREATOR && strcmp(c->user.sub, room) == 0);
}

static void on_unpinned(void *ctx, const redisReply *reply)
{
    struct pending *p = ctx;
    struct conn *c = conn_find(p->rs->conns, p->conn_id);
    int64_t rc = reply && reply->elements >= 1 ? reply->element[0]->integer : 0;
    if (!c)
        free(p);
    else if (rc == -2) {
        conn_send_error(c, p->req_id, ERR_FORBIDDEN, "only the room's owner, an admin or a moderator may unpin",
                        NULL, 0);
        free(p);
    } else if (rc == -1) {
        conn_send_error(c, p->req_id, ERR_BAD_FIELD, "no such tip is pinned in this room", "order", 0);
        free(p);
    } else {
        on_published(ctx, rc > 0 ? rc : -1); /* the ack, or unavailable; frees p */
    }
}

void room_unpin(struct rooms *rs, struct conn *c, const char *id, const char *order, const char *req_id)
{
    /* Whether a viewer or another creator moderates the room is Redis's
     * to say, in the script's step. */
    struct pending *p = pending_new(rs, c, id, req_id);
    if (!p || roomstore_pins(rs->store, id, "unpin", c->user.sub, owns(c, id), order, on_unpinned, p) < 0) {
        free(p);
        send_unavailable(c, req_id);
    }
}

static void on_moderators(void *ctx, const redisReply *reply)
{
    struct pending *p = ctx;
    struct conn *c = conn_find(p->rs->conns, p->conn_id);
    if (c && !reply) {
        send_unavailable(c, p->req_id);
    } else if (c && reply->element[0]->integer == -3) {
        conn_send_error(c, p->req_id, ERR_BAD_FIELD, "this room has the most moderators it may have", "user", 0);
    } else if (c) {
        struct enc e;
        message_start(&e, c->fmt, 256 + 72 * reply->elements, "moderators", p->req_id, 2);
        enc_key(&e, "room");
        enc_cstr(&e, p->room);
        enc_key(&e, "moderators");
        enc_array(&e, (uint32_t)(reply->elements - 1));
        for (size_t i = 1; i < reply->elements; i++) {
            const redisReply *m = reply->element[i];
            if (m->type == REDIS_REPLY_STRING)
                enc_str(&e, m->str, m->len);
            else
                enc_cstr(&e, "");
        }
        enc_end_array(&e);
        enc_end_map(&e);
        conn_send(c, enc_finish(&e));
    }
    free(p);
}

void room_moderators(struct rooms *rs, struct conn *c, const char *id, const char *op, const char *user,
                     const char *req_id)
{
    /* Anyone may read the list (a viewer learns whether it moderates); only
     * the owner or an admin changes it. */
    if (strcmp(op, "mod_list") != 0 && !owns(c, id)) {
        conn_send_error(c, req_id, ERR_FORBIDDEN, "only the room's owner or an admin may name its moderators",
                        NULL, 0);
        return;
    }
    struct pending *p = pending_new(rs, c, id, req_id);
    if (!p || roomstore_pins(rs->store, id, op, c->user.sub, 1, user, on_moderators, p) < 0) {
        free(p);
        send_unavailable(c, req_id);
    }
}

/* ---- History ------------------------------------------------------------------- */

/* Starts the `history` reply, up to its events (the caller writes the
 * "events" key and array, and ends the map), whether the events come from
 * Redis or from the node's ring. */
static void history_start(struct enc *e, enum fmt fmt, size_t hint, const char *req_id, const char *room,
                          int64_t seq)
{
    message_start(e, fmt, hint, "history", req_id, 3);
    enc_key(e, "room");
    enc_cstr(e, room);
    enc_key(e, "seq");
    enc_int(e, seq);
}

static void on_history(void *ctx, const struct roomstore_history *h)
{
    struct pending *p = ctx;
    struct conn *c = conn_find(p->rs->conns, p->conn_id);
    p->rs->history_reads--;
    if (c)
        c->reads--;
    if (!c) {
        free(p);
        return;
    }
    if (!h) {
        send_unavailable(c, p->req_id);
        free(p);
        return;
    }
    int64_t after = p->after_seq;
    if (after < h->seq && (h->oldest == 0 || h->oldest > after + 1)) {
        conn_send_error(c, p->req_id, ERR_HISTORY_GONE,
                        "the events after after_seq are no longer kept; join again for a snapshot", NULL,
                        h->oldest ? h->oldest : h->seq + 1);
        free(p);
        return;
    }
    struct enc e;
    history_start(&e, c->fmt, 1024, p->req_id, p->room, h->seq);
    enc_events(&e, p->room, &h->events);
    enc_end_map(&e);
    conn_send(c, enc_finish(&e));
    free(p);
}

/* Answers from the room's ring on this node when it holds the events
 * after after_seq: no Redis read, and the events are already encoded.
 * Returns 1 when answered. */
static int history_from_ring(struct rooms *rs, struct conn *c, const char *id, int64_t after_seq,
                             const char *req_id)
{
    struct room *r = room_find(rs, id);
    /* Only a subscribed room's ring is sure to be current and gapless up
     * to its latest event. */
    if (!r || r->sub != SUB_ACTIVE)
        return 0;
    struct frame *ev[ROOM_HISTORY_BATCH];
    int n = ring_run(&r->ring, after_seq, c->fmt, ev, ROOM_HISTORY_BATCH);
    if (n < 0)
        return 0;
    size_t bytes = 128;
    for (int i = 0; i < n; i++)
        bytes += ev[i]->len + 1;
    struct enc e;
    history_start(&e, c->fmt, bytes, req_id, id, r->ring.last_seq);
    enc_key(&e, "events");
    enc_array(&e, (uint32_t)n);
    for (int i = 0; i < n; i++)
        enc_raw(&e, frame_payload(ev[i]), ev[i]->len);
    enc_end_array(&e);
    enc_end_map(&e);
    conn_send(c, enc_finish(&e));
    return 1;
}

void room_history(struct rooms *rs, struct conn *c, const char *id, int64_t after_seq, const char *req_id)
{
    const struct config *cfg = rs->cfg;
    /* The bounds (docs/operations.md, "Limits against abuse"): what the
     * node's connections have not yet taken, what one connection and the
     * node may have Redis read at once. Past them the client retries. */
    const char *busy = NULL;
    if (rs->conns->queued_bytes > (size_t)cfg->history_queued_bytes)
        busy = "this node has too many replies queued; retry later";
    else if (history_from_ring(rs, c, id, after_seq, req_id)) {
        rs->history_by[ROOM_HISTORY_RING]++;
        return;
    }
    else if (c->reads >= ROOM_HISTORY_PER_CONN)
        busy = "this connection has too many history requests waiting; send the next after an answer";
    else if (rs->history_reads >= cfg->history_reads_max)
        busy = "this node has too many history reads waiting; retry later";
    if (busy) {
        rs->history_by[ROOM_HISTORY_REFUSED]++;
        conn_send_error(c, req_id, ERR_RATE_LIMITED, busy, NULL, ROOM_HISTORY_RETRY_MS);
        return;
    }
    struct pending *p = pending_new(rs, c, id, req_id);
    if (p)
        p->after_seq = after_seq;
    if (!p || roomstore_history(rs->store, id, after_seq, ROOM_HISTORY_BATCH, on_history, p) < 0) {
        free(p);
        send_unavailable(c, req_id);
        return;
    }
    rs->history_reads++;
    rs->history_by[ROOM_HISTORY_REDIS]++;
    c->reads++;
}
