/* rlink.c - the Redis link (see rlink.h). */
#include "rlink.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>
#include <openssl/sha.h>

#include "hex.h"
#include "log.h"
#include "rlink_ev.h"
#include "text.h"

/* A command in flight: what the caller asked, kept so that a NOSCRIPT
 * answer can be retried with EVAL. Owned by rlink until its callback ran. */
struct rreq {
    struct rlink *rl;
    rlink_reply_cb *cb;
    void *priv;
    int link;
    const struct rlink_script *script; /* NULL for a plain command */
    int retried;
    struct rlink_wait *wait; /* the WAIT it waits for (rlink_set_wait), or NULL */
    struct rreq *next;       /* in that wait's list */
    redisReply *held;        /* its reply (a copy), until the WAIT answers */
    int got;                 /* its reply came */
    char *eval;     /* the EVAL form sent again after NOSCRIPT, or NULL */
    size_t evallen;
    int argc;       /* EVALSHA sha nkeys ..., or the command */
    size_t cmdlen;  /* the command as sent (RESP), which follows */
    size_t rest;    /* where in it a script's third word (nkeys) starts */
};

/* The scripts of one loop turn on the command connection, and the WAIT
 * sent after them. */
struct rlink_wait {
    struct rreq *head, **tail;
    int done, ok; /* the WAIT answered; with enough replicas */
};

static void link_connect(struct rlink_link *l);
static void wait_send(struct rlink_link *l);
static void wait_end(struct rlink_wait *w, int ok);

static void rreq_free(struct rreq *q)
{
    free(q->eval);
    free(q);
}

static char *rreq_cmd(struct rreq *q) { return (char *)(q + 1); }

/* RESP, written into buffers sized for it beforehand: "*<argc>\r\n", then
 * "$<len>\r\n<bytes>\r\n" per argument. */
static size_t digits_of(size_t v)
{
    size_t n = 1;
    for (; v >= 10; v /= 10)
        n++;
    return n;
}

static size_t resp_arg_bytes(size_t len) { return 1 + digits_of(len) + 2 + len + 2; }

static char *resp_put_num(char *p, char kind, size_t v)
{
    *p++ = kind;
    size_t n = digits_of(v);
    for (size_t i = n; i > 0; i--, v /= 10)
        p[i - 1] = (char)('0' + v % 10);
    p += n;
    *p++ = '\r';
    *p++ = '\n';
    return p;
}

static char *resp_put_arg(char *p, const char *arg, size_t len)
{
    p = resp_put_num(p, '$', len);
    memcpy(p, arg, len);
    p += len;
    *p++ = '\r';
    *p++ = '\n';
    return p;
}

static void on_flush(uv_prepare_t *h)
{
    struct rlink *rl = h->data;
    for (int i = 0; i < rl->nlinks; i++) {
        if (rl->links[i].open_wait)
            wait_send(&rl->links[i]);
        if (rl->links[i].ac)
            rlink_ev_flush(rl->links[i].ac);
    }
}

static void on_retry_timer(uv_timer_t *t)
{
    struct rlink_link *l = t->data;
    if (!l->rl->stopping)
        link_connect(l);
}

static void schedule_retry(struct rlink_link *l)
{
    if (l->rl->stopping)
        return;
    l->backoff_ms = l->backoff_ms ? l->backoff_ms * 2 : RLINK_BACKOFF_MIN_MS;
    if (l->backoff_ms > RLINK_BACKOFF_MAX_MS)
        l->backoff_ms = RLINK_BACKOFF_MAX_MS;
    uv_timer_start(&l->retry, on_retry_timer, (uint64_t)l->backoff_ms, 0);
}

static void on_script_loaded(redisAsyncContext *ac, void *r, void *priv)
{
    (void)ac;
    redisReply *reply = r;
    const struct rlink_script *s = priv;
    /* A Redis still loading its data refuses it: the script is then sent
     * whole on its first call (the NOSCRIPT path), so that is no error.
     * Another refusal is a warning (held back when repeated): the same
     * path sends the script whole, or its call fails as this load did. */
    if (reply && reply->type == REDIS_REPLY_ERROR)
        log_msg(strncmp(reply->str, "LOADING", 7) == 0 ? LOG_DEBUG : LOG_WARN, "redis: SCRIPT LOAD of %s failed: %s",
                s->name, reply->str);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    struct rlink_link *l = ac->data;
    struct rlink *rl = l->rl;
    if (status != REDIS_OK) {
        /* hiredis frees the context after this callback. */
        rsub_warn_unreachable(l->name, rl->host, rl->port, ac->errstr);
        l->ac = NULL;
        schedule_retry(l);
        return;
    }
    l->up = 1;
    l->up_at = uv_now(rl->loop);
    log_msg(LOG_INFO, "redis %s: connected to %s:%d", l->name, rl->host, rl->port);
    if (l == &rl->links[RLINK_CMD_LINK]) {
        for (int s = 0; s < rl->nscripts; s++)
            redisAsyncCommand(l->ac, on_script_loaded, rl->scripts[s], "SCRIPT LOAD %s", rl->scripts[s]->src);
        if (rl->hooks.on_cmd_ready)
            rl->hooks.on_cmd_ready(rl->hooks.cmd_ctx);
    }
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    struct rlink_link *l = ac->data;
    struct rlink *rl = l->rl;
    int was_up = l->up;
    l->up = 0;
    l->ac = NULL;
    if (status != REDIS_OK)
        log_msg(LOG_WARN, "redis %s: connection lost: %s", l->name, ac->errstr);
    /* Every reply came (NULL) before this callback; their WAIT will not. */
    if (l->open_wait) {
        struct rlink_wait *w = l->open_wait;
        l->open_wait = NULL;
        wait_end(w, 0);
    }
    if (was_up && uv_now(rl->loop) - l->up_at >= RLINK_STABLE_MS)
        l->backoff_ms = 0;
    schedule_retry(l);
}

static void link_connect(struct rlink_link *l)
{
    struct rlink *rl = l->rl;
    redisAsyncContext *ac = redisAsyncConnect(rl->host, rl->port);
    if (!ac || ac->err) {
        log_msg(LOG_WARN, "redis %s: %s", l->name, ac ? ac->errstr : "out of memory");
        if (ac)
            redisAsyncFree(ac);
        schedule_retry(l);
        return;
    }
    if (rlink_ev_attach(rl->loop, ac) < 0) {
        log_msg(LOG_WARN, "redis %s: cannot watch the connection on the loop", l->name);
        redisAsyncFree(ac);
        schedule_retry(l);
        return;
    }
    l->ac = ac;
    ac->data = l;
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
}

void rlink_init(struct rlink *rl, uv_loop_t *loop, const char *host, int port, const struct rlink_hooks *hooks)
{
    memset(rl, 0, sizeof *rl);
    rl->loop = loop;
    snprintf(rl->host, sizeof rl->host, "%s", host);
    rl->port = port;
    rl->hooks = *hooks;
    const struct rsub_hooks sh = {
        .ctx = hooks->sub_ctx,
        .on_ready = hooks->on_sub_ready,
        .on_lost = hooks->on_sub_lost,
        .on_message = hooks->on_message,
        .on_subscribed = hooks->on_subscribed,
        .on_unsubscribed = hooks->on_unsubscribed,
        .on_error = hooks->on_sub_error,
    };
    rsub_init(&rl->sub, loop, rl->host, port, &sh, RLINK_BACKOFF_MIN_MS, RLINK_BACKOFF_MAX_MS, RLINK_STABLE_MS);
}

void rlink_set_wait(struct rlink *rl, int replicas, int timeout_ms)
{
    tc_assert(!rl->started && replicas >= 0 && timeout_ms >= 0);
    rl->wait_replicas = replicas;
    rl->wait_timeout_ms = timeout_ms;
}

void rlink_script_hash(struct rlink_script *s)
{
    unsigned char d[SHA_DIGEST_LENGTH];
    SHA1((const unsigned char *)s->src, strlen(s->src), d);
    hex_lower(d, sizeof d, s->sha);
}

void rlink_script_add(struct rlink *rl, struct rlink_script *s)
{
    tc_assert(!rl->started && rl->nscripts < RLINK_SCRIPTS_MAX);
    rlink_script_hash(s);
    rl->scripts[rl->nscripts++] = s;
}

static int link_add(struct rlink *rl, const char *name)
{
    if (rl->nlinks == RLINK_LINKS_MAX || rl->stopping)
        return -1;
    struct rlink_link *l = &rl->links[rl->nlinks];
    memset(l, 0, sizeof *l);
    l->name = name;
    l->rl = rl;
    uv_timer_init(rl->loop, &l->retry);
    l->retry.data = l;
    link_connect(l);
    return rl->nlinks++;
}

void rlink_start(struct rlink *rl)
{
    tc_assert(!rl->started);
    rl->started = 1;
    /* Unreferenced: the flush alone must not keep the loop running. */
    uv_prepare_init(rl->loop, &rl->flush);
    rl->flush.data = rl;
    uv_prepare_start(&rl->flush, on_flush);
    uv_unref((uv_handle_t *)&rl->flush);
    link_add(rl, "command");
    link_add(rl, "reads");
    rsub_start(&rl->sub);
}

int rlink_open(struct rlink *rl, const char *name)
{
    tc_assert(rl->started);
    return link_add(rl, name);
}

void rlink_stop(struct rlink *rl)
{
    if (!rl->started || rl->stopping)
        return;
    rl->stopping = 1;
    /* Queued commands go out first: a connection closes only after the
     * replies to everything sent on it. */
    on_flush(&rl->flush);
    uv_prepare_stop(&rl->flush);
    uv_close((uv_handle_t *)&rl->flush, NULL);
    rsub_stop(&rl->sub);
    for (int i = 0; i < rl->nlinks; i++) {
        struct rlink_link *l = &rl->links[i];
        uv_timer_stop(&l->retry);
        uv_close((uv_handle_t *)&l->retry, NULL);
        if (l->ac) {
            /* A context still connecting is freed; a connected one is
             * closed after its pending replies, calling back with NULL. */
            if (l->up)
                redisAsyncDisconnect(l->ac);
            else
                redisAsyncFree(l->ac);
            l->ac = NULL;
        }
    }
}

int rlink_cmd_ready(const struct rlink *rl) { return rl->nlinks > RLINK_CMD_LINK && rl->links[RLINK_CMD_LINK].up; }

int rlink_sub_ready(const struct rlink *rl) { return rsub_up(&rl->sub); }

int rlink_ready(const struct rlink *rl)
{
    return rl->nlinks > RLINK_READ_LINK && rl->links[RLINK_CMD_LINK].up && rsub_up(&rl->sub) &&
           rl->links[RLINK_READ_LINK].up;
}

int rlink_up(const struct rlink *rl, int link) { return link >= 0 && link < rl->nlinks && rl->links[link].up; }

static int rreq_send(struct rreq *q);

redisReply *rlink_reply_copy(const redisReply *r)
{
    redisReply *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->type = r->type;
    c->integer = r->integer;
    if (r->str) {
        c->len = r->len;
        if (!(c->str = malloc(r->len + 1)))
            goto fail;
        memcpy(c->str, r->str, r->len + 1);
    }
    if (r->element && r->elements) {
        if (!(c->element = calloc(r->elements, sizeof *c->element)))
            goto fail;
        c->elements = r->elements;
        for (size_t i = 0; i < r->elements; i++)
            if (r->element[i] && !(c->element[i] = rlink_reply_copy(r->element[i])))
                goto fail;
    }
    return c;
fail:
    freeReplyObject(c);
    return NULL;
}

static void deliver(struct rreq *q, redisReply *reply)
{
    q->rl->inflight--;
    tc_assert(q->rl->inflight >= 0);
    q->cb(reply, q->priv);
    rreq_free(q);
}

static void wait_detach(struct rreq *q)
{
    struct rlink_wait *w = q->wait;
    for (struct rreq **p = &w->head; *p; p = &(*p)->next)
        if (*p == q) {
            *p = q->next;
            if (w->tail == &q->next)
                w->tail = p;
            break;
        }
    q->wait = NULL;
    q->next = NULL;
}

/* Hands the replies that came over (each with NULL unless the WAIT said
 * enough replicas have them); the wait is freed with its last request. */
static void wait_deliver(struct rlink_wait *w)
{
    while (w->head && w->head->got) {
        struct rreq *q = w->head;
        redisReply *held = q->held;
        wait_detach(q);
        deliver(q, w->ok ? held : NULL);
        if (held)
            freeReplyObject(held);
    }
    if (!w->head)
        free(w);
}

static void wait_end(struct rlink_wait *w, int ok)
{
    w->done = 1;
    w->ok = ok;
    wait_deliver(w);
}

static void on_wait(redisAsyncContext *ac, void *r, void *priv)
{
    struct rlink_link *l = ac->data;
    redisReply *reply = r;
    int ok = reply && reply->type == REDIS_REPLY_INTEGER && reply->integer >= l->rl->wait_replicas;
    if (reply && !ok) {
        l->rl->waits_short++;
        log_msg(LOG_DEBUG, "redis: WAIT %d answered %s", l->rl->wait_replicas,
                reply->type == REDIS_REPLY_INTEGER ? "too few replicas" : reply->str ? reply->str : "?");
    }
    wait_end(priv, ok);
}

/* After the loop turn's scripts: WAIT for their replicas. */
static void wait_send(struct rlink_link *l)
{
    struct rlink_wait *w = l->open_wait;
    l->open_wait = NULL;
    if (!w->head) {
        free(w);
        return;
    }
    if (l->up && l->ac &&
        redisAsyncCommand(l->ac, on_wait, w, "WAIT %d %d", l->rl->wait_replicas, l->rl->wait_timeout_ms) == REDIS_OK) {
        l->rl->waits++;
        return;
    }
    wait_end(w, 0);
}

static void on_reply(redisAsyncContext *ac, void *r, void *priv)
{
    (void)ac;
    struct rreq *q = priv;
    redisReply *reply = r;
    if (reply && reply->type == REDIS_REPLY_ERROR && q->script && !q->retried &&
        strncmp(reply->str, "NOSCRIPT", 8) == 0) {
        /* The script cache was emptied: EVAL runs the source and caches it
         * again for the EVALSHA calls that follow. */
        q->retried = 1;
        /* EVAL, the source, then the words from nkeys on as they were. */
        size_t srclen = strlen(q->script->src), tail = q->cmdlen - q->rest;
        size_t cap = 1 + digits_of((size_t)q->argc) + 2 + resp_arg_bytes(4) + resp_arg_bytes(srclen) + tail;
        if ((q->eval = malloc(cap))) {
            char *p = resp_put_num(q->eval, '*', (size_t)q->argc);
            p = resp_put_arg(resp_put_arg(p, "EVAL", 4), q->script->src, srclen);
            memcpy(p, rreq_cmd(q) + q->rest, tail);
            q->evallen = (size_t)(p + tail - q->eval);
            tc_assert(q->evallen == cap);
        }
        struct rlink_wait *w = q->wait;
        if (w) /* it joins the WAIT of the turn it is sent again in */
            wait_detach(q);
        int sent = q->eval && rreq_send(q) == 0;
        if (w && w->done)
            wait_deliver(w);
        if (sent)
            return;
        reply = NULL;
    }
    if (q->wait) {
        q->got = 1;
        q->held = reply ? rlink_reply_copy(reply) : NULL;
        if (q->wait->done)
            wait_deliver(q->wait);
        return;
    }
    deliver(q, reply);
}

static int rreq_send(struct rreq *q)
{
    struct rlink_link *l = &q->rl->links[q->link];
    if (!l->up || !l->ac)
        return -1;
    int durable = q->script && q->script->durable && q->link == RLINK_CMD_LINK && q->rl->wait_replicas > 0;
    if (durable && !l->open_wait) {
        if (!(l->open_wait = calloc(1, sizeof *l->open_wait)))
            return -1;
        l->open_wait->tail = &l->open_wait->head;
    }
    const char *cmd = q->eval ? q->eval : rreq_cmd(q);
    if (redisAsyncFormattedCommand(l->ac, on_reply, q, cmd, q->eval ? q->evallen : q->cmdlen) != REDIS_OK)
        return -1;
    if (durable) { /* appended: replies come in the order sent, and are handed on so */
        struct rlink_wait *w = l->open_wait;
        q->next = NULL;
        *w->tail = q;
        w->tail = &q->next;
        q->wait = w;
    }
    return 0;
}

/* Writes the command (`npre` words, then argv) into one request, in the
 * protocol's own form (RESP, what hiredis would format from them), and
 * sends it on `link`. */
static int rreq_start(struct rlink *rl, int link, const struct rlink_script *script, int npre, const char **pre,
                      const size_t *prelen, int argc, const char **argv, const size_t *argvlen, rlink_reply_cb *cb,
                      void *priv)
{
    if (link < 0 || link >= rl->nlinks || !rl->links[link].up || rl->inflight >= RLINK_INFLIGHT_MAX || argc < 0 ||
        argc > RLINK_ARGS_MAX)
        return -1;
    int total = npre + argc;
    size_t bytes = 1 + digits_of((size_t)total) + 2;
    for (int i = 0; i < total; i++)
        bytes += resp_arg_bytes(i < npre ? prelen[i] : argvlen[i - npre]);
    struct rreq *q = malloc(sizeof *q + bytes);
    if (!q)
        return -1;
    *q = (struct rreq){.rl = rl, .cb = cb, .priv = priv, .link = link, .script = script, .argc = total};
    char *cmd = rreq_cmd(q), *p = resp_put_num(cmd, '*', (size_t)total);
    for (int i = 0; i < total; i++) {
        if (i == 2)
            q->rest = (size_t)(p - cmd);
        p = i < npre ? resp_put_arg(p, pre[i], prelen[i]) : resp_put_arg(p, argv[i - npre], argvlen[i - npre]);
    }
    q->cmdlen = (size_t)(p - cmd);
    tc_assert(q->cmdlen == bytes);
    if (rreq_send(q) < 0) {
        rreq_free(q);
        return -1;
    }
    rl->inflight++;
    return 0;
}

int rlink_eval(struct rlink *rl, const struct rlink_script *s, int nkeys, int argc, const char **argv,
               const size_t *argvlen, rlink_reply_cb *cb, void *priv)
{
    return rlink_eval_on(rl, RLINK_CMD_LINK, s, nkeys, argc, argv, argvlen, cb, priv);
}

int rlink_eval_on(struct rlink *rl, int link, const struct rlink_script *s, int nkeys, int argc, const char **argv,
                  const size_t *argvlen, rlink_reply_cb *cb, void *priv)
{
    tc_assert(s->sha[0]); /* registered with rlink_script_add */
    if (argc < nkeys)
        return -1;
    char nk[TEXT_I64_MAX + 1];
    const char *pre[] = {"EVALSHA", s->sha, nk};
    size_t prelen[] = {7, 40, text_cat_i64(nk, sizeof nk, 0, nkeys)};
    return rreq_start(rl, link, s, 3, pre, prelen, argc, argv, argvlen, cb, priv);
}

int rlink_command(struct rlink *rl, int link, int argc, const char **argv, const size_t *argvlen, rlink_reply_cb *cb,
                  void *priv)
{
    return rreq_start(rl, link, NULL, 0, NULL, NULL, argc, argv, argvlen, cb, priv);
}

int rlink_subscribe(struct rlink *rl, const char *channel, size_t len) { return rsub_subscribe(&rl->sub, channel, len); }

int rlink_unsubscribe(struct rlink *rl, const char *channel, size_t len)
{
    return rsub_unsubscribe(&rl->sub, channel, len);
}
