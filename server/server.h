/* server.h - tipcastd itself: the one place that knows every module. It
 * embeds each module's state, wires their hooks together, and starts and
 * stops them in order on one libuv loop (design.md, "The house"). */
#ifndef TIPCAST_SERVER_H
#define TIPCAST_SERVER_H

#include <stdint.h>

#include <jansson.h>
#include <libwebsockets.h>
#include <uv.h>

#include "admin.h"
#include "backlog.h"
#include "board.h"
#include "catalog.h"
#include "config.h"
#include "conn.h"
#include "earnings.h"
#include "pk.h"
#include "promo.h"
#include "campaign.h"
#include "jobs.h"
#include "recon_job.h"
#include "ledger.h"
#include "listener.h"
#include "metrics.h"
#include "outbox.h"
#include "pgcheck.h"
#include "pgpool.h"
#include "risk.h"
#include "redis.h"
#include "room.h"
#include "roomfeed.h"
#include "roomstore.h"
#include "scan.h"
#include "tally.h"
#include "wallet.h"
#include "web.h"
#include "webhook.h"

/* The sweep runs this often: auth deadlines, pings, idle, rooms. */
#define SERVER_SWEEP_MS 250
/* A sweep period in which the loop allocated less than this is quiet: the
 * allocator's free pages then go back to the system at once (server.c). */
#define SERVER_QUIET_BYTES (1024 * 1024)
/* How long the shutdown waits for close frames to go out. */
#define SERVER_DRAIN_MS 2000
/* Longest node id: host, pid and a random part. */
#define SERVER_NODE_ID_MAX 40

struct server {
    struct config cfg;
    char node_id[SERVER_NODE_ID_MAX];
    uv_loop_t *loop;
    struct lws_context *lws;
    int stopping;
    int exit_code;         /* the process's exit status once the loop ends */
    int consumers_started; /* after the first Redis that passed the checks */
    /* Client sockets lws holds, WebSocket or not (http.c); those that are
     * not WebSockets (sockets - conns.count) are bounded by
     * max-http-connections, and those refused for it counted. */
    int sockets;
    uint64_t http_refused;

    struct redis redis;
    struct outbox outbox;
    struct catalog catalog;
    struct wallet wallet;
    struct board board;
    struct roomstore store;
    struct roomfeed feed;
    struct ledger ledger;
    struct pgcheck pgcheck;
    struct earnings earnings;
    struct promo promo; /* global boards, coupon lookups (issue 14) */
    struct webhook webhook;
    struct conns conns;
    /* Connections per user and per client address (session.c). */
    struct tally conns_by_user, conns_by_addr;
    struct rooms rooms;
    struct pk pk; /* PK battles (issue 14) */
    struct web web;
    struct listener listener;
    /* The admin API (admin.c): its listener, its sockets (bounded by
     * admin-max-connections) and its PostgreSQL connections. */
    struct listener admin_listener;
    int admin_sockets;
    struct pgpool *admin_pool;
    uint64_t admin_answered[ADMIN_STATUSES]; /* by status (admin.c) */
    struct jobs jobs; /* settlement runs and re-driven wallet credits */
    struct campaign_job campaigns; /* crowdfunding: open, seal, pay out, refund, progress */
    struct recon_job recon; /* scheduled reconciliation, on its own thread */
    /* Risk rules and freezes (loaded in main.c, reloaded by pgcheck), the
     * gift path's rate limits, and the periodic scan. */
    struct risk risk;
    struct risk_scan risk_scan;
    struct backlog backlog;
    struct metrics metrics;

    uv_timer_t sweep;
    uint64_t sweep_allocated; /* the loop thread's bytes allocated, at the last sweep */
    uv_timer_t redis_recheck; /* a Redis that could not be checked yet (loading) */
    uv_timer_t redis_start;   /* redis-start-timeout-s, until the first connection */
    uv_timer_t drain;
    int64_t drain_started_ms;
    uv_signal_t sig_int, sig_term;
};

/* Wires the modules together on `loop` (s->cfg and s->node_id are set).
 * Nothing connects yet. Returns 0, or -1 when out of memory. */
int server_init(struct server *s, uv_loop_t *loop);

/* Creates the lws context on the loop and starts the backends. Returns 0,
 * or -1 with the reason logged; then nothing is left on the loop but what
 * server_free releases. */
int server_start(struct server *s);

/* Starts the shutdown: stop accepting, close every connection with 1001,
 * then tear down lws and the backends. The loop ends when all is closed. */
void server_stop(struct server *s);

/* Frees what outlives the loop (after uv_run returned). */
void server_free(struct server *s);

/* session.c: the connection layer's hooks (ctx = the server). */
void session_open(void *ctx, struct conn *c);
void session_message(void *ctx, struct conn *c, int binary, const uint8_t *buf, size_t len);
void session_leave_all(void *ctx, struct conn *c);
void session_closed(void *ctx, const struct conn *c);

/* http.c: the "http" protocol of the lws context. */
int http_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len);

/* Adds the security headers of an answer (Content-Security-Policy,
 * X-Content-Type-Options, X-Frame-Options, Referrer-Policy). `page`: a page
 * of web-root, whose policy lets it run its own scripts and styles and
 * connect to its origin, ws: and wss:, web-connect-src and, with demo on,
 * http://HOST:* of its own pinned Host; otherwise (JSON answers, the admin
 * API) nothing may load at all. Returns 0, or nonzero when they do not fit. */
int http_security_headers(const struct config *cfg, struct lws *wsi, int page, unsigned char **p,
                          unsigned char *end);
/* The per-session data size of the "http" protocol. */
size_t http_session_size(void);
/* The /readyz answer, {redis, postgres, stopping}, and its HTTP status. */
json_t *server_readiness(struct server *s, unsigned *status);




#endif
