/* roomstore.h - a room's state in Redis as the nodes read and write it:
 * the presence of this node's members with the join snapshot, notices,
 * and the history (lua/room_presence.lua, room_publish.lua,
 * room_history.lua). Events of gifts and tips are written by the room feed
 * (roomfeed.h).
 *
 * Every call takes a callback and keeps the contract of rlink.h: when it
 * returns 0 the callback runs exactly once, later, with the answer or with
 * NULL (-1 for a seq) when Redis could not give one; when it returns -1 the
 * callback never runs. What the callback is given is valid only during the
 * call.
 *
 * The snapshot and the history, which can be big, are read on rlink's
 * reads connection, never ahead of the money path's commands. */
#ifndef TIPCAST_ROOMSTORE_H
#define TIPCAST_ROOMSTORE_H

#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#include "board.h"
#include "roomevent.h"
#include "redis.h"

/* How long a node's member count in Redis lasts without being refreshed. */
#define ROOMSTORE_PRESENCE_TTL_MS 60000

struct roomstore {
    struct redis *rl;
    const char *node_id;
    int history_len;
    struct rlink_script presence, publish, history, combo_sweep, goal, pins;
};

/* One event of a list (oldest first). */
struct roomstore_event {
    int64_t seq;
    enum event_kind kind;
    const uint8_t *body;
    size_t len;
};

/* A list of events inside a Redis reply: roomstore_event_at reads one. */
struct roomstore_events {
    const redisReply *reply;
    size_t from; /* index of the first event's seq */
    size_t n;
};

/* Event i (< n) of the list; 0, or -1 when the reply holds something else
 * there. */
int roomstore_event_at(const struct roomstore_events *ev, size_t i, struct roomstore_event *out);

struct roomstore_snapshot {
    int64_t seq;     /* the room's latest event */
    int64_t members; /* on every live node */
    struct board_top top[BOARD_PERIODS]; /* all-time, day, week, month */
    struct board_goal goal;
    const uint8_t *pins; /* the pinned tips: a msgpack array of maps (in the reply) */
    size_t pins_len;
    struct roomstore_events events;
};

struct roomstore_history {
    int64_t seq;    /* the room's latest event */
    int64_t oldest; /* the oldest kept, 0 when none is */
    struct roomstore_events events;
};

typedef void roomstore_snapshot_cb(void *ctx, const struct roomstore_snapshot *s);
typedef void roomstore_history_cb(void *ctx, const struct roomstore_history *h);
typedef void roomstore_seq_cb(void *ctx, int64_t seq);

/* Prepares the store and registers its scripts (before redis_start). */
void roomstore_init(struct roomstore *rs, struct redis *rl, const char *node_id, int history_len);

/* Records that this node has `members` members in `room` (0: none any
 * more) and answers the snapshot: the latest `events` events (0: none) and
 * the top `top_n` of each of the four boards (0: none). cb may be NULL when no
 * answer is wanted. */
int roomstore_presence(struct roomstore *rs, const char *room, uint32_t members, int events, int top_n,
                       roomstore_snapshot_cb *cb, void *ctx);

/* Publishes an event: the room's next seq, the history, every node. */
int roomstore_publish(struct roomstore *rs, const char *room, enum event_kind kind, const uint8_t *body,
                      size_t len, roomstore_seq_cb *cb, void *ctx);

/* Closes the room's combos whose window has passed (lua/room_combo_sweep.lua),
 * each with its combo_end event, and answers cb(ctx, room, open): the
 * number of combos still open, or -1 when the call failed (they wait for
 * the next sweep or gift). */
typedef void roomstore_combo_cb(void *ctx, const char *room, int64_t open);
int roomstore_combo_sweep(struct roomstore *rs, const char *room, roomstore_combo_cb *cb, void *ctx);

/* Sets the room's goal (target coins; gift 0: any; deadline 0: none) or,
 * with target 0, clears it, with its goal / goal_cleared event
 * (lua/room_goal.lua). cb gets the event's seq, 0 when there was no goal
 * to clear, -1 when Redis could not answer. */
int roomstore_goal(struct roomstore *rs, const char *room, const char *from, const char *role, int64_t now_ms,
                   int64_t target, int64_t gift, int64_t deadline, const char *title, size_t title_len,
                   roomstore_seq_cb *cb, void *ctx);

/* A request on the room's pins or moderators (lua/room_pins.lua): op
 * "unpin" (target an order id), "mod_add" or "mod_remove" (target a user
 * id); privileged 1 when `who` is the room's owner or an admin. cb gets the
 * script's reply (an array, see the script), or NULL when Redis could not
 * answer; the reply is valid during the call. */
typedef void roomstore_reply_cb(void *ctx, const redisReply *reply);
int roomstore_pins(struct roomstore *rs, const char *room, const char *op, const char *who, int privileged,
                   const char *target, roomstore_reply_cb *cb, void *ctx);

/* The room's events after after_seq, at most `max`. */
int roomstore_history(struct roomstore *rs, const char *room, int64_t after_seq, int max,
                      roomstore_history_cb *cb, void *ctx);

#endif
