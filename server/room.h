/* room.h - the rooms that have members on this node: who is in each, the
 * node's subscription to each room's channel, the ring of recent events,
 * and the fan-out of events and leaderboard pushes to the members.
 *
 * A room's events are sequenced in Redis (rooms/) and reach every node
 * through pub/sub; the node keeps the latest in the room's ring (ring.h)
 * and hands them to its live members. The work is split by concept:
 *   room.c     the registry: creating, finding and freeing rooms, members
 *              leaving, subscribing, presence refresh;
 *   fanout.c   new events into the ring, and their flush with the
 *              leaderboard pushes to the members, once per loop turn;
 *   roomjoin.c join (snapshot), leave, history and notice requests;
 *   roomsub.c  the subscription's events: the room events that arrive on
 *              it, and the joins that wait for it.
 * Each uses only those listed before it. */
#ifndef TIPCAST_ROOM_H
#define TIPCAST_ROOM_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "board.h"
#include "conn.h"
#include "ring.h"
#include "roomstore.h"

/* Most events one history request answers. */
#define ROOM_HISTORY_BATCH 100
/* While a room's catch-up from the history is out (after it was subscribed
 * again), its live events wait, at most this many (then they go out, and
 * members recover the rest with `history`). */
#define ROOM_CATCHUP_HOLD_MAX 2000
enum { ROOM_HISTORY_RING, ROOM_HISTORY_REDIS, ROOM_HISTORY_REFUSED };
/* Most history requests of one connection waiting for Redis at once, and
 * the retry_after_ms of a history request refused by a bound. */
#define ROOM_HISTORY_PER_CONN 2
#define ROOM_HISTORY_RETRY_MS 250
/* How often a node refreshes its member counts in Redis (they lapse after
 * ROOMSTORE_PRESENCE_TTL_MS). */
#define ROOM_PRESENCE_REFRESH_MS 20000
/* An empty room stays subscribed this long, so that a viewer who reconnects
 * does not cost an unsubscribe and a subscribe. */
#define ROOM_EMPTY_LINGER_MS 10000
/* Longest an event waits for the leaderboard push it moved, so that both
 * go out in one write (the push is read from Redis in about a round trip). */
#define ROOM_BOARD_WAIT_MS 20
/* A flush's share of one loop iteration (fanout.c): it writes to members
 * for about this long, then the loop reads its sockets (acks, requests, new
 * events) before the pass goes on. A write to a member costs 4-10 us here;
 * the clock is read after each chunk (FANOUT_CHUNK), so a slice is one to a
 * few chunks. */
#define FANOUT_SLICE_US 2000
/* Members visited between two readings of the clock within a slice: their
 * writes go out together, shared by the send helpers (fanout-threads). */
#define FANOUT_CHUNK 256
/* The leaderboard push timer's resolution; board-push-ms is at least this. */
#define ROOM_BOARD_TICK_MS 50
/* A room whose members saw a gift event is swept for combos whose window
 * has passed (rooms/lua/room_combo_sweep.lua) at every sweep of the node
 * (SERVER_SWEEP_MS), until combo-window-ms plus this after the last gift:
 * by then every combo the gift could have opened has closed; a sweep that
 * finds combos still open goes on that much longer. */
#define ROOM_COMBO_SWEEP_AFTER_MS 2000

enum sub_state { SUB_NONE, SUB_PENDING, SUB_ACTIVE, SUB_LEAVING };

struct catalog;

/* A live event held during a catch-up (roomsub.c): its channel message as
 * it came. */
struct held_event {
    struct held_event *next;
    int64_t seq;
    size_t len;
    char payload[];
};

/* A join waiting for its room's snapshot (roomjoin.c): the link of a
 * queue, the first member of the request. */
struct snap_wait {
    struct snap_wait *next;
};

struct room {
    char id[ID_MAX + 1];
    struct room *hnext;
    /* The members; the first nparked are parked: their connection was
     * stalled (conn.h) when the flush came to them, and the flush walks
     * only the others, so that members whose clients stopped reading cost
     * the room nothing per event. A parked member goes back among the
     * others when its socket drains (rooms_resume). */
    struct conn **members;
    uint32_t nmembers, members_cap;
    uint32_t nparked;
    struct ring ring;
    enum sub_state sub;
    int resubscribe;          /* joined again while SUB_LEAVING */
    /* A catch-up from the history is out (roomsub.c): live events are held
     * (their channel messages, oldest first) until it has answered. */
    uint32_t catchup_gen, nheld;
    int catching_up;
    int subscribed_before; /* its subscription was in force once: a new one catches up */
    struct held_event *held, **held_tail;
    int64_t empty_since_ms;
    /* On the list of rooms to flush (fanout.c) while queued, since dirty_ms
     * (loop time). */
    uint8_t flush_queued;
    struct room *flush_next;
    uint64_t dirty_ms;
    /* A flush pass under way (fanout.c): it visits the live members in
     * chunks, the loop serving other work in between. Members
     * [nparked, flush_at) have been visited, [flush_at, nmembers) not yet;
     * room_leave keeps it so. flush_again: events or a push came during the
     * pass, so the members already visited need another. flush_board: the
     * push this pass sends (board_push holds a newer one for the next).
     * pass_need: the lowest next seq of the live members the pass visited,
     * for the ring (ring_settle). */
    uint8_t flushing, flush_again;
    uint32_t flush_at;
    int64_t pass_need;
    struct frame *flush_board[FMT_COUNT];
    /* A leaderboard push waiting for the flush. */
    struct frame *board_push[FMT_COUNT];
    /* The latest push sent, and how many were: a member parked meanwhile
     * gets it when it resumes. */
    struct frame *board_last[FMT_COUNT];
    uint16_t board_gen; /* wraps; compared for equality only */
    /* Leaderboard pushes: marked by a gift or tip event, on the list of
     * rooms to push while queued. */
    uint8_t board_queued;
    uint8_t board_busy;       /* a read of the boards is in flight */
    int64_t board_pushed_ms;  /* monotonic time of the last push */
    struct room *board_next;
    uint8_t live; /* what this node last told the members (catalog_room_live) */
    /* Snapshot reads (roomjoin.c): at most one per room is in flight (its
     * id in snap_busy, 0: none); the joins that come meanwhile wait in
     * snap_queue for the next, which answers them all. */
    uint64_t snap_busy;
    struct snap_wait *snap_queue, **snap_tail;
    int64_t combo_until_ms; /* monotonic: the combo sweeps go on until then */
};

struct rooms {
    const struct config *cfg;
    uv_loop_t *loop;
    struct redis *rl;
    struct roomstore *store;
    struct board *board;
    struct conns *conns;
    const struct catalog *catalog; /* the live creators */
    struct room **buckets;
    uint32_t nbuckets, count;
    int history_reads; /* history requests waiting for Redis, node-wide */
    uint64_t snap_reads; /* snapshot reads sent (roomjoin.c), and the last one's id */
    uint64_t snap_joins; /* joins that asked for a snapshot */
    /* history requests answered from a ring, read from Redis, refused by
     * a bound (the metrics page). */
    uint64_t history_by[3];
    int64_t last_refresh_ms;
    int64_t sweep_now_ms; /* of the sweep under way */
    int sweep_refresh;    /* it refreshes the member counts */
    /* Rooms with events not yet handed to their members, flushed once per
     * loop iteration (after the Redis replies read in it). */
    struct room *dirty;
    uv_check_t flush_check;
    uv_idle_t flush_more; /* active while a pass is cut short: the loop polls without waiting */
    uv_timer_t flush_wait; /* ends ROOM_BOARD_WAIT_MS */
    /* A chunk's writes (fanout.c), and the helper threads that share them. */
    struct conn_write writes[FANOUT_CHUNK];
    struct send_job sends[FANOUT_CHUNK];
    struct sendpool *pool;
    /* Rooms marked for a leaderboard push, and the timer that pushes. */
    struct room *board_dirty;
    uv_timer_t board_timer;
    int board_running;
    int handles; /* the loop handles are initialised */
    /* Called once a new member's `joined` went out, if it is still a
     * member (the PK battles send it their scores); may be NULL. */
    void (*on_joined)(void *ctx, struct conn *c, const struct room *r);
    void *on_joined_ctx;
};

/* room.c */
int rooms_init(struct rooms *rs, uv_loop_t *loop, const struct config *cfg, struct redis *rl,
               struct roomstore *store, struct board *board, struct conns *conns, const struct catalog *catalog);
/* The catalog was reloaded: every room whose creator went live or stopped
 * being live tells its members here with a `room` message (docs/protocol.md).
 * Each node does this after its own reload, so members on every node hear
 * of it. */
void rooms_catalog_changed(struct rooms *rs);
/* Frees every room and closes the loop handles (at shutdown, after every
 * connection has left). */
void rooms_free(struct rooms *rs);
struct room *room_find(struct rooms *rs, const char *id);
struct room *room_create(struct rooms *rs, const char *id);
/* Frees an empty room. */
void room_destroy(struct rooms *rs, struct room *r);
/* The index of r in c->rooms, or -1. */
int room_membership(const struct conn *c, const struct room *r);
/* Removes c from the room at c->rooms[i] (and the entry from c->rooms). A
 * walk of the members that may remove the one it is at walks down: the
 * member moved into its place is one already visited. */
void room_leave(struct rooms *rs, struct conn *c, int i);
/* Removes c from every room (the connection layer's on_leave_all). */
void rooms_leave_all(struct rooms *rs, struct conn *c);
/* Parks membership m (at m->idx >= r->nparked) of a stalled connection. */
void room_park(struct room *r, struct membership *m);
/* The stalled connection c drains again: its parked memberships go back
 * among the members the flush walks, each with the room's latest
 * leaderboard push when one went out while it was parked (the connection
 * layer's on_resume). */
void rooms_resume(struct rooms *rs, struct conn *c);
/* Calls fn for every room; fn may destroy the room it is given. */
void rooms_each(struct rooms *rs, void (*fn)(struct rooms *rs, struct room *r));
/* Periodic work: presence refresh, unsubscribing rooms empty for a while,
 * subscribing again rooms with members whose subscription was refused or
 * ended. */
void rooms_sweep(struct rooms *rs, int64_t now_ms);

/* Subscribes the node to the room's channel (SUB_PENDING until
 * rooms_on_subscribed). Returns 0, or -1 when the subscriber connection is
 * down. */
int room_subscribe(struct rooms *rs, struct room *r);

/* roomsub.c: the subscriber connection's hooks (core/rlink.h), ctx = rs. */
void rooms_on_message(void *ctx, const char *channel, size_t channel_len, const char *payload, size_t len);
void rooms_on_subscribed(void *ctx, const char *channel, size_t channel_len);
void rooms_on_unsubscribed(void *ctx, const char *channel, size_t channel_len);
void rooms_on_sub_ready(void *ctx);
void rooms_on_sub_lost(void *ctx);
void rooms_on_sub_error(void *ctx, const char *channel, size_t channel_len, const char *err);

/* roomjoin.c: requests. Errors go to the connection. */
void room_join(struct rooms *rs, struct conn *c, const char *room, const char *req_id);
/* Asks Redis for the snapshot of c->rooms[i], whose member waits for one:
 * at once, or, while a read of the room's is in flight, with the next,
 * which answers every join that came meanwhile. */
void room_request_snapshot(struct rooms *rs, struct conn *c, int i);
/* A leave request: answered `left`, or not_member. */
void room_leave_request(struct rooms *rs, struct conn *c, const char *room, const char *req_id);
void room_notice(struct rooms *rs, struct conn *c, const char *room, const char *text, size_t text_len,
                 const char *req_id);
void room_history(struct rooms *rs, struct conn *c, const char *room, int64_t after_seq, const char *req_id);
/* A goal request (target > 0) or a goal_clear (target 0), by the room's
 * owner or an admin: answered an ack with the seq of its room event. */
void room_goal(struct rooms *rs, struct conn *c, const char *room, int64_t target, int64_t gift, int64_t deadline,
               const char *title, size_t title_len, const char *req_id);
/* An unpin request, by the room's owner, an admin or a moderator of the
 * room: answered an ack with the seq of its `pins` event. */
void room_unpin(struct rooms *rs, struct conn *c, const char *room, const char *order, const char *req_id);
/* The room's moderators: op "mod_add" or "mod_remove" of `user` (by the
 * room's owner or an admin) or "mod_list" (anyone), answered `moderators`
 * with the room's list after it. */
void room_moderators(struct rooms *rs, struct conn *c, const char *room, const char *op, const char *user,
                     const char *req_id);

/* fanout.c */
/* Appends an event (its kind and msgpack body) to the room's ring and
 * queues the room's flush; an event seen already is ignored. Members that
 * fall out of the ring or past max-queued-bytes are closed as slow. */
void fanout_event(struct rooms *rs, struct room *r, int64_t seq, enum event_kind kind, const uint8_t *body,
                  size_t len);
/* Queues the room for the flush at the end of this loop iteration. */
void fanout_mark(struct rooms *rs, struct room *r);

#endif
