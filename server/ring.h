/* ring.h - a room's recent events on this node, shared by its members: a
 * bounded ring in which each event is encoded once per subprotocol, and
 * the frames a member is sent from it.
 *
 * Each member keeps a cursor into the ring (the next seq it is to get) and
 * the byte count `cum` up to what it was sent, so that its backlog is one
 * subtraction. A member that is behind gets its pending events in one
 * `events` frame (up to RING_BATCH_EVENTS / RING_BATCH_BYTES); members in
 * step share that frame, built once. A leaderboard push that goes out with
 * the events is joined to them in one frame of two messages, also shared.
 * A member whose cursor falls out of the ring is a slow consumer (room.c
 * closes it): the node never holds more than the ring, however slow a
 * reader is.
 *
 * The ring holds the latest RING_EVENTS events, and more while the members
 * still need them: each flush pass tells it the lowest cursor of the live
 * members it visited (ring_settle), and an event at or past that cursor is
 * not dropped for a new one; the ring grows instead, up to RING_EVENTS_MAX.
 * So a burst (a catch-up, or a failover's backlog published at once) waits
 * in the ring until the members in step have it, a frame of up to
 * RING_BATCH_EVENTS per pass, and is not lost under them; once they do, the
 * ring goes back to RING_EVENTS. A stalled member (not visited by passes)
 * keeps the guarantee of the latest RING_EVENTS.
 *
 * Pure: no I/O. Frames are reference counted (core/frame.h). */
#ifndef TIPCAST_RING_H
#define TIPCAST_RING_H

#include <stddef.h>
#include <stdint.h>

#include "frame.h"

/* Events kept per room (per node): at least the latest RING_EVENTS, and up
 * to RING_EVENTS_MAX while the members in step still need them. */
#define RING_EVENTS 512
#define RING_EVENTS_MAX 4096
/* A member that is behind gets its pending events of a room in one frame,
 * up to this many events and bytes: fewer frames and syscalls per event
 * when a room is hot. */
#define RING_BATCH_EVENTS 64
#define RING_BATCH_BYTES (32 * 1024)

struct ring_event {
    int64_t seq;
    struct frame *frame[FMT_COUNT];
    uint64_t cum[FMT_COUNT]; /* ring->cum[fmt] after this event */
    int64_t rx_us;           /* when this node got it (clock_mono_us), for the delivery latency */
};

struct ring {
    const char *room;        /* the room's id (owned by the room) */
    struct ring_event *ev;   /* cap entries */
    uint32_t head, count, cap;
    /* The lowest cursor of the live members the last flush pass visited
     * (ring_settle): an event from it on is not dropped while the ring may
     * grow. INT64_MAX (none) until a pass has ended. */
    int64_t need_seq;
    int64_t last_seq;
    /* The newest seq dropped to make room, 0 when none was: a member whose
     * next seq is at or below it has lost events (ring_lost). */
    int64_t evicted_seq;
    uint64_t cum[FMT_COUNT]; /* bytes of every event ever pushed, per format */
    /* The latest batch built per format, for the members in step. */
    struct frame *batch[FMT_COUNT];
    int64_t batch_first[FMT_COUNT], batch_last[FMT_COUNT];
    /* The latest events + leaderboard frame built per format. */
    struct frame *pair[FMT_COUNT], *pair_events[FMT_COUNT], *pair_board[FMT_COUNT];
};

/* Allocates the ring's events. Returns 0, or -1 when out of memory. */
int ring_init(struct ring *r, const char *room);
/* Drops every frame and the events. */
void ring_free(struct ring *r);

/* Appends event `seq` (> last_seq), got at rx_us, with its frames, taking
 * their references. Returns the seq of the event dropped to make room, 0 when
 * none was. */
int64_t ring_push(struct ring *r, int64_t seq, int64_t rx_us, struct frame *const frames[FMT_COUNT]);

/* A flush pass has ended: `need_seq` is the lowest next seq of the live
 * members it visited (INT64_MAX for none). Drops the events past the
 * latest RING_EVENTS that no such member needs, and gives back the room a
 * burst took once it is down to RING_EVENTS. Returns 0, or -1 when out of
 * memory (the ring is left as it was, whole). */
int ring_settle(struct ring *r, int64_t need_seq);

/* Whether a member whose next event is next_seq has lost events to the
 * ring's bound (a slow consumer). */
static inline int ring_lost(const struct ring *r, int64_t next_seq) { return next_seq <= r->evicted_seq; }

/* The first event with seq >= next_seq, or NULL when there is none. */
struct ring_event *ring_next(struct ring *r, int64_t next_seq);

/* The frame for a member whose next event is `ev`: ev's own frame, or a
 * batch of ev and the events after it, followed in the same frame by
 * `board` when it is not NULL. Sets *last to the last event it carries.
 * Returns a reference the caller drops, or NULL when out of memory. */
struct frame *ring_frame_from(struct ring *r, struct ring_event *ev, enum fmt fmt, struct ring_event **last,
                              struct frame *board);

/* For a history request served by this node: the frames (format fmt) of
 * the events after `after` (after+1, after+2, ... with no gap), at most
 * max of them, into out[]. Returns how many (0 when after is the latest),
 * or -1 when the ring does not hold event after+1 (or after is past the
 * latest): then only Redis knows. The frames are the ring's (no
 * reference is taken). */
int ring_run(struct ring *r, int64_t after, enum fmt fmt, struct frame **out, int max);

/* The frames built to carry a leaderboard push are no longer needed. */
void ring_drop_pairs(struct ring *r);

#endif
