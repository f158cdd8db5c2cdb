/* ring.c - a room's event ring and the frames built from it (see ring.h). */
#include "ring.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "message.h"

int ring_init(struct ring *r, const char *room)
{
    memset(r, 0, sizeof *r);
    r->room = room;
    r->ev = calloc(RING_EVENTS, sizeof *r->ev);
    r->cap = RING_EVENTS;
    r->need_seq = INT64_MAX; /* until a pass says otherwise: the latest RING_EVENTS */
    return r->ev ? 0 : -1;
}

static struct ring_event *at(struct ring *r, uint32_t pos)
{
    tc_assert(pos < r->count);
    return &r->ev[(r->head + pos) % r->cap];
}

/* The place of ev in the ring, from the oldest event. */
static uint32_t pos_of(const struct ring *r, const struct ring_event *ev)
{
    return (uint32_t)((ev - r->ev) - r->head + r->cap) % r->cap;
}

/* Moves the events into an array of `cap` entries, oldest first. Returns
 * 0, or -1 when out of memory (nothing changed). */
static int resize(struct ring *r, uint32_t cap)
{
    tc_assert(cap >= r->count);
    struct ring_event *ev = malloc(cap * sizeof *ev);
    if (!ev)
        return -1;
    for (uint32_t i = 0; i < r->count; i++)
        ev[i] = *at(r, i);
    memset(ev + r->count, 0, (cap - r->count) * sizeof *ev);
    free(r->ev);
    r->ev = ev;
    r->head = 0;
    r->cap = cap;
    return 0;
}

static void drop_oldest(struct ring *r)
{
    tc_assert(r->count > 0);
    struct ring_event *ev = &r->ev[r->head];
    for (int f = 0; f < FMT_COUNT; f++)
        frame_unref(ev->frame[f]);
    r->evicted_seq = ev->seq;
    memset(ev, 0, sizeof *ev);
    r->head = (r->head + 1) % r->cap;
    r->count--;
}

void ring_drop_pairs(struct ring *r)
{
    for (int k = 0; k < FMT_COUNT; k++) {
        frame_unref(r->pair[k]);
        frame_unref(r->pair_events[k]);
        frame_unref(r->pair_board[k]);
        r->pair[k] = r->pair_events[k] = r->pair_board[k] = NULL;
    }
}

void ring_free(struct ring *r)
{
    while (r->count)
        drop_oldest(r);
    for (int k = 0; k < FMT_COUNT; k++) {
        frame_unref(r->batch[k]);
        r->batch[k] = NULL;
    }
    ring_drop_pairs(r);
    free(r->ev);
    r->ev = NULL;
}

int64_t ring_push(struct ring *r, int64_t seq, int64_t rx_us, struct frame *const frames[FMT_COUNT])
{
    tc_assert(seq > r->last_seq);
    int64_t evicted = 0;
    if (r->count == r->cap) {
        /* The oldest event still needed by a member in step: the ring grows
         * (out of memory or at its bound, it is dropped all the same). */
        int needed = r->ev[r->head].seq >= r->need_seq;
        if (!(needed && r->cap < RING_EVENTS_MAX && resize(r, r->cap * 2) == 0)) {
            evicted = r->ev[r->head].seq;
            drop_oldest(r);
        }
    }
    struct ring_event *ev = &r->ev[(r->head + r->count) % r->cap];
    ev->seq = seq;
    ev->rx_us = rx_us;
    for (int k = 0; k < FMT_COUNT; k++) {
        tc_assert(frames[k] && frames[k]->fmt == k && !frames[k]->wire);
        ev->frame[k] = frames[k];
        r->cum[k] += frames[k]->len;
        ev->cum[k] = r->cum[k];
    }
    r->count++;
    r->last_seq = seq;
    return evicted;
}

int ring_settle(struct ring *r, int64_t need_seq)
{
    r->need_seq = need_seq;
    while (r->count > RING_EVENTS && r->ev[r->head].seq < need_seq)
        drop_oldest(r);
    if (r->cap > RING_EVENTS && r->count <= RING_EVENTS)
        return resize(r, RING_EVENTS);
    return 0;
}

struct ring_event *ring_next(struct ring *r, int64_t next_seq)
{
    if (r->count == 0 || r->last_seq < next_seq)
        return NULL;
    /* Binary search for the first event with seq >= next_seq; seqs in the
     * ring increase but may have gaps (events lost while unsubscribed). */
    uint32_t lo = 0, hi = r->count;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        if (at(r, mid)->seq < next_seq)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < r->count ? at(r, lo) : NULL;
}

int ring_run(struct ring *r, int64_t after, enum fmt fmt, struct frame **out, int max)
{
    if (after > r->last_seq)
        return -1;
    if (after == r->last_seq)
        return r->count ? 0 : -1;
    struct ring_event *ev = ring_next(r, after + 1);
    if (!ev || ev->seq != after + 1)
        return -1;
    uint32_t pos = pos_of(r, ev);
    int n = 0;
    while (pos + (uint32_t)n < r->count && n < max) {
        struct ring_event *e = at(r, pos + (uint32_t)n);
        if (e->seq != after + 1 + n)
            break; /* a gap: the events up to it are still an answer */
        out[n++] = e->frame[fmt];
    }
    return n;
}

/* The frame carrying `events` then `board` in one write, shared by the
 * members that get the same two. */
static struct frame *pair_frame(struct ring *r, struct frame *events, struct frame *board, enum fmt fmt)
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

struct frame *ring_frame_from(struct ring *r, struct ring_event *ev, enum fmt fmt, struct ring_event **last,
                              struct frame *board)
{
    uint32_t pos = pos_of(r, ev);
    tc_assert(pos < r->count && at(r, pos) == ev);
    struct frame *frames[RING_BATCH_EVENTS];
    size_t bytes = 0;
    int n = 0;
    while (pos + (uint32_t)n < r->count && n < RING_BATCH_EVENTS) {
        struct ring_event *e = at(r, pos + (uint32_t)n);
        if (n > 0 && bytes + e->frame[fmt]->len > RING_BATCH_BYTES)
            break;
        bytes += e->frame[fmt]->len;
        frames[n++] = e->frame[fmt];
        *last = e;
    }
    struct frame *events = ev->frame[fmt];
    if (n > 1) {
        if (!r->batch[fmt] || r->batch_first[fmt] != ev->seq || r->batch_last[fmt] != (*last)->seq) {
            struct frame *b = message_events(fmt, r->room, frames, n);
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
