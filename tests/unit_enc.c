/* unit_enc.c - tests of core/enc.c and core/frame.c: the bytes the writer emits in msgpack and
 * JSON, re-encoding of msgpack, the size and nesting bounds, WebSocket headers, joins and
 * references (core/message.c has unit_message.c). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "enc.h"
#include "frame.h"
#include "unit.h"

/* ---- Checks --------------------------------------------------------------- */



/* ---- JSON strings --------------------------------------------------------- */

static struct frame *json_str(const char *s, size_t len)
{
    struct enc e;
    enc_init(&e, FMT_JSON, 0);
    enc_json_str(&e, s, len);
    return enc_finish(&e);
}

static void test_json_escaping(void)
{
    struct frame *f;
#define ESC(in, out)                                \
    do {                                            \
        f = json_str(in, sizeof(in) - 1);           \
        CHECK_FRAME_TEXT(f, out);                         \
        frame_unref(f);                             \
    } while (0)
    ESC("", "\"\"");
    ESC("plain", "\"plain\"");
    ESC("a\"b", "\"a\\\"b\"");
    ESC("a\\b", "\"a\\\\b\"");
    ESC("\"", "\"\\\"\"");
    ESC("\\", "\"\\\\\"");
    ESC("l1\nl2\r\n\tx", "\"l1\\nl2\\r\\n\\tx\"");
    ESC("\n\n", "\"\\n\\n\"");
    ESC("a\0b", "\"a\\u0000b\"");
    ESC("\0", "\"\\u0000\"");
    ESC("\x08\x0c\x1f\x7f", "\"\\u0008\\u000c\\u001f\x7f\"");
    ESC("</script>", "\"</script>\"");
    /* UTF-8 (2, 3 and 4 bytes) passes through as it is, and so does a byte
     * that is not UTF-8: repairing text is utf8.c's job, upstream. */
    ESC("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x8e\x81", "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x8e\x81\"");
    ESC("\xff", "\"\xff\"");
#undef ESC
    /* Every control character below 0x20, each alone and between letters. */
    for (int c = 0; c < 0x20; c++) {
        char in[3] = {'x', (char)c, 'y'}, want[16];
        if (c == '\n')
            strcpy(want, "\"x\\ny\"");
        else if (c == '\r')
            strcpy(want, "\"x\\ry\"");
        else if (c == '\t')
            strcpy(want, "\"x\\ty\"");
        else
            snprintf(want, sizeof want, "\"x\\u00%02xy\"", c);
        f = json_str(in, 3);
        CHECK_FRAME_TEXT(f, want);
        frame_unref(f);
    }
    /* Every byte from 0x20 up but the quote and the backslash is itself. */
    char all[224], want[227];
    size_t n = 0;
    for (int c = 0x20; c < 0x100; c++)
        if (c != '"' && c != '\\')
            all[n++] = (char)c;
    want[0] = '"';
    memcpy(want + 1, all, n);
    want[n + 1] = '"';
    f = json_str(all, n);
    CHECK_BYTES(f, want, n + 2);
    frame_unref(f);
}

/* ---- One message in both formats ---------------------------------------- */

static struct frame *sample(enum fmt fmt)
{
    struct enc e;
    enc_init(&e, fmt, 0); /* a small hint: the frame must grow */
    enc_map(&e, 11);
    enc_key(&e, "s");
    enc_cstr(&e, "a\"b");
    enc_key(&e, "zero");
    enc_int(&e, 0);
    enc_key(&e, "neg");
    enc_int(&e, -33);
    enc_key(&e, "u8");
    enc_int(&e, 200);
    enc_key(&e, "max");
    enc_int(&e, INT64_MAX);
    enc_key(&e, "min");
    enc_int(&e, INT64_MIN);
    enc_key(&e, "t");
    enc_bool(&e, 1);
    enc_key(&e, "f");
    enc_bool(&e, 0);
    enc_key(&e, "z");
    enc_nil(&e);
    enc_key_n(&e, "arr", 1);
    enc_array(&e, 4);
    enc_int(&e, 1);
    enc_cstr(&e, "x");
    enc_array(&e, 0);
    enc_end_array(&e);
    enc_map(&e, 1);
    enc_key(&e, "k");
    enc_str(&e, "vw", 1);
    enc_end_map(&e);
    enc_end_array(&e);
    enc_key(&e, "m");
    enc_map(&e, 0);
    enc_end_map(&e);
    enc_end_map(&e);
    return enc_finish(&e);
}

static void test_both_formats(void)
{
    static const uint8_t mp[] = {
        0x8b, 0xa1, 's', 0xa3, 'a', '"', 'b', 0xa4, 'z', 'e', 'r', 'o', 0x00, 0xa3, 'n', 'e', 'g', 0xd0, 0xdf,
        0xa2, 'u', '8', 0xcc, 0xc8, 0xa3, 'm', 'a', 'x', 0xcf, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xa3, 'm', 'i', 'n', 0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0, 0xa1, 't', 0xc3, 0xa1, 'f', 0xc2, 0xa1, 'z',
        0xc0, 0xa1, 'a', 0x94, 0x01, 0xa1, 'x', 0x90, 0x81, 0xa1, 'k', 0xa1, 'v', 0xa1, 'm', 0x80};
    struct frame *f = sample(FMT_MSGPACK);
    CHECK_BYTES(f, mp, sizeof mp);
    CHECK(f && f->fmt == FMT_MSGPACK && !f->wire && f->refs == 1);
    frame_unref(f);
    f = sample(FMT_JSON);
    CHECK_FRAME_TEXT(f, "{\"s\":\"a\\\"b\",\"zero\":0,\"neg\":-33,\"u8\":200,\"max\":9223372036854775807,"
                  "\"min\":-9223372036854775808,\"t\":true,\"f\":false,\"z\":null,"
                  "\"a\":[1,\"x\",[],{\"k\":\"v\"}],\"m\":{}}");
    CHECK(f && f->fmt == FMT_JSON);
    frame_unref(f);

    /* Separators after closed containers, and raw values as elements. */
    struct enc e;
    enc_init(&e, FMT_JSON, 0);
    enc_array(&e, 4);
    enc_map(&e, 1);
    enc_key(&e, "a");
    enc_int(&e, 1);
    enc_end_map(&e);
    enc_map(&e, 2);
    enc_key(&e, "b");
    enc_raw(&e, (const uint8_t *)"[2]", 3);
    enc_key(&e, "c");
    enc_array(&e, 0);
    enc_end_array(&e);
    enc_end_map(&e);
    enc_raw(&e, (const uint8_t *)"{}", 2);
    enc_int(&e, -7);
    enc_end_array(&e);
    f = enc_finish(&e);
    CHECK_FRAME_TEXT(f, "[{\"a\":1},{\"b\":[2],\"c\":[]},{},-7]");
    frame_unref(f);

    /* The compact integer forms msgpack's writer picks, and a top-level scalar. */
    static const struct {
        int64_t v;
        uint8_t b[9];
        size_t n;
    } ints[] = {
        {127, {0x7f}, 1},          {128, {0xcc, 0x80}, 2},       {256, {0xcd, 1, 0}, 3},
        {65536, {0xce, 0, 1, 0, 0}, 5}, {-32, {0xe0}, 1},         {-129, {0xd1, 0xff, 0x7f}, 3},
        {-32769, {0xd2, 0xff, 0xff, 0x7f, 0xff}, 5},
        {4294967296LL, {0xcf, 0, 0, 0, 1, 0, 0, 0, 0}, 9},
    };
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        enc_init(&e, FMT_MSGPACK, 0);
        enc_int(&e, ints[i].v);
        f = enc_finish(&e);
        CHECK_BYTES(f, ints[i].b, ints[i].n);
        frame_unref(f);
    }
}

/* ---- Re-encoding msgpack -------------------------------------------------- */

static struct frame *reenc(enum fmt fmt, const uint8_t *p, size_t n, int depth, int *rc)
{
    struct enc e;
    struct mpack m = mpack_of(p, n);
    enc_init(&e, fmt, 0);
    *rc = enc_mpack(&e, &m, depth);
    return enc_finish(&e);
}

static void test_enc_mpack(void)
{
    /* Wider forms than needed (int64 1, int16 -1, str8, uint64 65535) come
     * back in the writer's compact forms. */
    static const uint8_t in[] = {0x82, 0xa1, 'a', 0x97, 0xc0, 0xc3, 0xc2, 0xd3, 0, 0, 0, 0, 0, 0, 0, 1,
                                 0xd1, 0xff, 0xff, 0xd9, 1, 's', 0x81, 0xa1, 'k', 0xcf, 0, 0, 0, 0, 0,
                                 0, 0xff, 0xff, 0xa0, 0x00};
    static const uint8_t out[] = {0x82, 0xa1, 'a', 0x97, 0xc0, 0xc3, 0xc2, 0x01, 0xff,
                                  0xa1, 's', 0x81, 0xa1, 'k', 0xcd, 0xff, 0xff, 0xa0, 0x00};
    int rc;
    struct frame *f = reenc(FMT_JSON, in, sizeof in, 8, &rc);
    CHECK_INT(rc, 0);
    CHECK_FRAME_TEXT(f, "{\"a\":[null,true,false,1,-1,\"s\",{\"k\":65535}],\"\":0}");
    frame_unref(f);
    f = reenc(FMT_MSGPACK, in, sizeof in, 8, &rc);
    CHECK_INT(rc, 0);
    CHECK_BYTES(f, out, sizeof out);
    frame_unref(f);

    /* Keys and strings are escaped on the way to JSON. */
    static const uint8_t esc[] = {0x81, 0xa2, 'q', '"', 0xa2, '\n', 0};
    f = reenc(FMT_JSON, esc, sizeof esc, 1, &rc);
    CHECK_FRAME_TEXT(f, "{\"q\\\"\":\"\\n\\u0000\"}");
    frame_unref(f);

    /* Refused: what event bodies never hold, keys that are not strings,
     * bad or cut bytes; the writer is failed with it. */
    static const struct {
        uint8_t b[12];
        size_t n;
    } bad[] = {
        {{0xc4, 1, 'x'}, 3},                    /* bin */
        {{0xc7, 1, 5, 'x'}, 4},                 /* ext 8 */
        {{0xd4, 5, 'x'}, 3},                    /* fixext 1 */
        {{0xca, 0, 0, 0, 0}, 5},                /* float 32 */
        {{0xcb, 0, 0, 0, 0, 0, 0, 0, 0}, 9},    /* float 64 */
        {{0xcf, 0x80, 0, 0, 0, 0, 0, 0, 0}, 9}, /* uint 64 past INT64_MAX */
        {{0x81, 0x01, 0x02}, 3},                /* integer key */
        {{0x81, 0xc0, 0x02}, 3},                /* nil key */
        {{0x92, 0x01, 0xca, 0, 0, 0, 0}, 7},    /* a float in an array */
        {{0x81, 0xa1, 'k', 0xc4, 0}, 5},        /* a bin in a map */
        {{0xa3, 'a', 'b'}, 3},                  /* cut */
        {{0x92, 0x01}, 2},                      /* cut */
        {{0xc1}, 1},
        {{0}, 0},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        for (int fmt = 0; fmt < FMT_COUNT; fmt++) {
            f = reenc((enum fmt)fmt, bad[i].b, bad[i].n, 8, &rc);
            CHECK_INT(rc, -1);
            CHECK(f == NULL);
            frame_unref(f);
        }

    /* The depth budget: d nested arrays need depth d. */
    uint8_t deep[12];
    for (int d = 1; d <= 8; d++) {
        memset(deep, 0x91, (size_t)d);
        deep[d] = 0x05;
        for (int fmt = 0; fmt < FMT_COUNT; fmt++) {
            f = reenc((enum fmt)fmt, deep, (size_t)d + 1, d, &rc);
            CHECK_INT(rc, 0);
            CHECK(f != NULL);
            frame_unref(f);
            f = reenc((enum fmt)fmt, deep, (size_t)d + 1, d - 1, &rc);
            CHECK_INT(rc, -1);
            CHECK(f == NULL);
        }
    }
    /* Cut inside the nesting, however large the budget. */
    f = reenc(FMT_JSON, deep, 8, 100, &rc);
    CHECK_INT(rc, -1);
    CHECK(f == NULL);
    /* A scalar needs no depth. */
    static const uint8_t five[] = {0x05};
    f = reenc(FMT_JSON, five, 1, 0, &rc);
    CHECK_INT(rc, 0);
    CHECK_FRAME_TEXT(f, "5");
    frame_unref(f);
    /* Within the budget but past the writer's own nesting bound: refused
     * by enc_finish. */
    uint8_t deeper[ENC_NEST_MAX + 2];
    memset(deeper, 0x91, ENC_NEST_MAX + 1);
    deeper[ENC_NEST_MAX + 1] = 0xc0;
    f = reenc(FMT_JSON, deeper, ENC_NEST_MAX + 2, 100, &rc);
    CHECK(f == NULL);
    f = reenc(FMT_JSON, deeper + 1, ENC_NEST_MAX + 1, 100, &rc);
    CHECK_INT(rc, 0);
    CHECK(f != NULL && f->len == 2 * ENC_NEST_MAX + 4);
    frame_unref(f);
}

/* ---- Bounds --------------------------------------------------------------- */

/* The length of the frame holding one string of n bytes `c`, or -1 when
 * the writer refused it. */
static long str_frame(enum fmt fmt, uint8_t *big, int c, size_t n)
{
    struct enc e;
    memset(big, c, n);
    enc_init(&e, fmt, 0);
    enc_str(&e, (const char *)big, n);
    struct frame *f = enc_finish(&e);
    long len = f ? (long)f->len : -1;
    frame_unref(f);
    return len;
}

static void test_max_bytes(void)
{
    uint8_t *big = malloc(ENC_MAX_BYTES + 1);
    memset(big, 'a', ENC_MAX_BYTES + 1);
    struct enc e;
    struct frame *f;

    /* Exactly ENC_MAX_BYTES is a frame; one byte more is none. */
    enc_init(&e, FMT_MSGPACK, 0);
    enc_raw(&e, big, ENC_MAX_BYTES);
    f = enc_finish(&e);
    CHECK(f != NULL && f->len == ENC_MAX_BYTES);
    frame_unref(f);
    enc_init(&e, FMT_MSGPACK, 0);
    enc_raw(&e, big, ENC_MAX_BYTES);
    enc_nil(&e);
    enc_int(&e, 5); /* calls after the failure do nothing */
    CHECK(enc_finish(&e) == NULL);
    enc_init(&e, FMT_MSGPACK, 16);
    enc_raw(&e, big, ENC_MAX_BYTES + 1);
    CHECK(enc_finish(&e) == NULL);
    /* A msgpack str32 has 5 bytes of header, a JSON string two quotes, and
     * escapes (6 bytes a control character) can grow a string past it. */
    CHECK_INT(str_frame(FMT_MSGPACK, big, 'a', ENC_MAX_BYTES - 5), ENC_MAX_BYTES);
    CHECK_INT(str_frame(FMT_MSGPACK, big, 'a', ENC_MAX_BYTES - 4), -1);
    CHECK_INT(str_frame(FMT_JSON, big, 'a', ENC_MAX_BYTES - 2), ENC_MAX_BYTES);
    CHECK_INT(str_frame(FMT_JSON, big, 'a', ENC_MAX_BYTES - 1), -1);
    CHECK_INT(str_frame(FMT_JSON, big, 1, ENC_MAX_BYTES / 6), ENC_MAX_BYTES / 6 * 6 + 2);
    CHECK_INT(str_frame(FMT_JSON, big, 1, ENC_MAX_BYTES / 6 + 1), -1);
    CHECK_INT(str_frame(FMT_JSON, big, '"', ENC_MAX_BYTES / 2 - 1), ENC_MAX_BYTES);
    CHECK_INT(str_frame(FMT_JSON, big, '"', ENC_MAX_BYTES / 2), -1);

    /* enc_discard frees a writer never finished (the sanitizer checks). */
    enc_init(&e, FMT_JSON, 100);
    enc_map(&e, 1);
    enc_discard(&e);
    CHECK(e.f == NULL);
    free(big);
}

/* `levels` nested arrays around one integer. */
static struct frame *nest(enum fmt fmt, int levels)
{
    struct enc e;
    enc_init(&e, fmt, 0);
    for (int i = 0; i < levels; i++) {
        if (i % 2) {
            enc_array(&e, 1);
        } else {
            enc_map(&e, 1);
            enc_key(&e, "k");
        }
    }
    enc_int(&e, 1);
    for (int i = levels; i-- > 0;) {
        if (i % 2)
            enc_end_array(&e);
        else
            enc_end_map(&e);
    }
    return enc_finish(&e);
}

static void test_nesting(void)
{
    for (int fmt = 0; fmt < FMT_COUNT; fmt++) {
        struct frame *f = nest((enum fmt)fmt, ENC_NEST_MAX);
        CHECK(f != NULL);
        frame_unref(f);
        /* One level past the bound: enc.h says the writer fails, in
         * either format. */
        f = nest((enum fmt)fmt, ENC_NEST_MAX + 1);
        if (f)
            fprintf(stderr, "format %d: %d levels were written\n", fmt, ENC_NEST_MAX + 1);
        CHECK(f == NULL);
        frame_unref(f);
        f = nest((enum fmt)fmt, 40);
        CHECK(f == NULL);
        frame_unref(f);
    }
    /* Closed levels free their depth: many siblings at the deepest level. */
    struct enc e;
    enc_init(&e, FMT_JSON, 0);
    for (int i = 0; i < ENC_NEST_MAX - 1; i++)
        enc_array(&e, 1);
    for (int i = 0; i < 20; i++) {
        enc_array(&e, 0);
        enc_end_array(&e);
    }
    for (int i = 0; i < ENC_NEST_MAX - 1; i++)
        enc_end_array(&e);
    struct frame *f = enc_finish(&e);
    CHECK(f != NULL);
    frame_unref(f);
}

/* ---- Frames --------------------------------------------------------------- */

static struct frame *filled(enum fmt fmt, size_t n)
{
    struct frame *f = frame_new(fmt, n);
    for (size_t i = 0; i < n; i++)
        frame_payload(f)[i] = (uint8_t)i;
    f->len = (uint32_t)n;
    return f;
}

static void test_frame_wire(void)
{
    static const struct {
        size_t n;
        uint8_t hdr[10];
        size_t hn;
    } v[] = {
        {0, {0, 0}, 2},
        {1, {0, 1}, 2},
        {125, {0, 125}, 2},
        {126, {0, 126, 0, 126}, 4},
        {127, {0, 126, 0, 127}, 4},
        {65535, {0, 126, 0xff, 0xff}, 4},
        {65536, {0, 127, 0, 0, 0, 0, 0, 1, 0, 0}, 10},
        {70000, {0, 127, 0, 0, 0, 0, 0, 1, 0x11, 0x70}, 10},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        for (int fmt = 0; fmt < FMT_COUNT; fmt++) {
            struct frame *f = filled((enum fmt)fmt, v[i].n);
            uint8_t hdr[10], *start = NULL;
            memcpy(hdr, v[i].hdr, v[i].hn);
            hdr[0] = fmt == FMT_MSGPACK ? 0x82 : 0x81; /* FIN + binary / text */
            size_t len = frame_wire(f, &start);
            CHECK_INT(len, v[i].n + v[i].hn);
            CHECK(start == frame_payload(f) - v[i].hn);
            CHECK(memcmp(start, hdr, v[i].hn) == 0);
            CHECK(v[i].n == 0 || (start[v[i].hn] == 0 && start[len - 1] == (uint8_t)(v[i].n - 1)));
            /* Asking twice writes the same header. */
            uint8_t *again;
            CHECK_INT(frame_wire(f, &again), len);
            CHECK(again == start);
            frame_unref(f);
        }
}

static void test_frame_join_refs(void)
{
    struct frame *a = frame_new(FMT_MSGPACK, 8), *b = frame_new(FMT_MSGPACK, 8), *c = filled(FMT_JSON, 200);
    CHECK(a->refs == 1 && a->len == 0 && a->cap == 8 && !a->wire && a->fmt == FMT_MSGPACK);
    memcpy(frame_payload(a), "ab", 2);
    a->len = 2;
    memcpy(frame_payload(b), "xyz", 3);
    b->len = 3;
    struct frame *j = frame_join(a, b);
    static const uint8_t jw[] = {0x82, 2, 'a', 'b', 0x82, 3, 'x', 'y', 'z'};
    CHECK_BYTES(j, jw, sizeof jw);
    CHECK(j->wire == 1 && j->fmt == FMT_MSGPACK && j->refs == 1);
    CHECK(a->refs == 1 && b->refs == 1); /* the join takes no reference */
    /* A wire frame goes out as it is, and joins as it is. */
    uint8_t *start;
    CHECK_INT(frame_wire(j, &start), sizeof jw);
    CHECK(start == frame_payload(j));
    struct frame *jj = frame_join(j, c);
    CHECK(jj != NULL && jj->len == sizeof jw + 4 + 200);
    CHECK(jj && memcmp(frame_payload(jj), jw, sizeof jw) == 0);
    static const uint8_t ch[] = {0x81, 126, 0, 200};
    CHECK(jj && memcmp(frame_payload(jj) + sizeof jw, ch, 4) == 0);
    CHECK(jj && frame_payload(jj)[sizeof jw + 4 + 199] == 199);

    /* References: each holder drops its own; the last frees. */
    CHECK(frame_ref(a) == a);
    CHECK_INT(a->refs, 2);
    frame_ref(a);
    CHECK_INT(a->refs, 3);
    frame_unref(a);
    frame_unref(a);
    CHECK_INT(a->refs, 1);
    frame_unref(a);
    frame_unref(NULL);
    frame_unref(b);
    frame_unref(c);
    frame_unref(j);
    frame_unref(jj);
}

int main(void)
{
    test_json_escaping();
    test_both_formats();
    test_enc_mpack();
    test_max_bytes();
    test_nesting();
    test_frame_wire();
    test_frame_join_refs();
    return unit_finish("unit_enc");
}
