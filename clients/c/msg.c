/* msg.c - reading the server's msgpack maps: key lookup, typed accessors,
 * and a JSON rendering for tools (the CLI's --json). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "libtipcast.h"

tc_msg tc_msg_get(const tc_msg *m, const char *key)
{
    tc_msg none = {NULL};
    if (!m || !m->obj || m->obj->type != MSGPACK_OBJECT_MAP)
        return none;
    size_t klen = strlen(key);
    const msgpack_object_map *map = &m->obj->via.map;
    for (uint32_t i = 0; i < map->size; i++) {
        const msgpack_object *k = &map->ptr[i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == klen && memcmp(k->via.str.ptr, key, klen) == 0) {
            tc_msg v = {&map->ptr[i].val};
            return v;
        }
    }
    return none;
}

int tc_msg_ok(tc_msg m)
{
    return m.obj != NULL;
}

const char *tc_msg_str(const tc_msg *m, const char *key, size_t *len)
{
    tc_msg v = tc_msg_get(m, key);
    if (!v.obj || v.obj->type != MSGPACK_OBJECT_STR)
        return NULL;
    if (len)
        *len = v.obj->via.str.size;
    /* An empty string still reads as present: point at something non-NULL. */
    return v.obj->via.str.ptr ? v.obj->via.str.ptr : "";
}

const char *tc_msg_strcpy(const tc_msg *m, const char *key, char *out, size_t out_len)
{
    size_t n = 0;
    const char *s = tc_msg_str(m, key, &n);
    if (!out_len)
        return out;
    if (!s)
        n = 0;
    if (n >= out_len)
        n = out_len - 1;
    if (n)
        memcpy(out, s, n);
    out[n] = '\0';
    return out;
}

int tc_msg_int(const tc_msg *m, const char *key, int64_t *out)
{
    tc_msg v = tc_msg_get(m, key);
    if (!v.obj)
        return 0;
    if (v.obj->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
        if (v.obj->via.u64 > (uint64_t)INT64_MAX)
            return 0;
        *out = (int64_t)v.obj->via.u64;
        return 1;
    }
    if (v.obj->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        *out = v.obj->via.i64;
        return 1;
    }
    return 0;
}

int64_t tc_msg_int_or(const tc_msg *m, const char *key, int64_t dflt)
{
    int64_t v;
    return tc_msg_int(m, key, &v) ? v : dflt;
}

int tc_msg_is(const tc_msg *m, const char *key, const char *s)
{
    size_t n = 0;
    const char *v = tc_msg_str(m, key, &n);
    return v && n == strlen(s) && memcmp(v, s, n) == 0;
}

size_t tc_msg_len(tc_msg m)
{
    return m.obj && m.obj->type == MSGPACK_OBJECT_ARRAY ? m.obj->via.array.size : 0;
}

tc_msg tc_msg_at(tc_msg m, size_t i)
{
    tc_msg v = {NULL};
    if (i < tc_msg_len(m))
        v.obj = &m.obj->via.array.ptr[i];
    return v;
}

/* ---- JSON -------------------------------------------------------------------- */

struct sb {
    char *p;
    size_t len, cap;
    int oom;
};

static void sb_put(struct sb *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_str(struct sb *b, const char *s)
{
    sb_put(b, s, strlen(s));
}

/* A JSON string. The server's strings are valid UTF-8 (it checks them), so
 * only the characters JSON requires are escaped; other bytes pass as they are. */
static void json_string(struct sb *b, const char *s, size_t n)
{
    sb_put(b, "\"", 1);
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch >= 0x20 && ch != '"' && ch != '\\')
            continue;
        sb_put(b, s + run, i - run);
        run = i + 1;
        char esc[8];
        switch (ch) {
        case '"': sb_str(b, "\\\""); break;
        case '\\': sb_str(b, "\\\\"); break;
        case '\n': sb_str(b, "\\n"); break;
        case '\r': sb_str(b, "\\r"); break;
        case '\t': sb_str(b, "\\t"); break;
        default:
            snprintf(esc, sizeof esc, "\\u%04x", ch);
            sb_str(b, esc);
        }
    }
    sb_put(b, s + run, n - run);
    sb_put(b, "\"", 1);
}

static void json_base64(struct sb *b, const char *s, size_t n)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    sb_put(b, "\"", 1);
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)(unsigned char)s[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)(unsigned char)s[i + 1] << 8;
        if (i + 2 < n)
            v |= (unsigned char)s[i + 2];
        char q[4] = {tab[v >> 18 & 63], tab[v >> 12 & 63], i + 1 < n ? tab[v >> 6 & 63] : '=',
                     i + 2 < n ? tab[v & 63] : '='};
        sb_put(b, q, 4);
    }
    sb_put(b, "\"", 1);
}

static void json_value(struct sb *b, const msgpack_object *o, int depth)
{
    char num[64];
    if (depth > 64) { /* deeper than any message of the protocol: cut rather than recurse on */
        sb_str(b, "null");
        return;
    }
    switch (o->type) {
    case MSGPACK_OBJECT_NIL: sb_str(b, "null"); break;
    case MSGPACK_OBJECT_BOOLEAN: sb_str(b, o->via.boolean ? "true" : "false"); break;
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        snprintf(num, sizeof num, "%llu", (unsigned long long)o->via.u64);
        sb_str(b, num);
        break;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        snprintf(num, sizeof num, "%lld", (long long)o->via.i64);
        sb_str(b, num);
        break;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        if (o->via.f64 != o->via.f64 || o->via.f64 > 1e308 || o->via.f64 < -1e308) {
            sb_str(b, "null"); /* NaN and infinities have no JSON form */
        } else {
            snprintf(num, sizeof num, "%.17g", o->via.f64);
            sb_str(b, num);
        }
        break;
    case MSGPACK_OBJECT_STR: json_string(b, o->via.str.ptr, o->via.str.size); break;
    case MSGPACK_OBJECT_BIN: json_base64(b, o->via.bin.ptr, o->via.bin.size); break;
    case MSGPACK_OBJECT_EXT: json_base64(b, o->via.ext.ptr, o->via.ext.size); break;
    case MSGPACK_OBJECT_ARRAY:
        sb_put(b, "[", 1);
        for (uint32_t i = 0; i < o->via.array.size; i++) {
            if (i)
                sb_put(b, ",", 1);
            json_value(b, &o->via.array.ptr[i], depth + 1);
        }
        sb_put(b, "]", 1);
        break;
    case MSGPACK_OBJECT_MAP:
        sb_put(b, "{", 1);
        for (uint32_t i = 0; i < o->via.map.size; i++) {
            const msgpack_object *k = &o->via.map.ptr[i].key;
            if (i)
                sb_put(b, ",", 1);
            if (k->type == MSGPACK_OBJECT_STR) {
                json_string(b, k->via.str.ptr, k->via.str.size);
            } else { /* JSON keys are strings: render the key, then quote it */
                struct sb kb = {0};
                json_value(&kb, k, depth + 1);
                json_string(b, kb.p ? kb.p : "", kb.len);
                b->oom |= kb.oom;
                free(kb.p);
            }
            sb_put(b, ":", 1);
            json_value(b, &o->via.map.ptr[i].val, depth + 1);
        }
        sb_put(b, "}", 1);
        break;
    default: sb_str(b, "null");
    }
}

char *tc_msg_json(const tc_msg *m)
{
    if (!m || !m->obj)
        return NULL;
    struct sb b = {0};
    json_value(&b, m->obj, 0);
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    return b.p;
}

int tc_frame_decode(const void *data, size_t len, tc_frame *out)
{
    size_t off = 0;
    msgpack_unpacked_init(&out->up);
    out->msg.obj = NULL;
    if (msgpack_unpack_next(&out->up, data, len, &off) != MSGPACK_UNPACK_SUCCESS || off != len ||
        out->up.data.type != MSGPACK_OBJECT_MAP) {
        msgpack_unpacked_destroy(&out->up);
        return -1;
    }
    out->msg.obj = &out->up.data;
    return 0;
}

void tc_frame_release(tc_frame *f)
{
    msgpack_unpacked_destroy(&f->up);
    f->msg.obj = NULL;
}
