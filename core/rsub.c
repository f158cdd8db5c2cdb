/* rsub.c - the sharded pub/sub connection (see rsub.h). */
#include "rsub.h"

#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <hiredis/hiredis.h>

#include "log.h"

struct rsub_sent {
    struct rsub_sent *next;
    int unsub;
    size_t len;
    char channel[];
};

struct rsub_write {
    uv_write_t req;
    char *cmd;
};

static void sub_connect(struct rsub *s);

void rsub_warn_unreachable(const char *name, const char *host, int port, const char *why)
{
    log_msg(LOG_WARN, "redis %s: cannot connect to %s:%d: %s", name, host, port, why);
}

static void pending_clear(struct rsub *s)
{
    while (s->head) {
        struct rsub_sent *p = s->head;
        s->head = p->next;
        free(p);
    }
    s->tail = &s->head;
    s->npending = 0;
}

static void on_retry(uv_timer_t *t)
{
    struct rsub *s = t->data;
    if (!s->stopping)
        sub_connect(s);
}

static void on_closed(uv_handle_t *h) { free(h); }

/* The connection failed or was lost: it is closed, and tried again after
 * the backoff. */
static void drop(struct rsub *s, const char *why)
{
    if (!s->tcp)
        return;
    int was_up = s->up;
    if (why && was_up)
        log_msg(LOG_WARN, "redis subscriber: connection to %s:%d lost: %s", s->host, s->port, why);
    else if (why)
        rsub_warn_unreachable("subscriber", s->host, s->port, why);
    uv_close((uv_handle_t *)s->tcp, on_closed);
    s->tcp = NULL;
    s->up = 0;
    if (s->reader) {
        redisReaderFree(s->reader);
        s->reader = NULL;
    }
    pending_clear(s);
    if (was_up && s->hooks.on_lost)
        s->hooks.on_lost(s->hooks.ctx);
    if (s->stopping)
        return;
    if (was_up && uv_now(s->loop) - s->up_at >= (uint64_t)s->stable_ms)
        s->backoff_ms = 0;
    s->backoff_ms = s->backoff_ms ? s->backoff_ms * 2 : s->backoff_min_ms;
    if (s->backoff_ms > s->backoff_max_ms)
        s->backoff_ms = s->backoff_max_ms;
    uv_timer_start(&s->retry, on_retry, (uint64_t)s->backoff_ms, 0);
}

/* The oldest command not yet answered, when it is for this channel. */
static int pending_pop(struct rsub *s, int unsub, const char *chan, size_t len, int any)
{
    struct rsub_sent *p = s->head;
    if (!p || (!any && (p->unsub != unsub || p->len != len || memcmp(p->channel, chan, len) != 0)))
        return 0;
    s->head = p->next;
    if (!s->head)
        s->tail = &s->head;
    s->npending--;
    free(p);
    return 1;
}

static void dispatch(struct rsub *s, const redisReply *r)
{
    const struct rsub_hooks *h = &s->hooks;
    if (r->type == REDIS_REPLY_ERROR) {
        struct rsub_sent *p = s->head;
        if (!p) {
            log_msg(LOG_WARN, "redis subscriber: %s", r->str);
            return;
        }
        char chan[RSUB_CHANNEL_MAX];
        size_t len = p->len;
        memcpy(chan, p->channel, len);
        pending_pop(s, 0, NULL, 0, 1);
        if (h->on_error)
            h->on_error(h->ctx, chan, len, r->str);
        return;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 3 || r->element[0]->type != REDIS_REPLY_STRING ||
        r->element[1]->type != REDIS_REPLY_STRING)
        return;
    const char *kind = r->element[0]->str;
    const redisReply *chan = r->element[1], *arg = r->element[2];
    if (strcasecmp(kind, "smessage") == 0 && arg->type == REDIS_REPLY_STRING) {
        if (h->on_message)
            h->on_message(h->ctx, chan->str, chan->len, arg->str, arg->len);
    } else if (strcasecmp(kind, "ssubscribe") == 0) {
        pending_pop(s, 0, chan->str, chan->len, 0);
        if (h->on_subscribed)
            h->on_subscribed(h->ctx, chan->str, chan->len);
    } else if (strcasecmp(kind, "sunsubscribe") == 0) {
        pending_pop(s, 1, chan->str, chan->len, 0);
        if (h->on_unsubscribed)
            h->on_unsubscribed(h->ctx, chan->str, chan->len);
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    struct rsub *s = h->data;
    *buf = uv_buf_init(s->buf, sizeof s->buf);
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    struct rsub *s = st->data;
    if (n < 0) {
        drop(s, n == UV_EOF ? "closed by Redis" : uv_strerror((int)n));
        return;
    }
    if (n == 0)
        return;
    if (redisReaderFeed(s->reader, buf->base, (size_t)n) != REDIS_OK) {
        drop(s, "out of memory");
        return;
    }
    /* A hook may stop this connection: the reader is gone then. */
    while (s->reader && s->tcp == (uv_tcp_t *)st) {
        void *r = NULL;
        if (redisReaderGetReply(s->reader, &r) != REDIS_OK) {
            drop(s, "protocol error");
            return;
        }
        if (!r)
            return;
        dispatch(s, r);
        freeReplyObject(r);
    }
}

static void on_connected(uv_connect_t *req, int status)
{
    struct rsub *s = req->data;
    uv_tcp_t *tcp = (uv_tcp_t *)req->handle;
    free(req);
    if (status == UV_ECANCELED || s->tcp != tcp)
        return;
    if (status < 0) {
        drop(s, uv_strerror(status));
        return;
    }
    if (!(s->reader = redisReaderCreate())) {
        drop(s, "out of memory");
        return;
    }
    uv_read_start((uv_stream_t *)tcp, on_alloc, on_read);
    s->up = 1;
    s->up_at = uv_now(s->loop);
    log_msg(LOG_INFO, "redis subscriber: connected to %s:%d", s->host, s->port);
    if (s->hooks.on_ready)
        s->hooks.on_ready(s->hooks.ctx);
}

static int resolve(const char *host, int port, struct sockaddr_storage *out)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
    char svc[16];
    snprintf(svc, sizeof svc, "%d", port);
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
    /* A name (not an address) is looked up once per connect: a blocking
     * lookup, as hiredis's own connect does. */
    if (getaddrinfo(host, svc, &hints, &res) != 0) {
        hints.ai_flags = AI_NUMERICSERV;
        if (getaddrinfo(host, svc, &hints, &res) != 0)
            return -1;
    }
    memcpy(out, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    return 0;
}

static void sub_connect(struct rsub *s)
{
    struct sockaddr_storage addr;
    uv_tcp_t *tcp = calloc(1, sizeof *tcp);
    uv_connect_t *req = calloc(1, sizeof *req);
    if (!tcp || !req || resolve(s->host, s->port, &addr) < 0) {
        free(tcp);
        free(req);
        rsub_warn_unreachable("subscriber", s->host, s->port, "address not found");
        s->backoff_ms = s->backoff_max_ms;
        uv_timer_start(&s->retry, on_retry, (uint64_t)s->backoff_ms, 0);
        return;
    }
    uv_tcp_init(s->loop, tcp);
    uv_tcp_nodelay(tcp, 1);
    tcp->data = s;
    req->data = s;
    s->tcp = tcp;
    int rc = uv_tcp_connect(req, tcp, (const struct sockaddr *)&addr, on_connected);
    if (rc < 0) {
        free(req);
        drop(s, uv_strerror(rc));
    }
}

void rsub_init(struct rsub *s, uv_loop_t *loop, const char *host, int port, const struct rsub_hooks *hooks,
               int backoff_min_ms, int backoff_max_ms, int stable_ms)
{
    memset(s, 0, sizeof *s);
    s->loop = loop;
    s->host = host;
    s->port = port;
    s->hooks = *hooks;
    s->backoff_min_ms = backoff_min_ms;
    s->backoff_max_ms = backoff_max_ms;
    s->stable_ms = stable_ms;
    s->tail = &s->head;
}

void rsub_start(struct rsub *s)
{
    s->started = 1;
    uv_timer_init(s->loop, &s->retry);
    s->retry.data = s;
    sub_connect(s);
}

void rsub_stop(struct rsub *s)
{
    if (!s->started || s->stopping)
        return;
    s->stopping = 1;
    uv_timer_stop(&s->retry);
    uv_close((uv_handle_t *)&s->retry, NULL);
    drop(s, NULL);
}

int rsub_up(const struct rsub *s) { return s->up; }

static void on_written(uv_write_t *req, int status)
{
    (void)status; /* a failed write shows as a failed read */
    struct rsub_write *w = (struct rsub_write *)req;
    redisFreeCommand(w->cmd);
    free(w);
}

static int send_cmd(struct rsub *s, int unsub, const char *channel, size_t len)
{
    if (!s->up || s->npending >= RSUB_PENDING_MAX || len >= RSUB_CHANNEL_MAX)
        return -1;
    const char *argv[] = {unsub ? "SUNSUBSCRIBE" : "SSUBSCRIBE", channel};
    const size_t argvlen[] = {strlen(argv[0]), len};
    struct rsub_write *w = calloc(1, sizeof *w);
    struct rsub_sent *p = malloc(sizeof *p + len);
    long n = w && p ? redisFormatCommandArgv(&w->cmd, 2, argv, argvlen) : -1;
    if (n < 0) {
        free(w);
        free(p);
        return -1;
    }
    uv_buf_t buf = uv_buf_init(w->cmd, (unsigned)n);
    if (uv_write(&w->req, (uv_stream_t *)s->tcp, &buf, 1, on_written) < 0) {
        redisFreeCommand(w->cmd);
        free(w);
        free(p);
        return -1;
    }
    p->next = NULL;
    p->unsub = unsub;
    p->len = len;
    memcpy(p->channel, channel, len);
    *s->tail = p;
    s->tail = &p->next;
    s->npending++;
    return 0;
}

int rsub_subscribe(struct rsub *s, const char *channel, size_t len) { return send_cmd(s, 0, channel, len); }

int rsub_unsubscribe(struct rsub *s, const char *channel, size_t len) { return send_cmd(s, 1, channel, len); }
