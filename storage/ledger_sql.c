/* ledger_sql.c - the SQL and COPY text of a ledger batch (see ledger_sql.h). */
#include "ledger_sql.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hex.h"
#include "text.h"
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
    char num[TEXT_I64_MAX + 1];
    sbuf_put(b, num, text_cat_i64(num, sizeof num, 0, v));
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
    /* YYYY-MM-DD HH:MM:SS.mmm+00 */
    const struct {
        int v, width;
        char after;
    } part[] = {{tm.tm_year + 1900, 4, '-'}, {tm.tm_mon + 1, 2, '-'}, {tm.tm_mday, 2, ' '}, {tm.tm_hour, 2, ':'},
                {tm.tm_min, 2, ':'},         {tm.tm_sec, 2, '.'},     {(int)(ts_ms % 1000), 3, '+'}};
    size_t n = 0;
    for (size_t i = 0; i < sizeof part / sizeof part[0]; i++)
        n = text_catn(out, sizeof out, text_cat_pad(out, sizeof out, n, (uint64_t)part[i].v, part[i].width),
                      &part[i].after, 1);
    sbuf_put(b, out, text_cat(out, sizeof out, n, "00"));
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
    "request_id, sender_balance, created_at, ip, device"
#define MOVE_COLS "movement_id, account, delta, kind, note, created_at"
#define EXT_COLS "order_id, kind, user_id, amount, ref, room, order_ts, created_at"

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
    sbuf_str(o, "\t");
    copy_opt(o, &e->ip); /* an address as inet_ntop wrote it: nothing to escape, inet reads it */
    sbuf_str(o, "\t");
    copy_opt(o, &e->device);
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

/* One recharge or refund, in EXT_COLS order. */
static void copy_ext(struct sbuf *b, const struct entry *e)
{
    copy_order_id(b, e);
    sbuf_str(b, e->kind == ENTRY_RECHARGE ? "\trecharge\t" : "\trefund\t");
    sbuf_copy_text(b, e->user.s, e->user.len);
    sbuf_str(b, "\t");
    sbuf_i64(b, e->amount);
    sbuf_str(b, "\t");
    sbuf_copy_text(b, e->ref.s, e->ref.len);
    sbuf_str(b, "\t");
    copy_opt(b, &e->room);
    sbuf_str(b, "\t");
    if (e->kind == ENTRY_REFUND)
        sbuf_time(b, e->order_ts_ms);
    else
        sbuf_str(b, "\\N");
    sbuf_str(b, "\t");
    sbuf_time(b, e->ts_ms);
    sbuf_str(b, "\n");
}

/* ---- Statements --------------------------------------------------------------- */

static int is_order(const struct entry *e) { return e->kind == ENTRY_GIFT || e->kind == ENTRY_TIP; }
static int is_ext(const struct entry *e) { return e->kind == ENTRY_RECHARGE || e->kind == ENTRY_REFUND; }

static void hex(struct sbuf *b, const char *s, size_t n)
{
    char text[2 * 64 + 1];
    for (size_t i = 0; i < n; i += 64) {
        size_t k = n - i < 64 ? n - i : 64;
        hex_lower((const unsigned char *)s + i, k, text);
        sbuf_put(b, text, 2 * k);
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

int ledger_sql_build(struct ledger_sql *q, const struct entry *e, size_t n, int webhooks)
{
    memset(q, 0, sizeof *q);
    size_t norders = 0, ncredits = 0, next = 0, nrejects = 0;
    for (size_t i = 0; i < n; i++) {
        norders += is_order(&e[i]);
        ncredits += e[i].kind == ENTRY_CREDIT || e[i].kind == ENTRY_PLEDGE || e[i].kind == ENTRY_CREFUND;
        next += is_ext(&e[i]);
        nrejects += e[i].kind == ENTRY_BAD;
    }
    struct sbuf *b = &q->sql;
    if (norders + ncredits + next) {
        sbuf_str(b, "SELECT tipcast_ledger_staging();\n");
        if (norders) {
            struct sbuf *o = &q->rows[q->ncopies++];
            sbuf_str(b, "COPY ledger_in_orders (" ORDER_COLS ") FROM STDIN;\n");
            for (size_t i = 0; i < n; i++)
                if (is_order(&e[i]))
                    copy_order(o, &e[i]);
        }
        if (ncredits) {
            static const struct entry_str platform = {"platform", 8};
            struct sbuf *m = &q->rows[q->ncopies++];
            sbuf_str(b, "COPY ledger_in_moves (" MOVE_COLS ") FROM STDIN;\n");
            for (size_t i = 0; i < n; i++) {
                const struct entry *x = &e[i];
                if (x->kind == ENTRY_CREDIT) {
                    copy_move(m, x, "user:", &x->user, x->amount, "credit", &x->text);
                    copy_move(m, x, "", &platform, -x->amount, "credit", &x->text);
                } else if (x->kind == ENTRY_PLEDGE) {
                    /* Into the campaign's escrow; the note is the tier (or
                     * NULL), read by 013's trigger into campaign_pledges. */
                    copy_move(m, x, "user:", &x->user, -x->amount, "pledge", &x->ref);
                    copy_move(m, x, "escrow:", &x->room, x->amount, "pledge", &x->ref);
                } else if (x->kind == ENTRY_CREFUND) {
                    /* Back from escrow; the note names the pledge refunded. */
                    copy_move(m, x, "user:", &x->user, x->amount, "campaign_refund", &x->ref);
                    copy_move(m, x, "escrow:", &x->room, -x->amount, "campaign_refund", &x->ref);
                }
            }
        }
        if (next) {
            struct sbuf *x = &q->rows[q->ncopies++];
            sbuf_str(b, "COPY ledger_in_ext (" EXT_COLS ") FROM STDIN;\n");
            for (size_t i = 0; i < n; i++)
                if (is_ext(&e[i]))
                    copy_ext(x, &e[i]);
        }
        sbuf_str(b, webhooks ? "SELECT * FROM tipcast_ledger_apply(true);\n"
                             : "SELECT * FROM tipcast_ledger_apply(false);\n");
    }
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
