/* rlink_ev.c - hiredis's event hooks on the loop (see rlink_ev.h).
 *
 * hiredis's own libuv adapter restarts its uv_poll on every hook call, and
 * libuv turns each restart into an epoll_ctl DEL now and an ADD at the next
 * poll: hiredis calls the hooks for every command queued and every read and
 * write, so that cost several epoll_ctl calls per command. Here the poll is
 * restarted only when the events hiredis waits for change, and queued
 * commands are not written one by one: a context with output is marked
 * dirty and written once, in one write(), by rlink's flush just before the
 * loop polls. Only when the socket does not take everything does the poll
 * wait for POLLOUT.
 *
 * The state is allocated at attach and freed in the poll handle's close
 * callback, after hiredis's cleanup hook, so it outlives a context freed
 * inside a flush. */
#include "rlink_ev.h"

#include <stdlib.h>

struct rev {
    redisAsyncContext *ac; /* NULL once hiredis has cleaned up */
    uv_poll_t poll;
    int want;     /* UV_READABLE | UV_WRITABLE as hiredis asked */
    int armed;    /* the events the poll is started with */
    int in_write; /* inside redisAsyncHandleWrite: a write request is real */
    int dirty;    /* commands queued since the last flush */
};

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

static void rev_closed(uv_handle_t *h) { free(h->data); }

static void rev_cleanup(void *p)
{
    struct rev *ev = p;
    ev->ac = NULL;
    ev->dirty = 0;
    uv_close((uv_handle_t *)&ev->poll, rev_closed);
}

int rlink_ev_attach(uv_loop_t *loop, redisAsyncContext *ac)
{
    struct rev *ev = calloc(1, sizeof *ev);
    if (!ev)
        return -1;
    if (uv_poll_init(loop, &ev->poll, ac->c.fd) != 0) {
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

void rlink_ev_flush(redisAsyncContext *ac)
{
    struct rev *ev = ac->ev.data;
    if (ev && ev->dirty)
        rev_write(ev);
}
