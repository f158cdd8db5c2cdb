/* reply.c - answering through a reply handle (see reply.h). */
#include "reply.h"

#include "message.h"

/* What `unavailable` tells a client to wait before retrying. */
#define REPLY_RETRY_MS 1000

void reply_send(const struct reply *r, struct frame *f)
{
    tc_assert(r->sink && r->sink->send);
    r->sink->send(r->sink->ctx, r->conn, f);
}

void reply_error(const struct reply *r, enum err code, const char *text, const char *field, int64_t extra)
{
    reply_send(r, message_error(r->fmt, r->id, code, text, field, extra));
}

void reply_unavailable(const struct reply *r, const char *text)
{
    reply_error(r, ERR_UNAVAILABLE, text, NULL, REPLY_RETRY_MS);
}
