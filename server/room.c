/* room.c - the registry of the rooms on this node (see room.h). */
#include "room.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catalog.h"
#include "clock.h"
#include "hash.h"
#include "log.h"
#include "message.h"
#include "roomkeys.h"

/* Buckets of the room table at start; it doubles as rooms come. */
#define ROOMS_BUCKETS_MIN 1024

static uint32_t bucket_of(const struct rooms *rs, const char *id)
{
    return hash_fnv1a(id, strlen(id)) & (rs->nbuckets - 1);
}

int rooms_init(struct rooms *rs, uv_loop_t *loop, const struct config *cfg, struct redis *rl,
               struct roomstore *store, struct board *board, struct conns *conns, const struct catalog *catalog)
{
    memset(rs, 0, sizeof *rs);
    rs->loop = loop;
    rs->cfg = cfg;
    rs->rl = rl;
    rs->store = store;
    rs->board = board;
    rs->conns = conns;
    rs->catalog = catalog;
    rs->nbuckets = ROOMS_BUCKETS_MIN;
    rs->buckets = calloc(rs->nbuckets, sizeof *rs->buckets);
    rs->pool = sendpool_new(cfg->fanout_threads);
    if (!rs->buckets || !rs->pool) {
        free(rs->buckets);
        sendpool_free(rs->pool);
        return -1;
    }
    /* The fan-out's handles (fanout.c starts them). */
    uv_check_init(loop, &rs->flush_check);
    uv_idle_init(loop, &rs->flush_more);
    uv_timer_init(loop, &rs->flush_wait);
    uv_timer_init(loop, &rs->board_timer);
    rs->flush_check.data = rs->flush_wait.data = rs->board_timer.data = rs->flush_more.data = rs;
    rs->handles = 1;
    return 0;
}

struct room *room_find(struct rooms *rs, const char *id)
{
    if (!rs->buckets)
        return NULL; /* a late Redis reply after rooms_free */
    for (struct room *r = rs->buckets[bucket_of(rs, id)]; r; r = r->hnext)
        if (strcmp(r->id, id) == 0)
            return r;
    return NULL;
}

static void grow(struct rooms *rs)
{
    uint32_t n = rs->nbuckets * 2;
    struct room **b = calloc(n, sizeof *b);
    if (!b)
        return; /* longer chains, still correct */
    for (uint32_t i = 0; i < rs->nbuckets; i++) {
        struct room *r = rs->buckets[i];
        while (r) {
            struct room *next = r->hnext;
            uint32_t h = hash_fnv1a(r->id, strlen(r->id)) & (n - 1);
            r->hnext = b[h];
            b[h] = r;
            r = next;
        }
    }
    free(rs->buckets);
    rs->buckets = b;
    rs->nbuckets = n;
}

struct room *room_create(struct rooms *rs, const char *id)
{
    struct room *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    snprintf(r->id, sizeof r->id, "%s", id);
    r->live = (uint8_t)catalog_room_live(rs->catalog, r->id);
    if (ring_init(&r->ring, r->id) < 0) {
        free(r);
        return NULL;
    }
    if (rs->count >= rs->nbuckets)
        grow(rs);
    uint32_t h = bucket_of(rs, id);
    r->hnext = rs->buckets[h];
    rs->buckets[h] = r;
    rs->count++;
    return r;
}

/* Unlinks r from a list of rooms linked through the member at `off`. */
static void unlink_room(struct room **list, struct room *r, size_t off)
{
    struct room **pp = list;
    while (*pp != r) {
        tc_assert(*pp);
        pp = (struct room **)((char *)*pp + off);
    }
    *pp = *(struct room **)((char *)r + off);
}

void room_destroy(struct rooms *rs, struct room *r)
{
    tc_assert(r->nmembers == 0);
    if (r->flush_queued)
        unlink_room(&rs->dirty, r, offsetof(struct room, flush_next));
    if (r->board_queued)
        unlink_room(&rs->board_dirty, r, offsetof(struct room, board_next));
    struct room **pp = &rs->buckets[bucket_of(rs, r->id)];
    while (*pp != r)
        pp = &(*pp)->hnext;
    *pp = r->hnext;
    tc_assert(rs->count > 0);
    rs->count--;
    while (r->snap_queue) { /* joins of members gone (roomjoin.c) */
        struct snap_wait *w = r->snap_queue;
        r->snap_queue = w->next;
        free(w);
    }
    while (r->held) { /* live events held for a catch-up (roomsub.c) */
        struct held_event *h = r->held;
        r->held = h->next;
        free(h);
    }
    ring_free(&r->ring);
    for (int f = 0; f < FMT_COUNT; f++) {
        frame_unref(r->board_push[f]);
        frame_unref(r->board_last[f]);
        frame_unref(r->flush_board[f]);
    }
    free(r->members);
    free(r);
}

void rooms_each(struct rooms *rs, void (*fn)(struct rooms *rs, struct room *r))
{
    for (uint32_t b = 0; b < rs->nbuckets; b++) {
        struct room *r = rs->buckets[b];
        while (r) {
            struct room *next = r->hnext; /* fn may destroy r */
            fn(rs, r);
            r = next;
        }
    }
}

void rooms_free(struct rooms *rs)
{
    rooms_each(rs, room_destroy);
    free(rs->buckets);
    rs->buckets = NULL;
    rs->nbuckets = rs->count = 0;
    sendpool_free(rs->pool);
    rs->pool = NULL;
    if (rs->handles) {
        uv_close((uv_handle_t *)&rs->flush_check, NULL);
        uv_close((uv_handle_t *)&rs->flush_more, NULL);
        uv_close((uv_handle_t *)&rs->flush_wait, NULL);
        uv_close((uv_handle_t *)&rs->board_timer, NULL);
        rs->handles = 0;
    }
}

int room_membership(const struct conn *c, const struct room *r)
{
    for (int i = 0; i < c->nrooms; i++)
        if (c->rooms[i].room == r)
            return i;
    return -1;
}

/* Tells Redis how many members this node has in the room now. */
int room_subscribe(struct rooms *rs, struct room *r)
{
    char chan[ROOM_KEY_MAX];
    room_channel(r->id, chan, sizeof chan);
    if (redis_subscribe(rs->rl, chan, strlen(chan)) < 0)
        return -1;
    r->sub = SUB_PENDING;
    return 0;
}

static void presence(struct rooms *rs, struct room *r)
{
    if (redis_up(rs->rl, RLINK_READ_LINK))
        roomstore_presence(rs->store, r->id, r->nmembers, 0, 0, NULL, NULL);
}

/* Puts the member at index `from` at index `to` (the caller has emptied
 * it), fixing the member's index. */
static void move_member(struct room *r, uint32_t to, uint32_t from)
{
    if (to == from)
        return;
    struct conn *x = r->members[from];
    r->members[to] = x;
    x->rooms[room_membership(x, r)].idx = to;
}

static void swap_members(struct room *r, uint32_t a, uint32_t b)
{
    if (a == b)
        return;
    struct conn *x = r->members[a], *y = r->members[b];
    r->members[a] = y;
    r->members[b] = x;
    x->rooms[room_membership(x, r)].idx = b;
    y->rooms[room_membership(y, r)].idx = a;
}

void room_park(struct room *r, struct membership *m)
{
    tc_assert(m->idx >= r->nparked && m->idx < r->nmembers);
    swap_members(r, m->idx, r->nparked++);
}

void room_leave(struct rooms *rs, struct conn *c, int i)
{
    tc_assert(i >= 0 && i < c->nrooms);
    struct membership *m = &c->rooms[i];
    struct room *r = m->room;
    tc_assert(m->idx < r->nmembers && r->members[m->idx] == c);

    /* Swap-remove from the room, keeping the parked members first and,
     * while a flush pass is under way, the members it visited before those
     * it has not: a hole among the parked takes the last parked one, a
     * hole among the visited the last visited one, and the last hole the
     * last member. Only members after the removed one move. */
    uint32_t hole = m->idx;
    if (hole < r->nparked) {
        move_member(r, hole, --r->nparked);
        hole = r->nparked;
    }
    if (r->flushing && hole < r->flush_at) {
        move_member(r, hole, --r->flush_at);
        hole = r->flush_at;
    }
    move_member(r, hole, --r->nmembers);
    tc_assert(r->nparked <= r->nmembers);
    free(m->join_id);
    c->rooms[i] = c->rooms[--c->nrooms];
    /* An empty room is freed by the sweep, never here: callers may be
     * walking the room's members. */
    if (r->nmembers == 0) {
        r->empty_since_ms = clock_mono_ms();
        if (r->sub != SUB_NONE)
            presence(rs, r);
    }
}

void rooms_leave_all(struct rooms *rs, struct conn *c)
{
    while (c->nrooms > 0)
        room_leave(rs, c, c->nrooms - 1);
}

void rooms_resume(struct rooms *rs, struct conn *c)
{
    (void)rs;
    int missed = 0;
    for (int i = 0; i < c->nrooms; i++) {
        struct membership *m = &c->rooms[i];
        struct room *r = m->room;
        if (m->idx >= r->nparked) {
            /* Not parked: no flush of this room came while it was stalled. */
            m->board_gen = r->board_gen;
            continue;
        }
        swap_members(r, m->idx, --r->nparked);
        missed |= m->board_gen != r->board_gen;
    }
    /* Apart, since a send may close the connection (past max-queued-bytes),
     * which leaves every room. The push goes out before the events the
     * member has still to get, as it does to a member with replies queued. */
    for (int i = 0; missed && i < c->nrooms; i++) {
        struct membership *m = &c->rooms[i];
        struct room *r = m->room;
        if (m->state == MEMBER_LIVE && m->board_gen != r->board_gen && r->board_last[c->fmt]) {
            m->board_gen = r->board_gen;
            conn_send(c, frame_ref(r->board_last[c->fmt]));
        }
    }
}

/* Combos still open after a sweep (one whose gift's time runs ahead of
 * this node's clock, or past the 100 a call closes) keep the sweeps going. */
static void on_combo_swept(void *ctx, const char *room, int64_t open)
{
    struct rooms *rs = ctx;
    struct room *r = open > 0 ? room_find(rs, room) : NULL;
    if (r)
        r->combo_until_ms = clock_mono_ms() + ROOM_COMBO_SWEEP_AFTER_MS;
}

static void sweep_room(struct rooms *rs, struct room *r)
{
    if (r->nmembers == 0) {
        if (r->sub == SUB_ACTIVE && rs->sweep_now_ms - r->empty_since_ms >= ROOM_EMPTY_LINGER_MS) {
            char chan[ROOM_KEY_MAX];
            room_channel(r->id, chan, sizeof chan);
            if (redis_unsubscribe(rs->rl, chan, strlen(chan)) == 0)
                r->sub = SUB_LEAVING;
        } else if (r->sub == SUB_NONE) {
            room_destroy(rs, r);
        }
        return;
    }
    if (r->sub == SUB_NONE)
        room_subscribe(rs, r); /* when it fails, the next sweep tries again */
    if (rs->sweep_refresh)
        presence(rs, r);
    /* Every node with members sweeps: a combo closes on time as long as one
     * of them is up (the first to run the script closes it, once). */
    if (r->sub == SUB_ACTIVE && rs->sweep_now_ms <= r->combo_until_ms)
        roomstore_combo_sweep(rs->store, r->id, on_combo_swept, rs);
}

void rooms_sweep(struct rooms *rs, int64_t now_ms)
{
    rs->sweep_now_ms = now_ms;
    rs->sweep_refresh = now_ms - rs->last_refresh_ms >= ROOM_PRESENCE_REFRESH_MS;
    if (rs->sweep_refresh)
        rs->last_refresh_ms = now_ms;
    rooms_each(rs, sweep_room);
}

/* The `room` status message of r, in fmt. */
static struct frame *status_frame(const struct room *r, enum fmt fmt)
{
    struct enc e;
    message_start(&e, fmt, 96, "room", "", 2);
    enc_key(&e, "room");
    enc_cstr(&e, r->id);
    enc_key(&e, "live");
    enc_bool(&e, r->live);
    enc_end_map(&e);
    return enc_finish(&e);
}

void rooms_catalog_changed(struct rooms *rs)
{
    for (uint32_t b = 0; b < rs->nbuckets; b++) {
        for (struct room *r = rs->buckets[b]; r; r = r->hnext) {
            uint8_t live = (uint8_t)catalog_room_live(rs->catalog, r->id);
            if (live == r->live)
                continue;
            r->live = live;
            log_msg(LOG_INFO, "room %s: %s", r->id, live ? "live" : "no longer live");
            struct frame *f[FMT_COUNT] = {NULL};
            /* Down: a send may close a member (room_leave). */
            for (uint32_t i = r->nmembers; i-- > 0;) {
                struct conn *c = r->members[i];
                if (!f[c->fmt])
                    f[c->fmt] = status_frame(r, c->fmt);
                conn_send(c, f[c->fmt] ? frame_ref(f[c->fmt]) : NULL);
            }
            for (int k = 0; k < FMT_COUNT; k++)
                if (f[k])
                    frame_unref(f[k]);
        }
    }
}
