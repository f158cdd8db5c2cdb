/* rlink.h - tipcastd's link to Redis: one command connection and one
 * subscriber connection, both hiredis async contexts on the server's libuv
 * loop, reconnected with backoff when they drop.
 *
 * Lua scripts are compiled into the binary, loaded with SCRIPT LOAD when the
 * command connection comes up, and called with EVALSHA. A NOSCRIPT answer
 * (Redis restarted, or SCRIPT FLUSH) is retried once with EVAL, which also
 * caches the script again, so callers never see it.
 */
#ifndef TIPCAST_RLINK_H
#define TIPCAST_RLINK_H

#include <stddef.h>
#include <stdint.h>

#include <hiredis/async.h>
#include <uv.h>

enum rlink_script {
    SCRIPT_ROOM_PRESENCE, /* member count update, snapshot of seq and latest events */
    SCRIPT_ROOM_PUBLISH,  /* next seq, history append, PUBLISH */
    SCRIPT_ROOM_HISTORY,  /* events after a seq */
    SCRIPT_OUTBOX_LEASE,  /* take, renew or give up a shard's consumer lease */
    SCRIPT_WALLET_MOVE,   /* one money movement: checks, balance, outbox, idempotency */
    SCRIPT_ROOM_APPLY,    /* an outbox gift/tip applied to its room once: boards, seq, history, PUBLISH */
    SCRIPT_OUTBOX_TRIM,   /* trim a shard's outbox below what every group still needs */
    SCRIPT_COUNT
};

/* Called exactly once per rlink_eval that returned 0: with the reply, or with
 * NULL when the command failed (connection lost, or shutdown). The reply is
 * valid only during the call. An error reply (REDIS_REPLY_ERROR) is passed
 * through as it is. */
typedef void rlink_reply_cb(redisReply *reply, void *priv);

/* Events of the subscriber connection. `channel`/`payload` are valid only
 * during the call. */
struct rlink_hooks {
    void (*on_message)(const char *channel, size_t channel_len, const char *payload, size_t len);
    void (*on_subscribed)(const char *channel, size_t channel_len);
    void (*on_unsubscribed)(const char *channel, size_t channel_len);
    /* The subscriber connection came (back) up: every subscription is gone
     * and must be made again. */
    void (*on_sub_ready)(void);
    /* It went down: no subscription is in force any more. */
    void (*on_sub_lost)(void);
    /* The command connection came (back) up. */
    void (*on_cmd_ready)(void);
};

/* Bound on commands in flight on the command connection; past it rlink_eval
 * refuses, so a stalled Redis cannot make the process grow without bound. */
#define RLINK_INFLIGHT_MAX 100000
/* Connections in all: command, subscriber, and those rlink_open makes. */
#define RLINK_LINKS_MAX 8
/* Most arguments of one command (after the command name and script). */
#define RLINK_ARGS_MAX 256
#define RLINK_BACKOFF_MIN_MS 100
#define RLINK_BACKOFF_MAX_MS 2000

/* Starts connecting (asynchronously; returns at once). Returns 0, or -1 when
 * the hiredis contexts cannot even be created. */
int rlink_start(uv_loop_t *loop, const char *host, int port, const struct rlink_hooks *hooks);

/* Stops reconnecting and closes both connections; pending callbacks run
 * with NULL. The loop must then run until its handles are closed. */
void rlink_stop(void);

/* 1 when the command connection is up (and so a command can be sent). */
int rlink_cmd_ready(void);
/* 1 when both connections are up. */
int rlink_ready(void);

/* Runs script `s` with `nkeys` keys followed by the other arguments (argv
 * holds keys then args, argc items in all; each is copied). Returns 0 and
 * later calls cb exactly once, or -1 (not connected, too many in flight, out
 * of memory) and never calls cb. */
int rlink_eval(enum rlink_script s, int nkeys, int argc, const char **argv, const size_t *argvlen,
               rlink_reply_cb *cb, void *priv);

/* Opens one more connection, for commands that block it (XREADGROUP
 * BLOCK): it connects and reconnects like the others. Returns its link
 * number for rlink_command, or -1 (too many links, stopping). */
int rlink_open(const char *name);
/* 1 when that link is connected. */
int rlink_up(int link);
/* The link number of the shared command connection. */
#define RLINK_CMD_LINK 0

/* Sends one command (argv[0] is its name; every item is copied) on `link`.
 * Same contract as rlink_eval: 0 and cb exactly once, or -1 and never. */
int rlink_command(int link, int argc, const char **argv, const size_t *argvlen, rlink_reply_cb *cb, void *priv);

/* (Un)subscribes a channel on the subscriber connection. The outcome comes
 * through the hooks. Returns 0, or -1 when the connection is down (the
 * on_sub_ready hook will come later). */
int rlink_subscribe(const char *channel, size_t len);
int rlink_unsubscribe(const char *channel, size_t len);

#endif
