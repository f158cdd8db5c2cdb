/* frame.c - reference-counted frames and their WebSocket headers (see
 * frame.h). */
#include "frame.h"

#include <stdlib.h>
#include <string.h>

struct frame *frame_new(enum fmt fmt, size_t cap)
{
    struct frame *f = malloc(sizeof *f + FRAME_PRE + cap);
    if (!f)
        return NULL;
    f->refs = 1;
    f->fmt = (uint8_t)fmt;
    f->wire = 0;
    f->len = 0;
    f->cap = (uint32_t)cap;
    return f;
}

void frame_unref(struct frame *f)
{
    if (!f)
        return;
    tc_assert(f->refs > 0);
    if (--f->refs == 0)
        free(f);
}

size_t frame_wire(struct frame *f, uint8_t **start)
{
    uint8_t *p = frame_payload(f);
    size_t n = f->len, h;
    if (f->wire) {
        *start = p;
        return n;
    }
    if (n < 126) {
        h = 2;
        p[-1] = (uint8_t)n;
    } else if (n <= 0xffff) {
        h = 4;
        p[-3] = 126;
        p[-2] = (uint8_t)(n >> 8);
        p[-1] = (uint8_t)n;
    } else {
        h = 10;
        p[-9] = 127;
        for (int i = 0; i < 8; i++)
            p[-8 + i] = (uint8_t)((uint64_t)n >> (56 - 8 * i));
    }
    p[-(ptrdiff_t)h] = f->fmt == FMT_MSGPACK ? 0x82 : 0x81;
    *start = p - h;
    return n + h;
}

struct frame *frame_join(struct frame *a, struct frame *b)
{
    uint8_t *pa, *pb;
    size_t na = frame_wire(a, &pa), nb = frame_wire(b, &pb);
    struct frame *f = frame_new((enum fmt)a->fmt, na + nb);
    if (!f)
        return NULL;
    f->wire = 1;
    f->len = (uint32_t)(na + nb);
    memcpy(frame_payload(f), pa, na);
    memcpy(frame_payload(f) + na, pb, nb);
    return f;
}
