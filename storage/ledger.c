/* ledger.c - the `ledger` consumer group (see ledger.h).
 *
 * One step runs at a time, driven by replies and by a housekeeping timer:
 *   IDLE -> CLAIMING (XAUTOCLAIM of a newly owned shard, until cursor 0-0)
 *   IDLE -> READING (XREADGROUP) -> WRITING (one transaction) -> ACKING -> IDLE
 * A failure anywhere drops the batch, marks every owned shard to be re-read
 * from its pending entries (id 0) and waits with backoff. Since the batch
 * is acknowledged only after COMMIT, and every row has a unique key,
 * re-reading can repeat work but never its effect.
 *
 * A batch is first written the fast way: its rows COPYed straight into
 * orders and ledger, and the earnings summed here (build_batch). That is
 * right only when none of its orders and credits is in PostgreSQL yet,
 * which holds for every batch but some of those re-read after a failure;
 * for those a unique key fails the COPY and with it the whole transaction
 * (nothing is written), and the same batch is sent again at once the
 * careful way (the same rows COPYed into staging tables, then INSERT ...
 * ON CONFLICT DO NOTHING from them, the ledger
 * rows and earnings fed only by the orders actually inserted).
 */
#include "ledger.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hiredis/hiredis.h>
#include <libpq-fe.h>

#include "log.h"
#include "outbox.h"
#include "pgconn.h"
#include "rlink.h"
#include "server.h"

/* ---- State ----------------------------------------------------------------- */

/* The COPY statements of a batch's fast form: orders, then ledger. */
#define LEDGER_COPIES 2

enum ledger_step { STEP_IDLE, STEP_CLAIMING, STEP_READING, STEP_WRITING, STEP_ACKING };

/* What an entry becomes in PostgreSQL. */
enum entry_kind { EK_GIFT, EK_TIP, EK_CREDIT, EK_REJECT, EK_GONE };

/* One outbox entry of a batch. Strings are owned by the entry (NULL when
 * absent or, for the optional texts, empty); they are valid UTF-8 without
 * NUL bytes, so that PostgreSQL cannot refuse them. */
struct entry {
    int shard;
    enum entry_kind kind;
    char stream_id[OUTBOX_ORDER_ID_MAX];
    int64_t gift_id, count, unit_price, amount, balance, ts_ms;
    char *user, *room, *gift_name, *combo, *text, *request_id;
    char reason[96]; /* EK_REJECT: why */
    char *raw;       /* EK_REJECT: the fields as "name=value\n" lines */
    size_t raw_len;
};

struct shard_state {
    uint8_t claim;   /* XAUTOCLAIM before reading (the shard was just gained) */
    uint8_t history; /* read the own pending entries (id 0), not new ones (>) */
    char cursor[OUTBOX_ORDER_ID_MAX]; /* XAUTOCLAIM's next start */
};

static struct {
    int started, stopping;
    int link; /* our own Redis connection, blocked by XREADGROUP */
    uv_timer_t timer;
    struct outbox_leases leases;
    struct shard_state shards[OUTBOX_SHARDS_MAX];
    int cmd_was_ready;
    int64_t next_lease_ms, next_trim_ms, next_stats_ms;

    enum ledger_step step;
    int read_from;          /* first shard of the next read, for fairness */
    int read_per_stream;    /* COUNT of the read in flight */
    int64_t retry_at_ms;    /* no new step before this (backoff) */
    int backoff_ms;

    struct entry *batch;
    int batch_len, batch_cap;
    int acks_pending;
    int ack_failed;

    /* PostgreSQL: reconnected with backoff by pgconn. */
    struct pgconn *pg;
    int pg_logged_down;
    int fast;               /* the transaction in flight is the fast form */
    struct pgconn_copy copies[LEDGER_COPIES]; /* its rows (owned), until it ends */
    int ncopies;
    int pg_failed;          /* the transaction in flight had an error */
    char pg_error[256];
    char pg_sqlstate[6];    /* of that error, "" when unknown */
    int64_t rows_orders, rows_credits; /* what the transaction inserted */
    int64_t txn_started_ms;

    struct ledger_stats stats;
    uint64_t logged_entries; /* stats.entries at the previous stats line */
} L;

static void pump(void);

/* ---- Helpers --------------------------------------------------------------- */

static void on_ignored(redisReply *reply, void *priv)
{
    (void)reply;
    (void)priv;
}

static void backoff(const char *why)
{
    L.stats.failures++;
    L.backoff_ms = L.backoff_ms ? L.backoff_ms * 2 : LEDGER_BACKOFF_MIN_MS;
    if (L.backoff_ms > LEDGER_BACKOFF_MAX_MS)
        L.backoff_ms = LEDGER_BACKOFF_MAX_MS;
    L.retry_at_ms = now_mono_ms() + L.backoff_ms;
    log_msg(LOG_DEBUG, "ledger: %s; retrying in %d ms", why, L.backoff_ms);
}

/* After any failure the entries in flight may be pending or acknowledged:
 * reading every owned shard's pending entries again sorts that out. */
static void reread_pending(void)
{
    for (int s = 0; s < srv.cfg.wallet_shards; s++)
        L.shards[s].history = 1;
}

static void entry_free(struct entry *e)
{
    free(e->user);
    free(e->room);
    free(e->gift_name);
    free(e->combo);
    free(e->text);
    free(e->request_id);
    free(e->raw);
    memset(e, 0, sizeof *e);
}

static void batch_clear(void)
{
    for (int i = 0; i < L.batch_len; i++)
        entry_free(&L.batch[i]);
    L.batch_len = 0;
}

/* Strict int64: optional '-', digits, nothing else. */
static int parse_i64(const char *s, size_t len, int64_t *out)
{
    char buf[32];
    if (len == 0 || len >= sizeof buf)
        return -1;
    memcpy(buf, s, len);
    buf[len] = '\0';
    for (size_t i = buf[0] == '-' ? 1 : 0; i < len; i++)
        if (buf[i] < '0' || buf[i] > '9')
            return -1;
    errno = 0;
    char *end;
    long long v = strtoll(buf, &end, 10);
    if (errno || *end)
        return -1;
    *out = v;
    return 0;
}

/* Length of the valid UTF-8 sequence at s (n bytes left), or 0. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    if (c >= 0x01 && c < 0x80)
        return 1;
    size_t len;
    unsigned min;
    if (c >= 0xc2 && c <= 0xdf)
        len = 2, min = 0x80;
    else if (c >= 0xe0 && c <= 0xef)
        len = 3, min = 0x800;
    else if (c >= 0xf0 && c <= 0xf4)
        len = 4, min = 0x10000;
    else
        return 0;
    if (n < len)
        return 0;
    unsigned cp = c & (0x3f >> (len - 1));
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

static int utf8_valid(const char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        size_t k = utf8_seq((const unsigned char *)s + i, n - i);
        if (!k)
            return 0;
        i += k;
    }
    return 1;
}

/* A copy of user text with every byte that is not valid UTF-8 (and NUL)
 * replaced by U+FFFD, so that a bad message can never stall the ledger.
 * NULL when empty or out of memory (*oom set then). */
static char *text_copy(const char *s, size_t n, int *oom)
{
    if (n == 0)
        return NULL;
    char *out = malloc(n * 3 + 1);
    if (!out) {
        *oom = 1;
        return NULL;
    }
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        size_t k = utf8_seq((const unsigned char *)s + i, n - i);
        if (k) {
            memcpy(out + o, s + i, k);
            o += k;
            i += k;
        } else {
            memcpy(out + o, "\xef\xbf\xbd", 3);
            o += 3;
            i++;
        }
    }
    out[o] = '\0';
    return out;
}

/* ---- Entries --------------------------------------------------------------- */

enum field { F_K, F_U, F_R, F_G, F_GN, F_AN, F_N, F_P, F_A, F_B, F_M, F_T, F_Q, F_TS, F_COUNT };
static const char *const field_names[F_COUNT] = {"k", "u",  "r", "g", "gn", "an", "n",
                                                 "p", "a", "b", "m", "t",  "q",  "ts"};

static void reject(struct entry *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void reject(struct entry *e, const char *fmt, ...)
{
    e->kind = EK_REJECT;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->reason, sizeof e->reason, fmt, ap);
    va_end(ap);
}

/* Keeps the raw fields of a rejected entry, bounded. */
static int keep_raw(struct entry *e, const redisReply *fields)
{
    size_t cap = 1;
    for (size_t i = 0; fields && i < fields->elements; i++)
        cap += (fields->element[i]->type == REDIS_REPLY_STRING ? fields->element[i]->len : 0) + 1;
    if (cap > LEDGER_ENTRY_BYTES_MAX)
        cap = LEDGER_ENTRY_BYTES_MAX;
    e->raw = malloc(cap);
    if (!e->raw)
        return -1;
    size_t o = 0;
    for (size_t i = 0; fields && i < fields->elements; i++) {
        const redisReply *f = fields->element[i];
        if (f->type != REDIS_REPLY_STRING)
            continue;
        for (size_t k = 0; k < f->len && o + 1 < cap; k++)
            e->raw[o++] = f->str[k];
        if (o + 1 < cap)
            e->raw[o++] = i % 2 == 0 ? '=' : '\n';
    }
    e->raw_len = o;
    return 0;
}

/* Fills e from an XREADGROUP entry [id, [field, value, ...]] (or [id, nil]
 * when the entry was deleted). Returns 0, or -1 when out of memory. A
 * malformed entry is not an error: it becomes EK_REJECT. */
static int entry_parse(struct entry *e, int shard, const redisReply *item)
{
    memset(e, 0, sizeof *e);
    e->shard = shard;
    const redisReply *id = item->element[0];
    snprintf(e->stream_id, sizeof e->stream_id, "%.*s", (int)id->len, id->str);
    const redisReply *fields = item->elements > 1 ? item->element[1] : NULL;
    if (!fields || fields->type != REDIS_REPLY_ARRAY) {
        e->kind = EK_GONE; /* deleted from the stream: only the ack is left */
        return 0;
    }
    const char *v[F_COUNT] = {0};
    size_t n[F_COUNT] = {0};
    size_t bytes = 0;
    for (size_t i = 0; i + 1 < fields->elements; i += 2) {
        const redisReply *f = fields->element[i], *val = fields->element[i + 1];
        if (f->type != REDIS_REPLY_STRING || val->type != REDIS_REPLY_STRING)
            continue;
        bytes += f->len + val->len;
        for (int k = 0; k < F_COUNT; k++)
            if (f->len == strlen(field_names[k]) && memcmp(f->str, field_names[k], f->len) == 0) {
                v[k] = val->str;
                n[k] = val->len;
            }
    }
    if (bytes > LEDGER_ENTRY_BYTES_MAX) {
        reject(e, "entry of %zu bytes, more than %d", bytes, LEDGER_ENTRY_BYTES_MAX);
        return keep_raw(e, fields);
    }

    if (v[F_K] && n[F_K] == 4 && memcmp(v[F_K], "gift", 4) == 0)
        e->kind = EK_GIFT;
    else if (v[F_K] && n[F_K] == 3 && memcmp(v[F_K], "tip", 3) == 0)
        e->kind = EK_TIP;
    else if (v[F_K] && n[F_K] == 6 && memcmp(v[F_K], "credit", 6) == 0)
        e->kind = EK_CREDIT;
    else {
        reject(e, "unknown kind");
        return keep_raw(e, fields);
    }

    /* Identities and money must be exact: an entry without them is set
     * aside rather than guessed at. */
    static const enum field need_all[] = {F_U, F_A, F_B, F_TS};
    static const enum field need_order[] = {F_R, F_Q};
    static const enum field need_gift[] = {F_G, F_N, F_P};
    for (size_t i = 0; i < sizeof need_all / sizeof need_all[0]; i++)
        if (!v[need_all[i]] || !n[need_all[i]]) {
            reject(e, "field %s missing", field_names[need_all[i]]);
            return keep_raw(e, fields);
        }
    if (e->kind != EK_CREDIT)
        for (size_t i = 0; i < sizeof need_order / sizeof need_order[0]; i++)
            if (!v[need_order[i]] || !n[need_order[i]]) {
                reject(e, "field %s missing", field_names[need_order[i]]);
                return keep_raw(e, fields);
            }
    if (e->kind == EK_GIFT)
        for (size_t i = 0; i < sizeof need_gift / sizeof need_gift[0]; i++)
            if (!v[need_gift[i]] || !n[need_gift[i]]) {
                reject(e, "field %s missing", field_names[need_gift[i]]);
                return keep_raw(e, fields);
            }
    if (parse_i64(v[F_A], n[F_A], &e->amount) < 0 || e->amount <= 0) {
        reject(e, "amount is not a positive integer");
        return keep_raw(e, fields);
    }
    if (parse_i64(v[F_B], n[F_B], &e->balance) < 0 || parse_i64(v[F_TS], n[F_TS], &e->ts_ms) < 0 ||
        e->ts_ms < 0 || e->ts_ms > LEDGER_TS_MS_MAX) {
        reject(e, "balance or time is not an integer (time: 0 to the end of year 9999)");
        return keep_raw(e, fields);
    }
    e->count = 1;
    e->unit_price = e->amount;
    if (e->kind == EK_GIFT) {
        if (parse_i64(v[F_G], n[F_G], &e->gift_id) < 0 || e->gift_id <= 0 || e->gift_id > INT32_MAX ||
            parse_i64(v[F_N], n[F_N], &e->count) < 0 || e->count <= 0 || e->count > INT32_MAX ||
            parse_i64(v[F_P], n[F_P], &e->unit_price) < 0 || e->unit_price <= 0) {
            reject(e, "gift id, count or price is not a positive integer");
            return keep_raw(e, fields);
        }
    }
    if (!utf8_valid(v[F_U], n[F_U]) || (v[F_R] && !utf8_valid(v[F_R], n[F_R])) ||
        (v[F_Q] && !utf8_valid(v[F_Q], n[F_Q]))) {
        reject(e, "user, room or request id is not UTF-8");
        return keep_raw(e, fields);
    }
    int oom = 0;
    e->user = text_copy(v[F_U], n[F_U], &oom);
    if (v[F_R])
        e->room = text_copy(v[F_R], n[F_R], &oom);
    if (v[F_Q])
        e->request_id = text_copy(v[F_Q], n[F_Q], &oom);
    if (v[F_GN] && e->kind == EK_GIFT)
        e->gift_name = text_copy(v[F_GN], n[F_GN], &oom);
    if (v[F_M] && e->kind == EK_GIFT)
        e->combo = text_copy(v[F_M], n[F_M], &oom);
    if (v[F_T])
        e->text = text_copy(v[F_T], n[F_T], &oom);
    return oom ? -1 : 0;
}

/* ---- SQL text ------------------------------------------------------------- */

struct sbuf {
    char *p;
    size_t len, cap;
    int oom;
};

static void sb_put(struct sbuf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
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

static void sb_str(struct sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

static void sb_i64(struct sbuf *b, int64_t v)
{
    char num[32];
    int n = snprintf(num, sizeof num, "%" PRId64, v);
    sb_put(b, num, (size_t)n);
}

/* A quoted literal (or NULL), escaped by libpq for this connection: user
 * text never reaches the SQL unescaped. */
static void sb_lit(struct sbuf *b, const char *s)
{
    if (!s) {
        sb_str(b, "NULL");
        return;
    }
    char *q = PQescapeLiteral(pgconn_libpq(L.pg), s, strlen(s));
    if (!q) {
        b->oom = 1;
        return;
    }
    sb_str(b, q);
    PQfreemem(q);
}

static void sb_order_id(struct sbuf *b, const struct entry *e)
{
    char oid[OUTBOX_ORDER_ID_MAX + 8];
    outbox_order_id(e->shard, e->stream_id, oid, sizeof oid);
    sb_lit(b, oid);
}

static void sb_hex(struct sbuf *b, const char *s, size_t n)
{
    static const char digits[] = "0123456789abcdef";
    char pair[2];
    for (size_t i = 0; i < n; i++) {
        pair[0] = digits[(unsigned char)s[i] >> 4];
        pair[1] = digits[(unsigned char)s[i] & 15];
        sb_put(b, pair, 2);
    }
}

/* The batch's malformed entries into outbox_rejects. */
static void sql_rejects(struct sbuf *b)
{
    sb_str(b, "INSERT INTO outbox_rejects (order_id, reason, entry) VALUES ");
    int first = 1;
    for (int i = 0; i < L.batch_len; i++) {
        const struct entry *e = &L.batch[i];
        if (e->kind != EK_REJECT)
            continue;
        sb_str(b, first ? "(" : ", (");
        sb_order_id(b, e);
        sb_str(b, ", ");
        sb_lit(b, e->reason);
        sb_str(b, ", decode('");
        sb_hex(b, e->raw, e->raw_len);
        sb_str(b, "', 'hex'))");
        first = 0;
    }
    sb_str(b, " ON CONFLICT (order_id) DO NOTHING;\n");
}

/* A COPY text field: \N for NULL; backslash, tab, newline and carriage
 * return escaped (the strings hold no NUL, see struct entry). */
static void sb_copy_text(struct sbuf *b, const char *s)
{
    if (!s) {
        sb_str(b, "\\N");
        return;
    }
    for (const char *run = s;; s++) {
        const char *esc = NULL;
        switch (*s) {
        case '\\':
            esc = "\\\\";
            break;
        case '\t':
            esc = "\\t";
            break;
        case '\n':
            esc = "\\n";
            break;
        case '\r':
            esc = "\\r";
            break;
        case '\0':
            sb_put(b, run, (size_t)(s - run));
            return;
        default:
            continue;
        }
        sb_put(b, run, (size_t)(s - run));
        sb_str(b, esc);
        run = s + 1;
    }
}

static void sb_copy_order_id(struct sbuf *b, const struct entry *e)
{
    char oid[OUTBOX_ORDER_ID_MAX + 8];
    outbox_order_id(e->shard, e->stream_id, oid, sizeof oid);
    sb_str(b, oid); /* digits and '-': nothing to escape */
}

/* ts_ms as timestamptz input in UTC, e.g. "2025-01-31 23:59:59.123+00"
 * (entry_parse bounds it to years 1970..9999). */
static void sb_copy_time(struct sbuf *b, int64_t ts_ms)
{
    time_t sec = (time_t)(ts_ms / 1000);
    struct tm tm;
    char out[48];
    if (!gmtime_r(&sec, &tm)) {
        b->oom = 1; /* cannot happen within the bound; fail the batch rather than guess */
        return;
    }
    int n = snprintf(out, sizeof out, "%04d-%02d-%02d %02d:%02d:%02d.%03d+00", tm.tm_year + 1900, tm.tm_mon + 1,
                     tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ts_ms % 1000));
    sb_put(b, out, (size_t)n);
}

/* One ledger row, in MOVE_COLS order. */
static void copy_move(struct sbuf *b, const struct entry *e, const char *prefix, const char *uid, int64_t delta,
                      const char *kind, const char *note)
{
    sb_copy_order_id(b, e);
    sb_str(b, "\t");
    sb_str(b, prefix);
    sb_copy_text(b, uid);
    sb_str(b, "\t");
    sb_i64(b, delta);
    sb_str(b, "\t");
    sb_str(b, kind);
    sb_str(b, "\t");
    sb_copy_text(b, note);
    sb_str(b, "\t");
    sb_copy_time(b, e->ts_ms);
    sb_str(b, "\n");
}

static int by_creator(const void *a, const void *b)
{
    return strcmp(L.batch[*(const int *)a].room, L.batch[*(const int *)b].room);
}

/* The columns the batch COPYs into orders and ledger (or their staging
 * tables), in the order build_batch writes them. */
#define ORDER_COLS                                                                                        \
    "order_id, kind, sender, room, creator, gift_id, gift_name, count, unit_price, amount, combo, message, " \
    "request_id, sender_balance, created_at"
#define MOVE_COLS "movement_id, account, delta, kind, note, created_at"

/* The careful form's staging tables: one per connection, emptied at each
 * commit. */
#define STAGING_SQL                                                                                        \
    "CREATE TEMP TABLE IF NOT EXISTS ledger_in_orders (order_id text, kind text, sender text, room text, "  \
    "creator text, gift_id int, gift_name text, count int, unit_price bigint, amount bigint, combo text, "   \
    "message text, request_id text, sender_balance bigint, created_at timestamptz) ON COMMIT DELETE ROWS;\n" \
    "CREATE TEMP TABLE IF NOT EXISTS ledger_in_moves (movement_id text, account text, delta bigint, "       \
    "kind text, note text, created_at timestamptz) ON COMMIT DELETE ROWS;\n"

/* The careful form's one statement: the staged orders that are new, then,
 * fed only by those (RETURNING), their ledger rows and earnings; credits
 * (no order of their own) by their own keys. A replayed entry conflicts,
 * returns nothing and so moves nothing. Earnings are upserted in creator
 * order so that two nodes' transactions lock the rows in the same order and
 * cannot deadlock. Its one row: new orders, new credits. */
#define APPLY_SQL                                                                                          \
    "WITH ins AS (INSERT INTO orders (" ORDER_COLS ") SELECT " ORDER_COLS " FROM ledger_in_orders "        \
    "ON CONFLICT (order_id) DO NOTHING RETURNING order_id, creator, amount), "                             \
    "moves AS (INSERT INTO ledger (" MOVE_COLS ") SELECT " MOVE_COLS " FROM ledger_in_moves "              \
    "WHERE kind = 'credit' OR movement_id IN (SELECT order_id FROM ins) "                                  \
    "ON CONFLICT (movement_id, account) DO NOTHING RETURNING kind), "                                      \
    "earned AS (INSERT INTO creator_earnings AS ce (creator, total, orders, updated_at) "                  \
    "SELECT creator, sum(amount)::bigint, count(*), now() FROM ins GROUP BY creator ORDER BY creator "     \
    "ON CONFLICT (creator) DO UPDATE SET total = ce.total + EXCLUDED.total, "                              \
    "orders = ce.orders + EXCLUDED.orders, updated_at = EXCLUDED.updated_at) "                             \
    "SELECT (SELECT count(*) FROM ins), (SELECT count(*) FROM moves WHERE kind = 'credit') / 2;\n"

/* The batch as one multi-statement query, sent without BEGIN/COMMIT: the
 * statements of one simple query run as one implicit transaction that an
 * error anywhere rolls back entirely, with no aborted transaction block
 * left behind on the connection. rows[0..*ncopies) get the COPY data of
 * every orders row and every ledger row, in statement order.
 *
 * The fast form COPYs them straight into orders and ledger and upserts the
 * earnings summed here: right only when no order or credit of the batch is
 * in PostgreSQL yet, otherwise a unique key fails it as a whole (see the
 * top of this file). The careful form COPYs the same rows into staging
 * tables and applies them with APPLY_SQL, right in every case. Both end
 * with the rejects. Returns 0, or -1 when the earnings of one creator in
 * this batch do not fit an int64 (then only the careful form can say what
 * is wrong). */
static int build_batch(struct sbuf *b, struct sbuf rows[LEDGER_COPIES], int *ncopies, int careful)
{
    int norders = 0, nmoves = 0, nrejects = 0;
    for (int i = 0; i < L.batch_len; i++) {
        enum entry_kind k = L.batch[i].kind;
        norders += k == EK_GIFT || k == EK_TIP;
        nmoves += k == EK_GIFT || k == EK_TIP || k == EK_CREDIT;
        nrejects += k == EK_REJECT;
    }
    *ncopies = 0;
    if (careful)
        sb_str(b, STAGING_SQL);
    if (norders) {
        struct sbuf *o = &rows[(*ncopies)++];
        sb_str(b, careful ? "COPY ledger_in_orders (" ORDER_COLS ") FROM STDIN;\n"
                          : "COPY orders (" ORDER_COLS ") FROM STDIN;\n");
        for (int i = 0; i < L.batch_len; i++) {
            const struct entry *e = &L.batch[i];
            if (e->kind != EK_GIFT && e->kind != EK_TIP)
                continue;
            sb_copy_order_id(o, e);
            sb_str(o, e->kind == EK_GIFT ? "\tgift\t" : "\ttip\t");
            sb_copy_text(o, e->user);
            sb_str(o, "\t");
            sb_copy_text(o, e->room);
            sb_str(o, "\t");
            sb_copy_text(o, e->room); /* the room is the creator's own (outbox.h) */
            sb_str(o, "\t");
            if (e->kind == EK_GIFT)
                sb_i64(o, e->gift_id);
            else
                sb_str(o, "\\N");
            sb_str(o, "\t");
            sb_copy_text(o, e->gift_name);
            sb_str(o, "\t");
            sb_i64(o, e->count);
            sb_str(o, "\t");
            sb_i64(o, e->unit_price);
            sb_str(o, "\t");
            sb_i64(o, e->amount);
            sb_str(o, "\t");
            sb_copy_text(o, e->combo);
            sb_str(o, "\t");
            sb_copy_text(o, e->kind == EK_TIP ? e->text : NULL);
            sb_str(o, "\t");
            sb_copy_text(o, e->request_id);
            sb_str(o, "\t");
            sb_i64(o, e->balance);
            sb_str(o, "\t");
            sb_copy_time(o, e->ts_ms);
            sb_str(o, "\n");
        }
    }
    if (nmoves) {
        struct sbuf *m = &rows[(*ncopies)++];
        sb_str(b, careful ? "COPY ledger_in_moves (" MOVE_COLS ") FROM STDIN;\n"
                          : "COPY ledger (" MOVE_COLS ") FROM STDIN;\n");
        for (int i = 0; i < L.batch_len; i++) {
            const struct entry *e = &L.batch[i];
            if (e->kind == EK_GIFT || e->kind == EK_TIP) {
                const char *kind = e->kind == EK_GIFT ? "gift" : "tip";
                copy_move(m, e, "user:", e->user, -e->amount, kind, NULL);
                copy_move(m, e, "creator:", e->room, e->amount, kind, NULL);
            } else if (e->kind == EK_CREDIT) {
                copy_move(m, e, "user:", e->user, e->amount, "credit", e->text);
                copy_move(m, e, "", "platform", -e->amount, "credit", e->text);
            }
        }
    }
    if (careful) {
        sb_str(b, APPLY_SQL);
    } else if (norders) {
        /* Earnings per creator, upserted in creator order so that two
         * nodes' transactions lock the rows in the same order and cannot
         * deadlock. */
        int *idx = malloc(sizeof *idx * (size_t)norders);
        if (!idx) {
            b->oom = 1;
            return 0;
        }
        int n = 0;
        for (int i = 0; i < L.batch_len; i++)
            if (L.batch[i].kind == EK_GIFT || L.batch[i].kind == EK_TIP)
                idx[n++] = i;
        qsort(idx, (size_t)n, sizeof *idx, by_creator);
        sb_str(b, "INSERT INTO creator_earnings AS ce (creator, total, orders, updated_at) VALUES ");
        for (int i = 0, first = 1; i < n; first = 0) {
            const char *creator = L.batch[idx[i]].room;
            int64_t total = 0, count = 0;
            for (; i < n && strcmp(L.batch[idx[i]].room, creator) == 0; i++, count++)
                if (__builtin_add_overflow(total, L.batch[idx[i]].amount, &total)) {
                    free(idx);
                    return -1;
                }
            sb_str(b, first ? "(" : ", (");
            sb_lit(b, creator);
            sb_str(b, ", ");
            sb_i64(b, total);
            sb_str(b, ", ");
            sb_i64(b, count);
            sb_str(b, ", now())");
        }
        free(idx);
        sb_str(b, " ON CONFLICT (creator) DO UPDATE SET total = ce.total + EXCLUDED.total, "
                  "orders = ce.orders + EXCLUDED.orders, updated_at = EXCLUDED.updated_at;\n");
    }
    if (nrejects)
        sql_rejects(b);
    for (int i = 0; i < *ncopies; i++)
        b->oom |= rows[i].oom;
    return 0;
}

/* ---- PostgreSQL connection ------------------------------------------------ */

static void txn_done(int ok);

/* Connected, with nothing in flight: a batch can be written. */
static int pg_ready(void) { return pgconn_up(L.pg) && !pgconn_busy(L.pg); }

/* libpq's messages span lines; a log line holds the first. */
static void first_line(const char *msg, char *out, size_t cap)
{
    size_t n = strcspn(msg, "\n");
    if (n == 0) {
        snprintf(out, cap, "(no detail)");
        return;
    }
    snprintf(out, cap, "%.*s", (int)n, msg);
}

static void on_pg_up(void *priv)
{
    (void)priv;
    if (L.pg_logged_down)
        log_msg(LOG_INFO, "ledger: postgres reachable again");
    L.pg_logged_down = 0;
    pump();
}

/* The connection dropped; a transaction in flight has failed (the server
 * rolls it back when it sees the connection go, if it had not committed:
 * either way its entries are not acknowledged, and replaying them is
 * harmless). pgconn ends it right after this, with on_txn_result. */
static void on_pg_down(const char *what, const char *detail, void *priv)
{
    (void)priv;
    if (!L.pg_logged_down) {
        char line[256];
        first_line(detail, line, sizeof line);
        log_msg(LOG_WARN, "ledger: postgres %s: %s", what, line);
        L.pg_logged_down = 1;
    }
}

/* One result per statement of the batch, then the end of the transaction. */
static void on_txn_result(PGresult *r, int ok, void *priv)
{
    (void)priv;
    if (!r) {
        if (!L.stopping) /* ledger_stop abandons the transaction silently */
            txn_done(ok && !L.pg_failed);
        return;
    }
    ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) {
        /* The careful form's one row of counts (APPLY_SQL). */
        if (st == PGRES_TUPLES_OK && PQntuples(r) == 1 && PQnfields(r) == 2) {
            L.rows_orders = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
            L.rows_credits = strtoll(PQgetvalue(r, 0, 1), NULL, 10);
        }
    } else if (!L.pg_failed) {
        L.pg_failed = 1;
        first_line(PQresultErrorMessage(r), L.pg_error, sizeof L.pg_error);
        const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        snprintf(L.pg_sqlstate, sizeof L.pg_sqlstate, "%s", state ? state : "");
    }
}

/* ---- The steps -------------------------------------------------------------- */

static void step_idle(void)
{
    L.step = STEP_IDLE;
    pump();
}

static void on_ack(redisReply *reply, void *priv)
{
    (void)priv;
    if (L.stopping)
        return;
    assert(L.step == STEP_ACKING && L.acks_pending > 0);
    if (!reply || reply->type != REDIS_REPLY_INTEGER)
        L.ack_failed = 1;
    if (--L.acks_pending > 0)
        return;
    if (L.ack_failed) {
        /* Committed but maybe not acknowledged: re-reading the pending
         * entries finds them, and writing them again changes nothing. */
        reread_pending();
        backoff("XACK failed");
    } else {
        L.backoff_ms = 0;
    }
    step_idle();
}

/* Acknowledges the committed batch: one XACK per run of entries of one
 * shard (batch_fill keeps a shard's entries together), in chunks. */
static void ack_batch(void)
{
    L.step = STEP_ACKING;
    L.acks_pending = 0;
    L.ack_failed = 0;
    const char *argv[3 + LEDGER_ACK_IDS_MAX];
    size_t len[3 + LEDGER_ACK_IDS_MAX];
    char key[128];
    argv[0] = "XACK";
    argv[1] = key;
    argv[2] = OUTBOX_GROUP_LEDGER;
    int n = 3;
    for (int i = 0; i < L.batch_len; i++) {
        const struct entry *e = &L.batch[i];
        if (n == 3)
            outbox_key(e->shard, key, sizeof key);
        argv[n++] = e->stream_id;
        int run_ends = i + 1 == L.batch_len || L.batch[i + 1].shard != e->shard;
        if (!run_ends && n < 3 + LEDGER_ACK_IDS_MAX)
            continue;
        for (int k = 0; k < n; k++)
            len[k] = strlen(argv[k]);
        if (rlink_command(L.link, n, argv, len, on_ack, NULL) == 0)
            L.acks_pending++;
        else
            L.ack_failed = 1;
        n = 3;
    }
    batch_clear();
    if (L.acks_pending == 0) {
        if (L.ack_failed) {
            reread_pending();
            backoff("XACK not sent");
        }
        step_idle();
    }
}

static void copies_free(void)
{
    for (int i = 0; i < L.ncopies; i++)
        free((char *)L.copies[i].data);
    L.ncopies = 0;
}

static void write_form(int careful);

static void txn_done(int ok)
{
    if (L.step != STEP_WRITING)
        return;
    int64_t now = now_mono_ms();
    int fast = L.fast;
    L.fast = 0;
    copies_free();
    if (!ok && fast && L.pg_failed && pg_ready()) {
        /* PostgreSQL refused the fast form and rolled it back; the careful
         * form is right in every case. A unique key that failed is an
         * order already written (a replay after a failure): expected. */
        log_msg(strcmp(L.pg_sqlstate, "23505") == 0 ? LOG_DEBUG : LOG_WARN,
                "ledger: COPY of %d entries refused (%s): writing them with INSERT ... ON CONFLICT", L.batch_len,
                L.pg_error);
        write_form(1);
        return;
    }
    if (!ok) {
        log_msg(LOG_WARN, "ledger: transaction of %d entries failed: %s", L.batch_len,
                L.pg_error[0] ? L.pg_error : "connection lost");
        batch_clear();
        reread_pending();
        backoff("transaction failed");
        step_idle();
        return;
    }
    int64_t newest = 0, rejects = 0;
    for (int i = 0; i < L.batch_len; i++) {
        if (L.batch[i].ts_ms > newest)
            newest = L.batch[i].ts_ms;
        rejects += L.batch[i].kind == EK_REJECT;
    }
    if (fast) { /* every row of the batch is new, or it would have failed */
        for (int i = 0; i < L.batch_len; i++) {
            L.rows_orders += L.batch[i].kind == EK_GIFT || L.batch[i].kind == EK_TIP;
            L.rows_credits += L.batch[i].kind == EK_CREDIT;
        }
    }
    L.stats.batches++;
    L.stats.entries += (uint64_t)L.batch_len;
    L.stats.orders += (uint64_t)L.rows_orders;
    L.stats.credits += (uint64_t)L.rows_credits;
    L.stats.rejects += (uint64_t)rejects;
    L.stats.last_flush_ms = now - L.txn_started_ms;
    if (newest)
        L.stats.last_lag_ms = now_wall_ms() - newest;
    if (rejects)
        log_msg(LOG_ERROR, "ledger: %" PRId64 " malformed outbox entries set aside in outbox_rejects", rejects);
    log_msg(LOG_DEBUG, "ledger: committed %d entries (%" PRId64 " new orders, %" PRId64 " new credits) in %" PRId64
            " ms", L.batch_len, L.rows_orders, L.rows_credits, L.stats.last_flush_ms);
    ack_batch();
}

static void txn_reset(void)
{
    L.pg_failed = 0;
    L.pg_error[0] = '\0';
    L.pg_sqlstate[0] = '\0';
    L.rows_orders = L.rows_credits = 0;
}

/* Sends the batch as one transaction in the form asked for; the fast form
 * falls back to the careful one when the earnings overflow, and txn_done
 * follows it with the careful one should PostgreSQL refuse it. */
static void write_form(int careful)
{
    assert(pg_ready() && L.batch_len > 0 && L.step == STEP_WRITING);
    struct sbuf b = {0}, rows[LEDGER_COPIES] = {{0}};
    int ncopies = 0;
    txn_reset();
    int rc = build_batch(&b, rows, &ncopies, careful);
    if (rc < 0 || b.oom) {
        for (int i = 0; i < LEDGER_COPIES; i++)
            free(rows[i].p);
        free(b.p);
        if (rc < 0 || !careful) {
            write_form(1);
        } else {
            snprintf(L.pg_error, sizeof L.pg_error, "out of memory building the SQL");
            txn_done(0);
        }
        return;
    }
    for (int i = 0; i < ncopies; i++)
        L.copies[i] = (struct pgconn_copy){.data = rows[i].p, .len = rows[i].len};
    L.ncopies = ncopies;
    L.fast = !careful;
    int sent = pgconn_query_copy(L.pg, b.p, L.copies, L.ncopies, on_txn_result, NULL);
    free(b.p);
    if (sent < 0) {
        /* Refused: the connection was dropped (on_pg_down), no callback. */
        first_line(pgconn_error(L.pg), L.pg_error, sizeof L.pg_error);
        txn_done(0);
    }
}

/* Writes the batch: in its fast form, or not at all when it holds only
 * entries deleted from the stream (then only the acks). */
static void write_batch(void)
{
    assert(pg_ready() && L.batch_len > 0);
    int only_gone = 1;
    for (int i = 0; i < L.batch_len; i++)
        only_gone &= L.batch[i].kind == EK_GONE;
    L.step = STEP_WRITING;
    L.txn_started_ms = now_mono_ms();
    txn_reset();
    if (only_gone) {
        txn_done(1);
        return;
    }
    write_form(0);
}

static int shard_of_key(const redisReply *key)
{
    int shard = -1, end = 0;
    char buf[64];
    if (key->type != REDIS_REPLY_STRING || key->len >= sizeof buf)
        return -1;
    memcpy(buf, key->str, key->len);
    buf[key->len] = '\0';
    if (sscanf(buf, "tc:{w:%d}:outbox%n", &shard, &end) != 1 || buf[end] != '\0')
        return -1;
    return shard >= 0 && shard < srv.cfg.wallet_shards ? shard : -1;
}

static int batch_reserve(int n)
{
    if (n <= L.batch_cap)
        return 0;
    struct entry *b = realloc(L.batch, sizeof *b * (size_t)n);
    if (!b)
        return -1;
    L.batch = b;
    L.batch_cap = n;
    return 0;
}

/* Copies the entries of an XREADGROUP reply into the batch. Returns the
 * number of entries, or -1 (malformed reply, out of memory). */
static int batch_fill(const redisReply *reply, int per_stream)
{
    int total = 0;
    for (size_t i = 0; i < reply->elements; i++) {
        const redisReply *st = reply->element[i];
        if (st->type != REDIS_REPLY_ARRAY || st->elements != 2 || st->element[1]->type != REDIS_REPLY_ARRAY)
            return -1;
        total += (int)st->element[1]->elements;
    }
    if (batch_reserve(total) < 0)
        return -1;
    for (size_t i = 0; i < reply->elements; i++) {
        const redisReply *st = reply->element[i];
        int shard = shard_of_key(st->element[0]);
        if (shard < 0)
            return -1;
        const redisReply *items = st->element[1];
        struct shard_state *ss = &L.shards[shard];
        /* A history read that returned less than asked has drained the
         * shard's pending entries: new ones come next (once these commit;
         * a failure sets history again). */
        if (ss->history && (int)items->elements < per_stream)
            ss->history = 0;
        for (size_t k = 0; k < items->elements; k++) {
            const redisReply *it = items->element[k];
            if (it->type != REDIS_REPLY_ARRAY || it->elements < 1 || it->element[0]->type != REDIS_REPLY_STRING ||
                it->element[0]->len >= OUTBOX_ORDER_ID_MAX - 6)
                return -1;
            if (entry_parse(&L.batch[L.batch_len], shard, it) < 0) {
                entry_free(&L.batch[L.batch_len]);
                return -1;
            }
            L.batch_len++;
        }
    }
    return L.batch_len;
}

static void on_read(redisReply *reply, void *priv)
{
    (void)priv;
    if (L.stopping)
        return;
    assert(L.step == STEP_READING);
    if (!reply) {
        backoff("XREADGROUP: no answer (connection lost)");
        step_idle();
        return;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        if (strncmp(reply->str, "NOGROUP", 7) == 0 && rlink_cmd_ready())
            outbox_ensure_groups();
        log_msg(LOG_WARN, "ledger: XREADGROUP: %s", reply->str);
        backoff("XREADGROUP failed");
        step_idle();
        return;
    }
    if (reply->type == REDIS_REPLY_NIL) { /* BLOCK ran out: nothing new */
        step_idle();
        return;
    }
    if (reply->type != REDIS_REPLY_ARRAY || batch_fill(reply, L.read_per_stream) < 0) {
        batch_clear();
        reread_pending();
        backoff("XREADGROUP: unexpected reply");
        step_idle();
        return;
    }
    if (L.batch_len == 0) {
        step_idle();
        return;
    }
    if (!pg_ready()) {
        /* PostgreSQL went away during the read: the entries stay pending. */
        batch_clear();
        reread_pending();
        step_idle();
        return;
    }
    write_batch();
}

static void read_start(void)
{
    int shards = srv.cfg.wallet_shards, owned = 0;
    for (int s = 0; s < shards; s++)
        owned += L.leases.owned[s];
    if (owned == 0)
        return;
    int streams = owned < LEDGER_STREAMS_PER_READ ? owned : LEDGER_STREAMS_PER_READ;
    /* ledger-batch bounds one transaction: it is shared among the streams. */
    L.read_per_stream = srv.cfg.ledger_batch / streams;
    if (L.read_per_stream < 1)
        L.read_per_stream = 1;
    char count[16], block[16];
    snprintf(count, sizeof count, "%d", L.read_per_stream);
    snprintf(block, sizeof block, "%d", srv.cfg.ledger_flush_ms);
    char keys[LEDGER_STREAMS_PER_READ][64]; /* rlink copies the arguments */
    const char *argv[9 + 2 * LEDGER_STREAMS_PER_READ];
    size_t len[9 + 2 * LEDGER_STREAMS_PER_READ];
    const char *head[] = {"XREADGROUP", "GROUP", OUTBOX_GROUP_LEDGER, srv.node_id, "COUNT", count, "BLOCK", block,
                          "STREAMS"};
    int n = 0;
    for (; n < 9; n++)
        argv[n] = head[n];
    int picked = 0, order[LEDGER_STREAMS_PER_READ];
    for (int i = 0; i < shards && picked < streams; i++) {
        int s = (L.read_from + i) % shards;
        if (!L.leases.owned[s] || L.shards[s].claim)
            continue;
        order[picked++] = s;
    }
    if (picked == 0)
        return;
    L.read_from = (L.read_from + 1) % shards;
    for (int i = 0; i < picked; i++) {
        int s = order[i];
        outbox_key(s, keys[i], sizeof keys[i]);
        argv[9 + i] = keys[i];
        argv[9 + picked + i] = L.shards[s].history ? "0" : ">";
    }
    n = 9 + 2 * picked;
    for (int i = 0; i < n; i++)
        len[i] = strlen(argv[i]);
    if (rlink_command(L.link, n, argv, len, on_read, NULL) < 0) {
        backoff("XREADGROUP not sent");
        return;
    }
    L.step = STEP_READING;
}

static void claim_start(int shard);

static void on_consumers(redisReply *reply, void *priv)
{
    int shard = (int)(intptr_t)priv;
    if (L.stopping || !reply || reply->type != REDIS_REPLY_ARRAY)
        return;
    char key[128];
    outbox_key(shard, key, sizeof key);
    for (size_t i = 0; i < reply->elements; i++) {
        const redisReply *c = reply->element[i];
        const char *name = NULL;
        long long pending = -1, idle = -1;
        for (size_t k = 0; c->type == REDIS_REPLY_ARRAY && k + 1 < c->elements; k += 2) {
            const redisReply *f = c->element[k], *v = c->element[k + 1];
            if (f->type != REDIS_REPLY_STRING)
                continue;
            if (strcmp(f->str, "name") == 0 && v->type == REDIS_REPLY_STRING)
                name = v->str;
            else if (strcmp(f->str, "pending") == 0 && v->type == REDIS_REPLY_INTEGER)
                pending = v->integer;
            else if (strcmp(f->str, "idle") == 0 && v->type == REDIS_REPLY_INTEGER)
                idle = v->integer;
        }
        if (!name || strcmp(name, srv.node_id) == 0 || pending != 0 || idle < LEDGER_CONSUMER_IDLE_MS)
            continue;
        const char *argv[] = {"XGROUP", "DELCONSUMER", key, OUTBOX_GROUP_LEDGER, name};
        size_t len[5];
        for (int k = 0; k < 5; k++)
            len[k] = strlen(argv[k]);
        if (rlink_command(RLINK_CMD_LINK, 5, argv, len, on_ignored, NULL) == 0)
            log_msg(LOG_DEBUG, "ledger: shard %d: forgot the idle consumer %s", shard, name);
    }
}

/* Every start of a node leaves a consumer name in the group. Once this
 * node owns the shard and has claimed what they had pending, those without
 * pending entries that have long stopped reading this stream are only
 * clutter. (One with pending entries is never deleted: that would drop its
 * entries from the group's pending list.) */
static void forget_consumers(int shard)
{
    char key[128];
    outbox_key(shard, key, sizeof key);
    const char *argv[] = {"XINFO", "CONSUMERS", key, OUTBOX_GROUP_LEDGER};
    size_t len[4];
    for (int k = 0; k < 4; k++)
        len[k] = strlen(argv[k]);
    rlink_command(RLINK_CMD_LINK, 4, argv, len, on_consumers, (void *)(intptr_t)shard);
}

static void on_claim(redisReply *reply, void *priv)
{
    int shard = (int)(intptr_t)priv;
    if (L.stopping)
        return;
    assert(L.step == STEP_CLAIMING);
    struct shard_state *ss = &L.shards[shard];
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements < 2 ||
        reply->element[0]->type != REDIS_REPLY_STRING || reply->element[0]->len >= sizeof ss->cursor) {
        if (reply && reply->type == REDIS_REPLY_ERROR) {
            log_msg(LOG_WARN, "ledger: XAUTOCLAIM on shard %d: %s", shard, reply->str);
            if (strncmp(reply->str, "NOGROUP", 7) == 0 && rlink_cmd_ready())
                outbox_ensure_groups();
        }
        backoff("XAUTOCLAIM failed");
        step_idle();
        return;
    }
    const redisReply *claimed = reply->element[1];
    if (claimed->type == REDIS_REPLY_ARRAY && claimed->elements > 0)
        log_msg(LOG_INFO, "ledger: shard %d: claimed %zu pending entries of a previous consumer", shard,
                claimed->elements);
    snprintf(ss->cursor, sizeof ss->cursor, "%.*s", (int)reply->element[0]->len, reply->element[0]->str);
    if (strcmp(ss->cursor, "0-0") == 0 || !L.leases.owned[shard]) {
        ss->claim = 0;
        ss->history = 1;
        if (L.leases.owned[shard])
            forget_consumers(shard);
        step_idle();
        return;
    }
    claim_start(shard);
}

/* Moves the entries pending at any consumer of the group (a dead node's,
 * or this node's under its previous name) to this consumer: they are read
 * next as its own pending entries. The lease guarantees no live consumer
 * is working on them. */
static void claim_start(int shard)
{
    struct shard_state *ss = &L.shards[shard];
    char key[128], count[16];
    outbox_key(shard, key, sizeof key);
    snprintf(count, sizeof count, "%d", LEDGER_CLAIM_COUNT);
    const char *argv[] = {"XAUTOCLAIM", key, OUTBOX_GROUP_LEDGER, srv.node_id, "0", ss->cursor, "COUNT", count,
                          "JUSTID"};
    size_t len[9];
    for (int i = 0; i < 9; i++)
        len[i] = strlen(argv[i]);
    if (rlink_command(L.link, 9, argv, len, on_claim, (void *)(intptr_t)shard) < 0) {
        backoff("XAUTOCLAIM not sent");
        L.step = STEP_IDLE;
        return;
    }
    L.step = STEP_CLAIMING;
}

/* Starts the next step when nothing is in flight. */
static void pump(void)
{
    if (L.stopping || L.step != STEP_IDLE || now_mono_ms() < L.retry_at_ms || !rlink_up(L.link))
        return;
    for (int s = 0; s < srv.cfg.wallet_shards; s++)
        if (L.leases.owned[s] && L.shards[s].claim) {
            claim_start(s);
            return;
        }
    /* Entries are read only when they can be written: while PostgreSQL
     * is down they wait in the outbox, not in this process. */
    if (!pg_ready())
        return;
    read_start();
}

static void on_lease_change(int shard, int owned)
{
    if (owned) {
        L.shards[shard].claim = 1;
        L.shards[shard].history = 1;
        snprintf(L.shards[shard].cursor, sizeof L.shards[shard].cursor, "0-0");
    }
    pump();
}

/* ---- Trimming ----------------------------------------------------------------- */

static void on_trim(redisReply *reply, void *priv)
{
    int shard = (int)(intptr_t)priv;
    if (L.stopping || !reply)
        return;
    if (reply->type == REDIS_REPLY_INTEGER && reply->integer > 0) {
        L.stats.trimmed += (uint64_t)reply->integer;
        log_msg(LOG_DEBUG, "ledger: shard %d: trimmed %lld outbox entries", shard, reply->integer);
    } else if (reply->type == REDIS_REPLY_INTEGER && reply->integer < 0) {
        log_msg(LOG_DEBUG, "ledger: shard %d: not trimmed, a consumer group is missing", shard);
    } else if (reply->type == REDIS_REPLY_ERROR) {
        log_msg(LOG_WARN, "ledger: shard %d: trim: %s", shard, reply->str);
    }
}

static void trim_owned(void)
{
    for (int s = 0; s < srv.cfg.wallet_shards; s++) {
        if (!L.leases.owned[s])
            continue;
        char key[128];
        outbox_key(s, key, sizeof key);
        const char *argv[] = {key, OUTBOX_GROUP_LEDGER, OUTBOX_GROUP_ROOMS};
        size_t len[] = {strlen(key), strlen(OUTBOX_GROUP_LEDGER), strlen(OUTBOX_GROUP_ROOMS)};
        rlink_eval(SCRIPT_OUTBOX_TRIM, 1, 3, argv, len, on_trim, (void *)(intptr_t)s);
    }
}

/* ---- Housekeeping -------------------------------------------------------------- */

static void on_tick(uv_timer_t *t)
{
    (void)t;
    int64_t now = now_mono_ms();
    int ready = rlink_cmd_ready();
    if (ready && !L.cmd_was_ready) {
        outbox_ensure_groups(); /* again after a Redis restart, too */
        L.next_lease_ms = now;  /* and the leases at once, not a tick later */
    }
    L.cmd_was_ready = ready;
    if (now >= L.next_lease_ms) {
        L.next_lease_ms = now + OUTBOX_LEASE_TICK_MS;
        outbox_lease_tick(&L.leases);
    }
    if (now >= L.next_trim_ms) {
        L.next_trim_ms = now + LEDGER_TRIM_MS;
        if (ready)
            trim_owned();
    }
    if (now >= L.next_stats_ms) {
        L.next_stats_ms = now + LEDGER_STATS_LOG_MS;
        uint64_t n = L.stats.entries - L.logged_entries;
        if (n)
            log_msg(LOG_DEBUG, "ledger: %" PRIu64 " entries in the last %d s (%.0f/s), last commit %" PRId64
                    " ms, lag %" PRId64 " ms", n, LEDGER_STATS_LOG_MS / 1000, n * 1000.0 / LEDGER_STATS_LOG_MS,
                    L.stats.last_flush_ms, L.stats.last_lag_ms);
        L.logged_entries = L.stats.entries;
    }
    pump();
}

int ledger_start(uv_loop_t *loop)
{
    memset(&L, 0, sizeof L);
    L.link = rlink_open("ledger");
    if (L.link < 0) {
        log_msg(LOG_ERROR, "ledger: no Redis connection of its own");
        return -1;
    }
    static const struct pgconn_hooks hooks = {.on_up = on_pg_up, .on_down = on_pg_down};
    const struct pgconn_config cfg = {
        .name = "ledger: postgres",
        .conninfo = srv.cfg.pg_conninfo,
        .application_name = "tipcastd-ledger",
        .client_encoding = "UTF8",
        .backoff_min_ms = LEDGER_BACKOFF_MIN_MS,
        .backoff_max_ms = LEDGER_BACKOFF_MAX_MS,
        .timeout_ms = LEDGER_PG_TIMEOUT_MS,
    };
    L.pg = pgconn_open(loop, &cfg, &hooks, NULL);
    if (!L.pg) {
        log_msg(LOG_ERROR, "ledger: out of memory");
        return -1;
    }
    L.leases.group = OUTBOX_GROUP_LEDGER;
    L.leases.on_change = on_lease_change;
    L.step = STEP_IDLE;
    uv_timer_init(loop, &L.timer);
    uv_timer_start(&L.timer, on_tick, 0, LEDGER_TICK_MS);
    L.started = 1;
    return 0;
}

void ledger_stop(void)
{
    if (!L.started || L.stopping)
        return;
    L.stopping = 1;
    uv_timer_stop(&L.timer);
    uv_close((uv_handle_t *)&L.timer, NULL);
    /* Another node can take the shards at once instead of after the
     * leases run out. */
    outbox_lease_release_all(&L.leases);
    pgconn_close(L.pg); /* the transaction in flight ends unacknowledged */
    L.pg = NULL;
    copies_free();
    batch_clear();
    free(L.batch);
    L.batch = NULL;
    L.batch_cap = 0;
    log_msg(LOG_INFO, "ledger: stopped (%" PRIu64 " entries, %" PRIu64 " orders written)", L.stats.entries,
            L.stats.orders);
}

void ledger_stats(struct ledger_stats *out) { *out = L.stats; }
