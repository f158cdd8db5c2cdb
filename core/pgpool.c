/* pgpool.c - calls on a few PostgreSQL connections (see pgpool.h). */
#include "pgpool.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "pgconn.h"

struct pgpool_call {
    struct pgpool_call *next;
    char *sql;
    char *params[PGPOOL_PARAMS_MAX];
    int nparams;
    pgpool_cb *cb;
    void *priv;
    int cancelled, retried;
    /* Filled while it runs. */
    PGresult *rows;
    int failed;
    char sqlstate[6];
    char message[256], detail[512], hint[128];
};

struct pgpool_conn {
    struct pgpool *pool;
    struct pgconn *pg;
    struct pgpool_call *cur;
};

struct pgpool {
    char name[48];
    struct pgpool_conn conns[PGPOOL_CONNS_MAX];
    int n;
    struct pgpool_call *head, *tail; /* waiting for a connection */
    int queued, running;
    /* pgpool_call sends from the next loop turn, so that no callback ever
     * runs from within it. */
    uv_timer_t kick;
    int closing;
};

static void call_free(struct pgpool_call *c)
{
    free(c->sql);
    for (int i = 0; i < c->nparams; i++)
        free(c->params[i]);
    if (c->rows)
        PQclear(c->rows);
    free(c);
}

static void finish(struct pgpool_call *c, enum pgpool_outcome outcome, const char *code)
{
    if (!c->cancelled && c->cb) {
        struct pgpool_result r = {.outcome = outcome, .res = c->rows, .code = code,
                                  .detail = c->detail, .hint = c->hint};
        c->cb(c->priv, &r);
    }
    call_free(c);
}

static void fail_queue(struct pgpool *p)
{
    while (p->head) {
        struct pgpool_call *c = p->head;
        p->head = c->next;
        p->queued--;
        finish(c, PGPOOL_UNAVAILABLE, NULL);
    }
    p->tail = NULL;
}

static void push_front(struct pgpool *p, struct pgpool_call *c)
{
    c->next = p->head;
    p->head = c;
    if (!p->tail)
        p->tail = c;
    p->queued++;
}

static void pump(struct pgpool *p);

static void on_result(PGresult *res, int ok, void *priv)
{
    struct pgpool_conn *pc = priv;
    struct pgpool_call *c = pc->cur;
    if (res) {
        ExecStatusType st = PQresultStatus(res);
        if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) {
            if (!c->rows)
                c->rows = PQcopyResult(res, PG_COPYRES_ATTRS | PG_COPYRES_TUPLES);
        } else if (!c->failed) {
            c->failed = 1;
            const char *f = PQresultErrorField(res, PG_DIAG_SQLSTATE);
            snprintf(c->sqlstate, sizeof c->sqlstate, "%s", f ? f : "");
            f = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
            snprintf(c->message, sizeof c->message, "%s", f ? f : "");
            f = PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL);
            snprintf(c->detail, sizeof c->detail, "%s", f ? f : "");
            f = PQresultErrorField(res, PG_DIAG_MESSAGE_HINT);
            snprintf(c->hint, sizeof c->hint, "%s", f ? f : "");
        }
        return;
    }
    struct pgpool *p = pc->pool;
    pc->cur = NULL;
    p->running--;
    if (!ok) {
        finish(c, PGPOOL_UNAVAILABLE, NULL);
    } else if (c->failed) {
        int again = strcmp(c->sqlstate, "40P01") == 0 || strcmp(c->sqlstate, "40001") == 0 ||
                    strcmp(c->sqlstate, "23505") == 0;
        if (again && !c->retried && !c->cancelled) {
            c->retried = 1;
            c->failed = 0;
            c->detail[0] = c->hint[0] = '\0';
            push_front(p, c);
        } else if (strcmp(c->sqlstate, "P0001") == 0) {
            finish(c, PGPOOL_REFUSED, c->message);
        } else {
            log_msg(LOG_ERROR, "%s: %s (SQLSTATE %s) in: %.80s", p->name, c->message, c->sqlstate, c->sql);
            finish(c, PGPOOL_REFUSED, "internal");
        }
    } else if (!c->rows) {
        log_msg(LOG_ERROR, "%s: no rows from: %.80s", p->name, c->sql);
        finish(c, PGPOOL_REFUSED, "internal");
    } else {
        finish(c, PGPOOL_OK, NULL);
    }
    pump(p);
}

/* Sends waiting calls on every idle connection. */
static void pump(struct pgpool *p)
{
    if (p->closing)
        return;
    for (int i = 0; i < p->n && p->head; i++) {
        struct pgpool_conn *pc = &p->conns[i];
        if (!pc->pg || pc->cur || !pgconn_up(pc->pg) || pgconn_busy(pc->pg))
            continue;
        struct pgpool_call *c = p->head;
        p->head = c->next;
        if (!p->head)
            p->tail = NULL;
        p->queued--;
        if (c->cancelled) {
            call_free(c);
            i--;
            continue;
        }
        pc->cur = c;
        p->running++;
        if (pgconn_query_params(pc->pg, c->sql, c->nparams, (const char *const *)c->params, on_result, pc) < 0) {
            /* The connection was dropped (on_down ran): try the call again
             * elsewhere, or fail it with the queue. */
            pc->cur = NULL;
            p->running--;
            push_front(p, c);
        }
    }
    if (p->head && !pgpool_up(p))
        fail_queue(p);
}

static void on_up(void *priv)
{
    struct pgpool_conn *pc = priv;
    log_msg(LOG_INFO, "%s: connected", pc->pool->name);
    pump(pc->pool);
}

static void on_down(const char *what, const char *detail, void *priv)
{
    struct pgpool_conn *pc = priv;
    char line[PGCONN_ERROR_MAX];
    pgconn_first_line(detail, line, sizeof line);
    log_msg(LOG_WARN, "%s: %s: %s", pc->pool->name, what, line);
    /* With no connection left the waiting calls are told now, not when one
     * comes back: their callers answer unavailable and retry. */
    if (!pgpool_up(pc->pool))
        fail_queue(pc->pool);
}

static const struct pgconn_hooks hooks = {.on_up = on_up, .on_down = on_down};

static void on_kick(uv_timer_t *t) { pump(t->data); }

static void on_closed(uv_handle_t *h) { free(h->data); }

struct pgpool *pgpool_open(uv_loop_t *loop, const char *name, const char *conninfo, int n)
{
    struct pgpool *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    snprintf(p->name, sizeof p->name, "%s", name);
    uv_timer_init(loop, &p->kick);
    p->kick.data = p;
    p->n = n < 1 ? 1 : n > PGPOOL_CONNS_MAX ? PGPOOL_CONNS_MAX : n;
    struct pgconn_config cfg = {.name = p->name, .conninfo = conninfo, .application_name = p->name,
                                .client_encoding = "UTF8", .backoff_min_ms = 100, .backoff_max_ms = 2000,
                                .timeout_ms = PGPOOL_TIMEOUT_MS};
    for (int i = 0; i < p->n; i++) {
        p->conns[i].pool = p;
        p->conns[i].pg = pgconn_open(loop, &cfg, &hooks, &p->conns[i]);
        if (!p->conns[i].pg) {
            pgpool_close(p);
            return NULL;
        }
    }
    return p;
}

struct pgpool_call *pgpool_call(struct pgpool *p, const char *sql, int nparams, const char *const *params,
                                pgpool_cb *cb, void *priv)
{
    if (p->closing || !pgpool_up(p) || p->queued >= PGPOOL_QUEUE_MAX || nparams > PGPOOL_PARAMS_MAX)
        return NULL;
    struct pgpool_call *c = calloc(1, sizeof *c);
    if (!c || !(c->sql = strdup(sql))) {
        free(c);
        return NULL;
    }
    for (int i = 0; i < nparams; i++) {
        if (params[i] && !(c->params[i] = strdup(params[i]))) {
            c->nparams = i;
            call_free(c);
            return NULL;
        }
    }
    c->nparams = nparams;
    c->cb = cb;
    c->priv = priv;
    if (p->tail)
        p->tail->next = c;
    else
        p->head = c;
    p->tail = c;
    p->queued++;
    uv_timer_start(&p->kick, on_kick, 0, 0);
    return c;
}

void pgpool_cancel(struct pgpool_call *c)
{
    if (c)
        c->cancelled = 1;
}

int pgpool_up(const struct pgpool *p)
{
    for (int i = 0; i < p->n; i++)
        if (p->conns[i].pg && pgconn_up(p->conns[i].pg))
            return 1;
    return 0;
}

int pgpool_waiting(const struct pgpool *p) { return p->queued + p->running; }

void pgpool_close(struct pgpool *p)
{
    if (!p)
        return;
    p->closing = 1;
    fail_queue(p);
    for (int i = 0; i < p->n; i++) {
        struct pgconn *pg = p->conns[i].pg;
        p->conns[i].pg = NULL;
        /* A call in flight ends (ok 0) from within pgconn_close. */
        pgconn_close(pg);
    }
    fail_queue(p); /* what those final callbacks put back */
    uv_close((uv_handle_t *)&p->kick, on_closed);
}
