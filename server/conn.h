/* conn.h - one WebSocket connection (a session): authentication, the
 * requests it sends, the frames queued for it, its rooms.
 *
 * The struct is lws's per-session data: lws allocates it zeroed when the
 * connection opens and frees it after LWS_CALLBACK_CLOSED, so nothing may
 * keep a pointer to it past conn_closed(). Asynchronous work (Redis replies)
 * refers to a connection by its `id` and looks it up with conn_find(), which
 * answers NULL once the connection is gone.
 */
#ifndef TIPCAST_CONN_H
#define TIPCAST_CONN_H

#include <stddef.h>
#include <stdint.h>

#include <libwebsockets.h>

#include "jwt.h"
#include "proto.h"

struct room;

/* Bound on frames (replies and errors) queued for one connection; past it,
 * as past max-queued-bytes, the connection is a slow consumer. Replies are
 * bounded in bytes by max-queued-bytes; this bounds the ring of pointers. */
#define CONN_OUTQ_MAX 65536

/* WebSocket close codes of our own (docs/protocol.md). */
#define CLOSE_AUTH_TIMEOUT 4001
#define CLOSE_AUTH_FAILED 4003
#define CLOSE_FLOOD 4008
#define CLOSE_SLOW_CONSUMER 4009
#define CLOSE_IDLE 4010
/* Seconds a closing connection has to take our close frame and answer it. */
#define CONN_CLOSE_ACK_S 5

enum member_state {
    MEMBER_WAIT_SUB,  /* waiting for the node's subscription to the room */
    MEMBER_WAIT_SNAP, /* waiting for the snapshot from Redis */
    MEMBER_LIVE,      /* receives every event with seq >= next_seq */
};

/* The connection's place in one room. */
struct membership {
    struct room *room;
    uint32_t idx;             /* index in room->members */
    enum member_state state;
    int64_t next_seq;         /* the next event to send */
    uint64_t sent_cum;        /* room->cum[fmt] up to the last event sent */
    char *join_id;            /* owned: the pending join's request id */
};

struct conn {
    struct lws *wsi;
    uint64_t id;
    uint32_t slot;
    enum fmt fmt;
    int authed;
    struct jwt_claims user;
    int64_t opened_ms;
    int64_t last_rx_ms;
    int64_t last_ping_ms;
    int ping_due;

    /* Token bucket for requests, and the flood detector. */
    double tokens;
    int64_t bucket_ms;
    int64_t flood_window_ms;
    int flood_rejected;

    /* The message being received, until its last fragment. */
    uint8_t *rx;
    size_t rx_len;
    size_t rx_cap;

    /* Frames queued for this connection only (replies, errors), a ring. */
    struct frame **outq;
    uint32_t outq_cap, outq_head, outq_count;
    size_t outq_bytes;

    /* Rooms; the array grows on joins, up to max-rooms-per-conn entries. */
    struct membership *rooms;
    int nrooms, rooms_cap;
    int rr;                   /* round-robin start for fairness between rooms */

    /* Set when the connection is to be closed: the close frame is sent at
     * the next WRITEABLE, after the queued replies unless `drop_queue`. */
    int close_code;
    const char *close_reason;
    int close_sent;
};

/* Connection table: lookup by id for asynchronous replies, and iteration for
 * the periodic sweep (auth deadline, ping, idle). */
int conn_table_init(int max_connections);
void conn_table_free(void);
struct conn *conn_find(uint64_t id);

/* Called from the lws protocol callback (server.c). Each returns 0, or -1
 * when lws is to close the connection (after lws_close_reason). */
int conn_opened(struct conn *c, struct lws *wsi, enum fmt fmt);
int conn_receive(struct conn *c, const void *in, size_t len);
int conn_writeable(struct conn *c);
void conn_pong(struct conn *c);
/* The peer sent a close frame; returns what LWS_CALLBACK_WS_PEER_INITIATED_CLOSE
 * should return (1: do not echo, because it answers ours). */
int conn_peer_closed(struct conn *c);
void conn_closed(struct conn *c);

/* Sends a frame to this connection (takes the caller's reference): at once
 * when nothing is queued ahead of it, else queued for WRITEABLE. When the
 * queue is over its bounds the connection is closed as a slow consumer
 * instead. */
void conn_send(struct conn *c, struct frame *f);
/* Sends live membership m its next frame of the room, and the room's
 * leaderboard push `board` (NULL for none; the caller keeps its reference),
 * in one write when the connection can take them now. Otherwise the push is
 * queued and the events wait for WRITEABLE (conn_writeable sends them). */
void conn_deliver(struct conn *c, struct membership *m, struct frame *board);
/* Queues an error reply. */
void conn_send_error(struct conn *c, const char *id, const char *code, const char *message,
                     const char *field, const char *extra_key, int64_t extra_val);
/* Starts closing with `code`; with drop_queue the queued frames are dropped
 * and the connection leaves its rooms at once (slow consumer, shutdown). */
void conn_close(struct conn *c, int code, const char *reason, int drop_queue);

/* Frames this connection has waiting, in bytes: its own queue plus the room
 * events it has not been sent yet. */
size_t conn_backlog(const struct conn *c);

/* The periodic sweep: auth deadlines, pings, idle timeouts. */
void conn_sweep(int64_t now_ms);
/* Closes every connection with 1001 (shutdown). */
void conn_close_all(void);
int conn_count(void);

#endif
