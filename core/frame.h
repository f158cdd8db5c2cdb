/* frame.h - a finished message on its way to clients: reference counted,
 * so that one event frame is built once per subprotocol and shared by every
 * member of a room, with FRAME_PRE bytes of headroom in front of the
 * payload so that lws_write() (and frame_wire's own header) can use it in
 * place.
 *
 * Ownership: whoever holds a pointer holds a reference; frame_unref drops
 * it. Frames are used on the loop's thread only (the count is not atomic). */
#ifndef TIPCAST_FRAME_H
#define TIPCAST_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "log.h"

/* The two subprotocols: tipcast.v1.msgpack (binary frames) and
 * tipcast.v1.json (text frames) carry the same messages. */
enum fmt { FMT_MSGPACK = 0, FMT_JSON = 1, FMT_COUNT = 2 };

/* Headroom before a payload: lws's LWS_PRE (checked where lws is used),
 * which also fits the longest WebSocket header a server writes (10 bytes). */
#define FRAME_PRE 16

struct frame {
    int refs;
    uint8_t fmt;
    uint8_t wire;   /* data holds whole WebSocket frames, headers included */
    uint32_t len;
    uint32_t cap;
    uint8_t data[]; /* FRAME_PRE bytes of headroom, then len bytes of payload */
};

/* A new frame with room for `cap` payload bytes, len 0, one reference; NULL
 * when out of memory. */
struct frame *frame_new(enum fmt fmt, size_t cap);

static inline struct frame *frame_ref(struct frame *f)
{
    tc_assert(f->refs > 0);
    f->refs++;
    return f;
}

/* Drops one reference; frees the frame with the last. NULL is ignored. */
void frame_unref(struct frame *f);

/* The payload's first byte. */
static inline uint8_t *frame_payload(struct frame *f) { return f->data + FRAME_PRE; }

/* The frame as it goes on the wire: its WebSocket header (FIN, binary for
 * msgpack, text for JSON, unmasked as a server's frames are) is written
 * into the headroom in front of the payload. Sets *start; returns the
 * length. A `wire` frame is returned as it is. */
size_t frame_wire(struct frame *f, uint8_t **start);

/* One `wire` frame holding a's and then b's wire bytes: two messages that
 * go out in one write. NULL when out of memory. */
struct frame *frame_join(struct frame *a, struct frame *b);

#endif
