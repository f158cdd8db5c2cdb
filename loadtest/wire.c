/* wire.c - reading and writing tipcastd frames for the bench (see wire.h). */
#include "wire.h"

#include <string.h>

#include "enc.h"
#include "mpack.h"

/* ---- msgpack reading ------------------------------------------------------ */

/* The nesting left to a value skipped in the top map, and in an event map
 * of a batch (which stands two levels down). */
#define TOP_DEPTH (WIRE_DEPTH_MAX - 1)
#define EVENT_DEPTH (WIRE_DEPTH_MAX - 2)

/* mpack_is for a literal, its length known here: every key of every
 * received frame goes through it (and the bench's CPU bounds some runs). */
#define IS(s, n, lit) ((n) == sizeof lit - 1 && memcmp((s), lit, sizeof lit - 1) == 0)

/* mpack_skip, a call cheaper for the scalars and strings that most values
 * are: their header is read once; a container (which the bench never looks
 * into) is rewound and skipped whole by mpack_skip. */
static int skip(struct mpack *r, int depth_left)
{
    struct mpack at = *r;
    struct mpack_item it;
    switch (mpack_next(r, &it)) {
    case MP_BAD:
        return -1;
    case MP_ARRAY:
    case MP_MAP:
        *r = at;
        return mpack_skip(r, depth_left);
    default:
        return 0;
    }
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
    if (IS(s, n, "event"))
        return WIRE_EVENT;
    if (IS(s, n, "events"))
        return WIRE_EVENTS;
    if (IS(s, n, "ack"))
        return WIRE_ACK;
    if (IS(s, n, "error"))
        return WIRE_ERROR;
    if (IS(s, n, "welcome"))
        return WIRE_WELCOME;
    if (IS(s, n, "joined"))
        return WIRE_JOINED;
    return WIRE_OTHER;
}

/* The next string, reported as a combo. */
static int read_combo(struct mpack *r, wire_combo_cb on_combo, void *ctx)
{
    struct mpack_item v;
    if (mpack_next(r, &v) != MP_STR)
        return -1;
    on_combo(ctx, (const char *)v.data, (size_t)v.len);
    return 0;
}

/* The next n pairs of an event's map: reports its combo, skips the rest
 * (within depth_left levels). */
static int event_pairs(struct mpack *r, uint32_t n, int depth_left, wire_combo_cb on_combo, void *ctx)
{
    for (uint32_t i = 0; i < n; i++) {
        struct mpack_item k;
        if (mpack_next(r, &k) != MP_STR)
            return -1;
        if (IS(k.data, k.len, "combo") ? read_combo(r, on_combo, ctx) < 0 : skip(r, depth_left) < 0)
            return -1;
    }
    return 0;
}

/* The events of a batch, each a map of its own. */
static int read_events(struct mpack *r, wire_combo_cb on_combo, void *ctx)
{
    uint32_t n, pairs;
    if (mpack_array(r, &n) < 0)
        return -1;
    for (uint32_t j = 0; j < n; j++)
        if (mpack_map(r, &pairs) < 0 || event_pairs(r, pairs, EVENT_DEPTH, on_combo, ctx) < 0)
            return -1;
    return 0;
}

static int read_msgpack(const uint8_t *buf, size_t len, struct wire_msg *m, wire_combo_cb on_combo, void *ctx)
{
    struct mpack r = mpack_of(buf, len);
    uint32_t n, i;
    struct mpack_item k;
    const char *v;
    size_t vn;
    /* First the type (tipcastd writes it first, so this is one step):
     * what to take from the rest depends on it. */
    if (mpack_map(&r, &n) < 0)
        return -1;
    const uint8_t *body = r.p;
    int found = 0;
    for (i = 0; i < n && !found; i++) {
        if (mpack_next(&r, &k) != MP_STR)
            return -1;
        if (IS(k.data, k.len, "type")) {
            if (mpack_str(&r, &v, &vn) < 0)
                return -1;
            m->type = type_of(v, vn);
            found = 1;
        } else if (skip(&r, TOP_DEPTH) < 0) {
            return -1;
        }
    }
    if (m->type == WIRE_OTHER)
        return 0;
    /* The pairs before the type, if any, are read again. */
    if (i > 1) {
        r.p = body;
        i = 0;
    }
    if (m->type == WIRE_EVENT) {
        /* Most frames of a run: the rest of the map is the event's. */
        if (event_pairs(&r, n - i, TOP_DEPTH, on_combo, ctx) < 0)
            return -1;
        return r.p == r.end ? 0 : -1;
    }
    int reply = m->type == WIRE_ACK || m->type == WIRE_ERROR || m->type == WIRE_JOINED;
    for (; i < n; i++) {
        if (mpack_next(&r, &k) != MP_STR)
            return -1;
        int rc;
        if (reply && (IS(k.data, k.len, "id") || IS(k.data, k.len, "code"))) {
            if ((rc = mpack_str(&r, &v, &vn)) == 0) {
                if (k.len == 2)
                    copy_str(m->id, sizeof m->id, v, vn);
                else
                    copy_str(m->code, sizeof m->code, v, vn);
            }
        } else if (m->type == WIRE_EVENTS && IS(k.data, k.len, "events")) {
            rc = read_events(&r, on_combo, ctx);
        } else {
            rc = skip(&r, TOP_DEPTH);
        }
        if (rc < 0)
            return -1;
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

static void put_str(struct enc *e, const char *key, const char *s)
{
    enc_key(e, key);
    enc_cstr(e, s);
}

static void put_int(struct enc *e, const char *key, int64_t v)
{
    enc_key(e, key);
    enc_int(e, v);
}

/* A request of `pairs` pairs, its type and id written; the caller adds the
 * rest and finishes with done(). */
static void request(struct enc *e, int json, uint32_t pairs, const char *type, const char *id)
{
    enc_init(e, json ? FMT_JSON : FMT_MSGPACK, 128);
    enc_map(e, pairs);
    put_str(e, "type", type);
    put_str(e, "id", id);
}

static struct frame *done(struct enc *e)
{
    enc_end_map(e);
    return enc_finish(e);
}

struct frame *wire_join(int json, const char *id, const char *room)
{
    struct enc e;
    request(&e, json, 3, "join", id);
    put_str(&e, "room", room);
    return done(&e);
}

struct frame *wire_gift(int json, const char *id, const char *room, int gift, const char *combo)
{
    struct enc e;
    request(&e, json, 6, "gift", id);
    put_str(&e, "room", room);
    put_int(&e, "gift", gift);
    put_int(&e, "count", 1);
    put_str(&e, "combo", combo);
    return done(&e);
}

struct frame *wire_credit(int json, const char *id, const char *user, int64_t amount)
{
    struct enc e;
    request(&e, json, 5, "credit", id);
    put_str(&e, "user", user);
    put_int(&e, "amount", amount);
    put_str(&e, "text", "bench");
    return done(&e);
}
