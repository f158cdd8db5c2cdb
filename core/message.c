/* message.c - error, event and batch frames (see message.h). */
#include "message.h"

#include <string.h>

void message_start(struct enc *e, enum fmt fmt, size_t hint, const char *type, const char *id, uint32_t pairs)
{
    int has_id = id && id[0];
    enc_init(e, fmt, hint);
    enc_map(e, 1 + (uint32_t)has_id + pairs);
    enc_key(e, "type");
    enc_cstr(e, type);
    if (has_id) {
        enc_key(e, "id");
        enc_cstr(e, id);
    }
}

struct frame *message_error(enum fmt fmt, const char *id, enum err code, const char *text, const char *field,
                            int64_t extra)
{
    struct enc e;
    const char *extra_key = err_extra_key(code);
    message_start(&e, fmt, 128 + strlen(text), "error", id, 2 + (field != NULL) + (extra_key != NULL));
    enc_key(&e, "code");
    enc_cstr(&e, err_code(code));
    enc_key(&e, "message");
    enc_cstr(&e, text);
    if (field) {
        enc_key(&e, "field");
        enc_cstr(&e, field);
    }
    if (extra_key) {
        enc_key(&e, extra_key);
        enc_int(&e, extra);
    }
    enc_end_map(&e);
    return enc_finish(&e);
}

int message_enc_event(struct enc *e, const char *room, int64_t seq, const uint8_t *body, size_t len)
{
    struct mpack m = mpack_of(body, len);
    uint32_t n;
    if (mpack_map(&m, &n) < 0 || n > MESSAGE_BODY_PAIRS_MAX) {
        e->failed = 1;
        return -1;
    }
    enc_map(e, 3 + n);
    enc_key(e, "type");
    enc_cstr(e, "event");
    enc_key(e, "room");
    enc_cstr(e, room);
    enc_key(e, "seq");
    enc_int(e, seq);
    if (e->fmt == FMT_MSGPACK) {
        /* The body's pairs are msgpack already: spliced in unchanged,
         * once they are known to be well formed. */
        struct mpack check = m;
        for (uint32_t i = 0; i < n * 2; i++)
            if (mpack_skip(&check, MESSAGE_DEPTH_MAX - 1) < 0) {
                e->failed = 1;
                return -1;
            }
        enc_raw(e, m.p, (size_t)(check.p - m.p));
    } else {
        for (uint32_t i = 0; i < n; i++) {
            const char *k;
            size_t kl;
            if (mpack_str(&m, &k, &kl) < 0) {
                e->failed = 1;
                return -1;
            }
            enc_key_n(e, k, kl);
            if (enc_mpack(e, &m, MESSAGE_DEPTH_MAX - 1) < 0)
                return -1;
        }
    }
    enc_end_map(e);
    return e->failed ? -1 : 0;
}

struct frame *message_event(enum fmt fmt, const char *room, int64_t seq, const uint8_t *body, size_t len)
{
    struct enc e;
    enc_init(&e, fmt, 64 + len * 2);
    if (message_enc_event(&e, room, seq, body, len) < 0) {
        enc_discard(&e);
        return NULL;
    }
    return enc_finish(&e);
}

struct frame *message_events(enum fmt fmt, const char *room, struct frame *const *events, int n)
{
    size_t bytes = 64;
    for (int i = 0; i < n; i++)
        bytes += events[i]->len + 1;
    struct enc e;
    message_start(&e, fmt, bytes, "events", NULL, 2);
    enc_key(&e, "room");
    enc_cstr(&e, room);
    enc_key(&e, "events");
    enc_array(&e, (uint32_t)n);
    for (int i = 0; i < n; i++) {
        tc_assert(!events[i]->wire && events[i]->fmt == fmt);
        enc_raw(&e, frame_payload(events[i]), events[i]->len);
    }
    enc_end_array(&e);
    enc_end_map(&e);
    return enc_finish(&e);
}
