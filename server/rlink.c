/* rlink.c - the Redis link (see rlink.h). */
#include "rlink.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <openssl/sha.h>

#include "log.h"

/* The script sources, generated from server/lua/ by cmake/embed.cmake. */
extern const char lua_room_presence[];
extern const char lua_room_publish[];
extern const char lua_room_history[];
extern const char lua_outbox_lease[];
extern const char lua_wallet_move[];
extern const char lua_room_apply[];
extern const char lua_outbox_trim[];

static const char *const script_src[SCRIPT_COUNT] = {
    [SCRIPT_ROOM_PRESENCE] = lua_room_presence,
    [SCRIPT_ROOM_PUBLISH] = lua_room_publish,
    [SCRIPT_ROOM_HISTORY] = lua_room_history,
    [SCRIPT_OUTBOX_LEASE] = lua_outbox_lease,
    [SCRIPT_WALLET_MOVE] = lua_wallet_move,
    [SCRIPT_ROOM_APPLY] = lua_room_apply,
    [SCRIPT_OUTBOX_TRIM] = lua_outbox_trim,
};

/* hiredis's event hooks on the loop, in place of hiredis's libuv adapter.
 * That adapter restarts its uv_poll on every hook call, and libuv turns each
 * restart into an epoll_ctl DEL now and an ADD at the next poll: hiredis
 * calls the hooks for every command queued and every read and write, so it
 * cost several epoll_ctl calls per command. Here the poll is restarted only
 * when the events hiredis waits for change, and queued commands are not
 * written one by one: a link with output is marked and every marked link
 * is written once, in one write(), just before the loop polls (as Redis
 * writes its replies in handleClientsWithPendingWrites). Only when the
 * socket does not take everything does the poll wait for POLLOUT.
 * Allocated at attach; freed in the poll handle's close callback, after
 * hiredis's cleanup hook (so it outlives a context freed inside a flush). */
struct rev {
    redisAsyncContext *ac; /* NULL once hiredis has cleaned up */
    uv_poll_t poll;
    int want;     /* UV_READABLE | UV_WRITABLE as hiredis asked */
    int armed;    /* the events the poll is started with */
    int in_write; /* inside redisAsyncHandleWrite: a write request is real */
    int dirty;    /* commands queued since the last flush */
};

/* One connection: its context while connected (or connecting), and the
 * timer that brings it back. */
struct link {
    const char *name;
    redisAsyncContext *ac;
    int up;
    int backoff_ms;
    uv_timer_t retry;
};

static struct {
    uv_loop_t *loop;
    char host[256];
    int port;
    struct rlink_hooks hooks;
    int stopping;
    /* links[RLINK_CMD] and links[RLINK_SUB], then those rlink_open made */
    struct link links[RLINK_LINKS_MAX];
    int nlinks;
    char sha[SCRIPT_COUNT][41];
    long inflight;
    uv_prepare_t flush; /* writes the links' queued commands before each poll */
} R;

#define RLINK_CMD 0
#define RLINK_SUB 1
#define CMD (R.links[RLINK_CMD])
#define SUB (R.links[RLINK_SUB])

/* A command in flight: what the caller asked, kept so that a NOSCRIPT
 * answer can be retried with EVAL. Owned by rlink until its callback ran. */
struct rreq {
    rlink_reply_cb *cb;
    void *priv;
    int link;
    int script;         /* -1 for a plain command */
    int retried;
    int argc;           /* 3 + keys and args: EVALSHA sha nkeys ... */
    const char **argv;
    size_t *argvlen;
    /* argument bytes follow */
};

static void link_connect(struct link *l);

static void rreq_free(struct rreq *q)
{
    free(q->argv);
    free(q->argvlen);
    free(q);
}

/* ---- hiredis event hooks ---------------------------------------------------------- */

static void rev_poll_cb(uv_poll_t *h, int status, int events);

static void rev_sync(struct rev *ev)
{
    if (ev->want == ev->armed)
        return;
    if (ev->want)
        uv_poll_start(&ev->poll, ev->want, rev_poll_cb);
    else
        uv_poll_stop(&ev->poll);
    ev->armed = ev->want;
}

static void rev_write(struct rev *ev)
{
    ev->dirty = 0;
    ev->in_write = 1;
    redisAsyncHandleWrite(ev->ac); /* may free the context (cleanup sets ev->ac NULL) */
    ev->in_write = 0;
}

static void rev_poll_cb(uv_poll_t *h, int status, int events)
{
    struct rev *ev = h->data;
    if (status < 0) {
        /* libuv stopped the poll (POLLERR). A read finds out what broke
         * and hiredis disconnects; if it was nothing, its read hook arms
         * the poll again. */
        ev->armed = 0;
        events = UV_READABLE;
    }
    if (ev->ac && (events & UV_READABLE))
        redisAsyncHandleRead(ev->ac);
    if (ev->ac && (events & UV_WRITABLE))
        rev_write(ev);
}

static void rev_add_read(void *p)
{
    struct rev *ev = p;
    ev->want |= UV_READABLE;
    rev_sync(ev);
}

static void rev_del_read(void *p)
{
    struct rev *ev = p;
    ev->want &= ~UV_READABLE;
    rev_sync(ev);
}

static void rev_add_write(void *p)
{
    struct rev *ev = p;
    /* A write hiredis could not finish, or the wait for the connection to
     * complete, needs POLLOUT; new commands wait for the flush. */
    if (ev->in_write || !(ev->ac->c.flags & REDIS_CONNECTED)) {
        ev->want |= UV_WRITABLE;
        rev_sync(ev);
    } else {
        ev->dirty = 1;
    }
}

static void rev_del_write(void *p)
{
    struct rev *ev = p;
    ev->want &= ~UV_WRITABLE;
    rev_sync(ev);
}

static void rev_closed(uv_handle_t *h)
{
    free(h->data);
}

static void rev_cleanup(void *p)
{
    struct rev *ev = p;
    ev->ac = NULL;
    ev->dirty = 0;
    uv_close((uv_handle_t *)&ev->poll, rev_closed);
}

/* Hooks `ac` to the loop. Returns 0, or -1 (out of memory, bad fd) with
 * nothing hooked. */
static int rev_attach(redisAsyncContext *ac)
{
    struct rev *ev = calloc(1, sizeof *ev);
    if (!ev)
        return -1;
    if (uv_poll_init(R.loop, &ev->poll, ac->c.fd) != 0) {
        free(ev);
        return -1;
    }
    ev->ac = ac;
    ev->poll.data = ev;
    ac->ev.data = ev;
    ac->ev.addRead = rev_add_read;
    ac->ev.delRead = rev_del_read;
    ac->ev.addWrite = rev_add_write;
    ac->ev.delWrite = rev_del_write;
    ac->ev.cleanup = rev_cleanup;
    return 0;
}

/* Writes every link's queued commands. */
static void flush_links(void)
{
    for (int i = 0; i < R.nlinks; i++) {
        redisAsyncContext *ac = R.links[i].ac;
        if (ac && ac->ev.data && ((struct rev *)ac->ev.data)->dirty)
            rev_write(ac->ev.data);
    }
}

static void on_flush(uv_prepare_t *h)
{
    (void)h;
    flush_links();
}

static void on_retry_timer(uv_timer_t *t)
{
    struct link *l = t->data;
    if (!R.stopping)
        link_connect(l);
}

static void schedule_retry(struct link *l)
{
    if (R.stopping)
        return;
    l->backoff_ms = l->backoff_ms ? l->backoff_ms * 2 : RLINK_BACKOFF_MIN_MS;
    if (l->backoff_ms > RLINK_BACKOFF_MAX_MS)
        l->backoff_ms = RLINK_BACKOFF_MAX_MS;
    uv_timer_start(&l->retry, on_retry_timer, (uint64_t)l->backoff_ms, 0);
}

static struct link *link_of(const redisAsyncContext *ac)
{
    return ac->data;
}

static void on_script_loaded(redisAsyncContext *ac, void *r, void *priv)
{
    (void)ac;
    redisReply *reply = r;
    if (reply && reply->type == REDIS_REPLY_ERROR)
        log_msg(LOG_ERROR, "redis: SCRIPT LOAD of script %d failed: %s", (int)(intptr_t)priv, reply->str);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    struct link *l = link_of(ac);
    if (status != REDIS_OK) {
        /* hiredis frees the context after this callback. */
        log_msg(LOG_WARN, "redis %s: cannot connect to %s:%d: %s", l->name, R.host, R.port, ac->errstr);
        l->ac = NULL;
        schedule_retry(l);
        return;
    }
    l->up = 1;
    l->backoff_ms = 0;
    log_msg(LOG_INFO, "redis %s: connected to %s:%d", l->name, R.host, R.port);
    if (l == &CMD) {
        for (int s = 0; s < SCRIPT_COUNT; s++)
            redisAsyncCommand(l->ac, on_script_loaded, (void *)(intptr_t)s, "SCRIPT LOAD %s", script_src[s]);
        if (R.hooks.on_cmd_ready)
            R.hooks.on_cmd_ready();
    } else if (R.hooks.on_sub_ready) {
        R.hooks.on_sub_ready();
    }
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    struct link *l = link_of(ac);
    int was_up = l->up;
    l->up = 0;
    l->ac = NULL;
    if (status != REDIS_OK)
        log_msg(LOG_WARN, "redis %s: connection lost: %s", l->name, ac->errstr);
    if (l == &SUB && was_up && R.hooks.on_sub_lost)
        R.hooks.on_sub_lost();
    schedule_retry(l);
}

static void link_connect(struct link *l)
{
    redisAsyncContext *ac = redisAsyncConnect(R.host, R.port);
    if (!ac || ac->err) {
        log_msg(LOG_WARN, "redis %s: %s", l->name, ac ? ac->errstr : "out of memory");
        if (ac)
            redisAsyncFree(ac);
        schedule_retry(l);
        return;
    }
    if (rev_attach(ac) < 0) {
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

int rlink_start(uv_loop_t *loop, const char *host, int port, const struct rlink_hooks *hooks)
{
    memset(&R, 0, sizeof R);
    R.loop = loop;
    snprintf(R.host, sizeof R.host, "%s", host);
    R.port = port;
    R.hooks = *hooks;
    for (int s = 0; s < SCRIPT_COUNT; s++) {
        unsigned char d[SHA_DIGEST_LENGTH];
        SHA1((const unsigned char *)script_src[s], strlen(script_src[s]), d);
        for (int i = 0; i < SHA_DIGEST_LENGTH; i++)
            snprintf(R.sha[s] + 2 * i, 3, "%02x", d[i]);
    }
    /* Unreferenced: the flush alone must not keep the loop running. */
    uv_prepare_init(loop, &R.flush);
    uv_prepare_start(&R.flush, on_flush);
    uv_unref((uv_handle_t *)&R.flush);
    R.nlinks = 2;
    CMD.name = "command";
    SUB.name = "subscriber";
    for (int i = 0; i < R.nlinks; i++) {
        uv_timer_init(loop, &R.links[i].retry);
        R.links[i].retry.data = &R.links[i];
        link_connect(&R.links[i]);
    }
    return 0;
}

int rlink_open(const char *name)
{
    if (R.nlinks == RLINK_LINKS_MAX || R.stopping)
        return -1;
    struct link *l = &R.links[R.nlinks];
    memset(l, 0, sizeof *l);
    l->name = name;
    uv_timer_init(R.loop, &l->retry);
    l->retry.data = l;
    link_connect(l);
    return R.nlinks++;
}

void rlink_stop(void)
{
    R.stopping = 1;
    /* Queued commands go out first: a connection closes only after the
     * replies to everything sent on it. */
    flush_links();
    uv_prepare_stop(&R.flush);
    uv_close((uv_handle_t *)&R.flush, NULL);
    for (int i = 0; i < R.nlinks; i++) {
        struct link *l = &R.links[i];
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

int rlink_cmd_ready(void) { return CMD.up; }
int rlink_ready(void) { return CMD.up && SUB.up; }
int rlink_up(int link) { return link >= 0 && link < R.nlinks && R.links[link].up; }

static int rreq_send(struct rreq *q);

static void on_eval_reply(redisAsyncContext *ac, void *r, void *priv)
{
    (void)ac;
    struct rreq *q = priv;
    redisReply *reply = r;
    if (reply && reply->type == REDIS_REPLY_ERROR && q->script >= 0 && !q->retried &&
        strncmp(reply->str, "NOSCRIPT", 8) == 0) {
        /* The script cache was emptied: EVAL runs the source and caches it
         * again for the EVALSHA calls that follow. */
        q->retried = 1;
        q->argv[0] = "EVAL";  /* both point into static strings now */
        q->argvlen[0] = 4;
        q->argv[1] = script_src[q->script];
        q->argvlen[1] = strlen(script_src[q->script]);
        if (rreq_send(q) == 0)
            return;
        reply = NULL;
    }
    R.inflight--;
    q->cb(reply, q->priv);
    rreq_free(q);
}

static int rreq_send(struct rreq *q)
{
    struct link *l = &R.links[q->link];
    if (!l->up || !l->ac)
        return -1;
    if (redisAsyncCommandArgv(l->ac, on_eval_reply, q, q->argc, q->argv, q->argvlen) != REDIS_OK)
        return -1;
    return 0;
}

/* Copies the command (`pre` words, then argv) into one request and sends
 * it on `link`. */
static int rreq_start(int link, int script, int npre, const char **pre, const size_t *prelen, int argc,
                      const char **argv, const size_t *argvlen, rlink_reply_cb *cb, void *priv)
{
    if (link < 0 || link >= R.nlinks || !R.links[link].up || R.inflight >= RLINK_INFLIGHT_MAX ||
        argc < 0 || argc > RLINK_ARGS_MAX)
        return -1;
    size_t bytes = 0;
    for (int i = 0; i < npre; i++)
        bytes += prelen[i];
    for (int i = 0; i < argc; i++)
        bytes += argvlen[i];
    struct rreq *q = malloc(sizeof *q + bytes);
    if (!q)
        return -1;
    memset(q, 0, sizeof *q);
    q->argc = npre + argc;
    q->argv = malloc(sizeof *q->argv * (size_t)q->argc);
    q->argvlen = malloc(sizeof *q->argvlen * (size_t)q->argc);
    if (!q->argv || !q->argvlen) {
        rreq_free(q);
        return -1;
    }
    q->cb = cb;
    q->priv = priv;
    q->link = link;
    q->script = script;
    char *p = (char *)(q + 1);
    for (int i = 0; i < q->argc; i++) {
        const char *src = i < npre ? pre[i] : argv[i - npre];
        size_t len = i < npre ? prelen[i] : argvlen[i - npre];
        memcpy(p, src, len);
        q->argv[i] = p;
        q->argvlen[i] = len;
        p += len;
    }
    if (rreq_send(q) < 0) {
        rreq_free(q);
        return -1;
    }
    R.inflight++;
    return 0;
}

int rlink_eval(enum rlink_script s, int nkeys, int argc, const char **argv, const size_t *argvlen,
               rlink_reply_cb *cb, void *priv)
{
    if (argc < nkeys)
        return -1;
    char nk[16];
    int n = snprintf(nk, sizeof nk, "%d", nkeys);
    const char *pre[] = {"EVALSHA", R.sha[s], nk};
    size_t prelen[] = {7, 40, (size_t)n};
    return rreq_start(RLINK_CMD, (int)s, 3, pre, prelen, argc, argv, argvlen, cb, priv);
}

int rlink_command(int link, int argc, const char **argv, const size_t *argvlen, rlink_reply_cb *cb, void *priv)
{
    return rreq_start(link, -1, 0, NULL, NULL, argc, argv, argvlen, cb, priv);
}

static void on_sub_reply(redisAsyncContext *ac, void *r, void *priv)
{
    (void)ac;
    (void)priv;
    redisReply *reply = r;
    /* NULL comes on disconnect; on_disconnect deals with that. */
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements < 3)
        return;
    redisReply *kind = reply->element[0], *chan = reply->element[1], *arg = reply->element[2];
    if (kind->type != REDIS_REPLY_STRING || chan->type != REDIS_REPLY_STRING)
        return;
    if (strcmp(kind->str, "message") == 0 && arg->type == REDIS_REPLY_STRING) {
        if (R.hooks.on_message)
            R.hooks.on_message(chan->str, chan->len, arg->str, arg->len);
    } else if (strcmp(kind->str, "subscribe") == 0) {
        if (R.hooks.on_subscribed)
            R.hooks.on_subscribed(chan->str, chan->len);
    } else if (strcmp(kind->str, "unsubscribe") == 0) {
        if (R.hooks.on_unsubscribed)
            R.hooks.on_unsubscribed(chan->str, chan->len);
    }
}

int rlink_subscribe(const char *channel, size_t len)
{
    if (!SUB.up)
        return -1;
    return redisAsyncCommand(SUB.ac, on_sub_reply, NULL, "SUBSCRIBE %b", channel, len) == REDIS_OK ? 0 : -1;
}

int rlink_unsubscribe(const char *channel, size_t len)
{
    if (!SUB.up)
        return -1;
    return redisAsyncCommand(SUB.ac, on_sub_reply, NULL, "UNSUBSCRIBE %b", channel, len) == REDIS_OK ? 0 : -1;
}
