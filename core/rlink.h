/* rlink.h - tipcastd's link to Redis: a command connection, a subscriber
 * connection, a reads connection and the connections that modules open for
 * commands that block (XREADGROUP BLOCK), each one reconnected with backoff
 * when it drops: hiredis async contexts on the loop, but for the subscriber,
 * which uses sharded pub/sub (core/rsub.h).
 *
 * The command connection carries the money path (wallet scripts, balances,
 * the outbox's upkeep); bulk reads that clients ask for (history, join
 * snapshots, leaderboards) go on the reads connection. Redis answers a
 * connection's commands in order, so a burst of big reads queued there
 * never delays a debit queued on the other. 
 *
 * Lua scripts belong to the modules that call them (design.md): a module
 * keeps a `struct rlink_script` per script and registers it before
 * rlink_start; rlink loads every registered script with SCRIPT LOAD when
 * the command connection comes up and calls it with EVALSHA. A NOSCRIPT
 * answer (Redis restarted, or SCRIPT FLUSH) is retried once with EVAL,
 * which caches the script again, so callers never see it.
 *
 * Writes: hiredis's event hooks are tipcast's own (rlink_ev.c). A link's
 * queued commands go out in one write() per link just before the loop
 * polls, as Redis writes its replies in handleClientsWithPendingWrites.
 *
 * Contract, as hiredis's: a function that takes a callback and returns 0
 * calls it exactly once, with the reply or with NULL when the command
 * failed (connection lost, or rlink_stop); one that returns -1 never calls
 * it. A reply is valid only during the call. */
#ifndef TIPCAST_RLINK_H
#define TIPCAST_RLINK_H

#include <stddef.h>
#include <stdint.h>

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <uv.h>

#include "rsub.h"

/* Bound on commands in flight; past it commands are refused, so that a
 * stalled Redis cannot make the process grow without bound. */
#define RLINK_INFLIGHT_MAX 100000
/* Connections in all, beside the subscriber: command, reads, and those
 * rlink_open makes. */
#define RLINK_LINKS_MAX 8
/* Most arguments of one command (after the command name and script). */
#define RLINK_ARGS_MAX 320
/* Most scripts registered. */
#define RLINK_SCRIPTS_MAX 16
#define RLINK_BACKOFF_MIN_MS 100
#define RLINK_BACKOFF_MAX_MS 2000
/* A connection that lived this long starts the next one's backoff afresh;
 * one that a Redis closes at once (protected mode's DENIED, maxclients)
 * keeps backing off, so that it is not reopened ten times a second. */
#define RLINK_STABLE_MS 2000
/* The link numbers of the shared command connection and of the reads
 * connection (see above). */
#define RLINK_CMD_LINK 0
#define RLINK_READ_LINK 1

/* One Lua script, owned (and embedded) by the module that calls it. */
struct rlink_script {
    const char *name; /* for log lines */
    const char *src;  /* NUL-terminated source */
    int durable;      /* a money movement: its answer waits for the replicas (rlink_set_wait) */
    char sha[41];     /* filled by rlink_script_add */
};

/* Called exactly once per command that was accepted (see above). An error
 * reply (REDIS_REPLY_ERROR) is passed through as it is. */
typedef void rlink_reply_cb(redisReply *reply, void *priv);

/* Events of the connections; strings are valid only during the call. All
 * optional. on_cmd_ready gets cmd_ctx; the subscriber's events get
 * sub_ctx. */
struct rlink_hooks {
    /* The command connection came (back) up. */
    void (*on_cmd_ready)(void *ctx);
    void *cmd_ctx;
    void (*on_message)(void *ctx, const char *channel, size_t channel_len, const char *payload, size_t len);
    void (*on_subscribed)(void *ctx, const char *channel, size_t channel_len);
    void (*on_unsubscribed)(void *ctx, const char *channel, size_t channel_len);
    /* The subscriber connection came (back) up: every subscription is gone
     * and must be made again. */
    void (*on_sub_ready)(void *ctx);
    /* It went down: no subscription is in force any more. */
    void (*on_sub_lost)(void *ctx);
    /* A (un)subscription of the channel was refused with `err`. */
    void (*on_sub_error)(void *ctx, const char *channel, size_t channel_len, const char *err);
    void *sub_ctx;
};

struct rlink_wait;

struct rlink_link {
    const char *name;
    struct rlink *rl;
    redisAsyncContext *ac; /* while connected or connecting */
    int up;
    int backoff_ms;
    uint64_t up_at; /* loop time of the last connect */
    uv_timer_t retry;
    struct rlink_wait *open_wait; /* the scripts sent this loop turn, before their WAIT */
};

struct rlink {
    uv_loop_t *loop;
    char host[256];
    int port;
    struct rlink_hooks hooks;
    int started, stopping;
    struct rlink_link links[RLINK_LINKS_MAX]; /* command, reads, then rlink_open's */
    struct rsub sub;                          /* the subscriber connection */
    int nlinks;
    struct rlink_script *scripts[RLINK_SCRIPTS_MAX];
    int nscripts;
    long inflight;
    uv_prepare_t flush; /* writes the links' queued commands before each poll */
    int wait_replicas;  /* rlink_set_wait */
    int wait_timeout_ms;
    long waits, waits_short; /* WAITs sent, and those answered with fewer replicas */
};

/* Prepares `rl` (no connection yet). */
void rlink_init(struct rlink *rl, uv_loop_t *loop, const char *host, int port, const struct rlink_hooks *hooks);

/* Durable acknowledgements: with replicas > 0, the answers to the durable
 * scripts sent on the command connection in one loop turn are held until a
 * `WAIT replicas timeout_ms` sent after them returns; when it says fewer
 * replicas have them, every one of those callbacks gets NULL (the caller's
 * "unavailable": the change is on the master, and a retry of an idempotent
 * script answers it again once the replicas have it). Before rlink_start. */
void rlink_set_wait(struct rlink *rl, int replicas, int timeout_ms);

/* Registers a script (before rlink_start); computes its sha. The script
 * must outlive rl. */
void rlink_script_add(struct rlink *rl, struct rlink_script *s);
/* Computes s->sha (rlink_script_add does it too). */
void rlink_script_hash(struct rlink_script *s);

/* Starts connecting the command, subscriber and reads connections
 * (returns at once). */
void rlink_start(struct rlink *rl);

/* Stops reconnecting and closes every connection after the replies to what
 * was sent; pending callbacks run with NULL. The loop must then run until
 * the handles are closed. */
void rlink_stop(struct rlink *rl);

/* 1 when the command connection is up. */
int rlink_cmd_ready(const struct rlink *rl);
/* 1 when the subscriber connection is up. */
int rlink_sub_ready(const struct rlink *rl);
/* 1 when the command, subscriber and reads connections are up. */
int rlink_ready(const struct rlink *rl);

/* Opens one more connection, for commands that block it. Returns its link
 * number, or -1 (too many links, stopping). */
int rlink_open(struct rlink *rl, const char *name);
/* 1 when that link is connected. */
int rlink_up(const struct rlink *rl, int link);

/* Runs script `s` with `nkeys` keys then the other arguments (argv holds
 * keys then args, argc items; each is copied) on the command connection.
 * Returns 0 (cb will run), or -1 (not connected, too many in flight, out
 * of memory; cb will not run). */
int rlink_eval(struct rlink *rl, const struct rlink_script *s, int nkeys, int argc, const char **argv,
               const size_t *argvlen, rlink_reply_cb *cb, void *priv);
/* The same on `link` (RLINK_READ_LINK for bulk reads). */
int rlink_eval_on(struct rlink *rl, int link, const struct rlink_script *s, int nkeys, int argc, const char **argv,
                  const size_t *argvlen, rlink_reply_cb *cb, void *priv);

/* Sends one command (argv[0] is its name; every item is copied) on `link`.
 * Same contract as rlink_eval. */
int rlink_command(struct rlink *rl, int link, int argc, const char **argv, const size_t *argvlen,
                  rlink_reply_cb *cb, void *priv);

/* A deep copy of a reply (hiredis frees its own after the callback), to
 * free with freeReplyObject; NULL when out of memory. */
redisReply *rlink_reply_copy(const redisReply *r);

/* (Un)subscribes a channel with sharded pub/sub (SSUBSCRIBE; the room
 * scripts SPUBLISH, core/rsub.h); the outcome comes through the hooks. Returns
 * 0, or -1 when the subscriber connection is down (on_sub_ready comes
 * later). */
int rlink_subscribe(struct rlink *rl, const char *channel, size_t len);
int rlink_unsubscribe(struct rlink *rl, const char *channel, size_t len);

#endif
