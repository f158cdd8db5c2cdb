/* room.h - rooms on this node: their local members, the node's Redis
 * subscription to each, and a bounded ring of recent events shared by every
 * member.
 *
 * A room's events are sequenced by Redis (room_publish.lua) and reach every
 * node through pub/sub; the node keeps the latest events in the room's ring,
 * each encoded once per subprotocol, and each member has a cursor (next_seq)
 * into it. A member whose cursor falls out of the ring, or whose unsent bytes
 * pass max-queued-bytes, is a slow consumer and is closed: a slow client
 * never makes the node hold more than the ring.
 */
#ifndef TIPCAST_ROOM_H
#define TIPCAST_ROOM_H

#include <stddef.h>
#include <stdint.h>

#include "conn.h"
#include "proto.h"

/* Events kept in memory per room (per node). */
#define ROOM_RING_EVENTS 512
/* Most events one history request answers. */
#define ROOM_HISTORY_BATCH 100
/* How long a node's member count in Redis lasts without being refreshed. */
#define ROOM_PRESENCE_TTL_MS 60000
#define ROOM_PRESENCE_REFRESH_MS 20000
/* An empty room stays subscribed this long, so that a viewer who reconnects
 * does not cost an unsubscribe and a subscribe. */
#define ROOM_EMPTY_LINGER_MS 10000
/* A member that is behind gets its pending events of a room in one frame,
 * up to this many events and bytes: fewer frames and syscalls per event
 * when a room is hot. */
#define ROOM_BATCH_EVENTS 64
#define ROOM_BATCH_BYTES (32 * 1024)
/* Longest an event waits for the leaderboard push it moved, so that both
 * go out in one write (the push is read from Redis in about a round trip). */
#define ROOM_BOARD_WAIT_MS 20
/* Bound on an event body received from Redis. */
#define ROOM_BODY_MAX 4096

struct room_event {
    int64_t seq;
    struct frame *frame[FMT_COUNT];
    uint64_t cum[FMT_COUNT]; /* room->cum[fmt] after this event */
};

enum sub_state { SUB_NONE, SUB_PENDING, SUB_ACTIVE, SUB_LEAVING };

struct room {
    char id[ID_MAX + 1];
    struct room *hnext;
    struct conn **members;
    uint32_t nmembers, members_cap;
    struct room_event *ring;  /* ROOM_RING_EVENTS entries, allocated with the room */
    uint32_t ring_head, ring_count;
    /* The latest batch built per format, for the members in step. */
    struct frame *batch[FMT_COUNT];
    int64_t batch_first[FMT_COUNT], batch_last[FMT_COUNT];
    int64_t last_seq;
    uint64_t cum[FMT_COUNT];
    enum sub_state sub;
    int resubscribe;          /* joined again while SUB_LEAVING */
    int64_t empty_since_ms;
    /* On the list of rooms to flush (room.c) while queued, since dirty_ms
     * (loop time). */
    uint8_t flush_queued;
    struct room *flush_next;
    uint64_t dirty_ms;
    /* A leaderboard push waiting for the flush, and the last frame built
     * to carry events and a push in one write (room_frame_from). */
    struct frame *board_push[FMT_COUNT];
    struct frame *pair[FMT_COUNT], *pair_events[FMT_COUNT], *pair_board[FMT_COUNT];
    /* Leaderboard pushes (leaderboard/board.c): marked by a gift or tip
     * event, on board.c's list of rooms to push while queued. */
    uint8_t board_queued;
    uint8_t board_busy;       /* a read of the boards is in flight */
    int64_t board_pushed_ms;  /* monotonic time of the last push */
    struct room *board_next;
};

/* A room's Redis keys. Every one carries the hash tag {r:ROOM}, so a
 * room's scripts touch one hash slot (Redis Cluster). */
struct room_keys {
    char seq[ID_MAX + 16];    /* tc:{r:ROOM}:seq   last event seq */
    char hist[ID_MAX + 16];   /* tc:{r:ROOM}:hist  history stream */
    char nodes[ID_MAX + 16];  /* tc:{r:ROOM}:nodes members per node */
    char chan[ID_MAX + 16];   /* tc:{r:ROOM}:ev    pub/sub channel */
    char wm[ID_MAX + 16];     /* tc:{r:ROOM}:wm    outbox watermarks */
    char board[ID_MAX + 32];  /* tc:{r:ROOM}:board:all */
};
void room_keys(const char *id, struct room_keys *k);

int room_registry_init(void);
/* Frees every room (at shutdown, after every connection has left). */
void room_registry_free(void);

/* Handles a join request: adds `c` to the room (subject to the limits) and
 * answers `joined` with a snapshot when Redis has it. Errors are sent to the
 * connection. */
void room_join(struct conn *c, const char *room, const char *req_id);
/* Removes `c` from the room at `c->rooms[i]` (and the entry from c->rooms). */
void room_leave(struct conn *c, int i);
/* Broadcasts a notice: the reply (ack or error) goes to `c`. */
void room_notice(struct conn *c, const char *room, const char *text, size_t text_len, const char *req_id);
/* Answers a history request. */
void room_history(struct conn *c, const char *room, int64_t after_seq, const char *req_id);

/* The room of this id on this node, or NULL. */
struct room *room_lookup(const char *id);
/* A leaderboard push: frames[c->fmt] goes to every live member of `r` at
 * the room's next flush, in the same write as the events pending then (the
 * caller keeps its own references). A newer push replaces one not yet sent.
 * Members over their bounds are closed as slow consumers. */
void room_broadcast(struct room *r, struct frame *const frames[FMT_COUNT]);

/* The frame to send a member whose next event is `ev`: ev's own frame, or a
 * batch of ev and the events after it (docs/protocol.md, "events"), followed
 * in the same write by `board` when it is not NULL. Sets *last to the last
 * event it carries. Returns a reference the caller drops, or NULL when out
 * of memory. Members in step share one frame. */
struct frame *room_frame_from(struct room *r, struct room_event *ev, enum fmt fmt, struct room_event **last,
                              struct frame *board);

/* The next event for a live membership, or NULL when it is up to date. */
struct room_event *room_next_event(struct room *r, int64_t next_seq);
/* Bytes of events a membership has not been sent. */
uint64_t room_backlog(const struct room *r, const struct membership *m, enum fmt fmt);

/* Periodic work: presence refresh, unsubscribing rooms empty for a while. */
void room_sweep(int64_t now_ms);

/* Hooks for rlink's subscriber connection. */
void room_on_message(const char *channel, size_t channel_len, const char *payload, size_t len);
void room_on_subscribed(const char *channel, size_t channel_len);
void room_on_unsubscribed(const char *channel, size_t channel_len);
void room_on_sub_ready(void);
void room_on_sub_lost(void);

#endif
