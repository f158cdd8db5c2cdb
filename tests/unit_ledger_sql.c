/* unit_ledger_sql.c - tests of storage/ledger_sql.c: COPY and literal escaping, timestamps, and the
 * exact statements and rows of a batch in the fast and careful forms. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "entry.h"
#include "ledger_sql.h"
#include "unit.h"

#define ORDER_COLS                                                                                        \
    "order_id, kind, sender, room, creator, gift_id, gift_name, count, unit_price, amount, combo, message, " \
    "request_id, sender_balance, created_at"
#define MOVE_COLS "movement_id, account, delta, kind, note, created_at"
#define EARNINGS "INSERT INTO creator_earnings AS ce (creator, total, orders, updated_at) VALUES "
#define EARNINGS_END                                                                                       \
    " ON CONFLICT (creator) DO UPDATE SET total = ce.total + EXCLUDED.total, orders = ce.orders + "        \
    "EXCLUDED.orders, updated_at = EXCLUDED.updated_at;\n"

/* 2023-11-14 22:13:20.250 UTC */
#define TS 1700000000250LL
#define TS_TEXT "2023-11-14 22:13:20.250+00"

/* The sbuf text of one call: f(b, ...) into a fresh buffer. */
#define TEXT_OF(call)          \
    ({                         \
        struct sbuf b_ = {0};  \
        struct sbuf *b = &b_;  \
        call;                  \
        b_;                    \
    })

static void check_sbuf(struct sbuf b, const char *want, size_t wlen, int line)
{
    unit_checks++;
    if (b.oom || b.len != wlen || (wlen && memcmp(b.p, want, wlen) != 0) || (b.p && b.p[b.len] != '\0')) {
        unit_failed++;
        fprintf(stderr, "%s:%d: got \"%.*s\" (%zu bytes), want \"%s\" (%zu)\n", __FILE__, line, (int)b.len,
                b.p ? b.p : "", b.len, want, wlen);
    }
    sbuf_free(&b);
}

#define CHECK_SBUF(call, want) check_sbuf(TEXT_OF(call), want, sizeof(want) - 1, __LINE__)

static void test_copy_text(void)
{
    CHECK_SBUF(sbuf_copy_text(b, "plain", 5), "plain");
    CHECK_SBUF(sbuf_copy_text(b, "", 0), "");
    CHECK_SBUF(sbuf_copy_text(b, NULL, 0), "\\N");
    CHECK_SBUF(sbuf_copy_text(b, "a\\b", 3), "a\\\\b");
    CHECK_SBUF(sbuf_copy_text(b, "\\", 1), "\\\\");
    CHECK_SBUF(sbuf_copy_text(b, "a\tb", 3), "a\\tb");
    CHECK_SBUF(sbuf_copy_text(b, "a\nb", 3), "a\\nb");
    CHECK_SBUF(sbuf_copy_text(b, "a\rb", 3), "a\\rb");
    CHECK_SBUF(sbuf_copy_text(b, "\r\n\t\\", 4), "\\r\\n\\t\\\\");
    CHECK_SBUF(sbuf_copy_text(b, "a\0b", 3), "a\xef\xbf\xbd" "b");
    CHECK_SBUF(sbuf_copy_text(b, "\0\0", 2), "\xef\xbf\xbd\xef\xbf\xbd");
    /* The texts COPY would read as NULL and as the end of data are data. */
    CHECK_SBUF(sbuf_copy_text(b, "\\N", 2), "\\\\N");
    CHECK_SBUF(sbuf_copy_text(b, "\\.", 2), "\\\\.");
    CHECK_SBUF(sbuf_copy_text(b, "x\n\\.\n", 5), "x\\n\\\\.\\n");
    /* Other bytes go as they are: COPY only reads them after a backslash. */
    CHECK_SBUF(sbuf_copy_text(b, "\x01\x08\x0b\x0c'\"\xc3\xa9", 8), "\x01\x08\x0b\x0c'\"\xc3\xa9");
    /* len, not the NUL, ends the text. */
    CHECK_SBUF(sbuf_copy_text(b, "abc\tdef", 3), "abc");
}

static void test_literal(void)
{
    CHECK_SBUF(sbuf_literal(b, "", 0), "E''");
    CHECK_SBUF(sbuf_literal(b, "room1", 5), "E'room1'");
    CHECK_SBUF(sbuf_literal(b, "it's", 4), "E'it\\'s'");
    CHECK_SBUF(sbuf_literal(b, "a\\b", 3), "E'a\\\\b'");
    CHECK_SBUF(sbuf_literal(b, "\\'", 2), "E'\\\\\\''");
    CHECK_SBUF(sbuf_literal(b, "'); DROP TABLE orders; --", 25), "E'\\'); DROP TABLE orders; --'");
    CHECK_SBUF(sbuf_literal(b, "a\0b", 3), "E'a\xef\xbf\xbd" "b'");
    CHECK_SBUF(sbuf_literal(b, "\\x41", 4), "E'\\\\x41'");
    CHECK_SBUF(sbuf_literal(b, "tab\there", 8), "E'tab\there'");
}

static void test_time_and_numbers(void)
{
    CHECK_SBUF(sbuf_time(b, 0), "1970-01-01 00:00:00.000+00");
    CHECK_SBUF(sbuf_time(b, 999), "1970-01-01 00:00:00.999+00");
    CHECK_SBUF(sbuf_time(b, 1000), "1970-01-01 00:00:01.000+00");
    CHECK_SBUF(sbuf_time(b, TS), TS_TEXT);
    CHECK_SBUF(sbuf_time(b, 1709208000123LL), "2024-02-29 12:00:00.123+00");
    CHECK_SBUF(sbuf_time(b, 1735689599999LL), "2024-12-31 23:59:59.999+00");
    CHECK_SBUF(sbuf_time(b, ENTRY_TS_MS_MAX), "9999-12-31 23:59:59.999+00");
    /* Before the epoch: the buffer fails rather than guess. */
    struct sbuf b = {0};
    sbuf_time(&b, -1);
    CHECK(b.oom);
    sbuf_str(&b, "x"); /* and writes stop */
    CHECK(b.len == 0);
    sbuf_free(&b);
    CHECK_SBUF(sbuf_i64(b, 0), "0");
    CHECK_SBUF(sbuf_i64(b, -150), "-150");
    CHECK_SBUF(sbuf_i64(b, INT64_MIN), "-9223372036854775808");
    CHECK_SBUF(sbuf_i64(b, INT64_MAX), "9223372036854775807");
    /* Growth past the first 4 KiB keeps every byte, NUL-terminated. */
    struct sbuf g = {0};
    for (int i = 0; i < 3000; i++)
        sbuf_put(&g, "0123456789", (size_t)(i % 11));
    size_t want = 0;
    for (int i = 0; i < 3000; i++)
        want += (size_t)(i % 11);
    CHECK_INT(g.len, want);
    CHECK(g.cap > g.len && g.p[g.len] == '\0' && !g.oom);
    CHECK(memcmp(g.p, "0" "01" "012" "0123", 10) == 0);
    sbuf_free(&g);
    CHECK(g.p == NULL && g.len == 0);
}

/* ---- Batches --------------------------------------------------------------- */

static struct entry_str str(const char *s) { return (struct entry_str){s, strlen(s)}; }

static struct entry base(int shard, const char *id, enum entry_kind kind, const char *user, int64_t amount)
{
    struct entry e;
    memset(&e, 0, sizeof e);
    e.shard = shard;
    snprintf(e.id, sizeof e.id, "%s", id);
    e.kind = kind;
    e.user = str(user);
    e.room = e.gift_name = e.animation = e.combo = e.text = e.request_id = e.role = e.raw = str("");
    e.count = 1;
    e.amount = e.unit_price = amount;
    e.balance = 1000 - amount;
    e.ts_ms = TS;
    e.request_id = str("req");
    return e;
}

static struct entry gift(int shard, const char *id, const char *user, const char *room, int64_t gid,
                         const char *name, int64_t count, int64_t price, const char *combo)
{
    struct entry e = base(shard, id, ENTRY_GIFT, user, count * price);
    e.room = str(room);
    e.gift_id = gid;
    e.gift_name = str(name);
    e.animation = str("anim");
    e.count = count;
    e.unit_price = price;
    e.combo = str(combo);
    return e;
}

static struct entry tip(int shard, const char *id, const char *user, const char *room, int64_t amount,
                        struct entry_str text)
{
    struct entry e = base(shard, id, ENTRY_TIP, user, amount);
    e.room = str(room);
    e.text = text;
    e.gift_id = 0;
    return e;
}

static struct entry credit(int shard, const char *id, const char *user, int64_t amount, const char *reason)
{
    struct entry e = base(shard, id, ENTRY_CREDIT, user, amount);
    e.text = str(reason);
    e.balance = amount;
    return e;
}

static struct entry bad(int shard, const char *id, const char *reason, struct entry_str raw)
{
    struct entry e = base(shard, id, ENTRY_BAD, "", 0);
    snprintf(e.reason, sizeof e.reason, "%s", reason);
    e.raw = raw;
    return e;
}

static void check_text(const struct sbuf *b, const char *want, int line)
{
    unit_checks++;
    if (b->oom || !b->p || strcmp(b->p, want) != 0) {
        unit_failed++;
        fprintf(stderr, "%s:%d: text differs\n--- got:\n%s\n--- want:\n%s\n", __FILE__, line, b->p ? b->p : "(none)",
                want);
    }
}

#define CHECK_TEXT(b, want) check_text((b), (want), __LINE__)

static void test_fast_form(void)
{
    struct entry e[6];
    e[0] = gift(0, "1700000000000-0", "u1", "c1", 7, "Rose", 3, 50, "combo-1");
    e[0].request_id = str("req-1");
    e[0].balance = 850;
    e[1] = tip(2, "1700000000001-5", "u2", "c1", 25, str("hi\tthere\\n"));
    e[2] = credit(1, "1700000000002-0", "u3", 1000, "signup bonus");
    e[3] = gift(0, "1700000000003-0", "u1", "c0", 9, "it's\ttab", 1, 10, "");
    e[4] = bad(3, "1700000000004-0", "amount is not a number", (struct entry_str){"k=gift\na=x\0\xff\n", 13});
    e[5] = base(1, "1700000000005-0", ENTRY_GONE, "", 0);
    e[5].kind = ENTRY_GONE;

    struct ledger_sql q;
    CHECK_INT(ledger_sql_build(&q, e, 6, 0), 0);
    CHECK_INT(ledger_sql_oom(&q), 0);
    CHECK_INT(q.ncopies, 2);
    CHECK_TEXT(&q.sql, "COPY orders (" ORDER_COLS ") FROM STDIN;\n"
                       "COPY ledger (" MOVE_COLS ") FROM STDIN;\n"
                       EARNINGS "(E'c0', 10, 1, now()), (E'c1', 175, 2, now())" EARNINGS_END
                       "INSERT INTO outbox_rejects (order_id, reason, entry) VALUES "
                       "(E'3-1700000000004-0', E'amount is not a number', "
                       "decode('6b3d676966740a613d7800ff0a', 'hex')) ON CONFLICT (order_id) DO NOTHING;\n");
    /* orders: a gift's and a tip's columns, NULL where a kind has none. */
    CHECK_TEXT(&q.rows[0],
               "0-1700000000000-0\tgift\tu1\tc1\tc1\t7\tRose\t3\t50\t150\tcombo-1\t\\N\treq-1\t850\t" TS_TEXT "\n"
               "2-1700000000001-5\ttip\tu2\tc1\tc1\t\\N\t\\N\t1\t25\t25\t\\N\thi\\tthere\\\\n\treq\t975\t" TS_TEXT "\n"
               "0-1700000000003-0\tgift\tu1\tc0\tc0\t9\tit's\\ttab\t1\t10\t10\t\\N\t\\N\treq\t990\t" TS_TEXT "\n");
    /* ledger: two rows per order and per credit, each summing to zero. */
    CHECK_TEXT(&q.rows[1], "0-1700000000000-0\tuser:u1\t-150\tgift\t\\N\t" TS_TEXT "\n"
                           "0-1700000000000-0\tcreator:c1\t150\tgift\t\\N\t" TS_TEXT "\n"
                           "2-1700000000001-5\tuser:u2\t-25\ttip\t\\N\t" TS_TEXT "\n"
                           "2-1700000000001-5\tcreator:c1\t25\ttip\t\\N\t" TS_TEXT "\n"
                           "1-1700000000002-0\tuser:u3\t1000\tcredit\tsignup bonus\t" TS_TEXT "\n"
                           "1-1700000000002-0\tplatform\t-1000\tcredit\tsignup bonus\t" TS_TEXT "\n"
                           "0-1700000000003-0\tuser:u1\t-10\tgift\t\\N\t" TS_TEXT "\n"
                           "0-1700000000003-0\tcreator:c0\t10\tgift\t\\N\t" TS_TEXT "\n");
    ledger_sql_free(&q);
    CHECK(q.sql.p == NULL && q.rows[0].p == NULL && q.rows[1].p == NULL);
}

static void test_earnings(void)
{
    /* Creators summed, counted and upserted in byte order, whatever the
     * batch's order. */
    struct entry e[7];
    e[0] = tip(0, "1-0", "u1", "c2", 5, str(""));
    e[1] = tip(0, "2-0", "u1", "c10", 7, str(""));
    e[2] = credit(0, "3-0", "u9", 100, ""); /* no earnings */
    e[3] = tip(0, "4-0", "u2", "c1", 11, str(""));
    e[4] = gift(1, "5-0", "u3", "c2", 1, "g", 2, 20, "x");
    e[5] = tip(1, "6-0", "u4", "B", 1, str(""));
    e[6] = tip(1, "7-0", "u4", "c10", 13, str(""));
    struct ledger_sql q;
    CHECK_INT(ledger_sql_build(&q, e, 7, 0), 0);
    const char *ins = q.sql.p ? strstr(q.sql.p, EARNINGS) : NULL;
    CHECK_STR(ins, EARNINGS "(E'B', 1, 1, now()), (E'c1', 11, 1, now()), (E'c10', 20, 2, now()), "
                            "(E'c2', 45, 2, now())" EARNINGS_END);
    /* A credit's note is NULL when its reason is empty. */
    CHECK(q.rows[1].p && strstr(q.rows[1].p, "0-3-0\tuser:u9\t100\tcredit\t\\N\t") != NULL);
    ledger_sql_free(&q);

    /* A creator's total past INT64_MAX: the fast form cannot be built. */
    struct entry big[3];
    big[0] = tip(0, "1-0", "u1", "c1", INT64_MAX - 5, str(""));
    big[1] = tip(0, "2-0", "u2", "c2", 100, str(""));
    big[2] = tip(1, "3-0", "u3", "c1", 6, str(""));
    CHECK_INT(ledger_sql_build(&q, big, 3, 0), -1);
    ledger_sql_free(&q);
    /* One below: fits. Two creators near the top each: fit. */
    big[2].amount = 5;
    CHECK_INT(ledger_sql_build(&q, big, 3, 0), 0);
    CHECK(q.sql.p && strstr(q.sql.p, "(E'c1', 9223372036854775807, 2, now())") != NULL);
    ledger_sql_free(&q);
    big[1].amount = INT64_MAX;
    CHECK_INT(ledger_sql_build(&q, big, 2, 0), 0);
    ledger_sql_free(&q);
    /* The careful form sums in PostgreSQL, which says what is wrong. */
    big[2].amount = 6;
    CHECK_INT(ledger_sql_build(&q, big, 3, 1), 0);
    ledger_sql_free(&q);
}

static void test_careful_form(void)
{
    struct entry e[4];
    e[0] = gift(0, "1700000000000-0", "u1", "c1", 7, "Rose", 3, 50, "combo-1");
    e[1] = credit(1, "1700000000002-0", "u3", 1000, "it's \\ bonus");
    e[2] = bad(2, "9-9", "kind is unknown", (struct entry_str){"k=x\n", 4});
    e[3] = tip(1, "1700000000003-0", "u2", "c1", 25, str(""));
    struct ledger_sql fast, q;
    CHECK_INT(ledger_sql_build(&fast, e, 4, 0), 0);
    CHECK_INT(ledger_sql_build(&q, e, 4, 1), 0);
    CHECK_INT(q.ncopies, 2);
    /* The same rows as the fast form: one serialization of a batch. */
    for (int i = 0; i < 2; i++)
        CHECK_STR(q.rows[i].p, fast.rows[i].p ? fast.rows[i].p : "(none)");
    const char *s = q.sql.p ? q.sql.p : "";
    /* Staging tables first, COPY into them, one apply statement, rejects. */
    const char *order[] = {
        "CREATE TEMP TABLE IF NOT EXISTS ledger_in_orders (order_id text, kind text, sender text, room text, "
        "creator text, gift_id int, gift_name text, count int, unit_price bigint, amount bigint, combo text, "
        "message text, request_id text, sender_balance bigint, created_at timestamptz) ON COMMIT DELETE ROWS;\n",
        "CREATE TEMP TABLE IF NOT EXISTS ledger_in_moves (movement_id text, account text, delta bigint, "
        "kind text, note text, created_at timestamptz) ON COMMIT DELETE ROWS;\n",
        "COPY ledger_in_orders (" ORDER_COLS ") FROM STDIN;\n",
        "COPY ledger_in_moves (" MOVE_COLS ") FROM STDIN;\n",
        "WITH ins AS (INSERT INTO orders (" ORDER_COLS ") SELECT " ORDER_COLS " FROM ledger_in_orders "
        "ON CONFLICT (order_id) DO NOTHING RETURNING order_id, creator, amount), ",
        "moves AS (INSERT INTO ledger (" MOVE_COLS ") SELECT " MOVE_COLS " FROM ledger_in_moves "
        "WHERE kind = 'credit' OR movement_id IN (SELECT order_id FROM ins) "
        "ON CONFLICT (movement_id, account) DO NOTHING RETURNING kind), ",
        "SELECT creator, sum(amount)::bigint, count(*), now() FROM ins GROUP BY creator ORDER BY creator ",
        "SELECT (SELECT count(*) FROM ins), (SELECT count(*) FROM moves WHERE kind = 'credit') / 2;\n",
        "INSERT INTO outbox_rejects (order_id, reason, entry) VALUES (E'2-9-9', E'kind is unknown', "
        "decode('6b3d780a', 'hex')) ON CONFLICT (order_id) DO NOTHING;\n",
    };
    CHECK(strncmp(s, order[0], strlen(order[0])) == 0);
    const char *at = s;
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
        const char *hit = strstr(at, order[i]);
        if (!hit)
            fprintf(stderr, "careful form: part %zu missing or out of order\n", i);
        CHECK(hit != NULL);
        at = hit ? hit + strlen(order[i]) : at;
    }
    CHECK(*at == '\0');
    /* No fast-form statement in it. */
    CHECK(strstr(s, "COPY orders") == NULL && strstr(s, "COPY ledger (") == NULL &&
          strstr(s, "VALUES (E'c1'") == NULL);
    ledger_sql_free(&fast);
    ledger_sql_free(&q);
}

static void test_partial_batches(void)
{
    struct ledger_sql q;
    struct entry e[2];
    memset(e, 0, sizeof e);

    /* Nothing at all: no statement in the fast form. */
    CHECK_INT(ledger_sql_build(&q, e, 0, 0), 0);
    CHECK_INT(q.ncopies, 0);
    CHECK_INT(q.sql.len, 0);
    ledger_sql_free(&q);
    /* Credits only: the ledger COPY, no orders, no earnings. */
    e[0] = credit(0, "1-0", "u1", 5, "r");
    e[1] = credit(0, "2-0", "u2", 6, "r");
    CHECK_INT(ledger_sql_build(&q, e, 2, 0), 0);
    CHECK_INT(q.ncopies, 1);
    CHECK_TEXT(&q.sql, "COPY ledger (" MOVE_COLS ") FROM STDIN;\n");
    CHECK_TEXT(&q.rows[0], "0-1-0\tuser:u1\t5\tcredit\tr\t" TS_TEXT "\n0-1-0\tplatform\t-5\tcredit\tr\t" TS_TEXT "\n"
                           "0-2-0\tuser:u2\t6\tcredit\tr\t" TS_TEXT "\n0-2-0\tplatform\t-6\tcredit\tr\t" TS_TEXT "\n");
    ledger_sql_free(&q);
    /* Rejects only, two of them, raw bytes of every value hex-encoded. */
    e[0] = bad(4, "1-1", "ts is out of range", (struct entry_str){"", 0});
    e[1] = bad(5, "2-2", "user or room is not an id", (struct entry_str){"u='\\\n", 5});
    CHECK_INT(ledger_sql_build(&q, e, 2, 0), 0);
    CHECK_INT(q.ncopies, 0);
    CHECK_TEXT(&q.sql, "INSERT INTO outbox_rejects (order_id, reason, entry) VALUES "
                       "(E'4-1-1', E'ts is out of range', decode('', 'hex')), "
                       "(E'5-2-2', E'user or room is not an id', decode('753d275c0a', 'hex')) "
                       "ON CONFLICT (order_id) DO NOTHING;\n");
    ledger_sql_free(&q);
    /* A tip alone: orders and ledger, one creator. */
    e[0] = tip(0, "1-0", "u1", "c", 3, str("\r"));
    CHECK_INT(ledger_sql_build(&q, e, 1, 0), 0);
    CHECK_INT(q.ncopies, 2);
    CHECK(q.rows[0].p && strstr(q.rows[0].p, "\t\\r\treq\t") != NULL);
    CHECK(q.sql.p && strstr(q.sql.p, EARNINGS "(E'c', 3, 1, now())" EARNINGS_END) != NULL);
    ledger_sql_free(&q);
    /* A time before the epoch fails the batch as out of memory would. */
    e[0].ts_ms = -1;
    CHECK_INT(ledger_sql_build(&q, e, 1, 0), 0);
    CHECK_INT(ledger_sql_oom(&q), 1);
    ledger_sql_free(&q);
}

int main(void)
{
    test_copy_text();
    test_literal();
    test_time_and_numbers();
    test_fast_form();
    test_earnings();
    test_careful_form();
    test_partial_batches();
    return unit_finish("unit_ledger_sql");
}
