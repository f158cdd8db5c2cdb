/* rsub.h - a Redis subscriber connection for sharded pub/sub (SSUBSCRIBE,
 * SUNSUBSCRIBE, smessage), internal to rlink.
 *
 * hiredis 0.14's async context knows SUBSCRIBE but not SSUBSCRIBE: it would
 * hand a pushed smessage to whatever command is queued, or stop the process
 * on an assert. So this connection is tipcast's own: a libuv TCP handle,
 * commands written with redisFormatCommandArgv, replies read with hiredis's
 * redisReader. Sharded pub/sub works on a single Redis 7 as on a cluster,
 * where it keeps a room's traffic on the master that serves its slot.
 *
 * Replies: "ssubscribe" and "sunsubscribe" confirmations, "smessage"
 * pushes, and an error in answer to a command (a MOVED from a master that
 * does not serve the channel's slot). A master that gives a slot away
 * pushes an "sunsubscribe" for each channel of it that was not asked for.
 * Commands are answered in order, so the channel of an error is the oldest
 * command not yet answered. */
#ifndef TIPCAST_RSUB_H
#define TIPCAST_RSUB_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

/* Commands sent and not yet answered, at most. */
#define RSUB_PENDING_MAX 65536
#define RSUB_CHANNEL_MAX 512

struct rsub_hooks {
    void *ctx;
    void (*on_ready)(void *ctx);
    void (*on_lost)(void *ctx);
    void (*on_message)(void *ctx, const char *channel, size_t channel_len, const char *payload, size_t len);
    void (*on_subscribed)(void *ctx, const char *channel, size_t channel_len);
    /* Asked for, or pushed by a master that gave the channel's slot away. */
    void (*on_unsubscribed)(void *ctx, const char *channel, size_t channel_len);
    /* A command for the channel was refused with the error `err`. */
    void (*on_error)(void *ctx, const char *channel, size_t channel_len, const char *err);
};

struct rsub_sent;

struct rsub {
    uv_loop_t *loop;
    const char *host; /* the owner's, outliving this */
    int port;
    struct rsub_hooks hooks;
    uv_tcp_t *tcp; /* while connecting or connected; freed when closed */
    void *reader;  /* redisReader */
    int up, stopping, started;
    int backoff_ms, backoff_min_ms, backoff_max_ms, stable_ms;
    uint64_t up_at;
    uv_timer_t retry;
    struct rsub_sent *head, **tail; /* commands not yet answered, oldest first */
    int npending;
    char buf[65536];
};

/* The warning of a Redis connection that cannot connect: one log site for
 * every connection of rlink and rsub, so that their repeats are held back
 * together (log-repeat-s). */
void rsub_warn_unreachable(const char *name, const char *host, int port, const char *why);

void rsub_init(struct rsub *s, uv_loop_t *loop, const char *host, int port, const struct rsub_hooks *hooks,
               int backoff_min_ms, int backoff_max_ms, int stable_ms);
void rsub_start(struct rsub *s);
/* Closes the connection; the loop must run until its handles are closed. */
void rsub_stop(struct rsub *s);
int rsub_up(const struct rsub *s);
/* Sends SSUBSCRIBE or SUNSUBSCRIBE for one channel. Returns 0, or -1 when
 * the connection is not up or too many commands are unanswered. */
int rsub_subscribe(struct rsub *s, const char *channel, size_t len);
int rsub_unsubscribe(struct rsub *s, const char *channel, size_t len);

#endif
