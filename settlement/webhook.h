/* webhook.h - signed notifications to the platform's backend, delivered
 * from webhook_outbox (docs/settlement.md, "Webhooks").
 *
 * Rows are written by the settlement functions in the same transaction as
 * their event (tipcast_webhook_enqueue, storage/migrations/002). This module
 * sends them: every webhook-poll-ms, when its previous batch is done, it
 * claims up to WEBHOOK_CLAIM_MAX due rows with one statement
 * (tipcast_webhook_claim, 005; rows another node holds are skipped), POSTs
 * each to webhook-url, at most WEBHOOK_INFLIGHT_MAX at once, and writes each
 * outcome back (tipcast_webhook_finish): delivered on a 2xx, else retried
 * after a growing wait (webhook_backoff_ms), or dead once it has failed for
 * webhook-give-up-s.
 *
 * Delivery is at least once: a node that stops or dies with deliveries in
 * flight abandons them, and their rows are sent again (by any node) when
 * the claim's lease runs out; a receiver drops the repeats by their
 * Idempotency-Key.
 *
 * HTTP is our own small HTTP/1.1 client on uv_tcp (webhook_http.h holds its
 * pure parts): one connection per delivery (Connection: close), http://
 * only, a deadline of webhook-timeout-ms from connecting to the status line,
 * at most WEBHOOK_RESPONSE_MAX bytes of the answer read. The host name is
 * looked up with uv_getaddrinfo (the thread pool) and its addresses kept
 * for WEBHOOK_DNS_TTL_MS. Nothing blocks the loop. */
#ifndef TIPCAST_WEBHOOK_H
#define TIPCAST_WEBHOOK_H

#include <stdint.h>

#include <sys/socket.h>
#include <uv.h>

#include "config.h"
#include "pgconn.h"
#include "webhook_http.h"

/* Rows claimed by one statement. */
#define WEBHOOK_CLAIM_MAX 32
/* Deliveries in flight at once (connections to the receiver). */
#define WEBHOOK_INFLIGHT_MAX 8
/* Bytes of an answer read for its status line; the rest is not read. */
#define WEBHOOK_RESPONSE_MAX 4096
/* A claim's lease is this many webhook-timeout-ms: a batch runs in
 * WEBHOOK_CLAIM_MAX / WEBHOOK_INFLIGHT_MAX waves of deliveries, plus one for
 * writing the outcomes, so that no row of a healthy batch is claimed again
 * by another node while this one still holds it. */
#define WEBHOOK_LEASE_TIMEOUTS (WEBHOOK_CLAIM_MAX / WEBHOOK_INFLIGHT_MAX + 1)
/* The count of pending rows (the metric) is refreshed this often. */
#define WEBHOOK_COUNT_MS 5000
/* How long looked-up addresses of the receiver are used, and how many. */
#define WEBHOOK_DNS_TTL_MS 30000
#define WEBHOOK_ADDRS_MAX 4
/* The module's PostgreSQL connection (core/pgconn.h). */
#define WEBHOOK_PG_TIMEOUT_MS 10000
#define WEBHOOK_PG_RETRY_MS 1000
/* Longest reason of a failure kept in last_error. */
#define WEBHOOK_ERROR_MAX 160

struct webhook_stats {
    uint64_t delivered; /* attempts answered 2xx */
    uint64_t failed;    /* attempts that were not (the last one of a dead row too) */
    uint64_t dead;      /* rows given up (state dead) by this node */
    int64_t pending;    /* rows in state pending at the latest count; -1 before one */
};

enum webhook_job_state {
    WEBHOOK_JOB_WAITING, /* claimed, not started */
    WEBHOOK_JOB_SENDING, /* its HTTP request is under way */
    WEBHOOK_JOB_DONE,    /* its outcome waits to be written */
    WEBHOOK_JOB_WRITING, /* in the query in flight */
    WEBHOOK_JOB_WRITTEN,
};

/* A claimed row of the batch under way. */
struct webhook_job {
    int64_t id;
    int attempts;               /* this attempt's number: the fencing token */
    char *event, *key, *body;   /* malloc */
    size_t body_len;
    enum webhook_job_state state;
    int delivered;              /* the outcome: 2xx */
    int status;                 /* the answer's status, 0 when none */
    char error[WEBHOOK_ERROR_MAX];
};

struct webhook_call;

struct webhook {
    const struct config *cfg;
    uv_loop_t *loop;
    int started, stopping;
    struct webhook_url url;
    struct pgconn *pg;
    uv_timer_t poll;
    int claiming;     /* the claim query is in flight */
    int count_due;    /* the claim query also counts the pending rows */
    int64_t counted_ms;
    /* The batch: jobs[0..njobs), started up to next. */
    struct webhook_job jobs[WEBHOOK_CLAIM_MAX];
    int njobs, next;
    struct webhook_call *calls[WEBHOOK_INFLIGHT_MAX];
    int ncalls;
    /* The receiver's addresses: those of its name (the first
     * WEBHOOK_ADDRS_MAX), of which deliveries use addr_at; a connect that
     * fails moves addr_at to the next one, so that a name with an address
     * the receiver does not listen on (localhost: ::1 and 127.0.0.1) costs
     * one failed attempt, not every one. */
    uv_getaddrinfo_t resolver;
    int resolving;
    int have_addr;
    struct sockaddr_storage addrs[WEBHOOK_ADDRS_MAX];
    int naddrs, addr_at;
    int64_t addr_ms;
    uint32_t jitter; /* state of the backoff's random part */
    struct webhook_stats stats;
};

/* Starts the module when cfg->webhook_url is set (else does nothing and
 * returns 0): connects to PostgreSQL and polls. `cfg` must stay valid
 * until webhook_stop. Returns 0, or -1 when out of memory or the URL does
 * not parse (logged). */
int webhook_start(struct webhook *w, uv_loop_t *loop, const struct config *cfg);

/* Abandons the deliveries in flight (their rows are sent again once the
 * lease runs out), closes the connection and the timer (asynchronously: the
 * loop runs until their handles are closed). Safe when never started. */
void webhook_stop(struct webhook *w);

#endif
