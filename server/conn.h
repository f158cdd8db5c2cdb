/* conn.h - the WebSocket connections of this node: the table that finds
 * one by id, and each connection's writes (its own replies, its rooms'
 * events, pings and the close), its reading of messages, its request rate
 * and its timeouts.
 *
 * The struct is lws's per-session data: lws allocates it zeroed when the
 * connection opens and frees it after LWS_CALLBACK_CLOSED, so nothing may
 * keep a pointer to it past conn_closed(). Asynchronous work (Redis
 * replies) refers to a connection by its `id`, through a reply handle
 * (core/reply.h) or conn_find(), which answers NULL once it is gone.
 *
 * Writes: a frame goes straight to lws_write when nothing is queued ahead
 * of it and lws holds no unsent remainder; otherwise it is queued and
 * written from WRITEABLE. Frames are never interleaved, never written
 * behind a partial write, never after a close (docs/architecture.md); the
 * one frame written behind a partial write is the close of a stalled
 * connection, which nothing follows.
 *
 * Stalls: a write the socket could not take whole (lws keeps the
 * remainder) marks the connection stalled, from then until lws has
 * written the remainder and calls WRITEABLE. Its rooms skip a stalled
 * member (room.h), so that one whose client stopped reading costs nothing
 * per event; one stalled for slow-consumer-ms is closed with 4009.
 *
 * What a message means is not this module's business: a complete message
 * goes to the on_message hook (server/session.c), and a connection that
 * must leave its rooms at once (slow consumer, shutdown) goes to
 * on_leave_all (server/room.c). */
#ifndef TIPCAST_CONN_H
#define TIPCAST_CONN_H

#include <stddef.h>
#include <stdint.h>

#include <libwebsockets.h>

#include "config.h"
#include "histogram.h"
#include "jwt.h"
#include "reply.h"
#include "ring.h"
#include "sendpool.h"

/* Bound on frames (replies and errors) queued for one connection; past it,
 * as past max-queued-bytes, the connection is a slow consumer. Replies are
 * bounded in bytes by max-queued-bytes; this bounds the ring of pointers. */
#define CONN_OUTQ_MAX 65536
/* Seconds a closing connection has to take our close frame and answer it. */
#define CONN_CLOSE_ACK_S 5
/* Most connections one sweep drops for not answering their close. Each
 * drop costs about 60 us (the socket's close, lws's teardown, the close
 * line), so a room's thousands of stalled members closed together are
 * dropped over several sweeps rather than in one stall of the loop; and
 * drops go through lws's timers, kept in one list sorted by due time that
 * each joins at the end. The rest wait for the next sweep. */
#define CONN_SWEEP_DROPS 128

/* WebSocket close codes of our own (docs/protocol.md). */
#define CLOSE_AUTH_TIMEOUT 4001
#define CLOSE_AUTH_FAILED 4003
#define CLOSE_FLOOD 4008
#define CLOSE_SLOW_CONSUMER 4009
#define CLOSE_IDLE 4010
#define CLOSE_TOO_MANY 4029

/* Close codes counted one by one (conn_close_code_at); any other counts
 * as "other", so that a client's odd codes cannot grow the metrics page. */
#define CONN_CLOSE_CODES 18

enum member_state {
    MEMBER_WAIT_SUB,  /* waiting for the node's subscription to the room */
    MEMBER_WAIT_SNAP, /* waiting for the snapshot from Redis */
    MEMBER_LIVE,      /* receives every event with seq >= next_seq */
};

struct room;

/* The connection's place in one room (server/room.h owns the rooms). */
struct membership {
    struct room *room;
    struct ring *ring;        /* the room's */
    uint32_t idx;             /* index in the room's members */
    /* The room's board_gen when it was parked (room.h). 16 bits, like the
     * state's 8, keep the struct at 48 bytes (an allocator size class): a
     * parked member is closed long before 65,536 pushes (at most two a
     * second) could wrap it. */
    uint16_t board_gen;
    uint8_t state;            /* enum member_state */
    int64_t next_seq;         /* the next event to send */
    uint64_t sent_cum;        /* ring->cum[fmt] up to the last event sent */
    char *join_id;            /* owned: the pending join's request id */
};

struct conns;

/* Every connection holds one for its life: at 100,000 connections each
 * byte here is 100 kB, so the fields are ordered by size (no padding
 * holes) rather than by topic; the comments name the topic. */
struct conn {
    struct conns *t;
    struct lws *wsi;
    uint64_t id;
    struct jwt_claims user; /* user.dev is NULL: the device id is `dev` */
    char *dev;              /* the token's device id (claim "dev"), NULL without one */
    /* Times (monotonic): opened, the latest frame or pong received (the
     * idle timer's, and the ack latency's start), the latest ping. */
    int64_t opened_ms;
    int64_t rx_us;
    int64_t last_ping_ms;
    /* When a write last found the socket full (monotonic ms), 0 when the
     * connection is not stalled. */
    int64_t stalled_ms;
    /* When the close began, and again when the close frame was written
     * (monotonic ms): the sweep drops a connection still open
     * CONN_CLOSE_ACK_S later. 0 when we are not closing it. */
    int64_t close_ms;
    /* Token bucket for requests, and the flood detector. */
    double tokens;
    int64_t bucket_ms;
    int64_t flood_window_ms;
    /* The message being received, until its last fragment (rx_len and
     * rx_cap stay below twice max-frame-bytes, at most 1 MiB). */
    uint8_t *rx;
    /* Frames queued for this connection only (replies, errors), a ring. */
    struct frame **outq;
    size_t outq_bytes;
    /* Rooms; the array grows on joins, up to max-rooms-per-conn (<= 1024)
     * entries. */
    struct membership *rooms;
    /* Set when the connection is to be closed: the close frame is sent at
     * the next WRITEABLE, after the queued replies unless dropped. */
    const char *close_reason;
    /* For the line logged when the connection ends (connlog.c): message
     * bytes received and written. */
    uint64_t bytes_in, bytes_out;

    uint32_t slot;
    enum fmt fmt;
    uint32_t rx_len, rx_cap;
    uint32_t outq_cap, outq_head, outq_count;
    int flood_rejected;
    int close_code;
    uint16_t nrooms, rooms_cap;
    uint16_t rr;              /* round-robin start for fairness between rooms */
    uint16_t peer_close_code; /* the code of the peer's close frame, 0 when none came */
    uint8_t authed;
    uint8_t ping_due;
    uint8_t close_sent;
    uint8_t write_asked;      /* WRITEABLE asked for and not yet called */
    uint8_t reads;            /* history requests of this connection waiting for Redis (roomjoin.c) */
    uint8_t tallied;          /* counted per address (1) and per user (2) (session.c) */
    /* The peer's address, kept as bytes since an address as text would
     * cost 46 bytes a connection. */
    uint8_t peer_family; /* AF_INET, AF_INET6, 0 unknown */
    uint8_t peer_addr[16];
};

struct conn_hooks {
    void *ctx;
    /* The connection is open (a slot is taken): the handshake's token may
     * authenticate it. */
    void (*on_open)(void *ctx, struct conn *c);
    /* A whole message arrived; buf is valid during the call. */
    void (*on_message)(void *ctx, struct conn *c, int binary, const uint8_t *buf, size_t len);
    /* The connection must leave every room now (conn->nrooms becomes 0). */
    void (*on_leave_all)(void *ctx, struct conn *c);
    /* The connection has ended (conn_end_code tells how), just before it
     * leaves its rooms and its state is freed. */
    void (*on_closed)(void *ctx, const struct conn *c);
    /* The connection was stalled and its socket takes writes again: its
     * rooms are to serve it again. */
    void (*on_resume)(void *ctx, struct conn *c);
};

/* What the table counts for the metrics page: plain increments on paths
 * that already do more (a close, a write). */
struct conns_stats {
    uint64_t opened;        /* connections given a slot */
    uint64_t refused;       /* refused at once: the table full, or stopping */
    uint64_t slow_consumer; /* closed as slow consumers (4009) */
    /* Closed connections by close code: index i is conn_close_code_at(i),
     * the last one every other code. Ours when we closed first, the
     * peer's when it did, 1006 when there was no close handshake. */
    uint64_t closes[CONN_CLOSE_CODES + 1];
    /* Room frames written to a member: from when this node got the oldest
     * event of the frame (from Redis) to when the frame was written. */
    struct histogram delivery;
};

/* The connection table. */
struct conns {
    const struct config *cfg;
    struct conn_hooks hooks;
    struct reply_sink sink;   /* replies by connection id */
    struct conn **slots;
    uint32_t *free_slots;
    uint32_t cap, nfree;
    uint32_t high;            /* slots at or past this were never used */
    uint64_t serial;
    int count;
    int stopping;             /* new connections are refused */
    size_t queued_bytes;      /* every connection's outq_bytes: replies not yet written, node-wide */
    struct conns_stats stats;
};

/* Allocates the table for cfg->max_connections. Returns 0, or -1 when out
 * of memory (nothing is kept). */
int conns_init(struct conns *t, const struct config *cfg, const struct conn_hooks *hooks);
void conns_free(struct conns *t);
struct conn *conn_find(struct conns *t, uint64_t id);

/* lws events (server.c). Each returns 0, or -1 when lws is to close the
 * connection (after lws_close_reason). */
int conn_opened(struct conns *t, struct conn *c, struct lws *wsi, enum fmt fmt);
int conn_receive(struct conn *c, const void *in, size_t len);
int conn_writeable(struct conn *c);
void conn_pong(struct conn *c);
/* The peer sent a close frame (its payload in[0..len)); returns what
 * LWS_CALLBACK_WS_PEER_INITIATED_CLOSE should return (1: do not echo,
 * because it answers ours). */
int conn_peer_closed(struct conn *c, const void *in, size_t len);
void conn_closed(struct conn *c);
/* How connection c ended: the close code, and in *by who gave it: "server"
 * (tipcastd sent the close), "client" (the peer did first), "network" (no
 * close frame: 1006). The close line and the count of closes by code use it. */
int conn_end_code(const struct conn *c, const char **by);

/* The reply handle of request `id` ("" for none) of this connection. */
void conn_reply(const struct conn *c, const char *id, struct reply *r);

/* Sends a frame (takes the reference): at once when nothing is queued
 * ahead of it, else queued for WRITEABLE. Past the bounds the connection
 * is closed as a slow consumer instead. A NULL frame (a reply that could
 * not be built) closes the connection. */
void conn_send(struct conn *c, struct frame *f);
/* Sends an error reply. */
void conn_send_error(struct conn *c, const char *id, enum err code, const char *text, const char *field,
                     int64_t extra);
/* A room frame on its way to a member, between conn_deliver_prepare and
 * conn_deliver_finish (fanout.c sends a batch of them at once). */
struct conn_write {
    struct conn *c;
    struct membership *m;
    struct frame *f;    /* the frame's reference, dropped by finish */
    int64_t rx_us;      /* its oldest event's arrival (delivery latency), 0 for a push alone */
};
/* Live membership m's next frame of the room, with the leaderboard push
 * `board` (NULL for none; the caller keeps its reference), to go out in
 * one write when the connection can take it now: returns 1 and fills w and
 * j (j's bytes are the frame's wire bytes); the caller sends j (sendpool.h)
 * and calls conn_deliver_finish. Returns 0 when it was handled here: the
 * connection cannot take a write now (the push is queued and the events
 * wait for WRITEABLE), it has nothing to send, it is on TLS (written here
 * through lws), or it has lost events to the room's ring or passed
 * max-queued-bytes and is closed as a slow consumer. Not for a stalled
 * connection (its rooms skip it). */
int conn_deliver_prepare(struct conn *c, struct membership *m, struct frame *board, struct conn_write *w,
                         struct send_job *j);
/* After j was sent: what did not go out is handed to lws (the connection
 * is stalled then), a failed socket is closed, and events left pending
 * wait for WRITEABLE. */
void conn_deliver_finish(struct conn_write *w, const struct send_job *j);
/* Starts closing with `code`; with drop, the queued frames are dropped and
 * the connection leaves its rooms at once (slow consumer, shutdown), and
 * the close frame of a stalled connection is written at once, behind only
 * the remainder lws holds: the client gets it as soon as it reads again. */
void conn_close(struct conn *c, int code, const char *reason, int drop);

/* The token bucket: 1 when a request may go ahead; otherwise it has been
 * answered rate_limited (id names it), or the connection is closing for
 * flooding. */
int conn_admit(struct conn *c, const char *id);

/* Frames this connection has waiting, in bytes: its own queue plus the
 * room events it has not been sent yet. */
size_t conn_backlog(const struct conn *c);

/* The close code counted at closes[i], i < CONN_CLOSE_CODES. */
int conn_close_code_at(int i);

/* The periodic sweep: auth deadlines, pings, idle timeouts, and stalled
 * connections that are slow consumers (stalled for slow-consumer-ms, or
 * fallen out of a room's ring, or past max-queued-bytes). */
void conns_sweep(struct conns *t, int64_t now_ms);
/* Closes every connection with 1001 and refuses new ones (shutdown). */
void conns_close_all(struct conns *t);

#endif
