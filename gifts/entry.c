/* entry.c - the one parser of outbox entries (see entry.h). */
#include "entry.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jwt.h"
#include "log.h"
#include "utf8.h"

enum field { F_K, F_U, F_R, F_G, F_GN, F_AN, F_N, F_P, F_A, F_B, F_M, F_T, F_Q, F_TS, F_RO, F_X, F_OTS, F_IP, F_DV,
             F_COUNT };
static const char *const field_names[F_COUNT] = {"k", "u", "r", "g", "gn", "an", "n", "p", "a", "b",
                                                 "m", "t", "q", "ts", "ro", "x", "ots", "ip", "dv"};

/* The lengths of the names, so that a field is found without strlen. */
static const uint8_t field_lens[F_COUNT] = {1, 1, 1, 1, 2, 2, 1, 1, 1, 1, 1, 1, 1, 2, 2, 1, 3, 2, 2};

/* The field named s[0..n), or -1. */
static int field_of(const char *s, size_t n)
{
    for (int k = 0; k < F_COUNT; k++)
        if (field_lens[k] == n && memcmp(field_names[k], s, n) == 0)
            return k;
    return -1;
}

/* A bump allocator over the batch's arena, sized before the parse. */
struct arena {
    char *p;
    size_t used, cap;
};

static char *arena_take(struct arena *a, size_t n)
{
    tc_assert(a->used + n <= a->cap);
    char *p = a->p + a->used;
    a->used += n;
    return p;
}

/* What an entry may take of the arena: its strings repaired (3 bytes per
 * byte at worst, and a NUL each) and its raw form. */
static size_t entry_need(const redisReply *fields)
{
    size_t bytes = 0;
    for (size_t i = 0; i < fields->elements; i++)
        if (fields->element[i]->type == REDIS_REPLY_STRING)
            bytes += fields->element[i]->len + 1;
    if (bytes > ENTRY_BYTES_MAX)
        bytes = ENTRY_BYTES_MAX;
    return 4 * bytes + F_COUNT + 1 + INET6_ADDRSTRLEN;
}

static void reject(struct entry *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void reject(struct entry *e, const char *fmt, ...)
{
    e->kind = ENTRY_BAD;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->reason, sizeof e->reason, fmt, ap);
    va_end(ap);
}

/* Keeps the raw fields of a rejected entry, bounded by ENTRY_BYTES_MAX. */
static void keep_raw(struct entry *e, const redisReply *fields, struct arena *a)
{
    size_t cap = 1;
    for (size_t i = 0; i < fields->elements; i++)
        cap += (fields->element[i]->type == REDIS_REPLY_STRING ? fields->element[i]->len : 0) + 1;
    if (cap > ENTRY_BYTES_MAX)
        cap = ENTRY_BYTES_MAX;
    char *raw = arena_take(a, cap);
    size_t o = 0;
    for (size_t i = 0; i < fields->elements; i++) {
        const redisReply *f = fields->element[i];
        if (f->type != REDIS_REPLY_STRING)
            continue;
        for (size_t k = 0; k < f->len && o + 1 < cap; k++)
            raw[o++] = f->str[k];
        if (o + 1 < cap)
            raw[o++] = i % 2 == 0 ? '=' : '\n';
    }
    raw[o] = '\0';
    e->raw = (struct entry_str){raw, o};
}

/* Strict int64: optional '-', digits, nothing else. */
static int parse_i64(const char *s, size_t len, int64_t *out)
{
    char buf[32];
    if (!s || len == 0 || len >= sizeof buf)
        return -1;
    memcpy(buf, s, len);
    buf[len] = '\0';
    for (size_t i = buf[0] == '-' ? 1 : 0; i < len; i++)
        if (buf[i] < '0' || buf[i] > '9')
            return -1;
    errno = 0;
    char *end;
    long long v = strtoll(buf, &end, 10);
    if (errno || *end || end == buf)
        return -1;
    *out = v;
    return 0;
}

static struct entry_str text_copy(const char *s, size_t n, struct arena *a)
{
    if (!s || n == 0)
        return (struct entry_str){"", 0};
    char *out = arena_take(a, 3 * n + 1);
    size_t len = utf8_repair((const uint8_t *)s, n, out);
    return (struct entry_str){out, len};
}

/* The client's address in its canonical text form (inet_ntop of what
 * inet_pton read: what PostgreSQL's inet reads back), or "" when the field
 * is absent or not an IPv4 or IPv6 address: a where-from, not money, so it
 * never makes the entry bad. */
static struct entry_str ip_copy(const char *s, size_t n, struct arena *a)
{
    char in[INET6_ADDRSTRLEN];
    unsigned char addr[sizeof(struct in6_addr)];
    if (!s || n == 0 || n >= sizeof in || memchr(s, '\0', n))
        return (struct entry_str){"", 0};
    memcpy(in, s, n);
    in[n] = '\0';
    int af = memchr(in, ':', n) ? AF_INET6 : AF_INET;
    if (inet_pton(af, in, addr) != 1)
        return (struct entry_str){"", 0};
    char *out = arena_take(a, INET6_ADDRSTRLEN);
    if (!inet_ntop(af, addr, out, INET6_ADDRSTRLEN))
        return (struct entry_str){"", 0};
    return (struct entry_str){out, strlen(out)};
}

/* 1 when s[0..n) is 1..max decimal digits. */
static int digits(const char *s, size_t n, size_t max)
{
    if (!s || n == 0 || n > max)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return 0;
    return 1;
}

/* Fills e from [id, fields] (fields nil: deleted from the stream). */
static void entry_parse(struct entry *e, const redisReply *fields, struct arena *a)
{
    static const struct entry_str empty = {"", 0};
    e->user = e->room = e->gift_name = e->animation = e->combo = e->text = e->request_id = e->raw = e->ref = empty;
    e->ip = e->device = empty;
    e->order_ts_ms = 0;
    e->role = (struct entry_str){"viewer", 6};
    if (!fields || fields->type != REDIS_REPLY_ARRAY) {
        e->kind = ENTRY_GONE;
        return;
    }
    const char *v[F_COUNT] = {0};
    size_t n[F_COUNT] = {0};
    size_t bytes = 0;
    for (size_t i = 0; i + 1 < fields->elements; i += 2) {
        const redisReply *f = fields->element[i], *val = fields->element[i + 1];
        if (f->type != REDIS_REPLY_STRING || val->type != REDIS_REPLY_STRING)
            continue;
        bytes += f->len + val->len;
        int k = field_of(f->str, f->len);
        if (k >= 0) {
            v[k] = val->str;
            n[k] = val->len;
        }
    }
    if (bytes > ENTRY_BYTES_MAX) {
        reject(e, "entry of %zu bytes, more than %d", bytes, ENTRY_BYTES_MAX);
        goto bad;
    }
    if (v[F_K] && n[F_K] == 4 && memcmp(v[F_K], "gift", 4) == 0)
        e->kind = ENTRY_GIFT;
    else if (v[F_K] && n[F_K] == 3 && memcmp(v[F_K], "tip", 3) == 0)
        e->kind = ENTRY_TIP;
    else if (v[F_K] && n[F_K] == 6 && memcmp(v[F_K], "credit", 6) == 0)
        e->kind = ENTRY_CREDIT;
    else if (v[F_K] && n[F_K] == 8 && memcmp(v[F_K], "recharge", 8) == 0)
        e->kind = ENTRY_RECHARGE;
    else if (v[F_K] && n[F_K] == 6 && memcmp(v[F_K], "refund", 6) == 0)
        e->kind = ENTRY_REFUND;
    else if (v[F_K] && n[F_K] == 6 && memcmp(v[F_K], "pledge", 6) == 0)
        e->kind = ENTRY_PLEDGE;
    else if (v[F_K] && n[F_K] == 7 && memcmp(v[F_K], "crefund", 7) == 0)
        e->kind = ENTRY_CREFUND;
    else {
        reject(e, "unknown kind");
        goto bad;
    }
    static const enum field need_all[] = {F_U, F_A, F_B, F_TS};
    /* Orders and refunds name a room; recharges and refunds their reference. */
    int campaign = e->kind == ENTRY_PLEDGE || e->kind == ENTRY_CREFUND;
    int external = e->kind == ENTRY_RECHARGE || e->kind == ENTRY_REFUND || e->kind == ENTRY_CREFUND ||
                   (e->kind == ENTRY_PLEDGE && n[F_X]);
    int roomed = e->kind == ENTRY_GIFT || e->kind == ENTRY_TIP || e->kind == ENTRY_REFUND || campaign;
    static const enum field need_order[] = {F_R, F_Q};
    static const enum field need_gift[] = {F_G, F_N, F_P};
    for (size_t i = 0; i < sizeof need_all / sizeof need_all[0]; i++)
        if (!n[need_all[i]]) {
            reject(e, "field %s missing", field_names[need_all[i]]);
            goto bad;
        }
    for (size_t i = 0; roomed && i < sizeof need_order / sizeof need_order[0]; i++)
        if (!n[need_order[i]]) {
            reject(e, "field %s missing", field_names[need_order[i]]);
            goto bad;
        }
    /* A campaign is its id's digits (the escrow account escrow:<id>); a
     * pledge's tier, digits too: the ledger reads both as numbers. */
    if (campaign && (!digits(v[F_R], n[F_R], 18) || (e->kind == ENTRY_PLEDGE && n[F_X] && !digits(v[F_X], n[F_X], 9)))) {
        reject(e, "campaign or tier is not a number");
        goto bad;
    }
    if (external && !n[F_X]) {
        reject(e, "field x missing");
        goto bad;
    }
    if (e->kind == ENTRY_REFUND && !n[F_OTS]) {
        reject(e, "field ots missing");
        goto bad;
    }
    for (size_t i = 0; e->kind == ENTRY_GIFT && i < sizeof need_gift / sizeof need_gift[0]; i++)
        if (!n[need_gift[i]]) {
            reject(e, "field %s missing", field_names[need_gift[i]]);
            goto bad;
        }
    if (parse_i64(v[F_A], n[F_A], &e->amount) < 0 || e->amount <= 0) {
        reject(e, "amount is not a positive integer");
        goto bad;
    }
    if (parse_i64(v[F_B], n[F_B], &e->balance) < 0 || parse_i64(v[F_TS], n[F_TS], &e->ts_ms) < 0 ||
        e->ts_ms < 0 || e->ts_ms > ENTRY_TS_MS_MAX) {
        reject(e, "balance or time is not an integer (time: 0 to the end of year 9999)");
        goto bad;
    }
    e->count = 1;
    e->unit_price = e->amount;
    if (e->kind == ENTRY_GIFT &&
        (parse_i64(v[F_G], n[F_G], &e->gift_id) < 0 || e->gift_id <= 0 || e->gift_id > INT32_MAX ||
         parse_i64(v[F_N], n[F_N], &e->count) < 0 || e->count <= 0 || e->count > INT32_MAX ||
         parse_i64(v[F_P], n[F_P], &e->unit_price) < 0 || e->unit_price <= 0)) {
        reject(e, "gift id, count or price is not a positive integer");
        goto bad;
    }
    if (e->kind == ENTRY_REFUND && (parse_i64(v[F_OTS], n[F_OTS], &e->order_ts_ms) < 0 || e->order_ts_ms < 0 ||
                                    e->order_ts_ms > ENTRY_TS_MS_MAX)) {
        reject(e, "order time is not an integer (0 to the end of year 9999)");
        goto bad;
    }
    /* A reference is the key of its movement in the ledger: exact, or the
     * entry is not applied at all. */
    if (external && (n[F_X] > ENTRY_REF_MAX || !utf8_valid((const uint8_t *)v[F_X], n[F_X]) ||
                     memchr(v[F_X], '\0', n[F_X]))) {
        reject(e, "reference is not UTF-8 of 1..%d bytes", ENTRY_REF_MAX);
        goto bad;
    }
    /* Users and rooms are ids (jwt.h): the wallet wrote nothing else. */
    if (!id_valid(v[F_U], n[F_U]) || (roomed && !id_valid(v[F_R], n[F_R]))) {
        reject(e, "user or room is not an id");
        goto bad;
    }
    if (v[F_Q] && !utf8_valid((const uint8_t *)v[F_Q], n[F_Q])) {
        reject(e, "request id is not UTF-8");
        goto bad;
    }
    e->user = text_copy(v[F_U], n[F_U], a);
    e->room = text_copy(v[F_R], n[F_R], a);
    e->request_id = text_copy(v[F_Q], n[F_Q], a);
    e->gift_name = text_copy(v[F_GN], n[F_GN], a);
    e->animation = text_copy(v[F_AN], n[F_AN], a);
    e->combo = text_copy(v[F_M], n[F_M], a);
    e->text = text_copy(v[F_T], n[F_T], a);
    if (external)
        e->ref = text_copy(v[F_X], n[F_X], a);
    if (n[F_RO])
        e->role = text_copy(v[F_RO], n[F_RO], a);
    e->ip = ip_copy(v[F_IP], n[F_IP], a);
    if (n[F_DV] <= ENTRY_DEVICE_MAX)
        e->device = text_copy(v[F_DV], n[F_DV], a);
    return;
bad:
    keep_raw(e, fields, a);
}

void entry_batch_reset(struct entry_batch *b) { b->n = 0; }

void entry_batch_clear(struct entry_batch *b)
{
    free(b->e);
    free(b->arena);
    memset(b, 0, sizeof *b);
}

/* The [id, fields] items of one stream of the reply, or NULL. */
static const redisReply *stream_items(const redisReply *st)
{
    if (st->type != REDIS_REPLY_ARRAY || st->elements != 2 || st->element[0]->type != REDIS_REPLY_STRING ||
        st->element[1]->type != REDIS_REPLY_ARRAY)
        return NULL;
    return st->element[1];
}

int entry_batch_fill(struct entry_batch *b, const struct outbox *ob, const redisReply *reply)
{
    b->n = 0;
    if (reply->type != REDIS_REPLY_ARRAY)
        return -1;
    size_t n = 0, need = 1;
    for (size_t i = 0; i < reply->elements; i++) {
        const redisReply *items = stream_items(reply->element[i]);
        if (!items || outbox_key_shard(ob, reply->element[i]->element[0]->str, reply->element[i]->element[0]->len) < 0)
            return -1;
        for (size_t k = 0; k < items->elements; k++) {
            const redisReply *it = items->element[k];
            if (it->type != REDIS_REPLY_ARRAY || it->elements < 1 || it->element[0]->type != REDIS_REPLY_STRING ||
                it->element[0]->len > OUTBOX_STREAM_ID_MAX)
                return -1;
            const redisReply *fields = it->elements > 1 ? it->element[1] : NULL;
            if (fields && fields->type == REDIS_REPLY_ARRAY)
                need += entry_need(fields);
            n++;
        }
    }
    if (n == 0)
        return 0;
    /* Not calloc: jemalloc zeroes a large calloc by handing its pages back
     * to the system and faulting them in again (an madvise whose TLB
     * shootdown waits on the other cores). */
    if (n > b->cap) {
        free(b->e);
        b->e = n <= SIZE_MAX / sizeof *b->e ? malloc(n * sizeof *b->e) : NULL;
        b->cap = b->e ? n : 0;
    }
    if (need > b->arena_cap) {
        free(b->arena);
        b->arena = malloc(need);
        b->arena_cap = b->arena ? need : 0;
    }
    if (!b->e || !b->arena) {
        entry_batch_clear(b);
        return -1;
    }
    memset(b->e, 0, n * sizeof *b->e);
    struct arena a = {b->arena, 0, need};
    for (size_t i = 0; i < reply->elements; i++) {
        const redisReply *st = reply->element[i];
        int shard = outbox_key_shard(ob, st->element[0]->str, st->element[0]->len);
        const redisReply *items = st->element[1];
        for (size_t k = 0; k < items->elements; k++) {
            const redisReply *it = items->element[k];
            struct entry *e = &b->e[b->n++];
            e->shard = shard;
            memcpy(e->id, it->element[0]->str, it->element[0]->len + 1);
            entry_parse(e, it->elements > 1 ? it->element[1] : NULL, &a);
        }
    }
    tc_assert(b->n == n);
    return (int)n;
}

void entry_order_id(const struct entry *e, char *buf, size_t cap) { outbox_order_id(e->shard, e->id, buf, cap); }
