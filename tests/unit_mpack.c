/* unit_mpack.c - tests of core/mpack.c: every msgpack type and width, truncation at every byte,
 * lengths and counts larger than what is left, the depth budget, and the typed reads. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mpack.h"
#include "unit.h"

/* Bytes of one test item. */
struct bytes {
    uint8_t *b;
    size_t n;
};

static struct bytes mk(const void *p, size_t n)
{
    struct bytes x = {malloc(n ? n : 1), n};
    memcpy(x.b, p, n);
    return x;
}

#define MK(...) mk((const uint8_t[]){__VA_ARGS__}, sizeof((const uint8_t[]){__VA_ARGS__}))

/* A header `hdr` followed by `n` bytes of payload 'a', 'b', 'c'... */
static struct bytes with_payload(const uint8_t *hdr, size_t hn, size_t n)
{
    struct bytes x = {malloc(hn + n + 1), hn + n};
    memcpy(x.b, hdr, hn);
    for (size_t i = 0; i < n; i++)
        x.b[hn + i] = (uint8_t)('a' + i % 26);
    return x;
}

/* Reads the one item of x; checks that it took every byte. */
static enum mpack_kind one(struct bytes x, struct mpack_item *it, int line)
{
    struct mpack m = mpack_of(x.b, x.n);
    enum mpack_kind k = mpack_next(&m, it);
    if (k != MP_BAD && k != MP_ARRAY && k != MP_MAP && m.p != m.end) {
        unit_failed++;
        fprintf(stderr, "%s:%d: item left %zu bytes unread\n", __FILE__, line, (size_t)(m.end - m.p));
    }
    unit_checks++;
    return k;
}

#define ONE(x, it) one((x), (it), __LINE__)

static void test_ints(void)
{
    static const struct {
        uint8_t b[9];
        size_t n;
        int64_t v;
    } v[] = {
        {{0x00}, 1, 0},
        {{0x01}, 1, 1},
        {{0x7f}, 1, 127},
        {{0xe0}, 1, -32},
        {{0xff}, 1, -1},
        {{0xcc, 0x00}, 2, 0},
        {{0xcc, 0xff}, 2, 255},
        {{0xcd, 0x01, 0x00}, 3, 256},
        {{0xcd, 0xff, 0xff}, 3, 65535},
        {{0xce, 0xff, 0xff, 0xff, 0xff}, 5, 4294967295LL},
        {{0xcf, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00}, 9, 4294967296LL},
        {{0xcf, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 9, INT64_MAX},
        {{0xd0, 0x7f}, 2, 127},
        {{0xd0, 0x80}, 2, -128},
        {{0xd0, 0xff}, 2, -1},
        {{0xd1, 0x7f, 0xff}, 3, 32767},
        {{0xd1, 0x80, 0x00}, 3, -32768},
        {{0xd2, 0x7f, 0xff, 0xff, 0xff}, 5, INT32_MAX},
        {{0xd2, 0x80, 0x00, 0x00, 0x00}, 5, INT32_MIN},
        {{0xd2, 0xff, 0xff, 0xff, 0xfe}, 5, -2},
        {{0xd3, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00}, 9, INT64_MIN},
        {{0xd3, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 9, INT64_MAX},
        {{0xd3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 9, -1},
        {{0xd3, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00}, 9, 256},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        struct bytes x = mk(v[i].b, v[i].n);
        struct mpack_item it;
        CHECK_INT(ONE(x, &it), MP_INT);
        CHECK_INT(it.i, v[i].v);
        /* mpack_int agrees. */
        struct mpack m = mpack_of(x.b, x.n);
        int64_t got = 12345;
        CHECK_INT(mpack_int(&m, &got), 0);
        CHECK_INT(got, v[i].v);
        CHECK(m.p == m.end);
        free(x.b);
    }

    /* uint64 past INT64_MAX: read (and skipped) as MP_FLOAT, refused by mpack_int. */
    static const uint8_t big[][9] = {
        {0xcf, 0x80, 0, 0, 0, 0, 0, 0, 0},
        {0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
    };
    for (int i = 0; i < 2; i++) {
        struct bytes x = mk(big[i], 9);
        struct mpack_item it;
        CHECK_INT(ONE(x, &it), MP_FLOAT);
        struct mpack m = mpack_of(x.b, 9);
        int64_t got = 7;
        CHECK_INT(mpack_int(&m, &got), -1);
        CHECK_INT(got, 7);
        m = mpack_of(x.b, 9);
        CHECK_INT(mpack_skip(&m, 0), 0);
        CHECK(m.p == m.end);
        free(x.b);
    }
}

static void test_scalars(void)
{
    struct mpack_item it;
    struct bytes x;

    x = MK(0xc0);
    CHECK_INT(ONE(x, &it), MP_NIL);
    free(x.b);
    x = MK(0xc2);
    CHECK_INT(ONE(x, &it), MP_BOOL);
    CHECK_INT(it.i, 0);
    free(x.b);
    x = MK(0xc3);
    CHECK_INT(ONE(x, &it), MP_BOOL);
    CHECK_INT(it.i, 1);
    free(x.b);
    x = MK(0xca, 0x3f, 0x80, 0x00, 0x00); /* 1.0f */
    CHECK_INT(ONE(x, &it), MP_FLOAT);
    free(x.b);
    x = MK(0xcb, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0); /* 1.0 */
    CHECK_INT(ONE(x, &it), MP_FLOAT);
    free(x.b);
    /* 0xc1 is never used; an empty buffer has no item. */
    x = MK(0xc1);
    CHECK_INT(ONE(x, &it), MP_BAD);
    free(x.b);
    struct mpack m = mpack_of("", 0);
    CHECK_INT(mpack_next(&m, &it), MP_BAD);
    CHECK_INT(mpack_skip(&m, 5), -1);
}

/* A byte item: header hdr (hn bytes) then n payload bytes, read as `kind`
 * with len n and data just past the header (and the ext type byte). */
static void check_bytes_item(const uint8_t *hdr, size_t hn, size_t n, enum mpack_kind kind, int line)
{
    struct bytes x = with_payload(hdr, hn, n);
    struct mpack_item it;
    enum mpack_kind k = one(x, &it, line);
    unit_checks += 3;
    if (k != kind || it.len != n || it.data != x.b + hn) {
        unit_failed++;
        fprintf(stderr, "%s:%d: item of %zu bytes: kind %d len %llu data +%td (want kind %d, data +%zu)\n",
                __FILE__, line, n, k, (unsigned long long)it.len, it.data ? it.data - x.b : (ptrdiff_t)-1, kind,
                hn);
    }
    free(x.b);
}

#define BYTES_ITEM(hdr, n, kind) check_bytes_item(hdr, sizeof(hdr), n, kind, __LINE__)

static void test_strings_bins_exts(void)
{
    const uint8_t fix0[] = {0xa0}, fix3[] = {0xa3}, fix31[] = {0xbf};
    BYTES_ITEM(fix0, 0, MP_STR);
    BYTES_ITEM(fix3, 3, MP_STR);
    BYTES_ITEM(fix31, 31, MP_STR);
    const uint8_t s8_0[] = {0xd9, 0}, s8[] = {0xd9, 255}, s16[] = {0xda, 0x01, 0x00}, s16max[] = {0xda, 0xff, 0xff},
                  s32[] = {0xdb, 0, 1, 0, 0}, s32_5[] = {0xdb, 0, 0, 0, 5};
    BYTES_ITEM(s8_0, 0, MP_STR);
    BYTES_ITEM(s8, 255, MP_STR);
    BYTES_ITEM(s16, 256, MP_STR);
    BYTES_ITEM(s16max, 65535, MP_STR);
    BYTES_ITEM(s32, 65536, MP_STR);
    BYTES_ITEM(s32_5, 5, MP_STR);
    const uint8_t b8[] = {0xc4, 3}, b8_0[] = {0xc4, 0}, b16[] = {0xc5, 0x01, 0x00}, b32[] = {0xc6, 0, 0, 0, 7};
    BYTES_ITEM(b8, 3, MP_BIN);
    BYTES_ITEM(b8_0, 0, MP_BIN);
    BYTES_ITEM(b16, 256, MP_BIN);
    BYTES_ITEM(b32, 7, MP_BIN);
    /* ext: length, type byte, data; the item's bytes are the data. */
    const uint8_t e8[] = {0xc7, 3, 0x05}, e8_0[] = {0xc7, 0, 0x01}, e16[] = {0xc8, 0x01, 0x00, 0xff},
                  e32[] = {0xc9, 0, 0, 0, 2, 0x7f};
    BYTES_ITEM(e8, 3, MP_EXT);
    BYTES_ITEM(e8_0, 0, MP_EXT);
    BYTES_ITEM(e16, 256, MP_EXT);
    BYTES_ITEM(e32, 2, MP_EXT);
    /* fixext 1, 2, 4, 8, 16: type byte then that many data bytes. mpack.h
     * says an MP_EXT's len and data are its bytes, as for ext 8/16/32. */
    for (int i = 0; i < 5; i++) {
        const uint8_t hdr[2] = {(uint8_t)(0xd4 + i), 0x01};
        check_bytes_item(hdr, 2, (size_t)1 << i, MP_EXT, __LINE__);
    }

    /* The string reads: mpack_str gives the bytes, which may hold NUL. */
    struct bytes x = MK(0xa4, 'a', 0, 'b', 'c');
    struct mpack m = mpack_of(x.b, x.n);
    const char *s = NULL;
    size_t len = 0;
    CHECK_INT(mpack_str(&m, &s, &len), 0);
    CHECK_INT(len, 4);
    CHECK(s == (const char *)x.b + 1);
    CHECK(memcmp(s, "a\0bc", 4) == 0);
    CHECK(m.p == m.end);
    free(x.b);
}

static void test_containers(void)
{
    struct mpack_item it;
    struct bytes x;

    x = MK(0x90);
    CHECK_INT(ONE(x, &it), MP_ARRAY);
    CHECK_INT(it.len, 0);
    free(x.b);
    x = MK(0x80);
    CHECK_INT(ONE(x, &it), MP_MAP);
    CHECK_INT(it.len, 0);
    free(x.b);

    /* fixarray of 15, array16 and array32 of 3, each followed by its elements:
     * the cursor stands at the first element. */
    const uint8_t a15[] = {0x9f}, a16[] = {0xdc, 0, 3}, a32[] = {0xdd, 0, 0, 0, 3};
    const uint8_t *ah[] = {a15, a16, a32};
    const size_t ahn[] = {1, 3, 5}, an[] = {15, 3, 3};
    for (int i = 0; i < 3; i++) {
        x = with_payload(ah[i], ahn[i], an[i]); /* 'a'.. are positive fixints */
        struct mpack m = mpack_of(x.b, x.n);
        CHECK_INT(mpack_next(&m, &it), MP_ARRAY);
        CHECK_INT(it.len, an[i]);
        CHECK(m.p == x.b + ahn[i]);
        m = mpack_of(x.b, x.n);
        uint32_t n = 0;
        CHECK_INT(mpack_array(&m, &n), 0);
        CHECK_INT(n, an[i]);
        m = mpack_of(x.b, x.n);
        CHECK_INT(mpack_skip(&m, 1), 0);
        CHECK(m.p == m.end);
        m = mpack_of(x.b, x.n);
        CHECK_INT(mpack_map(&m, &n), -1);
        free(x.b);
    }
    /* fixmap of 15, map16 and map32 of 2 pairs. */
    const uint8_t m15[] = {0x8f}, m16[] = {0xde, 0, 2}, m32[] = {0xdf, 0, 0, 0, 2};
    const uint8_t *mh[] = {m15, m16, m32};
    const size_t mhn[] = {1, 3, 5}, mn[] = {15, 2, 2};
    for (int i = 0; i < 3; i++) {
        x = with_payload(mh[i], mhn[i], 2 * mn[i]);
        struct mpack m = mpack_of(x.b, x.n);
        CHECK_INT(mpack_next(&m, &it), MP_MAP);
        CHECK_INT(it.len, mn[i]);
        CHECK(m.p == x.b + mhn[i]);
        m = mpack_of(x.b, x.n);
        uint32_t n = 0;
        CHECK_INT(mpack_map(&m, &n), 0);
        CHECK_INT(n, mn[i]);
        m = mpack_of(x.b, x.n);
        CHECK_INT(mpack_skip(&m, 1), 0);
        CHECK(m.p == m.end);
        m = mpack_of(x.b, x.n);
        CHECK_INT(mpack_array(&m, &n), -1);
        free(x.b);
    }
}

/* Valid items; every proper prefix of each must be refused. */
static struct bytes items[64];
static int nitems;

static void add(struct bytes x) { items[nitems++] = x; }

static void build_items(void)
{
    const uint8_t s8[] = {0xd9, 40}, s16[] = {0xda, 0, 40}, s32[] = {0xdb, 0, 0, 0, 40}, b8[] = {0xc4, 5},
                  b16[] = {0xc5, 0, 5}, b32[] = {0xc6, 0, 0, 0, 5}, e8[] = {0xc7, 4, 9}, e16[] = {0xc8, 0, 4, 9},
                  e32[] = {0xc9, 0, 0, 0, 4, 9}, fs[] = {0xa5};
    add(MK(0xcc, 0xff));
    add(MK(0xcd, 0xff, 0xfe));
    add(MK(0xce, 1, 2, 3, 4));
    add(MK(0xcf, 1, 2, 3, 4, 5, 6, 7, 8));
    add(MK(0xcf, 0xf1, 2, 3, 4, 5, 6, 7, 8));
    add(MK(0xd0, 0x80));
    add(MK(0xd1, 0x80, 0));
    add(MK(0xd2, 0x80, 0, 0, 1));
    add(MK(0xd3, 0x80, 0, 0, 0, 0, 0, 0, 1));
    add(MK(0xca, 0x3f, 0x80, 0, 0));
    add(MK(0xcb, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0));
    add(MK(0xd4, 1, 2));
    add(MK(0xd5, 1, 2, 3));
    add(MK(0xd6, 1, 2, 3, 4, 5));
    add(MK(0xd7, 1, 2, 3, 4, 5, 6, 7, 8, 9));
    add(MK(0xd8, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17));
    add(with_payload(fs, 1, 5));
    add(with_payload(s8, 2, 40));
    add(with_payload(s16, 3, 40));
    add(with_payload(s32, 5, 40));
    add(with_payload(b8, 2, 5));
    add(with_payload(b16, 3, 5));
    add(with_payload(b32, 5, 5));
    add(with_payload(e8, 3, 4));
    add(with_payload(e16, 4, 4));
    add(with_payload(e32, 6, 4));
    /* Containers: [1, "ab", {"k": nil}] in each header, and nested. */
    add(MK(0x93, 0x01, 0xa2, 'a', 'b', 0x81, 0xa1, 'k', 0xc0));
    add(MK(0xdc, 0, 3, 0x01, 0xa2, 'a', 'b', 0x81, 0xa1, 'k', 0xc0));
    add(MK(0xdd, 0, 0, 0, 3, 0x01, 0xa2, 'a', 'b', 0x81, 0xa1, 'k', 0xc0));
    add(MK(0x82, 0xa1, 'a', 0x91, 0x90, 0xa1, 'b', 0xcd, 1, 2));
    add(MK(0xde, 0, 2, 0xa1, 'a', 0x91, 0x90, 0xa1, 'b', 0xcd, 1, 2));
    add(MK(0xdf, 0, 0, 0, 2, 0xa1, 'a', 0x91, 0x90, 0xa1, 'b', 0xcd, 1, 2));
    add(MK(0x91, 0x91, 0x91, 0x91, 0xc3));
}

static void test_truncation(void)
{
    build_items();
    for (int i = 0; i < nitems; i++) {
        struct bytes x = items[i];
        /* The whole item: skipped exactly. */
        struct mpack m = mpack_of(x.b, x.n);
        CHECK_INT(mpack_skip(&m, 8), 0);
        CHECK(m.p == m.end);
        /* Every proper prefix, in a buffer of exactly that size so that the
         * sanitizer sees any read past it. */
        for (size_t k = 0; k < x.n; k++) {
            uint8_t *p = malloc(k ? k : 1);
            memcpy(p, x.b, k);
            m = mpack_of(p, k);
            int r = mpack_skip(&m, 8);
            if (r != -1)
                fprintf(stderr, "item %d (0x%02x) cut to %zu of %zu bytes was skipped\n", i, x.b[0], k, x.n);
            CHECK_INT(r, -1);
            /* Anything but a container is refused by mpack_next itself (a
             * container's header may be whole, its elements not). */
            struct mpack_item it;
            m = mpack_of(p, k);
            enum mpack_kind kind = mpack_next(&m, &it);
            if (!((x.b[0] & 0xe0) == 0x80 || (x.b[0] >= 0xdc && x.b[0] <= 0xdf)))
                CHECK_INT(kind, MP_BAD);
            free(p);
        }
    }
    for (int i = 0; i < nitems; i++)
        free(items[i].b);
}

static void test_declared_too_long(void)
{
    struct mpack_item it;
    struct bytes x;
    /* 6-byte frames declaring 2^32-1 elements, pairs, bytes: refused by
     * the header alone. */
    static const uint8_t huge[][6] = {
        {0xdd, 0xff, 0xff, 0xff, 0xff, 0x01}, {0xdf, 0xff, 0xff, 0xff, 0xff, 0x01},
        {0xdb, 0xff, 0xff, 0xff, 0xff, 'a'},  {0xc6, 0xff, 0xff, 0xff, 0xff, 'a'},
        {0xc9, 0xff, 0xff, 0xff, 0xff, 0x01}, {0xdc, 0xff, 0xff, 0x01, 0x01, 0x01},
        {0xde, 0xff, 0xff, 0x01, 0x01, 0x01}, {0xda, 0xff, 0xff, 'a', 'b', 'c'},
    };
    for (int i = 0; i < 8; i++) {
        x = mk(huge[i], 6);
        CHECK_INT(ONE(x, &it), MP_BAD);
        free(x.b);
    }
    /* Skipping a frame that declares 2^32-1 one-byte elements but holds
     * 2^20 of them is refused at once, not after walking them all. */
    size_t n = (size_t)1 << 20;
    uint8_t *p = malloc(n + 5);
    p[0] = 0xdd;
    p[1] = p[2] = p[3] = p[4] = 0xff;
    memset(p + 5, 0x01, n);
    struct mpack m = mpack_of(p, n + 5);
    clock_t t0 = clock();
    CHECK_INT(mpack_next(&m, &it), MP_BAD);
    m = mpack_of(p, n + 5);
    CHECK_INT(mpack_skip(&m, 8), -1);
    CHECK(clock() - t0 < CLOCKS_PER_SEC / 10);
    /* ... and 2^20 declared with 2^20 bytes left is a valid array. */
    p[1] = 0, p[2] = 0x10, p[3] = 0, p[4] = 0;
    m = mpack_of(p, n + 5);
    CHECK_INT(mpack_next(&m, &it), MP_ARRAY);
    CHECK_INT(it.len, n);
    m = mpack_of(p, n + 5);
    CHECK_INT(mpack_skip(&m, 1), 0);
    CHECK(m.p == m.end);
    /* One element more than bytes left. */
    p[3] = 0, p[4] = 1;
    m = mpack_of(p, n + 5);
    CHECK_INT(mpack_next(&m, &it), MP_BAD);
    free(p);

    /* Counts at the edge: n elements need n bytes, n pairs 2n. */
    x = MK(0x93, 1, 2, 3);
    CHECK_INT(ONE(x, &it), MP_ARRAY);
    free(x.b);
    x = MK(0x93, 1, 2);
    CHECK_INT(ONE(x, &it), MP_BAD);
    free(x.b);
    x = MK(0x82, 1, 2, 3, 4);
    CHECK_INT(ONE(x, &it), MP_MAP);
    free(x.b);
    x = MK(0x82, 1, 2, 3);
    CHECK_INT(ONE(x, &it), MP_BAD);
    free(x.b);
    x = MK(0xde, 0, 3, 1, 2, 3, 4, 5);
    CHECK_INT(ONE(x, &it), MP_BAD);
    free(x.b);
    /* A string one byte longer than what is left. */
    x = MK(0xa4, 'a', 'b', 'c');
    CHECK_INT(ONE(x, &it), MP_BAD);
    free(x.b);
    x = MK(0xd9, 4, 'a', 'b', 'c');
    CHECK_INT(ONE(x, &it), MP_BAD);
    free(x.b);
    /* An ext8 declaring 3 bytes with its type byte and 2 bytes left. */
    x = MK(0xc7, 3, 9, 'a', 'b');
    CHECK_INT(ONE(x, &it), MP_BAD);
    free(x.b);
}

/* n arrays nested in one another around nil: 0x91 x n, 0xc0. */
static struct bytes nested(size_t n)
{
    struct bytes x = {malloc(n + 1), n + 1};
    memset(x.b, 0x91, n);
    x.b[n] = 0xc0;
    return x;
}

static void test_depth(void)
{
    for (size_t d = 1; d <= 10; d++) {
        struct bytes x = nested(d);
        struct mpack m = mpack_of(x.b, x.n);
        CHECK_INT(mpack_skip(&m, (int)d), 0);
        CHECK(m.p == m.end);
        m = mpack_of(x.b, x.n);
        CHECK_INT(mpack_skip(&m, (int)d - 1), -1);
        free(x.b);
    }
    /* A scalar needs no depth; an empty container needs one level. */
    struct bytes x = MK(0x05);
    struct mpack m = mpack_of(x.b, x.n);
    CHECK_INT(mpack_skip(&m, 0), 0);
    free(x.b);
    x = MK(0x90);
    m = mpack_of(x.b, x.n);
    CHECK_INT(mpack_skip(&m, 0), -1);
    m = mpack_of(x.b, x.n);
    CHECK_INT(mpack_skip(&m, 1), 0);
    free(x.b);
    x = MK(0x80);
    m = mpack_of(x.b, x.n);
    CHECK_INT(mpack_skip(&m, 0), -1);
    m = mpack_of(x.b, x.n);
    CHECK_INT(mpack_skip(&m, -3), -1);
    free(x.b);
    /* Maps count too, in keys as in values: {[]: {"a": [nil]}} is 3 deep. */
    x = MK(0x81, 0x90, 0x81, 0xa1, 'a', 0x91, 0xc0);
    m = mpack_of(x.b, x.n);
    CHECK_INT(mpack_skip(&m, 3), 0);
    m = mpack_of(x.b, x.n);
    CHECK_INT(mpack_skip(&m, 2), -1);
    free(x.b);
    x = MK(0x81, 0x91, 0x91, 0xc0, 0x01);
    m = mpack_of(x.b, x.n);
    CHECK_INT(mpack_skip(&m, 2), -1);
    m = mpack_of(x.b, x.n);
    CHECK_INT(mpack_skip(&m, 3), 0);
    free(x.b);
    /* A million levels with a small budget: refused at the budget, with
     * the stack the budget allows. */
    x = nested(1000000);
    m = mpack_of(x.b, x.n);
    CHECK_INT(mpack_skip(&m, 8), -1);
    CHECK(m.p == x.b + 9);
    free(x.b);
    /* A bad item inside a container fails the whole skip. */
    x = MK(0x92, 0x01, 0xc1);
    m = mpack_of(x.b, x.n);
    CHECK_INT(mpack_skip(&m, 4), -1);
    free(x.b);
}

static void test_typed_reads(void)
{
    struct bytes ints = MK(0x05), str = MK(0xa1, 'x'), nil = MK(0xc0), t = MK(0xc3), arr = MK(0x91, 0x01),
                 map = MK(0x81, 0x01, 0x02), flt = MK(0xca, 0, 0, 0, 0), bin = MK(0xc4, 1, 'x'),
                 ext = MK(0xd4, 1, 2), bad = MK(0xc1);
    struct bytes all[] = {ints, str, nil, t, arr, map, flt, bin, ext, bad};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        const char *s = "unset";
        size_t len = 99;
        int64_t v = 99;
        uint32_t n = 99;
        struct mpack m = mpack_of(all[i].b, all[i].n);
        CHECK_INT(mpack_str(&m, &s, &len), all[i].b == str.b ? 0 : -1);
        m = mpack_of(all[i].b, all[i].n);
        CHECK_INT(mpack_int(&m, &v), all[i].b == ints.b ? 0 : -1);
        m = mpack_of(all[i].b, all[i].n);
        CHECK_INT(mpack_array(&m, &n), all[i].b == arr.b ? 0 : -1);
        m = mpack_of(all[i].b, all[i].n);
        CHECK_INT(mpack_map(&m, &n), all[i].b == map.b ? 0 : -1);
        if (all[i].b != str.b) /* a refused read leaves the outputs alone */
            CHECK(strcmp(s, "unset") == 0 && len == 99);
        if (all[i].b != ints.b)
            CHECK_INT(v, 99);
    }
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        free(all[i].b);
    /* Typed reads walk on: a map of two string keys read field by field. */
    struct bytes x = MK(0x82, 0xa2, 'i', 'd', 0xa1, '7', 0xa1, 'n', 0xd0, 0xfe);
    struct mpack m = mpack_of(x.b, x.n);
    uint32_t pairs;
    const char *k, *s;
    size_t kl, sl;
    int64_t v;
    CHECK_INT(mpack_map(&m, &pairs), 0);
    CHECK_INT(pairs, 2);
    CHECK_INT(mpack_str(&m, &k, &kl), 0);
    CHECK(mpack_is(k, kl, "id"));
    CHECK_INT(mpack_str(&m, &s, &sl), 0);
    CHECK(mpack_is(s, sl, "7"));
    CHECK_INT(mpack_str(&m, &k, &kl), 0);
    CHECK(mpack_is(k, kl, "n"));
    CHECK_INT(mpack_int(&m, &v), 0);
    CHECK_INT(v, -2);
    CHECK(m.p == m.end);
    CHECK_INT(mpack_int(&m, &v), -1);
    free(x.b);
}

static void test_is(void)
{
    CHECK_INT(mpack_is("abc", 3, "abc"), 1);
    CHECK_INT(mpack_is("abcdef", 3, "abc"), 1);
    CHECK_INT(mpack_is("ab", 2, "abc"), 0);
    CHECK_INT(mpack_is("abcd", 4, "abc"), 0);
    CHECK_INT(mpack_is("abd", 3, "abc"), 0);
    CHECK_INT(mpack_is("", 0, ""), 1);
    CHECK_INT(mpack_is("x", 0, ""), 1);
    CHECK_INT(mpack_is("x", 1, ""), 0);
    CHECK_INT(mpack_is("a\0", 2, "a"), 0);
    CHECK_INT(mpack_is("ABC", 3, "abc"), 0);
}

int main(void)
{
    test_ints();
    test_scalars();
    test_strings_bins_exts();
    test_containers();
    test_truncation();
    test_declared_too_long();
    test_depth();
    test_typed_reads();
    test_is();
    return unit_finish("unit_mpack");
}
