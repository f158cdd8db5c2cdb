/* proto.c - protocol v1 codec (see proto.h and docs/protocol.md). */
#include "proto.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- UTF-8 ------------------------------------------------------------ */

int proto_utf8_valid(const uint8_t *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t n;
        uint32_t cp;
        if (c >= 0xc2 && c <= 0xdf) {
            n = 1;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            n = 2;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 3;
            cp = c & 0x07;
        } else {
            return 0;
        }
        if (len - i <= n)
            return 0;
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return 0;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        /* Overlong forms, surrogates and code points past U+10FFFF. */
        if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10ffff ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += n + 1;
    }
    return 1;
}

/* ---- The msgpack reader ----------------------------------------------- */

/* A cursor over msgpack bytes. Every read checks the bytes that remain, and
 * every declared element count against them (each element takes at least one
 * byte), so no input can make the reader reserve or walk past the frame. */
struct mp {
    const uint8_t *p;
    const uint8_t *end;
};

enum mp_kind { MP_NIL, MP_BOOL, MP_INT, MP_FLOAT, MP_STR, MP_BIN, MP_ARRAY, MP_MAP, MP_EXT, MP_BAD };

static size_t mp_left(const struct mp *m) { return (size_t)(m->end - m->p); }

static uint64_t mp_be(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

/* Reads one item's header. For strings, binaries and extensions `*len` is the
 * byte length and `*data` the bytes (already bounds-checked); for arrays and
 * maps `*len` is the element count (pairs for maps); for ints `*ival`.
 * Returns MP_BAD when the bytes are truncated or not msgpack. */
static enum mp_kind mp_next(struct mp *m, uint64_t *len, const uint8_t **data, int64_t *ival)
{
    if (mp_left(m) < 1)
        return MP_BAD;
    uint8_t c = *m->p++;
    int hdr = 0; /* bytes of length/value following the type byte */
    enum mp_kind kind;
    *len = 0;
    *data = NULL;
    *ival = 0;

    if (c <= 0x7f) {
        *ival = c;
        return MP_INT;
    }
    if (c >= 0xe0) {
        *ival = (int8_t)c;
        return MP_INT;
    }
    if ((c & 0xf0) == 0x80) {
        *len = c & 0x0f;
        kind = MP_MAP;
        goto counted;
    }
    if ((c & 0xf0) == 0x90) {
        *len = c & 0x0f;
        kind = MP_ARRAY;
        goto counted;
    }
    if ((c & 0xe0) == 0xa0) {
        *len = c & 0x1f;
        kind = MP_STR;
        goto bytes;
    }
    switch (c) {
    case 0xc0: return MP_NIL;
    case 0xc2: *ival = 0; return MP_BOOL;
    case 0xc3: *ival = 1; return MP_BOOL;
    case 0xc4: hdr = 1; kind = MP_BIN; break;
    case 0xc5: hdr = 2; kind = MP_BIN; break;
    case 0xc6: hdr = 4; kind = MP_BIN; break;
    case 0xc7: hdr = 1; kind = MP_EXT; break;
    case 0xc8: hdr = 2; kind = MP_EXT; break;
    case 0xc9: hdr = 4; kind = MP_EXT; break;
    case 0xca: case 0xcb: {
        int n = c == 0xca ? 4 : 8;
        if (mp_left(m) < (size_t)n)
            return MP_BAD;
        m->p += n;
        return MP_FLOAT;
    }
    case 0xcc: case 0xcd: case 0xce: case 0xcf: {
        int n = 1 << (c - 0xcc);
        if (mp_left(m) < (size_t)n)
            return MP_BAD;
        uint64_t v = mp_be(m->p, n);
        m->p += n;
        if (v > INT64_MAX)
            return MP_FLOAT; /* no protocol field is that large: a type error */
        *ival = (int64_t)v;
        return MP_INT;
    }
    case 0xd0: case 0xd1: case 0xd2: case 0xd3: {
        int n = 1 << (c - 0xd0);
        if (mp_left(m) < (size_t)n)
            return MP_BAD;
        uint64_t v = mp_be(m->p, n);
        m->p += n;
        if (n == 1) *ival = (int8_t)v;
        else if (n == 2) *ival = (int16_t)v;
        else if (n == 4) *ival = (int32_t)v;
        else *ival = (int64_t)v;
        return MP_INT;
    }
    case 0xd4: case 0xd5: case 0xd6: case 0xd7: case 0xd8: {
        size_t n = (size_t)1 + ((size_t)1 << (c - 0xd4)); /* type byte + data */
        if (mp_left(m) < n)
            return MP_BAD;
        m->p += n;
        return MP_EXT;
    }
    case 0xd9: hdr = 1; kind = MP_STR; break;
    case 0xda: hdr = 2; kind = MP_STR; break;
    case 0xdb: hdr = 4; kind = MP_STR; break;
    case 0xdc: hdr = 2; kind = MP_ARRAY; break;
    case 0xdd: hdr = 4; kind = MP_ARRAY; break;
    case 0xde: hdr = 2; kind = MP_MAP; break;
    case 0xdf: hdr = 4; kind = MP_MAP; break;
    default: return MP_BAD; /* 0xc1 is never used */
    }
    if (mp_left(m) < (size_t)hdr)
        return MP_BAD;
    *len = mp_be(m->p, hdr);
    m->p += hdr;
    if (kind == MP_ARRAY || kind == MP_MAP)
        goto counted;
    if (kind == MP_EXT) {
        if (mp_left(m) < 1)
            return MP_BAD;
        m->p++; /* the extension's type byte */
    }
bytes:
    if (*len > mp_left(m))
        return MP_BAD;
    *data = m->p;
    m->p += *len;
    return kind;
counted:
    /* Each element takes at least one byte, each map pair two. */
    if (*len > mp_left(m) / (kind == MP_MAP ? 2 : 1))
        return MP_BAD;
    return kind;
}

/* Skips one complete item. Returns 0, or -1 on bad bytes or nesting deeper
 * than PROTO_DEPTH_MAX. Iterative in the element count, recursive in depth,
 * so the stack is bounded by PROTO_DEPTH_MAX frames. */
static int mp_skip(struct mp *m, int depth)
{
    uint64_t len;
    const uint8_t *data;
    int64_t iv;
    enum mp_kind k = mp_next(m, &len, &data, &iv);
    if (k == MP_BAD)
        return -1;
    if (k != MP_ARRAY && k != MP_MAP)
        return 0;
    if (depth >= PROTO_DEPTH_MAX)
        return -1;
    uint64_t items = k == MP_MAP ? len * 2 : len;
    for (uint64_t i = 0; i < items; i++)
        if (mp_skip(m, depth + 1) < 0)
            return -1;
    return 0;
}

/* ---- Requests ---------------------------------------------------------- */

static int fail(struct proto_error *err, const char *code, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(struct proto_error *err, const char *code, const char *field, const char *fmt, ...)
{
    va_list ap;
    err->code = code;
    err->field = field;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    return -1;
}

/* One field of a request, whichever the format it came in. */
enum fval_kind { FV_ABSENT, FV_STR, FV_INT, FV_OTHER };
struct fval {
    enum fval_kind kind;
    const char *s;
    size_t len;
    int64_t i;
};

enum field_id {
    F_TYPE, F_ID, F_ROOM, F_TEXT, F_TOKEN, F_AFTER_SEQ, F_GIFT, F_CNT, F_AMOUNT, F_COMBO, F_USER,
    F_COUNT
};
static const char *const field_names[F_COUNT] = {"type", "id", "room", "text", "token", "after_seq",
                                                 "gift", "count", "amount", "combo", "user"};

static int field_lookup(const char *key, size_t len)
{
    for (int f = 0; f < F_COUNT; f++)
        if (strlen(field_names[f]) == len && memcmp(field_names[f], key, len) == 0)
            return f;
    return -1;
}

static int decode_msgpack(const uint8_t *buf, size_t len, struct fval *fv, struct proto_error *err)
{
    struct mp m = {buf, buf + len};
    uint64_t n;
    const uint8_t *data;
    int64_t iv;
    if (mp_next(&m, &n, &data, &iv) != MP_MAP)
        return fail(err, "bad_message", NULL, "a message must be one msgpack map");
    for (uint64_t i = 0; i < n; i++) {
        uint64_t klen;
        const uint8_t *key;
        if (mp_next(&m, &klen, &key, &iv) != MP_STR)
            return fail(err, "bad_message", NULL, "map keys must be strings");
        int f = field_lookup((const char *)key, klen);
        if (f < 0) {
            if (mp_skip(&m, 1) < 0)
                return fail(err, "bad_message", NULL, "malformed or too deeply nested value");
            continue;
        }
        const uint8_t *save = m.p;
        uint64_t vlen;
        const uint8_t *vdata;
        enum mp_kind k = mp_next(&m, &vlen, &vdata, &iv);
        if (k == MP_BAD)
            return fail(err, "bad_message", NULL, "truncated or malformed msgpack");
        if (k == MP_STR) {
            fv[f] = (struct fval){FV_STR, (const char *)vdata, vlen, 0};
        } else if (k == MP_INT) {
            fv[f] = (struct fval){FV_INT, NULL, 0, iv};
        } else {
            m.p = save;
            if (mp_skip(&m, 1) < 0)
                return fail(err, "bad_message", NULL, "malformed or too deeply nested value");
            fv[f] = (struct fval){FV_OTHER, NULL, 0, 0};
        }
    }
    if (m.p != m.end)
        return fail(err, "bad_message", NULL, "trailing bytes after the message");
    return 0;
}

static int json_depth_ok(json_t *v, int depth)
{
    if (depth > PROTO_DEPTH_MAX)
        return 0;
    if (json_is_object(v)) {
        const char *k;
        json_t *c;
        json_object_foreach(v, k, c)
            if (!json_depth_ok(c, depth + 1))
                return 0;
    } else if (json_is_array(v)) {
        size_t i;
        json_t *c;
        json_array_foreach(v, i, c)
            if (!json_depth_ok(c, depth + 1))
                return 0;
    }
    return 1;
}

static int decode_json(const uint8_t *buf, size_t len, struct request *req, struct fval *fv,
                       struct proto_error *err)
{
    json_error_t jerr;
    json_t *root = json_loadb((const char *)buf, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
    if (!root)
        return fail(err, "bad_message", NULL, "invalid JSON: %s", jerr.text);
    if (!json_is_object(root)) {
        json_decref(root);
        return fail(err, "bad_message", NULL, "a message must be one JSON object");
    }
    if (!json_depth_ok(root, 1)) {
        json_decref(root);
        return fail(err, "bad_message", NULL, "nested deeper than %d levels", PROTO_DEPTH_MAX);
    }
    req->json = root;
    for (int f = 0; f < F_COUNT; f++) {
        json_t *v = json_object_get(root, field_names[f]);
        if (!v)
            continue;
        if (json_is_string(v))
            fv[f] = (struct fval){FV_STR, json_string_value(v), json_string_length(v), 0};
        else if (json_is_integer(v))
            fv[f] = (struct fval){FV_INT, NULL, 0, json_integer_value(v)};
        else
            fv[f] = (struct fval){FV_OTHER, NULL, 0, 0};
    }
    return 0;
}

#define BIT(f) (1u << (f))

static const struct {
    const char *name;
    enum req_type type;
    uint16_t needs;    /* bit per field_id that the request requires */
    uint16_t optional; /* fields it reads when present */
} req_types[] = {
    {"auth", REQ_AUTH, BIT(F_TOKEN), 0},
    {"ping", REQ_PING, 0, 0},
    {"join", REQ_JOIN, BIT(F_ROOM), 0},
    {"leave", REQ_LEAVE, BIT(F_ROOM), 0},
    {"notice", REQ_NOTICE, BIT(F_ROOM) | BIT(F_TEXT), 0},
    {"history", REQ_HISTORY, BIT(F_ROOM) | BIT(F_AFTER_SEQ), 0},
    {"catalog", REQ_CATALOG, 0, 0},
    {"gift", REQ_GIFT, BIT(F_ROOM) | BIT(F_GIFT), BIT(F_CNT) | BIT(F_COMBO)},
    {"tip", REQ_TIP, BIT(F_ROOM) | BIT(F_AMOUNT), BIT(F_TEXT)},
    {"balance", REQ_BALANCE, 0, 0},
    {"credit", REQ_CREDIT, BIT(F_USER) | BIT(F_AMOUNT), BIT(F_TEXT)},
    {"leaderboard", REQ_LEADERBOARD, BIT(F_ROOM), 0},
};

static int need_str(const struct fval *fv, int f, struct proto_error *err)
{
    if (fv[f].kind == FV_ABSENT)
        return fail(err, "bad_field", field_names[f], "'%s' is required", field_names[f]);
    if (fv[f].kind != FV_STR)
        return fail(err, "bad_field", field_names[f], "'%s' must be a string", field_names[f]);
    return 0;
}

static int check_fields(const struct fval *fv, struct request *req, struct proto_error *err)
{
    /* The id first, so that every later error can name it. */
    if (need_str(fv, F_ID, err) < 0)
        return -1;
    if (fv[F_ID].len < 1 || fv[F_ID].len > PROTO_REQ_ID_MAX ||
        !proto_utf8_valid((const uint8_t *)fv[F_ID].s, fv[F_ID].len) ||
        memchr(fv[F_ID].s, '\0', fv[F_ID].len))
        return fail(err, "bad_field", "id", "'id' must be 1..%d bytes of UTF-8 text", PROTO_REQ_ID_MAX);
    memcpy(req->id, fv[F_ID].s, fv[F_ID].len);
    req->id[fv[F_ID].len] = '\0';
    memcpy(err->id, req->id, fv[F_ID].len + 1);

    if (need_str(fv, F_TYPE, err) < 0)
        return -1;
    size_t t;
    for (t = 0; t < sizeof req_types / sizeof req_types[0]; t++)
        if (strlen(req_types[t].name) == fv[F_TYPE].len &&
            memcmp(req_types[t].name, fv[F_TYPE].s, fv[F_TYPE].len) == 0)
            break;
    if (t == sizeof req_types / sizeof req_types[0])
        return fail(err, "unknown_type", "type", "unknown message type");
    req->type = req_types[t].type;
    uint16_t needs = req_types[t].needs, optional = req_types[t].optional;
    /* Whether field f is to be checked: required, or optional and given. */
#define WANTS(f) ((needs & BIT(f)) || ((optional & BIT(f)) && fv[f].kind != FV_ABSENT))

    if (WANTS(F_ROOM)) {
        if (need_str(fv, F_ROOM, err) < 0)
            return -1;
        if (!id_valid(fv[F_ROOM].s, fv[F_ROOM].len))
            return fail(err, "bad_field", "room", "'room' must be 1..%d bytes of [A-Za-z0-9_.-]", ID_MAX);
        memcpy(req->room, fv[F_ROOM].s, fv[F_ROOM].len);
        req->room[fv[F_ROOM].len] = '\0';
    }
    if (WANTS(F_USER)) {
        if (need_str(fv, F_USER, err) < 0)
            return -1;
        if (!id_valid(fv[F_USER].s, fv[F_USER].len))
            return fail(err, "bad_field", "user", "'user' must be 1..%d bytes of [A-Za-z0-9_.-]", ID_MAX);
        memcpy(req->user, fv[F_USER].s, fv[F_USER].len);
        req->user[fv[F_USER].len] = '\0';
    }
    if (WANTS(F_TEXT)) {
        /* A notice says something; a tip's or credit's message may be empty. */
        size_t min = req->type == REQ_NOTICE ? 1 : 0;
        size_t max = req->type == REQ_NOTICE ? PROTO_TEXT_MAX : PROTO_TIP_TEXT_MAX;
        if (need_str(fv, F_TEXT, err) < 0)
            return -1;
        if (fv[F_TEXT].len < min || fv[F_TEXT].len > max ||
            !proto_utf8_valid((const uint8_t *)fv[F_TEXT].s, fv[F_TEXT].len))
            return fail(err, "bad_field", "text", "'text' must be %zu..%zu bytes of UTF-8 text", min, max);
        req->text = fv[F_TEXT].s;
        req->text_len = fv[F_TEXT].len;
    }
    if (WANTS(F_TOKEN)) {
        if (need_str(fv, F_TOKEN, err) < 0)
            return -1;
        req->token = fv[F_TOKEN].s;
        req->token_len = fv[F_TOKEN].len;
    }
    if (WANTS(F_AFTER_SEQ)) {
        if (fv[F_AFTER_SEQ].kind != FV_INT || fv[F_AFTER_SEQ].i < 0)
            return fail(err, "bad_field", "after_seq", "'after_seq' must be an integer >= 0");
        req->after_seq = fv[F_AFTER_SEQ].i;
    }
    if (WANTS(F_GIFT)) {
        if (fv[F_GIFT].kind != FV_INT || fv[F_GIFT].i < 1 || fv[F_GIFT].i > INT32_MAX)
            return fail(err, "bad_field", "gift", "'gift' must be a gift id (a positive integer)");
        req->gift = fv[F_GIFT].i;
    }
    req->count = 1;
    if (WANTS(F_CNT)) {
        /* The upper bound is a setting, checked by the wallet. */
        if (fv[F_CNT].kind != FV_INT || fv[F_CNT].i < 1)
            return fail(err, "bad_field", "count", "'count' must be an integer >= 1");
        req->count = fv[F_CNT].i;
    }
    if (WANTS(F_AMOUNT)) {
        if (fv[F_AMOUNT].kind != FV_INT || fv[F_AMOUNT].i < 1 || fv[F_AMOUNT].i > PROTO_AMOUNT_MAX)
            return fail(err, "bad_field", "amount", "'amount' must be an integer of coins, 1..%lld",
                        (long long)PROTO_AMOUNT_MAX);
        req->amount = fv[F_AMOUNT].i;
    }
    if (WANTS(F_COMBO)) {
        if (need_str(fv, F_COMBO, err) < 0)
            return -1;
        if (fv[F_COMBO].len > PROTO_COMBO_MAX || !id_valid(fv[F_COMBO].s, fv[F_COMBO].len))
            return fail(err, "bad_field", "combo", "'combo' must be 1..%d bytes of [A-Za-z0-9_.-]",
                        PROTO_COMBO_MAX);
        memcpy(req->combo, fv[F_COMBO].s, fv[F_COMBO].len);
        req->combo[fv[F_COMBO].len] = '\0';
    }
#undef WANTS
    return 0;
}

int proto_decode(enum fmt fmt, const uint8_t *buf, size_t len, struct request *req,
                 struct proto_error *err)
{
    struct fval fv[F_COUNT];
    memset(fv, 0, sizeof fv);
    memset(req, 0, sizeof *req);
    err->code = NULL;
    err->field = NULL;
    err->id[0] = '\0';
    err->message[0] = '\0';

    int rc = fmt == FMT_MSGPACK ? decode_msgpack(buf, len, fv, err) : decode_json(buf, len, req, fv, err);
    if (rc == 0)
        rc = check_fields(fv, req, err);
    if (rc < 0)
        proto_request_release(req);
    return rc;
}

void proto_request_release(struct request *req)
{
    if (req->json)
        json_decref(req->json);
    req->json = NULL;
}

/* ---- Frames and the writer --------------------------------------------- */

void frame_unref(struct frame *f)
{
    if (!f)
        return;
    assert(f->refs > 0);
    if (--f->refs == 0)
        free(f);
}

size_t frame_wire(struct frame *f, uint8_t **start)
{
    uint8_t *p = f->data + PROTO_PRE;
    size_t n = f->len, h;
    if (f->wire) {
        *start = p;
        return n;
    }
    if (n < 126) {
        h = 2;
        p[-1] = (uint8_t)n;
    } else if (n <= 0xffff) {
        h = 4;
        p[-3] = 126;
        p[-2] = (uint8_t)(n >> 8);
        p[-1] = (uint8_t)n;
    } else {
        h = 10;
        p[-9] = 127;
        for (int i = 0; i < 8; i++)
            p[-8 + i] = (uint8_t)((uint64_t)n >> (56 - 8 * i));
    }
    p[-(ptrdiff_t)h] = f->fmt == FMT_MSGPACK ? 0x82 : 0x81;
    *start = p - h;
    return n + h;
}

struct frame *frame_join(struct frame *a, struct frame *b)
{
    uint8_t *pa, *pb;
    size_t na = frame_wire(a, &pa), nb = frame_wire(b, &pb);
    struct frame *f = malloc(sizeof *f + PROTO_PRE + na + nb);
    if (!f)
        return NULL;
    f->refs = 1;
    f->fmt = a->fmt;
    f->wire = 1;
    f->len = f->cap = (uint32_t)(na + nb);
    memcpy(f->data + PROTO_PRE, pa, na);
    memcpy(f->data + PROTO_PRE + na, pb, nb);
    return f;
}

static int enc_reserve(struct enc *e, size_t more)
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
    size_t cap = e->f->cap * 2;
    if (cap < need)
        cap = need;
    if (cap > ENC_MAX_BYTES)
        cap = ENC_MAX_BYTES;
    struct frame *nf = realloc(e->f, sizeof *nf + PROTO_PRE + cap);
    if (!nf) {
        e->failed = 1;
        return -1;
    }
    nf->cap = (uint32_t)cap;
    e->f = nf;
    return 0;
}

static void enc_put(struct enc *e, const void *p, size_t n)
{
    if (enc_reserve(e, n) < 0)
        return;
    memcpy(e->f->data + PROTO_PRE + e->f->len, p, n);
    e->f->len += (uint32_t)n;
}

static int enc_pk_write(void *data, const char *buf, size_t len)
{
    enc_put(data, buf, len);
    return 0;
}

void enc_init(struct enc *e, enum fmt fmt, size_t hint)
{
    memset(e, 0, sizeof *e);
    e->fmt = fmt;
    if (hint < 64)
        hint = 64;
    e->f = malloc(sizeof *e->f + PROTO_PRE + hint);
    if (!e->f) {
        e->failed = 1;
        return;
    }
    e->f->refs = 1;
    e->f->fmt = (uint8_t)fmt;
    e->f->wire = 0;
    e->f->len = 0;
    e->f->cap = (uint32_t)hint;
    msgpack_packer_init(&e->pk, e, enc_pk_write);
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
        enc_put(e, ",", 1);
    e->first[e->depth] = 0;
}

static void json_open(struct enc *e, char c)
{
    json_sep(e);
    enc_put(e, &c, 1);
    if (e->depth >= PROTO_DEPTH_MAX + 1) {
        e->failed = 1;
        return;
    }
    e->first[++e->depth] = 1;
}

static void json_close(struct enc *e, char c)
{
    enc_put(e, &c, 1);
    if (e->depth > 0)
        e->depth--;
}

void enc_map(struct enc *e, uint32_t n)
{
    if (e->failed)
        return;
    if (e->fmt == FMT_MSGPACK)
        msgpack_pack_map(&e->pk, n);
    else
        json_open(e, '{');
}

void enc_end_map(struct enc *e)
{
    if (e->fmt == FMT_JSON && !e->failed)
        json_close(e, '}');
}

void enc_array(struct enc *e, uint32_t n)
{
    if (e->failed)
        return;
    if (e->fmt == FMT_MSGPACK)
        msgpack_pack_array(&e->pk, n);
    else
        json_open(e, '[');
}

void enc_end_array(struct enc *e)
{
    if (e->fmt == FMT_JSON && !e->failed)
        json_close(e, ']');
}

static void json_str(struct enc *e, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    enc_put(e, "\"", 1);
    size_t run = 0; /* bytes that need no escaping, written in one go */
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') {
            run++;
            continue;
        }
        enc_put(e, s + i - run, run);
        run = 0;
        char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
        switch (c) {
        case '"': enc_put(e, "\\\"", 2); break;
        case '\\': enc_put(e, "\\\\", 2); break;
        case '\n': enc_put(e, "\\n", 2); break;
        case '\r': enc_put(e, "\\r", 2); break;
        case '\t': enc_put(e, "\\t", 2); break;
        default: enc_put(e, esc, 6); break;
        }
    }
    enc_put(e, s + len - run, run);
    enc_put(e, "\"", 1);
}

void enc_key(struct enc *e, const char *key)
{
    if (e->failed)
        return;
    size_t len = strlen(key);
    if (e->fmt == FMT_MSGPACK) {
        msgpack_pack_str_with_body(&e->pk, key, len);
        return;
    }
    json_sep(e);
    json_str(e, key, len);
    enc_put(e, ":", 1);
    e->after_key = 1;
}

void enc_str(struct enc *e, const char *s, size_t len)
{
    if (e->failed)
        return;
    if (e->fmt == FMT_MSGPACK) {
        msgpack_pack_str_with_body(&e->pk, s, len);
        return;
    }
    json_sep(e);
    json_str(e, s, len);
}

void enc_cstr(struct enc *e, const char *s) { enc_str(e, s, strlen(s)); }

void enc_raw(struct enc *e, const uint8_t *p, size_t len)
{
    if (e->failed)
        return;
    if (e->fmt == FMT_JSON)
        json_sep(e);
    enc_put(e, p, len);
}

void enc_int(struct enc *e, int64_t v)
{
    if (e->failed)
        return;
    if (e->fmt == FMT_MSGPACK) {
        msgpack_pack_int64(&e->pk, v);
        return;
    }
    char tmp[24];
    int n = snprintf(tmp, sizeof tmp, "%lld", (long long)v);
    json_sep(e);
    enc_put(e, tmp, (size_t)n);
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
        enc_put(e, "true", 4);
    else
        enc_put(e, "false", 5);
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
    enc_put(e, "null", 4);
}

/* Re-emits one msgpack item through the writer, which turns it into JSON
 * when the writer is a JSON one. Only what event bodies hold is accepted:
 * nil, booleans, integers, strings, arrays and maps with string keys. */
static int enc_copy_item(struct enc *e, struct mp *m, int depth)
{
    uint64_t len;
    const uint8_t *data;
    int64_t iv;
    switch (mp_next(m, &len, &data, &iv)) {
    case MP_NIL: enc_nil(e); return 0;
    case MP_BOOL: enc_bool(e, (int)iv); return 0;
    case MP_INT: enc_int(e, iv); return 0;
    case MP_STR: enc_str(e, (const char *)data, len); return 0;
    case MP_ARRAY:
        if (depth >= PROTO_DEPTH_MAX)
            return -1;
        enc_array(e, (uint32_t)len);
        for (uint64_t i = 0; i < len; i++)
            if (enc_copy_item(e, m, depth + 1) < 0)
                return -1;
        enc_end_array(e);
        return 0;
    case MP_MAP:
        if (depth >= PROTO_DEPTH_MAX)
            return -1;
        enc_map(e, (uint32_t)len);
        for (uint64_t i = 0; i < len; i++) {
            uint64_t klen;
            const uint8_t *key;
            if (mp_next(m, &klen, &key, &iv) != MP_STR)
                return -1;
            if (e->fmt == FMT_JSON) {
                json_sep(e);
                json_str(e, (const char *)key, klen);
                enc_put(e, ":", 1);
                e->after_key = 1;
            } else {
                msgpack_pack_str_with_body(&e->pk, key, klen);
            }
            if (enc_copy_item(e, m, depth + 1) < 0)
                return -1;
        }
        enc_end_map(e);
        return 0;
    default:
        return -1;
    }
}

int enc_event(struct enc *e, const char *room, int64_t seq, const uint8_t *body, size_t body_len)
{
    struct mp m = {body, body + body_len};
    uint64_t n;
    const uint8_t *data;
    int64_t iv;
    if (mp_next(&m, &n, &data, &iv) != MP_MAP || n > 32) {
        e->failed = 1;
        return -1;
    }
    enc_map(e, (uint32_t)(3 + n));
    enc_key(e, "type");
    enc_cstr(e, "event");
    enc_key(e, "room");
    enc_cstr(e, room);
    enc_key(e, "seq");
    enc_int(e, seq);
    if (e->fmt == FMT_MSGPACK) {
        /* The body's pairs are already msgpack: splice them in unchanged,
         * after checking that they are well formed. */
        struct mp check = m;
        for (uint64_t i = 0; i < n * 2; i++)
            if (mp_skip(&check, 1) < 0 || (check.p > check.end)) {
                e->failed = 1;
                return -1;
            }
        enc_put(e, m.p, (size_t)(check.p - m.p));
    } else {
        for (uint64_t i = 0; i < n; i++) {
            uint64_t klen;
            const uint8_t *key;
            if (mp_next(&m, &klen, &key, &iv) != MP_STR) {
                e->failed = 1;
                return -1;
            }
            json_sep(e);
            json_str(e, (const char *)key, klen);
            enc_put(e, ":", 1);
            e->after_key = 1;
            if (enc_copy_item(e, &m, 1) < 0) {
                e->failed = 1;
                return -1;
            }
        }
    }
    enc_end_map(e);
    return e->failed ? -1 : 0;
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

/* ---- Messages ---------------------------------------------------------- */

struct frame *proto_error_frame(enum fmt fmt, const char *id, const char *code,
                                const char *message, const char *field,
                                const char *extra_key, int64_t extra_val)
{
    struct enc e;
    int has_id = id && id[0];
    enc_init(&e, fmt, 128 + strlen(message));
    enc_map(&e, (uint32_t)(3 + has_id + (field != NULL) + (extra_key != NULL)));
    enc_key(&e, "type");
    enc_cstr(&e, "error");
    if (has_id) {
        enc_key(&e, "id");
        enc_cstr(&e, id);
    }
    enc_key(&e, "code");
    enc_cstr(&e, code);
    enc_key(&e, "message");
    enc_cstr(&e, message);
    if (field) {
        enc_key(&e, "field");
        enc_cstr(&e, field);
    }
    if (extra_key) {
        enc_key(&e, extra_key);
        enc_int(&e, extra_val);
    }
    enc_end_map(&e);
    return enc_finish(&e);
}

struct buf_writer {
    uint8_t *p;
    size_t len, cap;
    int overflow;
};

static int buf_write(void *data, const char *s, size_t len)
{
    struct buf_writer *w = data;
    if (w->overflow || len > w->cap - w->len) {
        w->overflow = 1;
        return -1;
    }
    memcpy(w->p + w->len, s, len);
    w->len += len;
    return 0;
}

int proto_event_body(uint8_t *out, size_t cap, const char *kind, const char *from,
                     enum role role, const char *text, size_t text_len, int64_t ts_ms)
{
    struct buf_writer w = {out, 0, cap, 0};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &w, buf_write);
    const char *rn = role_name(role);
    msgpack_pack_map(&pk, 5);
    msgpack_pack_str_with_body(&pk, "kind", 4);
    msgpack_pack_str_with_body(&pk, kind, strlen(kind));
    msgpack_pack_str_with_body(&pk, "from", 4);
    msgpack_pack_str_with_body(&pk, from, strlen(from));
    msgpack_pack_str_with_body(&pk, "role", 4);
    msgpack_pack_str_with_body(&pk, rn, strlen(rn));
    msgpack_pack_str_with_body(&pk, "text", 4);
    msgpack_pack_str_with_body(&pk, text, text_len);
    msgpack_pack_str_with_body(&pk, "ts", 2);
    msgpack_pack_int64(&pk, ts_ms);
    return w.overflow ? -1 : (int)w.len;
}

struct frame *proto_batch_frame(enum fmt fmt, const char *room, struct frame *const *events, int n)
{
    size_t bytes = 64;
    for (int i = 0; i < n; i++)
        bytes += events[i]->len + 1;
    struct enc e;
    enc_init(&e, fmt, bytes);
    enc_map(&e, 3);
    enc_key(&e, "type");
    enc_cstr(&e, "events");
    enc_key(&e, "room");
    enc_cstr(&e, room);
    enc_key(&e, "events");
    enc_array(&e, (uint32_t)n);
    for (int i = 0; i < n; i++)
        enc_raw(&e, events[i]->data + PROTO_PRE, events[i]->len);
    enc_end_array(&e);
    enc_end_map(&e);
    return enc_finish(&e);
}

struct frame *proto_event_frame(enum fmt fmt, const char *room, int64_t seq,
                                const uint8_t *body, size_t body_len)
{
    struct enc e;
    enc_init(&e, fmt, 64 + body_len * 2);
    if (enc_event(&e, room, seq, body, body_len) < 0) {
        enc_discard(&e);
        return NULL;
    }
    return enc_finish(&e);
}
