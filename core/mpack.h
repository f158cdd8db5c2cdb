/* mpack.h - a msgpack reader that never allocates and never trusts a
 * length: every item's declared size is checked against the bytes that
 * remain, and every declared element count too (each element takes at
 * least one byte, each map pair two), so a 6-byte frame declaring 2^32
 * elements is refused before anything is walked or reserved. Nesting is
 * bounded by the caller's depth budget, so the stack is too.
 *
 * Used by the protocol decoder, the event re-encoder and the load
 * generator. Pure: no I/O, no allocation. */
#ifndef TIPCAST_MPACK_H
#define TIPCAST_MPACK_H

#include <stddef.h>
#include <stdint.h>

/* A cursor over msgpack bytes [p, end). */
struct mpack {
    const uint8_t *p;
    const uint8_t *end;
};

enum mpack_kind { MP_NIL, MP_BOOL, MP_INT, MP_FLOAT, MP_STR, MP_BIN, MP_ARRAY, MP_MAP, MP_EXT, MP_BAD };

/* One item's header. For MP_STR, MP_BIN and MP_EXT `len` is the byte
 * length and `data` the bytes (already bounds-checked, and skipped by the
 * cursor); for MP_ARRAY and MP_MAP `len` is the element count (pairs for
 * maps) and the cursor stands at the first element; for MP_INT and MP_BOOL
 * the value is in `i`. An unsigned integer past INT64_MAX reads as
 * MP_FLOAT: no protocol field is that large, so it is a type error. */
struct mpack_item {
    enum mpack_kind kind;
    uint64_t len;
    const uint8_t *data;
    int64_t i;
};

static inline struct mpack mpack_of(const void *buf, size_t len)
{
    struct mpack m = {(const uint8_t *)buf, (const uint8_t *)buf + len};
    return m;
}

/* Reads the next item's header into `it` and returns its kind; MP_BAD when
 * the bytes are truncated or not msgpack (the cursor is then unspecified). */
enum mpack_kind mpack_next(struct mpack *m, struct mpack_item *it);

/* Skips one whole item. A container needs depth_left > 0 and its elements
 * get depth_left - 1. Returns 0, or -1 for bad bytes or nesting past the
 * budget. */
int mpack_skip(struct mpack *m, int depth_left);

/* Typed reads of the next item: 0, or -1 when it is not of that kind. */
int mpack_str(struct mpack *m, const char **s, size_t *len);
int mpack_int(struct mpack *m, int64_t *v);
int mpack_map(struct mpack *m, uint32_t *pairs);
int mpack_array(struct mpack *m, uint32_t *n);

/* 1 when s[0..len) equals the C string `want`. */
int mpack_is(const char *s, size_t len, const char *want);

#endif
