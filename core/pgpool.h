/* pgpool.h - a few PostgreSQL connections (core/pgconn.h) that run one-
 * statement calls from a bounded queue, for request/answer work such as
 * the admin API: each call is a statement with text parameters, answered
 * once through its callback.
 *
 * A call's outcome is one of:
 *   ok       the statement ran: `res` holds its rows;
 *   refused  PostgreSQL raised an error: `code` is the error's message when
 *            it was raised by RAISE EXCEPTION (SQLSTATE P0001: the stable
 *            code of the refusal, by convention of the functions called),
 *            with `detail` and `hint` from DETAIL and HINT; for any other
 *            error `code` is "internal" (the message is logged);
 *   unavailable  no connection is up, the queue is full, the connection
 *            was lost during the call, or it ran past the timeout: whether
 *            the statement ran is unknown, so every call must be safe to
 *            repeat (idempotent by its key).
 * A call that hits a deadlock, a serialization failure or a unique key
 * taken by a concurrent transaction (40P01, 40001, 23505) is run once
 * more: the second run sees the other transaction's outcome. */
#ifndef TIPCAST_PGPOOL_H
#define TIPCAST_PGPOOL_H

#include <libpq-fe.h>
#include <uv.h>

/* Calls waiting for a connection; past it a call is unavailable at once. */
#define PGPOOL_QUEUE_MAX 1024
#define PGPOOL_CONNS_MAX 32
#define PGPOOL_PARAMS_MAX 4
/* A call (or a connect) that takes longer has failed. */
#define PGPOOL_TIMEOUT_MS 15000

enum pgpool_outcome { PGPOOL_OK, PGPOOL_REFUSED, PGPOOL_UNAVAILABLE };

struct pgpool_result {
    enum pgpool_outcome outcome;
    const PGresult *res;   /* PGPOOL_OK: the statement's rows */
    const char *code;      /* PGPOOL_REFUSED: stable code; otherwise NULL */
    const char *detail;    /* PGPOOL_REFUSED: DETAIL, or "" */
    const char *hint;      /* PGPOOL_REFUSED: HINT, or "" */
};

/* Runs once per call (never from within pgpool_call); the result and its
 * strings are valid only during the call. */
typedef void pgpool_cb(void *priv, const struct pgpool_result *r);

struct pgpool;
struct pgpool_call;

/* Opens `n` connections (1..PGPOOL_CONNS_MAX) named `name` in the log.
 * Returns NULL when out of memory. */
struct pgpool *pgpool_open(uv_loop_t *loop, const char *name, const char *conninfo, int n);

/* Queues `sql` (one statement, $1..$nparams bound to `params`, which are
 * copied). cb may be NULL: nobody waits for the outcome. Returns the call, or NULL when it was not queued (queue full,
 * out of memory): the caller answers unavailable itself then. */
struct pgpool_call *pgpool_call(struct pgpool *p, const char *sql, int nparams, const char *const *params,
                                pgpool_cb *cb, void *priv);

/* The caller no longer wants the answer: cb will not run. A call already
 * sent still runs to its end in PostgreSQL. */
void pgpool_cancel(struct pgpool_call *c);

/* 1 when at least one connection is up. */
int pgpool_up(const struct pgpool *p);
/* Calls queued or running. */
int pgpool_waiting(const struct pgpool *p);

/* Ends every call unavailable and closes the connections (asynchronously).
 * NULL is ignored. */
void pgpool_close(struct pgpool *p);

#endif
