/* mpack.c - the bounded msgpack reader (see mpack.h). */
#include "mpack.h"

#include <string.h>

static size_t left(const struct mpack *m) { return (size_t)(m->end - m->p); }

static uint64_t be(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

/* An item of `len` bytes at the cursor: bounds-checked and skipped. */
static enum mpack_kind bytes(struct mpack *m, struct mpack_item *it, enum mpack_kind kind)
{
    if (it->len > left(m))
        return MP_BAD;
    it->data = m->p;
    m->p += it->len;
    return it->kind = kind;
}

/* A container of `len` elements: the count must be possible in what is left. */
static enum mpack_kind counted(struct mpack *m, struct mpack_item *it, enum mpack_kind kind)
{
    if (it->len > left(m) / (kind == MP_MAP ? 2 : 1))
        return MP_BAD;
    return it->kind = kind;
}

static enum mpack_kind scalar(struct mpack_item *it, enum mpack_kind kind, int64_t v)
{
    it->i = v;
    return it->kind = kind;
}

enum mpack_kind mpack_next(struct mpack *m, struct mpack_item *it)
{
    memset(it, 0, sizeof *it);
    it->kind = MP_BAD;
    if (left(m) < 1)
        return MP_BAD;
    uint8_t c = *m->p++;
    if (c <= 0x7f)
        return scalar(it, MP_INT, c);
    if (c >= 0xe0)
        return scalar(it, MP_INT, (int8_t)c);
    if ((c & 0xf0) == 0x80) {
        it->len = c & 0x0f;
        return counted(m, it, MP_MAP);
    }
    if ((c & 0xf0) == 0x90) {
        it->len = c & 0x0f;
        return counted(m, it, MP_ARRAY);
    }
    if ((c & 0xe0) == 0xa0) {
        it->len = c & 0x1f;
        return bytes(m, it, MP_STR);
    }
    int hdr; /* bytes of length following the type byte */
    enum mpack_kind kind;
    switch (c) {
    case 0xc0: return it->kind = MP_NIL;
    case 0xc2: return scalar(it, MP_BOOL, 0);
    case 0xc3: return scalar(it, MP_BOOL, 1);
    case 0xc4: hdr = 1; kind = MP_BIN; break;
    case 0xc5: hdr = 2; kind = MP_BIN; break;
    case 0xc6: hdr = 4; kind = MP_BIN; break;
    case 0xc7: hdr = 1; kind = MP_EXT; break;
    case 0xc8: hdr = 2; kind = MP_EXT; break;
    case 0xc9: hdr = 4; kind = MP_EXT; break;
    case 0xca: case 0xcb: {
        size_t n = c == 0xca ? 4 : 8;
        if (left(m) < n)
            return MP_BAD;
        m->p += n;
        return it->kind = MP_FLOAT;
    }
    case 0xcc: case 0xcd: case 0xce: case 0xcf: {
        int n = 1 << (c - 0xcc);
        if (left(m) < (size_t)n)
            return MP_BAD;
        uint64_t v = be(m->p, n);
        m->p += n;
        if (v > INT64_MAX)
            return it->kind = MP_FLOAT;
        return scalar(it, MP_INT, (int64_t)v);
    }
    case 0xd0: case 0xd1: case 0xd2: case 0xd3: {
        int n = 1 << (c - 0xd0);
        if (left(m) < (size_t)n)
            return MP_BAD;
        uint64_t v = be(m->p, n);
        m->p += n;
        int64_t s = n == 1 ? (int8_t)v : n == 2 ? (int16_t)v : n == 4 ? (int32_t)v : (int64_t)v;
        return scalar(it, MP_INT, s);
    }
    case 0xd4: case 0xd5: case 0xd6: case 0xd7: case 0xd8:
        /* fixext 1..16: the type byte, then 2^(c - 0xd4) bytes of data. */
        if (left(m) < 1)
            return MP_BAD;
        m->p++;
        it->len = (uint64_t)1 << (c - 0xd4);
        return bytes(m, it, MP_EXT);
    case 0xd9: hdr = 1; kind = MP_STR; break;
    case 0xda: hdr = 2; kind = MP_STR; break;
    case 0xdb: hdr = 4; kind = MP_STR; break;
    case 0xdc: hdr = 2; kind = MP_ARRAY; break;
    case 0xdd: hdr = 4; kind = MP_ARRAY; break;
    case 0xde: hdr = 2; kind = MP_MAP; break;
    case 0xdf: hdr = 4; kind = MP_MAP; break;
    default: return MP_BAD; /* 0xc1 is never used */
    }
    if (left(m) < (size_t)hdr)
        return MP_BAD;
    it->len = be(m->p, hdr);
    m->p += hdr;
    if (kind == MP_ARRAY || kind == MP_MAP)
        return counted(m, it, kind);
    if (kind == MP_EXT) {
        if (left(m) < 1)
            return MP_BAD;
        m->p++; /* the extension's type byte */
    }
    return bytes(m, it, kind);
}

int mpack_skip(struct mpack *m, int depth_left)
{
    struct mpack_item it;
    enum mpack_kind k = mpack_next(m, &it);
    if (k == MP_BAD)
        return -1;
    if (k != MP_ARRAY && k != MP_MAP)
        return 0;
    if (depth_left <= 0)
        return -1;
    uint64_t items = k == MP_MAP ? it.len * 2 : it.len;
    for (uint64_t i = 0; i < items; i++)
        if (mpack_skip(m, depth_left - 1) < 0)
            return -1;
    return 0;
}

int mpack_str(struct mpack *m, const char **s, size_t *len)
{
    struct mpack_item it;
    if (mpack_next(m, &it) != MP_STR)
        return -1;
    *s = (const char *)it.data;
    *len = (size_t)it.len;
    return 0;
}

int mpack_int(struct mpack *m, int64_t *v)
{
    struct mpack_item it;
    if (mpack_next(m, &it) != MP_INT)
        return -1;
    *v = it.i;
    return 0;
}

static int container(struct mpack *m, enum mpack_kind want, uint32_t *n)
{
    struct mpack_item it;
    if (mpack_next(m, &it) != want || it.len > UINT32_MAX)
        return -1;
    *n = (uint32_t)it.len;
    return 0;
}

int mpack_map(struct mpack *m, uint32_t *pairs) { return container(m, MP_MAP, pairs); }
int mpack_array(struct mpack *m, uint32_t *n) { return container(m, MP_ARRAY, n); }

int mpack_is(const char *s, size_t len, const char *want)
{
    return strlen(want) == len && memcmp(s, want, len) == 0;
}
