/* pgconn.h - one non-blocking libpq connection to PostgreSQL on a libuv
 * loop, re-made with backoff whenever it fails.
 *
 * The socket is watched with a uv_poll (re-created when libpq changes the
 * socket while connecting); nothing ever blocks the loop except the name
 * lookup libpq may do when it starts connecting. A connect or a query that
 * takes longer than the configured timeout has failed: the connection is
 * dropped and made again. One query is in flight at a time.
 *
 * The owner learns about the connection through hooks: on_up when it is
 * ready for queries, on_down for every failure (of a connection or of an
 * attempt to make one), on_notify for NOTIFY messages of channels it
 * LISTENs on. The module itself logs only libpq's notices (at debug level,
 * prefixed with the configured name); what to say about failures is the
 * owner's business.
 *
 * Ownership: pgconn_open allocates the object; pgconn_close gives it back
 * asynchronously (the loop must run until its handles are closed). No hook
 * or callback runs after pgconn_close returns.
 */
#ifndef TIPCAST_PGCONN_H
#define TIPCAST_PGCONN_H

#include <libpq-fe.h>
#include <uv.h>

/* Longest libpq message kept for pgconn_error and on_down (longer ones are
 * cut). */
#define PGCONN_ERROR_MAX 512

struct pgconn;

struct pgconn_config {
    /* Prefix of the module's log lines, e.g. "ledger: postgres". Copied. */
    const char *name;
    /* libpq conninfo (key=value form or URI). Copied. */
    const char *conninfo;
    /* Defaults the conninfo can override; NULL leaves libpq's own. */
    const char *application_name;
    const char *client_encoding;
    /* Wait before connecting again after a failure: min, doubled after
     * each further failure up to max, back to min once connected. */
    int backoff_min_ms, backoff_max_ms;
    /* A connect, or a query, that has not finished within this time has
     * failed. */
    int timeout_ms;
};

/* All optional (NULL: not wanted). They run on the loop, never from within
 * pgconn_open or pgconn_close. `priv` is the pointer given to pgconn_open. */
struct pgconn_hooks {
    /* Connected: pgconn_query can be called (also from within the hook). */
    void (*on_up)(void *priv);
    /* The connection, or an attempt to make one, failed; it is closed, and
     * the next attempt comes after the backoff. `what` says which step
     * failed ("cannot connect", "connection lost", "no answer in time",
     * ... or the `what` given to pgconn_drop), `detail` is libpq's message
     * (may span lines, may end with a newline). Both are valid only during
     * the call. A query in flight gets its final callback right after this
     * hook. */
    void (*on_down)(const char *what, const char *detail, void *priv);
    /* A NOTIFY on a LISTENed channel. Strings valid only during the call.
     * Must not call pgconn_drop or pgconn_close. */
    void (*on_notify)(const char *channel, const char *payload, void *priv);
};

/* The outcome of a query, in calls to one callback: once per result that
 * libpq returns for it (`res` set, `ok` 1; res belongs to the module and is
 * valid only during the call; check its PQresultStatus: an SQL error is a
 * result like any other), then exactly once more with `res` NULL to end it:
 *   ok 1  the query ran to its end: every result was delivered. The
 *         connection may have been lost just after (see pgconn_up).
 *   ok 0  it did not: the connection was lost (on_down ran just before),
 *         it timed out, or pgconn_close ended it. Whether the server ran it
 *         is unknown.
 * It is never called before pgconn_query returns. During a call with a
 * result it must not call pgconn_drop or pgconn_close; during the final call
 * anything may be called, including pgconn_query for the next query. */
typedef void pgconn_result_cb(PGresult *res, int ok, void *priv);

/* Creates the connection object and starts connecting on the next loop
 * iteration. `cfg` and its strings are copied; `hooks` must stay valid
 * until pgconn_close. Returns NULL when out of memory. */
struct pgconn *pgconn_open(uv_loop_t *loop, const struct pgconn_config *cfg, const struct pgconn_hooks *hooks,
                           void *priv);

/* Sends `sql` (one simple query: several statements separated by ';' run as
 * one implicit transaction). Returns 0 and later calls cb as described
 * above; or -1, never calling cb, when the connection is not up, a query is
 * already in flight, or libpq refuses to send (then the connection has been
 * dropped and on_down has run before the return; pgconn_error says why).
 * A COPY ... FROM STDIN in `sql` is refused by the server (it gets no data);
 * pgconn_query_copy feeds one. */
int pgconn_query(struct pgconn *c, const char *sql, pgconn_result_cb *cb, void *priv);

/* The rows of one COPY ... FROM STDIN, in COPY's text (or csv) format. */
struct pgconn_copy {
    const char *data;
    size_t len;
};

/* As pgconn_query, where the k-th COPY ... FROM STDIN statement of `sql`
 * is fed copies[k] (a COPY beyond ncopies gets none and fails, which ends
 * the implicit transaction in an error). The server's answer to a COPY
 * reaches cb as one result (PGRES_COMMAND_OK, or the error), like any other
 * statement's. `copies` and the data it points to are not copied: they
 * must stay valid until cb's final call. */
int pgconn_query_copy(struct pgconn *c, const char *sql, const struct pgconn_copy *copies, int ncopies,
                      pgconn_result_cb *cb, void *priv);

/* As pgconn_query, for ONE statement whose $1..$n are `values` (text
 * form, NUL-terminated; a NULL pointer is SQL NULL): the values never pass
 * through the SQL text, so they need no escaping. `values` are copied by
 * libpq before the call returns. */
int pgconn_query_params(struct pgconn *c, const char *sql, int nparams, const char *const *values,
                        pgconn_result_cb *cb, void *priv);

/* 1 when connected (a query may be in flight). */
int pgconn_up(const struct pgconn *c);
/* 1 when a query is in flight. */
int pgconn_busy(const struct pgconn *c);

/* The libpq connection while up, else NULL: for functions that need it,
 * such as PQescapeLiteral. Never send, consume or close with it. */
PGconn *pgconn_libpq(struct pgconn *c);

/* libpq's message of the latest failure (a drop, or a query pgconn_query
 * refused); "" when none. Valid until the next call into the module. */
const char *pgconn_error(const struct pgconn *c);

/* Appends "lit1,lit2,...)" to the SQL text sql[0..len) (capacity cap):
 * the n values value(ctx, i), each escaped as a literal on c's connection,
 * then the closing parenthesis of an IN list the caller opened. Returns the
 * new length, or -1 when escaping failed (out of memory, no connection).
 * The caller sizes `sql` for its bound on n; overflowing it is a bug. */
long pgconn_in_list(struct pgconn *c, char *sql, size_t cap, size_t len, size_t n,
                    const char *(*value)(void *ctx, size_t i), void *ctx);

/* The first line of a libpq message (they span lines) into out, or
 * "(no detail)" when it has none: what a log line holds. */
void pgconn_first_line(const char *msg, char *out, size_t cap);

/* Drops the connection as failed, `what` being the reason given to on_down
 * (e.g. an answer that makes no sense); it is made again after the backoff.
 * A query in flight ends with ok 0. Nothing happens when not connected or
 * connecting. */
void pgconn_drop(struct pgconn *c, const char *what);

/* Closes the connection for good: a query in flight gets its final callback
 * (ok 0) from within this call, no hook runs any more, and the object is
 * freed once its loop handles are closed. `c` must not be used after. NULL
 * is ignored. */
void pgconn_close(struct pgconn *c);

#endif
