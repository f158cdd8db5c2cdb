/* unit_message.c - tests of core/message.c: the error, event and events frames byte for byte in
 * both subprotocols, the splice and the re-encoding of an event body, and the bodies refused. */
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"
#include "message.h"
#include "unit.h"

/* ---- Expected bytes ------------------------------------------------------- */

struct xb {
    uint8_t b[1024];
    size_t n;
};

static void xb_put(struct xb *x, const void *p, size_t n)
{
    memcpy(x->b + x->n, p, n);
    x->n += n;
}

static void xb_byte(struct xb *x, uint8_t c) { x->b[x->n++] = c; }

/* A short msgpack string (fixstr). */
static void xb_str(struct xb *x, const char *s)
{
    size_t n = strlen(s);
    xb_byte(x, (uint8_t)(0xa0 | n));
    xb_put(x, s, n);
}

/* Short strings, up to a NULL. */
static void xb_strs(struct xb *x, ...)
{
    va_list ap;
    va_start(ap, x);
    for (const char *s; (s = va_arg(ap, const char *)) != NULL;)
        xb_str(x, s);
    va_end(ap);
}

#define CHECK_XB(f, x) CHECK_BYTES((f), (x).b, (x).n)

static void test_message_error(void)
{
    struct frame *f;
    struct xb x = {0};

    f = message_error(FMT_JSON, "r1", ERR_RATE_LIMITED, "slow down", NULL, 250);
    CHECK_FRAME_TEXT(f, "{\"type\":\"error\",\"id\":\"r1\",\"code\":\"rate_limited\",\"message\":\"slow down\","
                  "\"retry_after_ms\":250}");
    frame_unref(f);
    f = message_error(FMT_MSGPACK, "r1", ERR_RATE_LIMITED, "slow down", NULL, 250);
    xb_byte(&x, 0x85);
    xb_strs(&x, "type", "error", "id", "r1", "code", "rate_limited", "message", "slow down", "retry_after_ms",
            NULL);
    xb_put(&x, "\xcc\xfa", 2);
    CHECK_XB(f, x);
    frame_unref(f);

    /* A field; no extra key for bad_field, whatever `extra` says. */
    f = message_error(FMT_JSON, "q-9", ERR_BAD_FIELD, "amount must be > 0", "amount", 77);
    CHECK_FRAME_TEXT(f, "{\"type\":\"error\",\"id\":\"q-9\",\"code\":\"bad_field\",\"message\":\"amount must be > 0\","
                  "\"field\":\"amount\"}");
    frame_unref(f);
    f = message_error(FMT_MSGPACK, "q-9", ERR_BAD_FIELD, "m", "amount", 77);
    x.n = 0;
    xb_byte(&x, 0x85);
    xb_strs(&x, "type", "error", "id", "q-9", "code", "bad_field", "message", "m", "field", "amount", NULL);
    CHECK_XB(f, x);
    frame_unref(f);

    /* No id (NULL or ""): three keys; the text is escaped. */
    f = message_error(FMT_JSON, NULL, ERR_BAD_MESSAGE, "not \"json\" \\\n", NULL, 0);
    CHECK_FRAME_TEXT(f, "{\"type\":\"error\",\"code\":\"bad_message\",\"message\":\"not \\\"json\\\" \\\\\\n\"}");
    frame_unref(f);
    f = message_error(FMT_MSGPACK, "", ERR_INTERNAL, "x", NULL, 0);
    x.n = 0;
    xb_byte(&x, 0x83);
    xb_strs(&x, "type", "error", "code", "internal", "message", "x", NULL);
    CHECK_XB(f, x);
    frame_unref(f);

    /* The extra keys of the table, with large and negative values. */
    f = message_error(FMT_JSON, "i", ERR_HISTORY_GONE, "gone", NULL, 1234567890123LL);
    CHECK_FRAME_TEXT(f, "{\"type\":\"error\",\"id\":\"i\",\"code\":\"history_gone\",\"message\":\"gone\","
                  "\"oldest_seq\":1234567890123}");
    frame_unref(f);
    f = message_error(FMT_JSON, "i", ERR_INSUFFICIENT_BALANCE, "poor", NULL, -5);
    CHECK_FRAME_TEXT(f, "{\"type\":\"error\",\"id\":\"i\",\"code\":\"insufficient_balance\",\"message\":\"poor\","
                  "\"balance\":-5}");
    frame_unref(f);
    /* Every code: the extra key is there exactly when the table has one. */
    for (int c = 0; c < ERR_COUNT; c++) {
        f = message_error(FMT_JSON, "i", (enum err)c, "t", NULL, 42);
        char tail[64];
        const char *k = err_extra_key((enum err)c);
        if (k)
            snprintf(tail, sizeof tail, ",\"%s\":42}", k);
        else
            snprintf(tail, sizeof tail, ",\"message\":\"t\"}");
        CHECK(f && f->len > strlen(tail) &&
              memcmp(frame_payload(f) + f->len - strlen(tail), tail, strlen(tail)) == 0);
        frame_unref(f);
    }
}

/* Body {"kind": "gift", "amount": 5 (as an int64), "who": {"u": "a"}}. */
static const uint8_t body[] = {0x83, 0xa4, 'k', 'i', 'n', 'd', 0xa4, 'g', 'i', 'f', 't', 0xa6, 'a', 'm', 'o', 'u',
                               'n', 't', 0xd3, 0, 0, 0, 0, 0, 0, 0, 5, 0xa3, 'w', 'h', 'o', 0x81, 0xa1, 'u', 0xa1,
                               'a'};

static void event_head(struct xb *x, int pairs, const char *room, const uint8_t *seq, size_t seqn)
{
    x->n = 0;
    xb_byte(x, (uint8_t)(0x80 | (3 + pairs)));
    xb_strs(x, "type", "event", "room", room, "seq", NULL);
    xb_put(x, seq, seqn);
}

static void test_message_event(void)
{
    struct xb x;
    struct frame *f;

    /* msgpack: the body's pairs spliced in byte for byte (the int64 stays
     * 9 bytes); JSON: re-encoded. */
    f = message_event(FMT_MSGPACK, "r1", 7, body, sizeof body);
    event_head(&x, 3, "r1", (const uint8_t *)"\x07", 1);
    xb_put(&x, body + 1, sizeof body - 1);
    CHECK_XB(f, x);
    frame_unref(f);
    f = message_event(FMT_JSON, "r1", 7, body, sizeof body);
    CHECK_FRAME_TEXT(f, "{\"type\":\"event\",\"room\":\"r1\",\"seq\":7,"
                  "\"kind\":\"gift\",\"amount\":5,\"who\":{\"u\":\"a\"}}");
    frame_unref(f);
    f = message_event(FMT_MSGPACK, "room-2", 1LL << 40, (const uint8_t *)"\x80", 1);
    event_head(&x, 0, "room-2", (const uint8_t *)"\xcf\0\0\x01\0\0\0\0\0", 9);
    CHECK_XB(f, x);
    frame_unref(f);
    f = message_event(FMT_JSON, "room-2", 1LL << 40, (const uint8_t *)"\x80", 1);
    CHECK_FRAME_TEXT(f, "{\"type\":\"event\",\"room\":\"room-2\",\"seq\":1099511627776}");
    frame_unref(f);

    /* Malformed bodies: refused in both formats. */
    static const struct {
        uint8_t b[16];
        size_t n;
    } bad[] = {
        {{0x91, 0x01}, 2},                        /* not a map */
        {{0xa1, 'x'}, 2},                         /* not a map */
        {{0x82, 0xa1, 'a', 0x01}, 4},             /* cut: 2 pairs declared, 1.5 there */
        {{0x81, 0xa1, 'a'}, 3},                   /* cut: no value */
        {{0x81, 0xa1, 'a', 0xa5, 'x'}, 5},        /* cut inside the value */
        {{0x81, 0xa1, 'a', 0xc1}, 4},             /* not msgpack */
        {{0xdf, 0xff, 0xff, 0xff, 0xff, 0}, 6},   /* 2^32-1 pairs declared */
        {{0}, 0},                                 /* nothing */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        for (int fmt = 0; fmt < FMT_COUNT; fmt++)
            CHECK(message_event((enum fmt)fmt, "r", 1, bad[i].b, bad[i].n) == NULL);

    /* MESSAGE_BODY_PAIRS_MAX pairs pass, one more does not. */
    uint8_t pairs[3 + 33 * 3];
    for (int n = MESSAGE_BODY_PAIRS_MAX; n <= MESSAGE_BODY_PAIRS_MAX + 1; n++) {
        size_t k = 0;
        pairs[k++] = 0xde;
        pairs[k++] = 0;
        pairs[k++] = (uint8_t)n;
        for (int i = 0; i < n; i++) {
            pairs[k++] = 0xa1;
            pairs[k++] = (uint8_t)('!' + i);
            pairs[k++] = (uint8_t)i;
        }
        for (int fmt = 0; fmt < FMT_COUNT; fmt++) {
            f = message_event((enum fmt)fmt, "r", 1, pairs, k);
            CHECK((f != NULL) == (n <= MESSAGE_BODY_PAIRS_MAX));
            frame_unref(f);
        }
    }

    /* Nesting: the body map is one level, its values may add
     * MESSAGE_DEPTH_MAX - 1 more. */
    for (int d = MESSAGE_DEPTH_MAX - 1; d <= MESSAGE_DEPTH_MAX; d++) {
        uint8_t deep[32] = {0x81, 0xa1, 'v'};
        memset(deep + 3, 0x91, (size_t)d);
        deep[3 + d] = 0xc0;
        for (int fmt = 0; fmt < FMT_COUNT; fmt++) {
            f = message_event((enum fmt)fmt, "r", 1, deep, (size_t)d + 4);
            CHECK((f != NULL) == (d < MESSAGE_DEPTH_MAX));
            frame_unref(f);
            /* The same event inside the events array of a larger frame
             * (server/roomjoin.c's joined and history: a map, then an
             * array) is accepted or refused alike. */
            struct enc e;
            enc_init(&e, (enum fmt)fmt, 0);
            enc_map(&e, 1);
            enc_key(&e, "events");
            enc_array(&e, 1);
            int rc = message_enc_event(&e, "r", 1, deep, (size_t)d + 4);
            enc_end_array(&e);
            enc_end_map(&e);
            f = enc_finish(&e);
            if ((rc == 0) != (d < MESSAGE_DEPTH_MAX))
                fprintf(stderr, "format %d: a body %d deep in an events array gave %d\n", fmt, d + 1, rc);
            CHECK_INT(rc, d < MESSAGE_DEPTH_MAX ? 0 : -1);
            CHECK((f != NULL) == (d < MESSAGE_DEPTH_MAX));
            frame_unref(f);
        }
    }

    /* A float in a body is well-formed msgpack, spliced into the msgpack
     * frame, but JSON's re-encoding takes no float: that format refuses it
     * (fanout_event then drops the event for both). So does an integer key. */
    static const uint8_t flt[] = {0x81, 0xa1, 'f', 0xca, 0x3f, 0x80, 0, 0};
    static const uint8_t ikey[] = {0x81, 0x01, 0x02};
    f = message_event(FMT_MSGPACK, "r", 1, flt, sizeof flt);
    CHECK(f != NULL);
    frame_unref(f);
    CHECK(message_event(FMT_JSON, "r", 1, flt, sizeof flt) == NULL);
    f = message_event(FMT_MSGPACK, "r", 1, ikey, sizeof ikey);
    CHECK(f != NULL);
    frame_unref(f);
    CHECK(message_event(FMT_JSON, "r", 1, ikey, sizeof ikey) == NULL);

    /* Bytes after the body map are not read, in either format. */
    static const uint8_t trail[] = {0x81, 0xa1, 'n', 0x01, 0xc1, 0xc1};
    f = message_event(FMT_JSON, "r", 2, trail, sizeof trail);
    CHECK_FRAME_TEXT(f, "{\"type\":\"event\",\"room\":\"r\",\"seq\":2,\"n\":1}");
    frame_unref(f);
    f = message_event(FMT_MSGPACK, "r", 2, trail, sizeof trail);
    event_head(&x, 1, "r", (const uint8_t *)"\x02", 1);
    xb_put(&x, trail + 1, 3);
    CHECK_XB(f, x);
    frame_unref(f);

    /* An event written into a writer that is already part of a message. */
    struct enc e;
    enc_init(&e, FMT_JSON, 0);
    enc_array(&e, 2);
    CHECK_INT(message_enc_event(&e, "r", 3, trail, 4), 0);
    CHECK_INT(message_enc_event(&e, "r", 4, (const uint8_t *)"\x80", 1), 0);
    enc_end_array(&e);
    f = enc_finish(&e);
    CHECK_FRAME_TEXT(f, "[{\"type\":\"event\",\"room\":\"r\",\"seq\":3,\"n\":1},"
                  "{\"type\":\"event\",\"room\":\"r\",\"seq\":4}]");
    frame_unref(f);
    enc_init(&e, FMT_MSGPACK, 0);
    CHECK_INT(message_enc_event(&e, "r", 3, (const uint8_t *)"\x91\x01", 2), -1);
    CHECK(enc_finish(&e) == NULL);
}

static void test_message_events(void)
{
    static const uint8_t b1[] = {0x81, 0xa1, 'n', 0x01}, b2[] = {0x81, 0xa1, 'n', 0x02};
    for (int fmt = 0; fmt < FMT_COUNT; fmt++) {
        struct frame *ev[3] = {message_event((enum fmt)fmt, "r1", 1, b1, 4),
                               message_event((enum fmt)fmt, "r1", 2, b2, 4),
                               message_event((enum fmt)fmt, "r1", 3, b1, 4)};
        struct frame *f = message_events((enum fmt)fmt, "r1", ev, 3);
        if (fmt == FMT_JSON) {
            CHECK_FRAME_TEXT(f, "{\"type\":\"events\",\"room\":\"r1\",\"events\":["
                          "{\"type\":\"event\",\"room\":\"r1\",\"seq\":1,\"n\":1},"
                          "{\"type\":\"event\",\"room\":\"r1\",\"seq\":2,\"n\":2},"
                          "{\"type\":\"event\",\"room\":\"r1\",\"seq\":3,\"n\":1}]}");
        } else {
            struct xb x = {0};
            xb_byte(&x, 0x83);
            xb_strs(&x, "type", "events", "room", "r1", "events", NULL);
            xb_byte(&x, 0x93);
            for (int i = 0; i < 3; i++)
                xb_put(&x, frame_payload(ev[i]), ev[i]->len);
            CHECK_XB(f, x);
        }
        /* The events are copied, not taken. */
        for (int i = 0; i < 3; i++) {
            CHECK_INT(ev[i]->refs, 1);
            frame_unref(ev[i]);
        }
        frame_unref(f);
    }
}

int main(void)
{
    test_message_error();
    test_message_event();
    test_message_events();
    return unit_finish("unit_message");
}
