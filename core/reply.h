/* reply.h - how a module answers a request without knowing connections:
 * a small handle naming the connection (by id), its subprotocol and the
 * request id, and a sink that the connection layer provides.
 *
 * A handle is a value: a module that answers later (after Redis or
 * PostgreSQL) copies it into its pending state. The connection may be gone
 * by then; the sink drops the frame in that case. Every reply goes out
 * through reply_send, so a module never includes the connection layer
 * (design.md, "The house"). */
#ifndef TIPCAST_REPLY_H
#define TIPCAST_REPLY_H

#include <stdint.h>

#include "errors.h"
#include "frame.h"

/* Longest client request id (docs/protocol.md, Limits). */
#define REPLY_ID_MAX 64

struct reply_sink {
    /* Sends `f` (the callee takes the reference) to connection `conn`, or
     * drops it when the connection is gone. A NULL `f` is a reply that could
     * not be built (out of memory): the connection is told by a close. */
    void (*send)(void *ctx, uint64_t conn, struct frame *f);
    void *ctx;
};

struct reply {
    const struct reply_sink *sink;
    uint64_t conn;
    enum fmt fmt;
    char id[REPLY_ID_MAX + 1]; /* "" for none */
    int64_t rx_us;             /* when the request arrived (clock_mono_us), for the ack latency */
};

/* Sends a reply frame built for r->fmt (takes the reference). */
void reply_send(const struct reply *r, struct frame *f);

/* Sends an error reply; `extra` is the value of the code's extra key
 * (errors.h), `field` the offending field or NULL. */
void reply_error(const struct reply *r, enum err code, const char *text, const char *field, int64_t extra);

/* The usual answer while a backend is down: `unavailable`, retry after 1 s. */
void reply_unavailable(const struct reply *r, const char *text);

#endif
