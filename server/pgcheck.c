/* pgcheck.c - PostgreSQL reachability for /readyz (see pgcheck.h). */
#include "pgcheck.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "catalog.h"
#include "log.h"
#include "server.h"

#define PGCHECK_TICK_MS 250
#define PGCHECK_RETRY_MS 1000

enum pg_state { PG_IDLE, PG_CONNECTING, PG_READY, PG_QUERYING };
/* What the query in flight is. */
enum pg_query { Q_CHECK, Q_LISTEN, Q_CATALOG };

static struct {
    uv_loop_t *loop;
    char conninfo[CONFIG_STR_MAX];
    PGconn *conn;
    uv_poll_t *poll; /* allocated: the socket can change while connecting */
    int fd;
    enum pg_state state;
    int64_t since_ms, last_ok_ms, last_check_ms, retry_at_ms;
    int ok;
    int logged_down;
    enum pg_query query;
    int reload;             /* the catalog changed (or we just connected) */
    uv_timer_t timer;
} P;

static void on_poll(uv_poll_t *h, int status, int events);
static void fail(const char *what);

static void poll_free(uv_handle_t *h) { free(h); }

static void poll_close(void)
{
    if (!P.poll)
        return;
    uv_poll_stop(P.poll);
    uv_close((uv_handle_t *)P.poll, poll_free);
    P.poll = NULL;
    P.fd = -1;
}

static int poll_watch(int events)
{
    int fd = PQsocket(P.conn);
    if (fd < 0)
        return -1;
    if (P.poll && fd != P.fd)
        poll_close();
    if (!P.poll) {
        P.poll = malloc(sizeof *P.poll);
        if (!P.poll || uv_poll_init(P.loop, P.poll, fd) != 0) {
            free(P.poll);
            P.poll = NULL;
            return -1;
        }
        P.fd = fd;
    }
    return uv_poll_start(P.poll, events, on_poll) == 0 ? 0 : -1;
}

static void fail(const char *what)
{
    if (!P.logged_down) {
        log_msg(LOG_WARN, "postgres: %s: %s", what, P.conn ? PQerrorMessage(P.conn) : "out of memory");
        P.logged_down = 1;
    }
    P.ok = 0;
    poll_close();
    if (P.conn)
        PQfinish(P.conn);
    P.conn = NULL;
    P.state = PG_IDLE;
    P.retry_at_ms = now_mono_ms() + PGCHECK_RETRY_MS;
}

static void send_query(enum pg_query q, const char *sql)
{
    if (!PQsendQuery(P.conn, sql)) {
        fail("cannot send a query");
        return;
    }
    P.query = q;
    P.state = PG_QUERYING;
    P.since_ms = now_mono_ms();
    if (poll_watch(UV_READABLE | UV_WRITABLE) < 0)
        fail("cannot watch the socket");
}

/* A notification on tipcast_catalog (any payload) asks for a reload. */
static void take_notifies(void)
{
    PGnotify *n;
    while ((n = PQnotifies(P.conn)) != NULL) {
        P.reload = 1;
        PQfreemem(n);
    }
}

static void connect_start(void)
{
    P.conn = PQconnectStart(P.conninfo);
    if (!P.conn || PQstatus(P.conn) == CONNECTION_BAD) {
        fail("cannot connect");
        return;
    }
    PQsetnonblocking(P.conn, 1);
    P.state = PG_CONNECTING;
    P.since_ms = now_mono_ms();
    if (poll_watch(UV_WRITABLE) < 0)
        fail("cannot watch the socket");
}

static void check_done(void)
{
    P.ok = 1;
    P.last_ok_ms = now_mono_ms();
    if (P.logged_down)
        log_msg(LOG_INFO, "postgres: reachable");
    P.logged_down = 0;
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    (void)h;
    (void)status;
    switch (P.state) {
    case PG_CONNECTING:
        switch (PQconnectPoll(P.conn)) {
        case PGRES_POLLING_FAILED:
            fail("cannot connect");
            return;
        case PGRES_POLLING_OK:
            /* Listen first, then load the catalog: a change made between
             * the two is then seen by the load or notified after it. */
            P.reload = 1;
            send_query(Q_LISTEN, "LISTEN tipcast_catalog");
            return;
        case PGRES_POLLING_READING:
            if (poll_watch(UV_READABLE) < 0)
                fail("cannot watch the socket");
            return;
        default:
            if (poll_watch(UV_WRITABLE) < 0)
                fail("cannot watch the socket");
            return;
        }
    case PG_READY:
        /* Nothing is asked: a readable socket means a notification, or the
         * server shutting down or gone. */
        if (!PQconsumeInput(P.conn) || PQstatus(P.conn) != CONNECTION_OK)
            fail("connection lost");
        else
            take_notifies();
        return;
    case PG_QUERYING:
        if (events & UV_WRITABLE) {
            int f = PQflush(P.conn);
            if (f < 0) {
                fail("query failed");
                return;
            }
            if (f == 0 && poll_watch(UV_READABLE) < 0) {
                fail("cannot watch the socket");
                return;
            }
        }
        if (!(events & UV_READABLE))
            return;
        if (!PQconsumeInput(P.conn)) {
            fail("connection lost");
            return;
        }
        while (!PQisBusy(P.conn)) {
            PGresult *res = PQgetResult(P.conn);
            if (!res) {
                P.state = PG_READY;
                return;
            }
            ExecStatusType st = PQresultStatus(res);
            int good = st == PGRES_TUPLES_OK || (P.query == Q_LISTEN && st == PGRES_COMMAND_OK);
            if (good && P.query == Q_CATALOG) {
                char err[256];
                if (PQntuples(res) != 1 ||
                    catalog_load_json(PQgetvalue(res, 0, 0), (size_t)PQgetlength(res, 0, 0), err, sizeof err) < 0)
                    log_msg(LOG_ERROR, "postgres: catalog reload failed; keeping the previous one");
            }
            PQclear(res);
            if (!good) {
                fail("query failed");
                return;
            }
            check_done();
            take_notifies();
        }
        return;
    case PG_IDLE:
        return;
    }
}

static void on_tick(uv_timer_t *t)
{
    (void)t;
    int64_t now = now_mono_ms();
    switch (P.state) {
    case PG_IDLE:
        if (now >= P.retry_at_ms)
            connect_start();
        break;
    case PG_READY:
        if (P.reload) {
            P.reload = 0;
            P.last_check_ms = now;
            send_query(Q_CATALOG, catalog_query);
        } else if (now - P.last_check_ms >= PGCHECK_INTERVAL_MS) {
            P.last_check_ms = now;
            send_query(Q_CHECK, "SELECT 1");
        }
        break;
    case PG_CONNECTING:
    case PG_QUERYING:
        if (now - P.since_ms >= PGCHECK_TIMEOUT_MS)
            fail("no answer in time");
        break;
    }
}

int pgcheck_start(uv_loop_t *loop, const char *conninfo)
{
    memset(&P, 0, sizeof P);
    P.loop = loop;
    P.fd = -1;
    snprintf(P.conninfo, sizeof P.conninfo, "%s", conninfo);
    uv_timer_init(loop, &P.timer);
    uv_timer_start(&P.timer, on_tick, 0, PGCHECK_TICK_MS);
    return 0;
}

void pgcheck_stop(void)
{
    if (!P.loop)
        return; /* never started */
    uv_timer_stop(&P.timer);
    uv_close((uv_handle_t *)&P.timer, NULL);
    poll_close();
    if (P.conn)
        PQfinish(P.conn);
    P.conn = NULL;
    P.state = PG_IDLE;
}

int pgcheck_ok(void)
{
    return P.ok && now_mono_ms() - P.last_ok_ms < 2 * PGCHECK_INTERVAL_MS + PGCHECK_TIMEOUT_MS;
}
