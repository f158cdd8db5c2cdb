/* webhook.c - delivery of webhook_outbox (see webhook.h). */
#include "webhook.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "clock.h"
#include "log.h"

/* One delivery: a connection to the receiver, its deadline, the request
 * and what came back. Allocated per delivery and freed when both handles
 * are closed, so that webhook_stop can abandon it (w = NULL) without
 * waiting for it. */
struct webhook_call {
    struct webhook *w; /* NULL once abandoned */
    int job;           /* index in w->jobs */
    int slot;          /* index in w->calls */
    int addr_at;       /* index in w->addrs */
    int finished;      /* the outcome is known (or abandoned): handles closing */
    int open_handles;
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_connect_t connect;
    uv_write_t write;
    char *req;
    size_t req_len;
    size_t resp_len;
    char resp[WEBHOOK_RESPONSE_MAX];
};

/* SQL of one outcome in the VALUES list of flush(): numbers, booleans and
 * an escaped error of at most 2 * WEBHOOK_ERROR_MAX + 3 bytes. */
#define WEBHOOK_ROW_SQL_MAX (160 + 2 * WEBHOOK_ERROR_MAX)
#define WEBHOOK_FLUSH_SQL_MAX (512 + WEBHOOK_CLAIM_MAX * WEBHOOK_ROW_SQL_MAX)

static void claim(struct webhook *w);
static void flush(struct webhook *w);
static void start_calls(struct webhook *w);

/* xorshift32 for the jitter, seeded from getrandom: nothing here needs
 * more than a spread. */
static uint32_t jitter(struct webhook *w)
{
    uint32_t x = w->jitter ? w->jitter : 2463534242u;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    w->jitter = x;
    return x;
}

static void job_free(struct webhook_job *j)
{
    free(j->event);
    free(j->key);
    free(j->body);
    memset(j, 0, sizeof *j);
}

/* Ends the batch once every job's outcome is written; a full batch means
 * more rows may be due, so the next claim goes out at once. */
static void maybe_end_batch(struct webhook *w)
{
    if (w->njobs == 0 || w->next < w->njobs || w->ncalls > 0)
        return;
    for (int i = 0; i < w->njobs; i++)
        if (w->jobs[i].state != WEBHOOK_JOB_WRITTEN)
            return;
    int full = w->njobs == WEBHOOK_CLAIM_MAX;
    for (int i = 0; i < w->njobs; i++)
        job_free(&w->jobs[i]);
    w->njobs = w->next = 0;
    if (full)
        claim(w);
}

/* Records the outcome of job i; it is written by the next flush. */
static void job_finish(struct webhook *w, int i, int status, const char *error)
{
    struct webhook_job *j = &w->jobs[i];
    j->state = WEBHOOK_JOB_DONE;
    j->status = status;
    j->delivered = !error && status >= 200 && status <= 299;
    if (j->delivered) {
        j->error[0] = '\0';
        w->stats.delivered++;
        log_msg(LOG_DEBUG, "webhook: %s %s delivered (attempt %d, HTTP %d)", j->event, j->key, j->attempts, status);
    } else {
        if (error)
            snprintf(j->error, sizeof j->error, "%s", error);
        else
            snprintf(j->error, sizeof j->error, "HTTP %d", status);
        w->stats.failed++;
        log_msg(LOG_WARN, "webhook: %s %s attempt %d failed: %s", j->event ? j->event : "?", j->key ? j->key : "?",
                j->attempts, j->error);
    }
}

/* ---- One delivery over HTTP ------------------------------------------------ */

static void call_on_close(uv_handle_t *h)
{
    struct webhook_call *c = h->data;
    if (--c->open_handles == 0) {
        free(c->req);
        free(c);
    }
}

/* Closes the call's handles; reports the outcome unless abandoned. error
 * NULL: the answer's status is `status`. */
static void call_end(struct webhook_call *c, int status, const char *error)
{
    if (c->finished)
        return;
    c->finished = 1;
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->tcp, call_on_close);
    uv_close((uv_handle_t *)&c->timer, call_on_close);
    struct webhook *w = c->w;
    if (!w)
        return;
    c->w = NULL;
    w->calls[c->slot] = NULL;
    w->ncalls--;
    job_finish(w, c->job, status, error);
    start_calls(w);
    flush(w);
}

static void call_fail_uv(struct webhook_call *c, const char *what, int err)
{
    char msg[WEBHOOK_ERROR_MAX];
    snprintf(msg, sizeof msg, "%s: %s", what, uv_strerror(err));
    call_end(c, 0, msg);
}

static void call_on_timeout(uv_timer_t *t)
{
    struct webhook_call *c = t->data;
    char msg[WEBHOOK_ERROR_MAX];
    snprintf(msg, sizeof msg, "no answer within %d ms", c->w ? c->w->cfg->webhook_timeout_ms : 0);
    call_end(c, 0, msg);
}

static void call_on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    struct webhook_call *c = h->data;
    /* Never 0 bytes: call_on_read ends the call once the buffer is full. */
    *buf = uv_buf_init(c->resp + c->resp_len, (unsigned)(sizeof c->resp - c->resp_len));
}

static void call_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    struct webhook_call *c = s->data;
    if (c->finished || nread == 0)
        return;
    if (nread < 0) {
        if (nread == UV_EOF)
            call_end(c, 0, c->resp_len ? "connection closed in the middle of the status line"
                                       : "connection closed without an answer");
        else
            call_fail_uv(c, "read", (int)nread);
        return;
    }
    c->resp_len += (size_t)nread;
    int status = 0;
    int r = webhook_status_parse(c->resp, c->resp_len, &status);
    if (r > 0)
        call_end(c, status, NULL); /* the rest of the answer is not read */
    else if (r < 0)
        call_end(c, 0, "the answer is not HTTP/1.x");
    else if (c->resp_len == sizeof c->resp)
        call_end(c, 0, "no final status line in the answer's first 4096 bytes");
}

static void call_on_write(uv_write_t *req, int status)
{
    struct webhook_call *c = req->data;
    /* A receiver may answer (and close) before reading the whole body: the
     * answer, read meanwhile, counts, and a write error only when none came. */
    if (status < 0 && status != UV_ECANCELED && !c->finished)
        call_fail_uv(c, "write", status);
}

static void call_on_connect(uv_connect_t *req, int status)
{
    struct webhook_call *c = req->data;
    if (c->finished)
        return;
    if (status < 0) {
        /* The next delivery tries the next address (once per wave). */
        struct webhook *w = c->w;
        if (w && w->naddrs > 0 && w->addr_at == c->addr_at)
            w->addr_at = (w->addr_at + 1) % w->naddrs;
        call_fail_uv(c, "connect", status);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    /* Reading starts with the write: an early answer is seen. */
    int rc = uv_read_start((uv_stream_t *)&c->tcp, call_on_alloc, call_on_read);
    if (rc < 0) {
        call_fail_uv(c, "read", rc);
        return;
    }
    uv_buf_t b = uv_buf_init(c->req, (unsigned)c->req_len);
    c->write.data = c;
    rc = uv_write(&c->write, (uv_stream_t *)&c->tcp, &b, 1, call_on_write);
    if (rc < 0)
        call_fail_uv(c, "write", rc);
}

/* Starts job i's delivery in a free slot of w->calls. */
static void call_start(struct webhook *w, int i)
{
    struct webhook_job *j = &w->jobs[i];
    const struct config *cfg = w->cfg;
    j->state = WEBHOOK_JOB_SENDING;
    struct webhook_request r = {.event = j->event, .key = j->key, .body = j->body, .body_len = j->body_len,
                                .ts = clock_wall_ms() / 1000, .attempt = j->attempts};
    size_t len = 0;
    char *req = webhook_request_build(&w->url, cfg->webhook_secret, strlen(cfg->webhook_secret), &r, &len);
    if (!req) {
        /* Retried like any failure, then dead: an event name or key that
         * cannot be a header value is a bug of its writer, for an operator
         * to see in the dead letters. */
        job_finish(w, i, 0, "cannot make the request (event or key not fit for a header, or out of memory)");
        return;
    }
    struct webhook_call *c = calloc(1, sizeof *c);
    if (!c) {
        free(req);
        job_finish(w, i, 0, "out of memory");
        return;
    }
    int slot = 0;
    while (w->calls[slot])
        slot++;
    tc_assert(slot < WEBHOOK_INFLIGHT_MAX);
    c->w = w;
    c->job = i;
    c->slot = slot;
    c->req = req;
    c->req_len = len;
    w->calls[slot] = c;
    w->ncalls++;
    uv_tcp_init(w->loop, &c->tcp);
    uv_timer_init(w->loop, &c->timer);
    c->tcp.data = c->timer.data = c->connect.data = c;
    c->open_handles = 2;
    uv_timer_start(&c->timer, call_on_timeout, (uint64_t)cfg->webhook_timeout_ms, 0);
    c->addr_at = w->addr_at;
    int rc = uv_tcp_connect(&c->connect, &c->tcp, (const struct sockaddr *)&w->addrs[c->addr_at], call_on_connect);
    if (rc < 0)
        call_fail_uv(c, "connect", rc);
}

static void start_calls(struct webhook *w)
{
    if (w->stopping || !w->have_addr)
        return;
    while (w->ncalls < WEBHOOK_INFLIGHT_MAX && w->next < w->njobs)
        call_start(w, w->next++);
}

/* ---- The receiver's address ---------------------------------------------------- */

/* Every job not yet started fails with msg: the address is unknown. */
static void fail_waiting(struct webhook *w, const char *msg)
{
    while (w->next < w->njobs)
        job_finish(w, w->next++, 0, msg);
    flush(w);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct webhook *w = req->data;
    w->resolving = 0;
    if (w->stopping) {
        uv_freeaddrinfo(res);
        return;
    }
    /* The same name mostly gives the same list: the address that worked
     * stays in use. */
    int at = w->addr_at;
    w->naddrs = w->addr_at = 0;
    for (struct addrinfo *a = status < 0 ? NULL : res; a && w->naddrs < WEBHOOK_ADDRS_MAX; a = a->ai_next) {
        if (a->ai_addrlen > sizeof w->addrs[0] || (a->ai_family != AF_INET && a->ai_family != AF_INET6))
            continue;
        memcpy(&w->addrs[w->naddrs++], a->ai_addr, a->ai_addrlen);
    }
    uv_freeaddrinfo(res);
    if (w->naddrs == 0) {
        char msg[WEBHOOK_ERROR_MAX];
        snprintf(msg, sizeof msg, "cannot look up %.64s: %s", w->url.host,
                 status < 0 ? uv_strerror(status) : "no address");
        fail_waiting(w, msg);
        return;
    }
    w->addr_at = at % w->naddrs;
    w->have_addr = 1;
    w->addr_ms = clock_mono_ms();
    start_calls(w);
    flush(w);
}

/* Starts the batch's deliveries, once the address is known: an address in
 * the URL is one for good; a name is looked up again after its TTL. */
static void start_batch(struct webhook *w)
{
    struct sockaddr_storage lit;
    int literal = uv_ip4_addr(w->url.host, w->url.port, (struct sockaddr_in *)&lit) == 0 ||
                  uv_ip6_addr(w->url.host, w->url.port, (struct sockaddr_in6 *)&lit) == 0;
    if (literal) {
        w->addrs[0] = lit;
        w->have_addr = 1;
        w->naddrs = 1;
        w->addr_at = 0;
    } else if (!w->have_addr || clock_mono_ms() - w->addr_ms >= WEBHOOK_DNS_TTL_MS) {
        w->have_addr = 0;
        char port[8];
        snprintf(port, sizeof port, "%d", w->url.port);
        struct addrinfo hints;
        memset(&hints, 0, sizeof hints);
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        w->resolver.data = w;
        int rc = uv_getaddrinfo(w->loop, &w->resolver, on_resolved, w->url.host, port, &hints);
        if (rc < 0) {
            char msg[WEBHOOK_ERROR_MAX];
            snprintf(msg, sizeof msg, "cannot look up %.64s: %s", w->url.host, uv_strerror(rc));
            fail_waiting(w, msg);
            return;
        }
        w->resolving = 1;
        return;
    }
    start_calls(w);
    flush(w);
}

/* ---- PostgreSQL: claims and outcomes -------------------------------------------- */

static void log_sql_error(const char *what, PGresult *res)
{
    char line[PGCONN_ERROR_MAX];
    pgconn_first_line(PQresultErrorMessage(res), line, sizeof line);
    log_msg(LOG_WARN, "webhook: %s: %s", what, line);
}

static void on_claimed(PGresult *res, int ok, void *priv)
{
    struct webhook *w = priv;
    if (res) {
        if (PQresultStatus(res) != PGRES_TUPLES_OK) {
            log_sql_error("claiming rows failed", res);
            return;
        }
        if (PQnfields(res) == 1 && PQntuples(res) == 1) { /* the count */
            w->stats.pending = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
            w->counted_ms = clock_mono_ms();
            return;
        }
        if (PQnfields(res) != 5)
            return;
        /* Rows past a failed copy (out of memory) stay leased and come
         * back after the lease. */
        for (int row = 0; row < PQntuples(res) && w->njobs < WEBHOOK_CLAIM_MAX; row++) {
            struct webhook_job *j = &w->jobs[w->njobs];
            memset(j, 0, sizeof *j);
            j->id = strtoll(PQgetvalue(res, row, 0), NULL, 10);
            j->event = strdup(PQgetvalue(res, row, 1));
            j->key = strdup(PQgetvalue(res, row, 2));
            j->body_len = (size_t)PQgetlength(res, row, 3);
            j->body = malloc(j->body_len + 1);
            j->attempts = atoi(PQgetvalue(res, row, 4));
            if (!j->event || !j->key || !j->body) {
                job_free(j);
                continue;
            }
            memcpy(j->body, PQgetvalue(res, row, 3), j->body_len + 1);
            j->state = WEBHOOK_JOB_WAITING;
            w->njobs++;
        }
        return;
    }
    (void)ok; /* rows received are sent even when the query did not end well:
                 at worst another node sends them too */
    w->claiming = 0;
    if (w->stopping)
        return;
    if (w->njobs > 0)
        start_batch(w);
}

/* Claims the next batch, when the previous one is done. */
static void claim(struct webhook *w)
{
    if (w->stopping || !w->pg || !pgconn_up(w->pg) || pgconn_busy(w->pg) || w->claiming || w->njobs > 0)
        return;
    int64_t now = clock_mono_ms();
    int count = w->counted_ms == 0 || now - w->counted_ms >= WEBHOOK_COUNT_MS;
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT * FROM tipcast_webhook_claim(%lld, %d)%s",
             (long long)w->cfg->webhook_timeout_ms * WEBHOOK_LEASE_TIMEOUTS, WEBHOOK_CLAIM_MAX,
             count ? "; SELECT count(*) FROM webhook_outbox WHERE state = 'pending'" : "");
    if (count)
        w->counted_ms = now; /* not again before the next period, whatever the answer */
    w->claiming = 1;
    if (pgconn_query(w->pg, sql, on_claimed, w) < 0)
        w->claiming = 0;
}

static void on_poll(uv_timer_t *t) { claim(t->data); }

static void on_flushed(PGresult *res, int ok, void *priv)
{
    struct webhook *w = priv;
    if (res) {
        if (PQresultStatus(res) != PGRES_TUPLES_OK || PQnfields(res) != 2) {
            /* Not written, and not to be tried again in a loop: the rows
             * come back when their lease runs out. */
            log_sql_error("writing outcomes failed (the rows are sent again after their lease)", res);
            for (int i = 0; i < w->njobs; i++)
                if (w->jobs[i].state == WEBHOOK_JOB_WRITING)
                    w->jobs[i].state = WEBHOOK_JOB_WRITTEN;
            return;
        }
        for (int row = 0; row < PQntuples(res); row++) {
            int64_t id = strtoll(PQgetvalue(res, row, 0), NULL, 10);
            const char *state = PQgetvalue(res, row, 1);
            for (int i = 0; i < w->njobs; i++) {
                struct webhook_job *j = &w->jobs[i];
                if (j->id != id || j->state != WEBHOOK_JOB_WRITING)
                    continue;
                j->state = WEBHOOK_JOB_WRITTEN;
                if (strcmp(state, "dead") == 0) {
                    w->stats.dead++;
                    log_msg(LOG_WARN, "webhook: gave up on %s %s (id %lld) after %d attempts: %s", j->event, j->key,
                            (long long)j->id, j->attempts, j->error);
                }
            }
        }
        return;
    }
    /* The connection failed under the query: whether it ran is unknown.
     * Writing an outcome twice changes nothing (tipcast_webhook_finish), so
     * they are written again once it is back. */
    for (int i = 0; i < w->njobs; i++)
        if (w->jobs[i].state == WEBHOOK_JOB_WRITING)
            w->jobs[i].state = ok ? WEBHOOK_JOB_WRITTEN : WEBHOOK_JOB_DONE;
    if (w->stopping)
        return;
    flush(w);
    maybe_end_batch(w);
}

/* Writes every outcome not yet written, in one statement. */
static void flush(struct webhook *w)
{
    if (w->stopping || !w->pg || !pgconn_up(w->pg) || pgconn_busy(w->pg))
        return;
    PGconn *conn = pgconn_libpq(w->pg);
    char sql[WEBHOOK_FLUSH_SQL_MAX];
    size_t len = (size_t)snprintf(sql, sizeof sql,
                                  "SELECT v.id, tipcast_webhook_finish(v.id, v.attempt, v.delivered, v.status, "
                                  "v.error, v.retry_ms, %d) FROM (VALUES ",
                                  w->cfg->webhook_give_up_s);
    int n = 0;
    for (int i = 0; i < w->njobs; i++) {
        struct webhook_job *j = &w->jobs[i];
        if (j->state != WEBHOOK_JOB_DONE)
            continue;
        char status[16] = "NULL";
        if (j->status)
            snprintf(status, sizeof status, "%d", j->status);
        char *err = NULL;
        if (!j->delivered && !(err = PQescapeLiteral(conn, j->error, strlen(j->error)))) {
            n = 0; /* out of memory: tried again with the next outcome */
            break;
        }
        int64_t retry_ms = webhook_backoff_ms(j->attempts, w->cfg->webhook_retry_base_ms, jitter(w));
        len += (size_t)snprintf(sql + len, sizeof sql - len,
                                "%s(%lld::bigint, %d, %s, %s::int, %s::text, %lld::bigint)",
                                n ? ", " : "", (long long)j->id, j->attempts, j->delivered ? "true" : "false", status,
                                err ? err : "NULL", (long long)retry_ms);
        PQfreemem(err);
        tc_assert(len < sizeof sql);
        j->state = WEBHOOK_JOB_WRITING;
        n++;
    }
    if (n > 0) {
        len += (size_t)snprintf(sql + len, sizeof sql - len,
                                ") AS v(id, attempt, delivered, status, error, retry_ms)");
        tc_assert(len < sizeof sql);
        if (pgconn_query(w->pg, sql, on_flushed, w) == 0)
            return;
    }
    for (int i = 0; i < w->njobs; i++)
        if (w->jobs[i].state == WEBHOOK_JOB_WRITING)
            w->jobs[i].state = WEBHOOK_JOB_DONE;
    maybe_end_batch(w);
}

static void on_up(void *priv)
{
    struct webhook *w = priv;
    flush(w); /* outcomes left by a connection that failed */
    claim(w);
}

static void on_down(const char *what, const char *detail, void *priv)
{
    (void)priv;
    char line[PGCONN_ERROR_MAX];
    pgconn_first_line(detail, line, sizeof line);
    log_msg(LOG_WARN, "webhook: postgres: %s: %s", what, line);
}

int webhook_start(struct webhook *w, uv_loop_t *loop, const struct config *cfg)
{
    static const struct pgconn_hooks hooks = {.on_up = on_up, .on_down = on_down};
    memset(w, 0, sizeof *w);
    w->stats.pending = -1;
    if (!cfg->webhook_url[0])
        return 0;
    char err[128];
    if (webhook_url_parse(cfg->webhook_url, &w->url, err, sizeof err) < 0) {
        log_msg(LOG_ERROR, "webhook-url: %s", err); /* config_load checks it first: not seen */
        return -1;
    }
    if (getrandom(&w->jitter, sizeof w->jitter, 0) != (ssize_t)sizeof w->jitter)
        w->jitter = (uint32_t)clock_mono_us();
    w->cfg = cfg;
    w->loop = loop;
    const struct pgconn_config pcfg = {
        .name = "webhook: postgres",
        .conninfo = cfg->pg_conninfo,
        .application_name = "tipcastd-webhook",
        .backoff_min_ms = WEBHOOK_PG_RETRY_MS,
        .backoff_max_ms = WEBHOOK_PG_RETRY_MS,
        .timeout_ms = WEBHOOK_PG_TIMEOUT_MS,
    };
    w->pg = pgconn_open(loop, &pcfg, &hooks, w);
    if (!w->pg)
        return -1;
    uv_timer_init(loop, &w->poll);
    w->poll.data = w;
    uv_timer_start(&w->poll, on_poll, (uint64_t)cfg->webhook_poll_ms, (uint64_t)cfg->webhook_poll_ms);
    w->started = 1;
    log_msg(LOG_INFO, "webhooks: sending to http://%s%s", w->url.host_header, w->url.path);
    return 0;
}

void webhook_stop(struct webhook *w)
{
    if (!w->started || w->stopping)
        return;
    w->stopping = 1;
    for (int i = 0; i < WEBHOOK_INFLIGHT_MAX; i++) {
        struct webhook_call *c = w->calls[i];
        if (!c)
            continue;
        c->w = NULL; /* abandoned: its row is sent again after the lease */
        w->calls[i] = NULL;
        call_end(c, 0, NULL);
    }
    w->ncalls = 0;
    if (w->resolving)
        uv_cancel((uv_req_t *)&w->resolver); /* on_resolved still runs, and sees stopping */
    uv_timer_stop(&w->poll);
    uv_close((uv_handle_t *)&w->poll, NULL);
    struct pgconn *pg = w->pg;
    w->pg = NULL;
    pgconn_close(pg); /* a query in flight ends from within, and starts nothing */
    for (int i = 0; i < w->njobs; i++)
        job_free(&w->jobs[i]);
    w->njobs = w->next = 0;
}
