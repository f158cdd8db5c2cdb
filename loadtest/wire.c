/* wire.c - reading and writing tipcastd frames for the bench (see wire.h). */
#include "wire.h"

#include <stdio.h>
#include <string.h>

/* ---- msgpack reading ------------------------------------------------------ */

struct mp {
    const uint8_t *p, *end;
};

static int mp_need(struct mp *r, size_t n) { return (size_t)(r->end - r->p) >= n ? 0 : -1; }

static uint32_t be(const uint8_t *p, int n)
{
    uint32_t v = 0;
    for (int i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

/* A string's bytes; -1 when the next value is not a string. */
static int mp_str(struct mp *r, const char **s, size_t *n)
{
    if (mp_need(r, 1) < 0)
        return -1;
    uint8_t b = *r->p;
    size_t len, hdr;
    if ((b & 0xe0) == 0xa0) {
        len = b & 0x1f;
        hdr = 1;
    } else if (b == 0xd9 || b == 0xda || b == 0xdb) {
        int w = b == 0xd9 ? 1 : b == 0xda ? 2 : 4;
        if (mp_need(r, 1 + (size_t)w) < 0)
            return -1;
        len = be(r->p + 1, w);
        hdr = 1 + (size_t)w;
    } else {
        return -1;
    }
    if (mp_need(r, hdr + len) < 0)
        return -1;
    *s = (const char *)r->p + hdr;
    *n = len;
    r->p += hdr + len;
    return 0;
}

/* The element count of a map (pairs) or array; -1 when the next value is
 * not of that kind. */
static int mp_container(struct mp *r, int map, uint32_t *n)
{
    if (mp_need(r, 1) < 0)
        return -1;
    uint8_t b = *r->p;
    if (map ? (b & 0xf0) == 0x80 : (b & 0xf0) == 0x90) {
        *n = b & 0x0f;
        r->p++;
        return 0;
    }
    uint8_t b16 = map ? 0xde : 0xdc, b32 = map ? 0xdf : 0xdd;
    if (b != b16 && b != b32)
        return -1;
    int w = b == b16 ? 2 : 4;
    if (mp_need(r, 1 + (size_t)w) < 0)
        return -1;
    *n = be(r->p + 1, w);
    r->p += 1 + w;
    return 0;
}

static int mp_skip(struct mp *r, int depth)
{
    if (depth > WIRE_DEPTH_MAX || mp_need(r, 1) < 0)
        return -1;
    uint8_t b = *r->p;
    const char *s;
    size_t n;
    uint32_t k;
    if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3) {
        r->p++;
        return 0;
    }
    if ((b & 0xe0) == 0xa0 || b == 0xd9 || b == 0xda || b == 0xdb)
        return mp_str(r, &s, &n);
    if ((b & 0xf0) == 0x80 || b == 0xde || b == 0xdf || (b & 0xf0) == 0x90 || b == 0xdc || b == 0xdd) {
        int map = (b & 0xf0) == 0x80 || b == 0xde || b == 0xdf;
        if (mp_container(r, map, &k) < 0)
            return -1;
        uint64_t items = map ? 2ULL * k : k;
        /* Every item takes at least one byte: a count past the frame is a lie. */
        if (items > (uint64_t)(r->end - r->p))
            return -1;
        for (uint64_t i = 0; i < items; i++)
            if (mp_skip(r, depth + 1) < 0)
                return -1;
        return 0;
    }
    size_t fixed;
    switch (b) {
    case 0xcc: case 0xd0: fixed = 2; break;
    case 0xcd: case 0xd1: fixed = 3; break;
    case 0xca: case 0xce: case 0xd2: fixed = 5; break;
    case 0xcb: case 0xcf: case 0xd3: fixed = 9; break;
    case 0xc4: case 0xc5: case 0xc6: {
        int w = b == 0xc4 ? 1 : b == 0xc5 ? 2 : 4;
        if (mp_need(r, 1 + (size_t)w) < 0)
            return -1;
        fixed = 1 + (size_t)w + be(r->p + 1, w);
        break;
    }
    default:
        return -1; /* ext types: tipcastd sends none */
    }
    if (mp_need(r, fixed) < 0)
        return -1;
    r->p += fixed;
    return 0;
}

static int key_is(const char *k, size_t n, const char *want)
{
    size_t w = strlen(want);
    return n == w && memcmp(k, want, n) == 0;
}

static void copy_str(char *dst, size_t cap, const char *s, size_t n)
{
    if (n >= cap)
        n = cap - 1;
    memcpy(dst, s, n);
    dst[n] = 0;
}

static enum wire_type type_of(const char *s, size_t n)
{
    if (key_is(s, n, "event"))
        return WIRE_EVENT;
    if (key_is(s, n, "events"))
        return WIRE_EVENTS;
    if (key_is(s, n, "ack"))
        return WIRE_ACK;
    if (key_is(s, n, "error"))
        return WIRE_ERROR;
    if (key_is(s, n, "welcome"))
        return WIRE_WELCOME;
    if (key_is(s, n, "joined"))
        return WIRE_JOINED;
    return WIRE_OTHER;
}

/* One event map of a batch: reports its combo. */
static int mp_event(struct mp *r, wire_combo_cb on_combo, void *ctx)
{
    uint32_t n;
    if (mp_container(r, 1, &n) < 0)
        return -1;
    for (uint32_t i = 0; i < n; i++) {
        const char *k, *v;
        size_t kn, vn;
        if (mp_str(r, &k, &kn) < 0)
            return -1;
        if (key_is(k, kn, "combo")) {
            if (mp_str(r, &v, &vn) < 0)
                return -1;
            on_combo(ctx, v, vn);
        } else if (mp_skip(r, 2) < 0) {
            return -1;
        }
    }
    return 0;
}

static int read_msgpack(const uint8_t *buf, size_t len, struct wire_msg *m, wire_combo_cb on_combo, void *ctx)
{
    struct mp r = {buf, buf + len};
    uint32_t n;
    const char *k, *v;
    size_t kn, vn;
    /* First the type (tipcastd writes it first, so this is one step):
     * what to take from the rest depends on it. */
    if (mp_container(&r, 1, &n) < 0)
        return -1;
    const uint8_t *body = r.p;
    int found = 0;
    for (uint32_t i = 0; i < n && !found; i++) {
        if (mp_str(&r, &k, &kn) < 0)
            return -1;
        if (key_is(k, kn, "type")) {
            if (mp_str(&r, &v, &vn) < 0)
                return -1;
            m->type = type_of(v, vn);
            found = 1;
        } else if (mp_skip(&r, 1) < 0) {
            return -1;
        }
    }
    if (m->type == WIRE_OTHER)
        return 0;
    r.p = body;
    for (uint32_t i = 0; i < n; i++) {
        if (mp_str(&r, &k, &kn) < 0)
            return -1;
        int want_str = (m->type == WIRE_ACK || m->type == WIRE_ERROR || m->type == WIRE_JOINED) &&
                       (key_is(k, kn, "id") || key_is(k, kn, "code"));
        if (want_str) {
            if (mp_str(&r, &v, &vn) < 0)
                return -1;
            if (kn == 2)
                copy_str(m->id, sizeof m->id, v, vn);
            else
                copy_str(m->code, sizeof m->code, v, vn);
        } else if (m->type == WIRE_EVENT && key_is(k, kn, "combo")) {
            if (mp_str(&r, &v, &vn) < 0)
                return -1;
            on_combo(ctx, v, vn);
        } else if (m->type == WIRE_EVENTS && key_is(k, kn, "events")) {
            uint32_t ne;
            if (mp_container(&r, 0, &ne) < 0)
                return -1;
            for (uint32_t j = 0; j < ne; j++)
                if (mp_event(&r, on_combo, ctx) < 0)
                    return -1;
        } else if (mp_skip(&r, 1) < 0) {
            return -1;
        }
    }
    return r.p == r.end ? 0 : -1;
}

/* ---- JSON scanning ------------------------------------------------------- */

/* The string value after `"key":"` at or after p, up to its closing quote.
 * Our ids, codes and combos hold no escapes, so no unescaping is needed. */
static const char *json_str_after(const char *p, const char *end, const char *pat, size_t patlen, size_t *n)
{
    const char *at = memmem(p, (size_t)(end - p), pat, patlen);
    if (!at)
        return NULL;
    const char *s = at + patlen;
    const char *q = memchr(s, '"', (size_t)(end - s));
    if (!q)
        return NULL;
    *n = (size_t)(q - s);
    return s;
}

#define PAT(s) s, sizeof s - 1

static int read_json(const uint8_t *buf, size_t len, struct wire_msg *m, wire_combo_cb on_combo, void *ctx)
{
    const char *p = (const char *)buf, *end = p + len, *s;
    size_t n;
    s = json_str_after(p, end, PAT("\"type\":\""), &n);
    if (!s)
        return -1;
    m->type = type_of(s, n);
    switch (m->type) {
    case WIRE_ACK:
    case WIRE_ERROR:
    case WIRE_JOINED:
        if ((s = json_str_after(p, end, PAT("\"id\":\""), &n)))
            copy_str(m->id, sizeof m->id, s, n);
        if (m->type == WIRE_ERROR && (s = json_str_after(p, end, PAT("\"code\":\""), &n)))
            copy_str(m->code, sizeof m->code, s, n);
        break;
    case WIRE_EVENT:
    case WIRE_EVENTS:
        /* Every gift event has exactly one combo key. */
        while ((s = json_str_after(p, end, PAT("\"combo\":\""), &n))) {
            on_combo(ctx, s, n);
            p = s + n;
        }
        break;
    default:
        break;
    }
    return 0;
}

int wire_read(int json, const uint8_t *buf, size_t len, struct wire_msg *m, wire_combo_cb on_combo, void *ctx)
{
    m->type = WIRE_OTHER;
    m->id[0] = m->code[0] = 0;
    return json ? read_json(buf, len, m, on_combo, ctx) : read_msgpack(buf, len, m, on_combo, ctx);
}

/* ---- Writing -------------------------------------------------------------- */

struct out {
    uint8_t *p, *end;
    int overflow;
};

static void put(struct out *o, const void *b, size_t n)
{
    if ((size_t)(o->end - o->p) < n) {
        o->overflow = 1;
        return;
    }
    memcpy(o->p, b, n);
    o->p += n;
}

static void mp_put_str(struct out *o, const char *s)
{
    size_t n = strlen(s);
    uint8_t h[2];
    if (n < 32) {
        h[0] = (uint8_t)(0xa0 | n);
        put(o, h, 1);
    } else {
        h[0] = 0xd9;
        h[1] = (uint8_t)(n > 255 ? 255 : n);
        put(o, h, 2);
        n = h[1];
    }
    put(o, s, n);
}

static void mp_put_int(struct out *o, int64_t v)
{
    uint8_t b[9];
    if (v >= 0 && v < 128) {
        b[0] = (uint8_t)v;
        put(o, b, 1);
        return;
    }
    b[0] = 0xd3;
    for (int i = 0; i < 8; i++)
        b[1 + i] = (uint8_t)((uint64_t)v >> (56 - 8 * i));
    put(o, b, 9);
}

static void mp_put_map(struct out *o, int n)
{
    uint8_t b = (uint8_t)(0x80 | n);
    put(o, &b, 1);
}

static int finish(struct out *o, uint8_t *start) { return o->overflow ? -1 : (int)(o->p - start); }

/* snprintf's answer as a frame length: -1 when it was cut. */
static int json_out(size_t cap, int n)
{
    return n < 0 || (size_t)n >= cap ? -1 : n;
}

int wire_join(int json, uint8_t *out, size_t cap, const char *id, const char *room)
{
    if (json)
        return json_out(cap, snprintf((char *)out, cap, "{\"type\":\"join\",\"id\":\"%s\",\"room\":\"%s\"}", id, room));
    struct out o = {out, out + cap, 0};
    mp_put_map(&o, 3);
    mp_put_str(&o, "type");
    mp_put_str(&o, "join");
    mp_put_str(&o, "id");
    mp_put_str(&o, id);
    mp_put_str(&o, "room");
    mp_put_str(&o, room);
    return finish(&o, out);
}

int wire_gift(int json, uint8_t *out, size_t cap, const char *id, const char *room, int gift, const char *combo)
{
    if (json)
        return json_out(cap,
                        snprintf((char *)out, cap,
                                 "{\"type\":\"gift\",\"id\":\"%s\",\"room\":\"%s\",\"gift\":%d,\"count\":1,\"combo\":\"%s\"}",
                                 id, room, gift, combo));
    struct out o = {out, out + cap, 0};
    mp_put_map(&o, 6);
    mp_put_str(&o, "type");
    mp_put_str(&o, "gift");
    mp_put_str(&o, "id");
    mp_put_str(&o, id);
    mp_put_str(&o, "room");
    mp_put_str(&o, room);
    mp_put_str(&o, "gift");
    mp_put_int(&o, gift);
    mp_put_str(&o, "count");
    mp_put_int(&o, 1);
    mp_put_str(&o, "combo");
    mp_put_str(&o, combo);
    return finish(&o, out);
}

int wire_credit(int json, uint8_t *out, size_t cap, const char *id, const char *user, int64_t amount)
{
    if (json)
        return json_out(cap,
                        snprintf((char *)out, cap,
                                 "{\"type\":\"credit\",\"id\":\"%s\",\"user\":\"%s\",\"amount\":%lld,\"text\":\"bench\"}",
                                 id, user, (long long)amount));
    struct out o = {out, out + cap, 0};
    mp_put_map(&o, 5);
    mp_put_str(&o, "type");
    mp_put_str(&o, "credit");
    mp_put_str(&o, "id");
    mp_put_str(&o, id);
    mp_put_str(&o, "user");
    mp_put_str(&o, user);
    mp_put_str(&o, "amount");
    mp_put_int(&o, amount);
    mp_put_str(&o, "text");
    mp_put_str(&o, "bench");
    return finish(&o, out);
}
