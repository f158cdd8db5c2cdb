/* message.h - the messages every part of the server sends alike: the
 * error reply, a room event, and a batch of a room's events
 * (docs/protocol.md, "error", "event", "events").
 *
 * A room event's body travels between nodes as a msgpack map (built by the
 * rooms module); message_event wraps it as {type, room, seq, ...body} in
 * either subprotocol, splicing the map's pairs unchanged into msgpack and
 * re-encoding them into JSON. */
#ifndef TIPCAST_MESSAGE_H
#define TIPCAST_MESSAGE_H

#include <stddef.h>
#include <stdint.h>

#include "enc.h"
#include "errors.h"

/* Deepest msgpack nesting a request or an event body may have. */
#define MESSAGE_DEPTH_MAX 8
/* Most pairs an event body may have. */
#define MESSAGE_BODY_PAIRS_MAX 32

/* Starts a message {type, id, ...}: a map of `pairs` more pairs after type
 * and id (id is left out when NULL or ""), for the caller to write and end
 * with enc_end_map. */
void message_start(struct enc *e, enum fmt fmt, size_t hint, const char *type, const char *id, uint32_t pairs);

/* The error frame {type:"error", id, code, message, field, <extra>}: `id`
 * may be NULL or "" when unknown, `field` NULL when none; `extra` is the
 * value of the code's extra key (err_extra_key), ignored when it has none.
 * NULL when out of memory. */
struct frame *message_error(enum fmt fmt, const char *id, enum err code, const char *text, const char *field,
                            int64_t extra);

/* Writes one event map, {type:"event", room, seq} followed by the pairs
 * of `body` (a msgpack map of at most MESSAGE_BODY_PAIRS_MAX pairs, nested
 * at most MESSAGE_DEPTH_MAX deep). Returns 0, or -1 (and the writer failed)
 * when the body is not such a map. */
int message_enc_event(struct enc *e, const char *room, int64_t seq, const uint8_t *body, size_t len);

/* A standalone event frame; NULL on a malformed body or out of memory. */
struct frame *message_event(enum fmt fmt, const char *room, int64_t seq, const uint8_t *body, size_t len);

/* One frame carrying n >= 2 event frames of one room, in order:
 * {type:"events", room, events:[ev, ...]}; the events are copied as they
 * are, not re-encoded. NULL when out of memory. */
struct frame *message_events(enum fmt fmt, const char *room, struct frame *const *events, int n);

#endif
