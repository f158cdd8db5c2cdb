/* enc.h - the writer of everything the server sends: the same calls emit
 * msgpack or JSON, into a frame (frame.h) ready for lws_write, so that a
 * message is described once for both subprotocols.
 *
 * A writer never fails midway: an allocation failure, a frame past
 * ENC_MAX_BYTES or nesting past ENC_NEST_MAX is remembered and reported by
 * enc_finish, and the calls in between do nothing. */
#ifndef TIPCAST_ENC_H
#define TIPCAST_ENC_H

#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>

#include "frame.h"
#include "mpack.h"

/* Bound on the size of any frame the server builds. */
#define ENC_MAX_BYTES (1u << 22)
/* Deepest nesting of maps and arrays written: that of a joined or history
 * reply, whose map holds the events array, whose event maps hold body
 * values nested MESSAGE_DEPTH_MAX - 1 deep (message.h): 1 + 1 + 8. */
#define ENC_NEST_MAX 10

struct enc {
    enum fmt fmt;
    struct frame *f;      /* owned until enc_finish */
    int failed;
    msgpack_packer pk;
    int depth;
    uint8_t first[ENC_NEST_MAX + 2];
    int after_key;
};

/* Starts a frame with room for about `hint` bytes. */
void enc_init(struct enc *e, enum fmt fmt, size_t hint);
/* In msgpack, maps and arrays declare their size up front: `n` must equal
 * the number of entries written before the matching enc_end_*. */
void enc_map(struct enc *e, uint32_t n);
void enc_end_map(struct enc *e);
void enc_array(struct enc *e, uint32_t n);
void enc_end_array(struct enc *e);
void enc_key(struct enc *e, const char *key);
void enc_key_n(struct enc *e, const char *key, size_t len);
void enc_str(struct enc *e, const char *s, size_t len);
void enc_cstr(struct enc *e, const char *s);
void enc_int(struct enc *e, int64_t v);
void enc_bool(struct enc *e, int v);
void enc_nil(struct enc *e);
/* Appends bytes that are already one complete value in the writer's
 * format (an encoded event, say) as the next element. */
void enc_raw(struct enc *e, const uint8_t *p, size_t len);
/* Re-emits the next msgpack item of `m` through the writer (as JSON when
 * the writer is a JSON one). Only what event bodies hold is taken: nil,
 * booleans, integers, strings, and arrays and maps (string keys) nested at
 * most depth_left deep. Returns 0, or -1 (and the writer failed) for
 * anything else. */
int enc_mpack(struct enc *e, struct mpack *m, int depth_left);
/* The finished frame (one reference, the caller's), or NULL when the
 * writer failed; either way the writer is spent. */
struct frame *enc_finish(struct enc *e);
/* Abandons the writer and frees what it had. */
void enc_discard(struct enc *e);

/* JSON's string escaping of s[0..len) into e (quotes included): for the
 * unit tests and enc's own use. */
void enc_json_str(struct enc *e, const char *s, size_t len);

#endif
