/* enc.c - the msgpack/JSON writer (see enc.h). */
#include "enc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int reserve(struct enc *e, size_t more)
{
    if (e->failed)
        return -1;
    size_t need = (size_t)e->f->len + more;
    if (need <= e->f->cap)
        return 0;
    if (need > ENC_MAX_BYTES) {
        e->failed = 1;
        return -1;
    }
    size_t cap = (size_t)e->f->cap * 2;
    if (cap < need)
        cap = need;
    if (cap > ENC_MAX_BYTES)
        cap = ENC_MAX_BYTES;
    struct frame *nf = realloc(e->f, sizeof *nf + FRAME_PRE + cap);
    if (!nf) {
        e->failed = 1;
        return -1;
    }
    nf->cap = (uint32_t)cap;
    e->f = nf;
    return 0;
}

static void put(struct enc *e, const void *p, size_t n)
{
    if (reserve(e, n) < 0)
        return;
    memcpy(frame_payload(e->f) + e->f->len, p, n);
    e->f->len += (uint32_t)n;
}

static int pk_write(void *data, const char *buf, size_t len)
{
    put(data, buf, len);
    return 0;
}

void enc_init(struct enc *e, enum fmt fmt, size_t hint)
{
    memset(e, 0, sizeof *e);
    e->fmt = fmt;
    e->f = frame_new(fmt, hint < 64 ? 64 : hint);
    if (!e->f) {
        e->failed = 1;
        return;
    }
    msgpack_packer_init(&e->pk, e, pk_write);
    e->first[0] = 1;
}

/* JSON needs a comma between the elements of a container; a value that
 * follows its key needs none. */
static void json_sep(struct enc *e)
{
    if (e->after_key) {
        e->after_key = 0;
        return;
    }
    if (e->depth > 0 && !e->first[e->depth])
        put(e, ",", 1);
    e->first[e->depth] = 0;
}

static void json_open(struct enc *e, char c)
{
    json_sep(e);
    put(e, &c, 1);
    if (e->depth >= ENC_NEST_MAX) {
        e->failed = 1;
        return;
    }
    e->first[++e->depth] = 1;
}

static void json_close(struct enc *e, char c)
{
    put(e, &c, 1);
    if (e->depth > 0)
        e->depth--;
}

/* msgpack needs no separators, but its nesting is bounded as JSON's is,
 * so that a message is refused alike in both formats. */
static int mp_open(struct enc *e)
{
    if (e->depth >= ENC_NEST_MAX) {
        e->failed = 1;
        return -1;
    }
    e->depth++;
    return 0;
}

static void mp_close(struct enc *e)
{
    if (e->depth > 0)
        e->depth--;
}

/* Opens a map (`map` 1) or an array of n entries. */
static void open_container(struct enc *e, int map, uint32_t n)
{
    if (e->failed)
        return;
    if (e->fmt == FMT_JSON) {
        json_open(e, map ? '{' : '[');
        return;
    }
    if (mp_open(e) < 0)
        return;
    if (map)
        msgpack_pack_map(&e->pk, n);
    else
        msgpack_pack_array(&e->pk, n);
}

static void close_container(struct enc *e, int map)
{
    if (e->failed)
        return;
    if (e->fmt == FMT_JSON)
        json_close(e, map ? '}' : ']');
    else
        mp_close(e);
}

void enc_map(struct enc *e, uint32_t n) { open_container(e, 1, n); }
void enc_end_map(struct enc *e) { close_container(e, 1); }
void enc_array(struct enc *e, uint32_t n) { open_container(e, 0, n); }
void enc_end_array(struct enc *e) { close_container(e, 0); }

void enc_json_str(struct enc *e, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    put(e, "\"", 1);
    size_t run = 0; /* bytes that need no escaping, written in one go */
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') {
            run++;
            continue;
        }
        put(e, s + i - run, run);
        run = 0;
        char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
        switch (c) {
        case '"': put(e, "\\\"", 2); break;
        case '\\': put(e, "\\\\", 2); break;
        case '\n': put(e, "\\n", 2); break;
        case '\r': put(e, "\\r", 2); break;
        case '\t': put(e, "\\t", 2); break;
        default: put(e, esc, 6); break;
        }
    }
    put(e, s + len - run, run);
    put(e, "\"", 1);
}

void enc_key_n(struct enc *e, const char *key, size_t len)
{
    if (e->failed)
        return;
    if (e->fmt == FMT_MSGPACK) {
        msgpack_pack_str_with_body(&e->pk, key, len);
        return;
    }
    json_sep(e);
    enc_json_str(e, key, len);
    put(e, ":", 1);
    e->after_key = 1;
}

void enc_key(struct enc *e, const char *key) { enc_key_n(e, key, strlen(key)); }

void enc_str(struct enc *e, const char *s, size_t len)
{
    if (e->failed)
        return;
    if (e->fmt == FMT_MSGPACK) {
        msgpack_pack_str_with_body(&e->pk, s, len);
        return;
    }
    json_sep(e);
    enc_json_str(e, s, len);
}

void enc_cstr(struct enc *e, const char *s) { enc_str(e, s, strlen(s)); }

void enc_raw(struct enc *e, const uint8_t *p, size_t len)
{
    if (e->failed)
        return;
    if (e->fmt == FMT_JSON)
        json_sep(e);
    put(e, p, len);
}

void enc_int(struct enc *e, int64_t v)
{
    if (e->failed)
        return;
    if (e->fmt == FMT_MSGPACK) {
        msgpack_pack_int64(&e->pk, v);
        return;
    }
    /* Digits from the end, without printf (a JSON message carries several). */
    char tmp[24], *p = tmp + sizeof tmp;
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    do {
        *--p = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        *--p = '-';
    json_sep(e);
    put(e, p, (size_t)(tmp + sizeof tmp - p));
}

void enc_bool(struct enc *e, int v)
{
    if (e->failed)
        return;
    if (e->fmt == FMT_MSGPACK) {
        if (v)
            msgpack_pack_true(&e->pk);
        else
            msgpack_pack_false(&e->pk);
        return;
    }
    json_sep(e);
    if (v)
        put(e, "true", 4);
    else
        put(e, "false", 5);
}

void enc_nil(struct enc *e)
{
    if (e->failed)
        return;
    if (e->fmt == FMT_MSGPACK) {
        msgpack_pack_nil(&e->pk);
        return;
    }
    json_sep(e);
    put(e, "null", 4);
}

int enc_mpack(struct enc *e, struct mpack *m, int depth_left)
{
    struct mpack_item it;
    switch (mpack_next(m, &it)) {
    case MP_NIL: enc_nil(e); return 0;
    case MP_BOOL: enc_bool(e, (int)it.i); return 0;
    case MP_INT: enc_int(e, it.i); return 0;
    case MP_STR: enc_str(e, (const char *)it.data, (size_t)it.len); return 0;
    case MP_ARRAY:
        if (depth_left <= 0)
            break;
        enc_array(e, (uint32_t)it.len);
        for (uint64_t i = 0; i < it.len; i++)
            if (enc_mpack(e, m, depth_left - 1) < 0)
                return -1;
        enc_end_array(e);
        return 0;
    case MP_MAP:
        if (depth_left <= 0)
            break;
        enc_map(e, (uint32_t)it.len);
        for (uint64_t i = 0; i < it.len; i++) {
            const char *k;
            size_t kl;
            if (mpack_str(m, &k, &kl) < 0)
                goto bad;
            enc_key_n(e, k, kl);
            if (enc_mpack(e, m, depth_left - 1) < 0)
                return -1;
        }
        enc_end_map(e);
        return 0;
    default:
        break;
    }
bad:
    e->failed = 1;
    return -1;
}

struct frame *enc_finish(struct enc *e)
{
    struct frame *f = e->f;
    e->f = NULL;
    if (e->failed) {
        free(f);
        return NULL;
    }
    return f;
}

void enc_discard(struct enc *e)
{
    free(e->f);
    e->f = NULL;
}
