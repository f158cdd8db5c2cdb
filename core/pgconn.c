/* pgconn.c - a non-blocking libpq connection on the loop (see pgconn.h).
 *
 *   DOWN --timer--> CONNECTING --PQconnectPoll OK--> IDLE <--> BUSY
 * Any failure goes back to DOWN, with the timer set to the backoff. One
 * timer serves every state: the backoff while DOWN, the timeout while
 * CONNECTING or BUSY, and a deferred drop when a socket cannot be watched
 * from within pgconn_query (whose callback must not run before it returns).
 */
#include "pgconn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

/* Bounds of the copied configuration strings. */
#define PGCONN_NAME_MAX 64
#define PGCONN_OPTION_MAX 64
/* Most bytes handed to libpq in one PQputCopyData (it frames each call as
 * one CopyData message). */
#define PGCONN_COPY_CHUNK (256 * 1024)

enum pgconn_state { PGCONN_DOWN, PGCONN_CONNECTING, PGCONN_IDLE, PGCONN_BUSY, PGCONN_CLOSED };

struct pgconn {
    uv_loop_t *loop;
    char name[PGCONN_NAME_MAX];
    char *conninfo; /* allocated: a conninfo has no bound */
    char application_name[PGCONN_OPTION_MAX];
    char client_encoding[PGCONN_OPTION_MAX];
    int backoff_min_ms, backoff_max_ms, timeout_ms;
    const struct pgconn_hooks *hooks;
    void *priv;

    enum pgconn_state state;
    PGconn *pg;
    uv_poll_t *poll; /* allocated: libpq can change the socket while connecting */
    int poll_fd;
    uv_timer_t timer;
    int backoff_ms;
    const char *pending_drop; /* a drop the timer does at once, or NULL */
    int in_result;            /* a callback with a result is running */
    char error[PGCONN_ERROR_MAX];

    pgconn_result_cb *cb; /* the query in flight, or NULL */
    void *cb_priv;

    /* The COPY data of the query in flight (pgconn_query_copy). */
    const struct pgconn_copy *copies;
    int ncopies;
    int copy_next;     /* the next COPY ... FROM STDIN gets copies[copy_next] */
    int copying;       /* a COPY is being fed: its data or its end is not queued yet */
    size_t copy_off;   /* bytes of the current COPY's data queued so far */

    int handles_open; /* after pgconn_close: handles still to close */
};

static const struct pgconn_hooks no_hooks;

static void on_poll(uv_poll_t *h, int status, int events);
static void on_timer(uv_timer_t *t);

/* ---- Handles ------------------------------------------------------------------ */

static void handle_closed(struct pgconn *c)
{
    if (--c->handles_open > 0)
        return;
    free(c->conninfo);
    free(c);
}

/* A poll replaced during normal operation frees itself; the last one,
 * closed by pgconn_close, also counts towards freeing the object. */
static void on_poll_closed(uv_handle_t *h)
{
    struct pgconn *c = h->data;
    free(h);
    if (c)
        handle_closed(c);
}

static void on_timer_closed(uv_handle_t *h) { handle_closed(h->data); }

static void poll_close(struct pgconn *c, int last)
{
    if (!c->poll)
        return;
    uv_poll_stop(c->poll);
    c->poll->data = last ? c : NULL;
    uv_close((uv_handle_t *)c->poll, on_poll_closed);
    c->poll = NULL;
    c->poll_fd = -1;
}

/* Watches the connection's socket for `events`, with a new poll when the
 * socket is not the one watched so far. */
static int poll_watch(struct pgconn *c, int events)
{
    int fd = PQsocket(c->pg);
    if (fd < 0)
        return -1;
    if (c->poll && fd != c->poll_fd)
        poll_close(c, 0);
    if (!c->poll) {
        c->poll = malloc(sizeof *c->poll);
        if (!c->poll || uv_poll_init(c->loop, c->poll, fd) != 0) {
            free(c->poll);
            c->poll = NULL;
            return -1;
        }
        c->poll->data = c;
        c->poll_fd = fd;
    }
    return uv_poll_start(c->poll, events, on_poll) == 0 ? 0 : -1;
}

static void timer_set(struct pgconn *c, int ms) { uv_timer_start(&c->timer, on_timer, (uint64_t)ms, 0); }

/* ---- Failure ------------------------------------------------------------------ */

static void drop(struct pgconn *c, const char *what)
{
    if (c->state == PGCONN_DOWN || c->state == PGCONN_CLOSED)
        return;
    tc_assert(!c->in_result);
    snprintf(c->error, sizeof c->error, "%s", c->pg ? PQerrorMessage(c->pg) : "out of memory");
    pgconn_result_cb *cb = c->cb;
    void *cb_priv = c->cb_priv;
    c->cb = NULL;
    c->copying = 0;
    c->pending_drop = NULL;
    poll_close(c, 0);
    if (c->pg)
        PQfinish(c->pg);
    c->pg = NULL;
    c->state = PGCONN_DOWN;
    c->backoff_ms = c->backoff_ms ? c->backoff_ms * 2 : c->backoff_min_ms;
    if (c->backoff_ms > c->backoff_max_ms)
        c->backoff_ms = c->backoff_max_ms;
    timer_set(c, c->backoff_ms);
    if (c->hooks->on_down)
        c->hooks->on_down(what, c->error, c->priv);
    if (cb)
        cb(NULL, 0, cb_priv);
}

/* ---- Connecting --------------------------------------------------------------- */

static void on_notice(void *arg, const char *message)
{
    const struct pgconn *c = arg;
    log_msg(LOG_DEBUG, "%s: %s", c->name, message);
}

static void connect_start(struct pgconn *c)
{
    /* The configured conninfo comes last and wins over these defaults. */
    const char *keys[4], *vals[4];
    int n = 0;
    if (c->application_name[0]) {
        keys[n] = "application_name";
        vals[n++] = c->application_name;
    }
    if (c->client_encoding[0]) {
        keys[n] = "client_encoding";
        vals[n++] = c->client_encoding;
    }
    if (n) {
        keys[n] = "dbname";
        vals[n++] = c->conninfo;
        keys[n] = vals[n] = NULL;
        c->pg = PQconnectStartParams(keys, vals, 1);
    } else {
        c->pg = PQconnectStart(c->conninfo);
    }
    c->state = PGCONN_CONNECTING;
    if (!c->pg || PQstatus(c->pg) == CONNECTION_BAD) {
        drop(c, "cannot connect");
        return;
    }
    PQsetnonblocking(c->pg, 1);
    PQsetNoticeProcessor(c->pg, on_notice, c);
    timer_set(c, c->timeout_ms);
    if (poll_watch(c, UV_WRITABLE) < 0)
        drop(c, "cannot watch the socket");
}

static void connect_step(struct pgconn *c)
{
    tc_assert(c->state == PGCONN_CONNECTING && c->pg);
    switch (PQconnectPoll(c->pg)) {
    case PGRES_POLLING_FAILED:
        drop(c, "cannot connect");
        return;
    case PGRES_POLLING_OK:
        c->state = PGCONN_IDLE;
        c->backoff_ms = 0;
        uv_timer_stop(&c->timer);
        if (poll_watch(c, UV_READABLE) < 0) {
            drop(c, "cannot watch the socket");
            return;
        }
        if (c->hooks->on_up)
            c->hooks->on_up(c->priv);
        return;
    case PGRES_POLLING_READING:
        if (poll_watch(c, UV_READABLE) < 0)
            drop(c, "cannot watch the socket");
        return;
    default:
        if (poll_watch(c, UV_WRITABLE) < 0)
            drop(c, "cannot watch the socket");
        return;
    }
}

/* ---- Queries -------------------------------------------------------------------- */

/* Hands over the notifications libpq has read. Returns 0, or -1 when a
 * hook ended the connection's current state (it must not, but a check is
 * cheaper than a use after free). */
static int take_notifies(struct pgconn *c)
{
    enum pgconn_state was = c->state;
    PGnotify *n;
    while (c->state == was && (n = PQnotifies(c->pg)) != NULL) {
        if (c->hooks->on_notify)
            c->hooks->on_notify(n->relname, n->extra, c->priv);
        PQfreemem(n);
    }
    return c->state == was ? 0 : -1;
}

/* Queues the current COPY's data and then its end, as far as libpq takes
 * them now; the rest goes when the socket is writable again (copying stays
 * set until the end is queued). A COPY without data of its own is ended
 * with a failure, which the server reports as the statement's error.
 * Returns 0, or -1 when the connection was dropped. */
static int copy_feed(struct pgconn *c)
{
    const struct pgconn_copy *cp = c->copy_next < c->ncopies ? &c->copies[c->copy_next] : NULL;
    while (cp && c->copy_off < cp->len) {
        size_t n = cp->len - c->copy_off;
        if (n > PGCONN_COPY_CHUNK)
            n = PGCONN_COPY_CHUNK;
        int r = PQputCopyData(c->pg, cp->data + c->copy_off, (int)n);
        if (r < 0) {
            drop(c, "cannot send");
            return -1;
        }
        if (r == 0) /* libpq's buffer is full: go on once the socket drains */
            break;
        c->copy_off += n;
    }
    int r = 0;
    if (!cp || c->copy_off == cp->len)
        r = PQputCopyEnd(c->pg, cp ? NULL : "no data for this COPY");
    if (r < 0) {
        drop(c, "cannot send");
        return -1;
    }
    if (r == 1) {
        c->copying = 0;
        c->copy_next++;
        c->copy_off = 0;
    }
    /* Whatever libpq still holds is flushed when the socket is writable. */
    if (poll_watch(c, UV_READABLE | UV_WRITABLE) < 0) {
        drop(c, "cannot watch the socket");
        return -1;
    }
    return 0;
}

/* The query's last result was read: the connection is idle again, and the
 * callback learns that the query ended. */
static void query_end(struct pgconn *c)
{
    tc_assert(c->state == PGCONN_BUSY && c->cb);
    pgconn_result_cb *cb = c->cb;
    void *cb_priv = c->cb_priv;
    c->cb = NULL;
    c->copies = NULL;
    c->ncopies = 0;
    c->state = PGCONN_IDLE;
    uv_timer_stop(&c->timer);
    /* The outcome is known: should the socket not be watchable, the
     * connection is made again but the query still counts as done. */
    if (poll_watch(c, UV_READABLE) < 0)
        drop(c, "cannot watch the socket");
    cb(NULL, 1, cb_priv);
}

static void take_results(struct pgconn *c)
{
    tc_assert(c->state == PGCONN_BUSY);
    /* While a COPY is fed libpq is not busy, yet has no result to give. */
    while (!c->copying && !PQisBusy(c->pg)) {
        PGresult *res = PQgetResult(c->pg);
        if (!res) {
            query_end(c);
            return;
        }
        ExecStatusType st = PQresultStatus(res);
        if (st == PGRES_COPY_IN) {
            PQclear(res);
            c->copying = 1;
            c->copy_off = 0;
            if (copy_feed(c) < 0)
                return;
            continue;
        }
        if (st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH) {
            /* Nothing here reads COPY data: the connection cannot go on. */
            PQclear(res);
            drop(c, "unexpected COPY TO STDOUT");
            return;
        }
        c->in_result = 1;
        c->cb(res, 1, c->cb_priv);
        c->in_result = 0;
        PQclear(res);
    }
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    (void)status;
    struct pgconn *c = h->data;
    switch (c->state) {
    case PGCONN_CONNECTING:
        connect_step(c);
        return;
    case PGCONN_IDLE:
        /* Nothing asked: readable means a notification, or the server
         * going away. */
        if (!PQconsumeInput(c->pg) || PQstatus(c->pg) != CONNECTION_OK)
            drop(c, "connection lost");
        else
            take_notifies(c);
        return;
    case PGCONN_BUSY:
        if (events & UV_WRITABLE) {
            if (c->copying && copy_feed(c) < 0)
                return;
            int f = PQflush(c->pg);
            if (f < 0) {
                drop(c, "cannot send");
                return;
            }
            if (f == 0 && !c->copying && poll_watch(c, UV_READABLE) < 0) {
                drop(c, "cannot watch the socket");
                return;
            }
            /* The COPY's end is queued now: its results may be waiting. */
            if (!(events & UV_READABLE) && !c->copying && !PQisBusy(c->pg)) {
                take_results(c);
                return;
            }
        }
        if (!(events & UV_READABLE))
            return;
        if (!PQconsumeInput(c->pg)) {
            drop(c, "connection lost");
            return;
        }
        if (take_notifies(c) == 0)
            take_results(c);
        return;
    case PGCONN_DOWN:
    case PGCONN_CLOSED:
        return;
    }
}

static void on_timer(uv_timer_t *t)
{
    struct pgconn *c = t->data;
    switch (c->state) {
    case PGCONN_DOWN:
        connect_start(c);
        return;
    case PGCONN_CONNECTING:
        drop(c, "no answer in time");
        return;
    case PGCONN_BUSY:
        drop(c, c->pending_drop ? c->pending_drop : "no answer in time");
        return;
    case PGCONN_IDLE:
    case PGCONN_CLOSED:
        return;
    }
}

/* ---- Interface ------------------------------------------------------------------ */

static void copy_str(char *dst, size_t cap, const char *src) { snprintf(dst, cap, "%s", src ? src : ""); }

struct pgconn *pgconn_open(uv_loop_t *loop, const struct pgconn_config *cfg, const struct pgconn_hooks *hooks,
                           void *priv)
{
    struct pgconn *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->conninfo = strdup(cfg->conninfo ? cfg->conninfo : "");
    if (!c->conninfo) {
        free(c);
        return NULL;
    }
    c->loop = loop;
    copy_str(c->name, sizeof c->name, cfg->name);
    copy_str(c->application_name, sizeof c->application_name, cfg->application_name);
    copy_str(c->client_encoding, sizeof c->client_encoding, cfg->client_encoding);
    c->backoff_min_ms = cfg->backoff_min_ms;
    c->backoff_max_ms = cfg->backoff_max_ms;
    c->timeout_ms = cfg->timeout_ms;
    c->hooks = hooks ? hooks : &no_hooks;
    c->priv = priv;
    c->state = PGCONN_DOWN;
    c->poll_fd = -1;
    uv_timer_init(loop, &c->timer);
    c->timer.data = c;
    timer_set(c, 0);
    return c;
}

int pgconn_query(struct pgconn *c, const char *sql, pgconn_result_cb *cb, void *priv)
{
    return pgconn_query_copy(c, sql, NULL, 0, cb, priv);
}

/* Sends what `send` sends, then watches the answer come (the common tail of
 * every query). */
static int query_start(struct pgconn *c, int sent, const struct pgconn_copy *copies, int ncopies,
                       pgconn_result_cb *cb, void *priv)
{
    if (!sent) {
        drop(c, "cannot send a query");
        return -1;
    }
    c->cb = cb;
    c->cb_priv = priv;
    c->copies = copies;
    c->ncopies = ncopies;
    c->copy_next = 0;
    c->copying = 0;
    c->state = PGCONN_BUSY;
    if (poll_watch(c, UV_READABLE | UV_WRITABLE) < 0) {
        /* Dropped from the timer, so that cb runs after this returns. */
        c->pending_drop = "cannot watch the socket";
        timer_set(c, 0);
        return 0;
    }
    timer_set(c, c->timeout_ms);
    return 0;
}

static int idle_or_fail(struct pgconn *c)
{
    if (c->state == PGCONN_IDLE)
        return 0;
    snprintf(c->error, sizeof c->error, "%s", c->state == PGCONN_BUSY ? "a query is in flight" : "not connected");
    return -1;
}

int pgconn_query_copy(struct pgconn *c, const char *sql, const struct pgconn_copy *copies, int ncopies,
                      pgconn_result_cb *cb, void *priv)
{
    if (idle_or_fail(c) < 0)
        return -1;
    return query_start(c, PQsendQuery(c->pg, sql), copies, ncopies, cb, priv);
}

int pgconn_query_params(struct pgconn *c, const char *sql, int nparams, const char *const *values,
                        pgconn_result_cb *cb, void *priv)
{
    if (idle_or_fail(c) < 0)
        return -1;
    return query_start(c, PQsendQueryParams(c->pg, sql, nparams, NULL, values, NULL, NULL, 0), NULL, 0, cb, priv);
}

int pgconn_up(const struct pgconn *c) { return c->state == PGCONN_IDLE || c->state == PGCONN_BUSY; }

int pgconn_busy(const struct pgconn *c) { return c->state == PGCONN_BUSY; }

PGconn *pgconn_libpq(struct pgconn *c) { return pgconn_up(c) ? c->pg : NULL; }

const char *pgconn_error(const struct pgconn *c) { return c->error; }

void pgconn_drop(struct pgconn *c, const char *what) { drop(c, what); }

void pgconn_first_line(const char *msg, char *out, size_t cap)
{
    size_t n = strcspn(msg, "\n");
    snprintf(out, cap, "%.*s", (int)n, n ? msg : "(no detail)");
}

void pgconn_close(struct pgconn *c)
{
    if (!c || c->state == PGCONN_CLOSED)
        return;
    tc_assert(!c->in_result);
    pgconn_result_cb *cb = c->cb;
    void *cb_priv = c->cb_priv;
    c->cb = NULL;
    c->copying = 0;
    c->state = PGCONN_CLOSED;
    c->handles_open = 1 + (c->poll != NULL);
    poll_close(c, 1);
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, on_timer_closed);
    if (c->pg)
        PQfinish(c->pg);
    c->pg = NULL;
    if (cb)
        cb(NULL, 0, cb_priv);
}

long pgconn_in_list(struct pgconn *c, char *sql, size_t cap, size_t len, size_t n,
                    const char *(*value)(void *ctx, size_t i), void *ctx)
{
    PGconn *conn = pgconn_libpq(c);
    for (size_t i = 0; i < n; i++) {
        const char *v = value(ctx, i);
        char *lit = conn ? PQescapeLiteral(conn, v, strlen(v)) : NULL;
        if (!lit)
            return -1;
        len += (size_t)snprintf(sql + len, cap - len, "%s%s", i ? "," : "", lit);
        PQfreemem(lit);
        tc_assert(len < cap);
    }
    len += (size_t)snprintf(sql + len, cap - len, ")");
    tc_assert(len < cap);
    return (long)len;
}
