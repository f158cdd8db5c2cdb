/* ledger_sql.c - the SQL and COPY text of a ledger batch (see ledger_sql.h). */
#include "ledger_sql.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "utf8.h"

/* ---- Text ------------------------------------------------------------------ */

void sbuf_put(struct sbuf *b, const char *s, size_t n)
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

void sbuf_str(struct sbuf *b, const char *s) { sbuf_put(b, s, strlen(s)); }

void sbuf_i64(struct sbuf *b, int64_t v)
{
    char num[32];
    int n = snprintf(num, sizeof num, "%" PRId64, v);
    sbuf_put(b, num, (size_t)n);
}

void sbuf_free(struct sbuf *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}

/* Writes s[0..len) with the characters in `special` escaped by `escape`
 * (which returns the escape of one of them) and NUL as U+FFFD. */
static void put_escaped(struct sbuf *b, const char *s, size_t len, const char *special,
                        const char *(*escape)(char c))
{
    size_t run = 0; /* bytes that need nothing, written in one go */
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c != '\0' && !strchr(special, c)) {
            run++;
            continue;
        }
        sbuf_put(b, s + i - run, run);
        run = 0;
        sbuf_str(b, c == '\0' ? UTF8_REPLACEMENT : escape(c));
    }
    sbuf_put(b, s + len - run, run);
}

static const char *copy_escape(char c)
{
    switch (c) {
    case '\\': return "\\\\";
    case '\t': return "\\t";
    case '\n': return "\\n";
    default: return "\\r";
    }
}

static const char *literal_escape(char c) { return c == '\\' ? "\\\\" : "\\'"; }

void sbuf_copy_text(struct sbuf *b, const char *s, size_t len)
{
    if (!s) {
        sbuf_str(b, "\\N");
        return;
    }
    put_escaped(b, s, len, "\\\t\n\r", copy_escape);
}

void sbuf_literal(struct sbuf *b, const char *s, size_t len)
{
    sbuf_str(b, "E'");
    put_escaped(b, s, len, "\\'", literal_escape);
    sbuf_str(b, "'");
}

void sbuf_time(struct sbuf *b, int64_t ts_ms)
{
    time_t sec = (time_t)(ts_ms / 1000);
    struct tm tm;
    char out[48];
    if (ts_ms < 0 || !gmtime_r(&sec, &tm)) {
        b->oom = 1; /* cannot happen within the bound; fail the batch rather than guess */
        return;
    }
    int n = snprintf(out, sizeof out, "%04d-%02d-%02d %02d:%02d:%02d.%03d+00", tm.tm_year + 1900, tm.tm_mon + 1,
                     tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ts_ms % 1000));
    sbuf_put(b, out, (size_t)n);
}

/* ---- Rows -------------------------------------------------------------------- */

/* An optional text: NULL (\N) when empty. */
static void copy_opt(struct sbuf *b, const struct entry_str *s)
{
    sbuf_copy_text(b, s->len ? s->s : NULL, s->len);
}

static void copy_order_id(struct sbuf *b, const struct entry *e)
{
    char oid[OUTBOX_ORDER_ID_MAX + 1];
    entry_order_id(e, oid, sizeof oid);
    sbuf_str(b, oid); /* digits and '-': nothing to escape */
}

/* The columns the batch COPYs into orders and ledger (or their staging
 * tables), in the order the rows are written. */
#define ORDER_COLS                                                                                        \
    "order_id, kind, sender, room, creator, gift_id, gift_name, count, unit_price, amount, combo, message, " \
    "request_id, sender_balance, created_at"
#define MOVE_COLS "movement_id, account, delta, kind, note, created_at"

static void copy_order(struct sbuf *o, const struct entry *e)
{
    int gift = e->kind == ENTRY_GIFT;
    copy_order_id(o, e);
    sbuf_str(o, gift ? "\tgift\t" : "\ttip\t");
    copy_opt(o, &e->user);
    sbuf_str(o, "\t");
    copy_opt(o, &e->room);
    sbuf_str(o, "\t");
    copy_opt(o, &e->room); /* the room is the creator's own (gifts/outbox.h) */
    sbuf_str(o, "\t");
    if (gift)
        sbuf_i64(o, e->gift_id);
    else
        sbuf_str(o, "\\N");
    sbuf_str(o, "\t");
    copy_opt(o, gift ? &e->gift_name : &(struct entry_str){"", 0});
    sbuf_str(o, "\t");
    sbuf_i64(o, e->count);
    sbuf_str(o, "\t");
    sbuf_i64(o, e->unit_price);
    sbuf_str(o, "\t");
    sbuf_i64(o, e->amount);
    sbuf_str(o, "\t");
    copy_opt(o, gift ? &e->combo : &(struct entry_str){"", 0});
    sbuf_str(o, "\t");
    copy_opt(o, gift ? &(struct entry_str){"", 0} : &e->text);
    sbuf_str(o, "\t");
    copy_opt(o, &e->request_id);
    sbuf_str(o, "\t");
    sbuf_i64(o, e->balance);
    sbuf_str(o, "\t");
    sbuf_time(o, e->ts_ms);
    sbuf_str(o, "\n");
}

/* One ledger row, in MOVE_COLS order. */
static void copy_move(struct sbuf *b, const struct entry *e, const char *prefix, const struct entry_str *account,
                      int64_t delta, const char *kind, const struct entry_str *note)
{
    copy_order_id(b, e);
    sbuf_str(b, "\t");
    sbuf_str(b, prefix);
    sbuf_copy_text(b, account->s, account->len);
    sbuf_str(b, "\t");
    sbuf_i64(b, delta);
    sbuf_str(b, "\t");
    sbuf_str(b, kind);
    sbuf_str(b, "\t");
    copy_opt(b, note);
    sbuf_str(b, "\t");
    sbuf_time(b, e->ts_ms);
    sbuf_str(b, "\n");
}

/* ---- Statements --------------------------------------------------------------- */

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

static int is_order(const struct entry *e) { return e->kind == ENTRY_GIFT || e->kind == ENTRY_TIP; }

static int by_creator(const void *a, const void *b)
{
    return strcmp((*(const struct entry *const *)a)->room.s, (*(const struct entry *const *)b)->room.s);
}

/* The fast form's earnings: summed per creator, upserted in creator order
 * (see APPLY_SQL). -1 when a sum overflows. */
static int sql_earnings(struct sbuf *b, const struct entry *e, size_t n, size_t norders)
{
    const struct entry **idx = malloc(sizeof *idx * norders);
    if (!idx) {
        b->oom = 1;
        return 0;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (is_order(&e[i]))
            idx[k++] = &e[i];
    qsort(idx, k, sizeof *idx, by_creator);
    sbuf_str(b, "INSERT INTO creator_earnings AS ce (creator, total, orders, updated_at) VALUES ");
    for (size_t i = 0, first = 1; i < k; first = 0) {
        const struct entry_str *creator = &idx[i]->room;
        int64_t total = 0, count = 0;
        for (; i < k && strcmp(idx[i]->room.s, creator->s) == 0; i++, count++)
            if (__builtin_add_overflow(total, idx[i]->amount, &total)) {
                free(idx);
                return -1;
            }
        sbuf_str(b, first ? "(" : ", (");
        sbuf_literal(b, creator->s, creator->len);
        sbuf_str(b, ", ");
        sbuf_i64(b, total);
        sbuf_str(b, ", ");
        sbuf_i64(b, count);
        sbuf_str(b, ", now())");
    }
    free(idx);
    sbuf_str(b, " ON CONFLICT (creator) DO UPDATE SET total = ce.total + EXCLUDED.total, "
                "orders = ce.orders + EXCLUDED.orders, updated_at = EXCLUDED.updated_at;\n");
    return 0;
}

static void hex(struct sbuf *b, const char *s, size_t n)
{
    static const char digits[] = "0123456789abcdef";
    char pair[2];
    for (size_t i = 0; i < n; i++) {
        pair[0] = digits[(unsigned char)s[i] >> 4];
        pair[1] = digits[(unsigned char)s[i] & 15];
        sbuf_put(b, pair, 2);
    }
}

/* The batch's malformed entries into outbox_rejects. */
static void sql_rejects(struct sbuf *b, const struct entry *e, size_t n)
{
    sbuf_str(b, "INSERT INTO outbox_rejects (order_id, reason, entry) VALUES ");
    int first = 1;
    for (size_t i = 0; i < n; i++) {
        if (e[i].kind != ENTRY_BAD)
            continue;
        char oid[OUTBOX_ORDER_ID_MAX + 1];
        entry_order_id(&e[i], oid, sizeof oid);
        sbuf_str(b, first ? "(" : ", (");
        sbuf_literal(b, oid, strlen(oid));
        sbuf_str(b, ", ");
        sbuf_literal(b, e[i].reason, strlen(e[i].reason));
        sbuf_str(b, ", decode('");
        hex(b, e[i].raw.s, e[i].raw.len);
        sbuf_str(b, "', 'hex'))");
        first = 0;
    }
    sbuf_str(b, " ON CONFLICT (order_id) DO NOTHING;\n");
}

int ledger_sql_build(struct ledger_sql *q, const struct entry *e, size_t n, int careful)
{
    memset(q, 0, sizeof *q);
    size_t norders = 0, nmoves = 0, nrejects = 0;
    for (size_t i = 0; i < n; i++) {
        norders += is_order(&e[i]);
        nmoves += is_order(&e[i]) || e[i].kind == ENTRY_CREDIT;
        nrejects += e[i].kind == ENTRY_BAD;
    }
    struct sbuf *b = &q->sql;
    if (careful)
        sbuf_str(b, STAGING_SQL);
    if (norders) {
        struct sbuf *o = &q->rows[q->ncopies++];
        sbuf_str(b, careful ? "COPY ledger_in_orders (" ORDER_COLS ") FROM STDIN;\n"
                            : "COPY orders (" ORDER_COLS ") FROM STDIN;\n");
        for (size_t i = 0; i < n; i++)
            if (is_order(&e[i]))
                copy_order(o, &e[i]);
    }
    if (nmoves) {
        static const struct entry_str platform = {"platform", 8}, none = {"", 0};
        struct sbuf *m = &q->rows[q->ncopies++];
        sbuf_str(b, careful ? "COPY ledger_in_moves (" MOVE_COLS ") FROM STDIN;\n"
                            : "COPY ledger (" MOVE_COLS ") FROM STDIN;\n");
        for (size_t i = 0; i < n; i++) {
            const struct entry *x = &e[i];
            if (is_order(x)) {
                const char *kind = x->kind == ENTRY_GIFT ? "gift" : "tip";
                copy_move(m, x, "user:", &x->user, -x->amount, kind, &none);
                copy_move(m, x, "creator:", &x->room, x->amount, kind, &none);
            } else if (x->kind == ENTRY_CREDIT) {
                copy_move(m, x, "user:", &x->user, x->amount, "credit", &x->text);
                copy_move(m, x, "", &platform, -x->amount, "credit", &x->text);
            }
        }
    }
    if (careful)
        sbuf_str(b, APPLY_SQL);
    else if (norders && sql_earnings(b, e, n, norders) < 0)
        return -1;
    if (nrejects)
        sql_rejects(b, e, n);
    return 0;
}

int ledger_sql_oom(const struct ledger_sql *q)
{
    int oom = q->sql.oom;
    for (int i = 0; i < q->ncopies; i++)
        oom |= q->rows[i].oom;
    return oom;
}

void ledger_sql_free(struct ledger_sql *q)
{
    sbuf_free(&q->sql);
    for (int i = 0; i < LEDGER_COPIES; i++)
        sbuf_free(&q->rows[i]);
    q->ncopies = 0;
}
