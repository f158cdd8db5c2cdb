/* roomsub.c - the node's subscription to each room's channel, and the
 * events that arrive on it (see room.h).
 *
 *   SUB_NONE --subscribe--> SUB_PENDING --subscribed--> SUB_ACTIVE
 *   SUB_ACTIVE (empty, lingered) --unsubscribe--> SUB_LEAVING --> SUB_NONE
 * A join during SUB_LEAVING subscribes again once the unsubscribe is
 * confirmed. The subscriber connection's loss puts every room in SUB_NONE;
 * its return subscribes again the rooms that still have members. A refused
 * subscription, or one a cluster master ended when its slot moved, puts the
 * room in SUB_NONE too, and the sweep (once a second) subscribes again. */
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
    if (event_message_read(payload, len, &seq, &kind, &body, &body_len) < 0) {
        log_msg(LOG_ERROR, "room %s: malformed message on its channel", r->id);
        return;
    }
    fanout_event(rs, r, seq, kind, body, body_len);
}

/* A catch-up read of a room's history: the room's id, since the room may
 * be gone when the answer comes. */
struct catch_up {
    struct rooms *rs;
    char room[ID_MAX + 1];
};

static void on_catch_up(void *ctx, const struct roomstore_history *h)
{
    struct catch_up *q = ctx;
    struct room *r = room_find(q->rs, q->room);
    for (size_t i = 0; r && h && i < h->events.n; i++) {
        struct roomstore_event ev;
        if (roomstore_event_at(&h->events, i, &ev) == 0)
            fanout_event(q->rs, r, ev.seq, ev.kind, ev.body, ev.len);
    }
    free(q);
}

void rooms_on_subscribed(void *ctx, const char *chan, size_t chan_len)
{
    struct rooms *rs = ctx;
    struct room *r = channel_room(rs, chan, chan_len);
    if (!r)
        return;
    r->sub = SUB_ACTIVE;
    /* Events published while this node was not subscribed (a Redis
     * reconnect) are fetched from the history, so live members see no gap
     * when the history still has them. */
    if (r->ring.last_seq > 0) {
        struct catch_up *q = malloc(sizeof *q);
        if (q) {
            q->rs = rs;
            memcpy(q->room, r->id, sizeof q->room);
        }
        if (q && roomstore_history(rs->store, r->id, r->ring.last_seq, ROOM_HISTORY_BATCH, on_catch_up, q) < 0)
            free(q);
    }
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
