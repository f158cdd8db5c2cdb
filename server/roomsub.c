/* roomsub.c - the node's subscription to each room's channel, and the
 * events that arrive on it (see room.h).
 *
 *   SUB_NONE --subscribe--> SUB_PENDING --subscribed--> SUB_ACTIVE
 *   SUB_ACTIVE (empty, lingered) --unsubscribe--> SUB_LEAVING --> SUB_NONE
 * A join during SUB_LEAVING subscribes again once the unsubscribe is
 * confirmed. The subscriber connection's loss puts every room in SUB_NONE;
 * its return subscribes again the rooms that still have members. A refused
 * subscription, or one a cluster master ended when its slot moved, puts the
 * room in SUB_NONE too, and the sweep (every 250 ms) subscribes again.
 *
 * Once subscribed again, the events the node missed are read from the
 * history (in batches of ROOM_HISTORY_BATCH) while the live ones that come
 * meanwhile are held, so that they do not overtake the catch-up. */
#include "room.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "roomkeys.h"

/* The room of a channel, when this node has it. */
static struct room *channel_room(struct rooms *rs, const char *chan, size_t len)
{
    char id[ID_MAX + 1];
    return room_channel_id(chan, len, id) ? room_find(rs, id) : NULL;
}


static void deliver(struct rooms *rs, struct room *r, const char *payload, size_t len)
{
    int64_t seq;
    enum event_kind kind;
    const uint8_t *body;
    size_t body_len;
    if (event_message_read(payload, len, &seq, &kind, &body, &body_len) < 0) {
        log_msg(LOG_ERROR, "room %s: malformed message on its channel", r->id);
        return;
    }
    fanout_event(rs, r, seq, kind, body, body_len);
}

/* The catch-up is over (or given up): the held events go out, oldest first
 * (those the catch-up brought already are dropped by fanout_event). */
static void release_held(struct rooms *rs, struct room *r)
{
    r->catching_up = 0;
    r->catchup_gen++;
    struct held_event *h = r->held;
    r->held = NULL;
    r->held_tail = &r->held;
    r->nheld = 0;
    while (h) {
        struct held_event *next = h->next;
        deliver(rs, r, h->payload, h->len);
        free(h);
        h = next;
    }
}

void rooms_on_message(void *ctx, const char *chan, size_t chan_len, const char *payload, size_t len)
{
    struct rooms *rs = ctx;
    struct room *r = channel_room(rs, chan, chan_len);
    if (!r)
        return;
    int64_t seq;
    enum event_kind kind;
    const uint8_t *body;
    size_t body_len;
    if (r->catching_up && event_message_read(payload, len, &seq, &kind, &body, &body_len) == 0) {
        struct held_event *h = r->nheld < ROOM_CATCHUP_HOLD_MAX ? malloc(sizeof *h + len) : NULL;
        if (h) {
            h->next = NULL;
            h->seq = seq;
            h->len = len;
            memcpy(h->payload, payload, len);
            if (!r->held_tail)
                r->held_tail = &r->held;
            *r->held_tail = h;
            r->held_tail = &h->next;
            r->nheld++;
            return;
        }
        release_held(rs, r); /* too many: out they go, members recover the rest */
    } else if (r->held) {
        release_held(rs, r); /* held through a lost subscription, not caught up */
    }
    deliver(rs, r, payload, len);
}

/* A catch-up read of a room's history: the room's id, since the room may
 * be gone when the answer comes, and its catch-up generation. */
struct catch_up {
    struct rooms *rs;
    uint32_t gen;
    char room[ID_MAX + 1];
};

static int catch_up(struct rooms *rs, struct room *r);

static void on_catch_up(void *ctx, const struct roomstore_history *h)
{
    struct catch_up *q = ctx;
    struct room *r = room_find(q->rs, q->room);
    if (r && r->catching_up && r->catchup_gen == q->gen) {
        int64_t before = r->ring.last_seq;
        for (size_t i = 0; h && i < h->events.n; i++) {
            struct roomstore_event ev;
            if (roomstore_event_at(&h->events, i, &ev) == 0)
                fanout_event(q->rs, r, ev.seq, ev.kind, ev.body, ev.len);
        }
        /* Events still missing before the first held one (or the room's
         * latest), and this batch moved on: the next batch. */
        int64_t want = r->held ? r->held->seq - 1 : h ? h->seq : 0;
        if (!(h && r->ring.last_seq > before && r->ring.last_seq < want && catch_up(q->rs, r) == 0))
            release_held(q->rs, r);
    }
    free(q);
}

/* Reads the events after the room's last from the history; live events
 * wait meanwhile. Returns 0, or -1 when the read could not be sent. */
static int catch_up(struct rooms *rs, struct room *r)
{
    struct catch_up *q = malloc(sizeof *q);
    if (!q)
        return -1;
    q->rs = rs;
    q->gen = ++r->catchup_gen;
    memcpy(q->room, r->id, sizeof q->room);
    r->catching_up = 1;
    if (roomstore_history(rs->store, r->id, r->ring.last_seq, ROOM_HISTORY_BATCH, on_catch_up, q) < 0) {
        free(q);
        return -1; /* the caller releases what is held */
    }
    return 0;
}

void rooms_on_subscribed(void *ctx, const char *chan, size_t chan_len)
{
    struct rooms *rs = ctx;
    struct room *r = channel_room(rs, chan, chan_len);
    if (!r)
        return;
    r->sub = SUB_ACTIVE;
    /* Events published while this node was not subscribed (a Redis
     * reconnect, a cluster master's failover) are fetched from the history
     * before the live ones that come meanwhile, so live members see no gap
     * when the history still has them: from the room's last event here, or
     * from the start when none came before the subscription was lost. */
    if ((r->ring.last_seq > 0 || r->subscribed_before) && !r->catching_up && catch_up(rs, r) < 0)
        release_held(rs, r);
    r->subscribed_before = 1;
    for (uint32_t i = r->nmembers; i-- > 0;) {
        struct conn *c = r->members[i];
        int k = room_membership(c, r);
        if (c->rooms[k].state == MEMBER_WAIT_SUB)
            room_request_snapshot(rs, c, k);
    }
}

void rooms_on_unsubscribed(void *ctx, const char *chan, size_t chan_len)
{
    struct rooms *rs = ctx;
    struct room *r = channel_room(rs, chan, chan_len);
    if (!r)
        return;
    if (r->sub != SUB_LEAVING) {
        /* Not asked for: a cluster master gave the room's slot away (the
         * sweep subscribes again, at its new master, with a catch-up). */
        r->sub = SUB_NONE;
        return;
    }
    r->sub = SUB_NONE;
    if (r->nmembers == 0 && !r->resubscribe) {
        room_destroy(rs, r);
        return;
    }
    r->resubscribe = 0;
    if (room_subscribe(rs, r) < 0)
        r->sub = SUB_NONE; /* the subscriber connection is down; on_sub_ready retries */
}

void rooms_on_sub_error(void *ctx, const char *chan, size_t chan_len, const char *err)
{
    struct rooms *rs = ctx;
    struct room *r = channel_room(rs, chan, chan_len);
    log_msg(LOG_WARN, "room channel %.*s: %s", (int)chan_len, chan, err);
    /* Refused (a master that no longer serves the slot, a cluster without
     * one): the sweep tries again. */
    if (r && r->sub != SUB_LEAVING)
        r->sub = SUB_NONE;
    else if (r)
        rooms_on_unsubscribed(ctx, chan, chan_len);
}

static void sub_lost(struct rooms *rs, struct room *r)
{
    /* A catch-up under way is dropped, the events it holds kept: the next
     * subscription's catch-up reads from the same point and releases them. */
    if (r->catching_up) {
        r->catching_up = 0;
        r->catchup_gen++;
    }
    r->sub = SUB_NONE;
    r->resubscribe = 0;
    if (r->nmembers == 0)
        room_destroy(rs, r);
}

static void sub_ready(struct rooms *rs, struct room *r)
{
    if (r->nmembers == 0)
        room_destroy(rs, r);
    else if (r->sub == SUB_NONE)
        room_subscribe(rs, r);
}

void rooms_on_sub_lost(void *ctx) { rooms_each(ctx, sub_lost); }
void rooms_on_sub_ready(void *ctx) { rooms_each(ctx, sub_ready); }
