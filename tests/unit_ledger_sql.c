/* unit_ledger_sql.c - tests of storage/ledger_sql.c: COPY and literal escaping, timestamps, and the
 * exact statements and rows of a batch (staged, then tipcast_ledger_apply). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "entry.h"
#include "ledger_sql.h"
#include "unit.h"

#define ORDER_COLS                                                                                        \
    "order_id, kind, sender, room, creator, gift_id, gift_name, count, unit_price, amount, combo, message, " \
    "request_id, sender_balance, created_at, ip, device"
#define MOVE_COLS "movement_id, account, delta, kind, note, created_at"
#define EXT_COLS "order_id, kind, user_id, amount, ref, room, order_ts, created_at"
#define STAGING "SELECT tipcast_ledger_staging();\n"
#define APPLY(webhooks) "SELECT * FROM tipcast_ledger_apply(" webhooks ");\n"

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

static struct entry external(int shard, const char *id, enum entry_kind kind, const char *user, int64_t amount,
                             const char *ref)
{
    struct entry e = base(shard, id, kind, user, amount);
    e.ref = str(ref);
    e.gift_id = 0;
    return e;
}

static void test_batch(void)
{
    struct entry e[8];
    e[0] = gift(0, "1700000000000-0", "u1", "c1", 7, "Rose", 3, 50, "combo-1");
    e[0].request_id = str("req-1");
    e[0].balance = 850;
    e[0].ip = str("2001:db8::7");
    e[0].device = str("dev\t1");
    e[1] = tip(2, "1700000000001-5", "u2", "c1", 25, str("hi\tthere\\n"));
    e[2] = credit(1, "1700000000002-0", "u3", 1000, "signup bonus");
    e[3] = gift(0, "1700000000003-0", "u1", "c0", 9, "it's\ttab", 1, 10, "");
    e[4] = bad(3, "1700000000004-0", "amount is not a number", (struct entry_str){"k=gift\na=x\0\xff\n", 13});
    e[5] = base(1, "1700000000005-0", ENTRY_GONE, "", 0);
    e[5].kind = ENTRY_GONE;
    e[6] = external(1, "1700000000006-0", ENTRY_RECHARGE, "u3", 500, "rc-1");
    e[7] = external(2, "1700000000007-0", ENTRY_REFUND, "u2", 25, "rf\t1");
    e[7].room = str("c1");
    e[7].order_ts_ms = TS - 250;

    struct ledger_sql q;
    CHECK_INT(ledger_sql_build(&q, e, 8, 0), 0);
    CHECK_INT(ledger_sql_oom(&q), 0);
    CHECK_INT(q.ncopies, 3);
    /* Staging tables, COPY into them, the apply function, rejects. */
    CHECK_TEXT(&q.sql, STAGING
                       "COPY ledger_in_orders (" ORDER_COLS ") FROM STDIN;\n"
                       "COPY ledger_in_moves (" MOVE_COLS ") FROM STDIN;\n"
                       "COPY ledger_in_ext (" EXT_COLS ") FROM STDIN;\n"
                       APPLY("false")
                       "INSERT INTO outbox_rejects (order_id, reason, entry) VALUES "
                       "(E'3-1700000000004-0', E'amount is not a number', "
                       "decode('6b3d676966740a613d7800ff0a', 'hex')) ON CONFLICT (order_id) DO NOTHING;\n");
    /* orders: a gift's and a tip's columns, NULL where a kind has none. */
    CHECK_TEXT(&q.rows[0],
               "0-1700000000000-0\tgift\tu1\tc1\tc1\t7\tRose\t3\t50\t150\tcombo-1\t\\N\treq-1\t850\t" TS_TEXT
               "\t2001:db8::7\tdev\\t1\n"
               "2-1700000000001-5\ttip\tu2\tc1\tc1\t\\N\t\\N\t1\t25\t25\t\\N\thi\\tthere\\\\n\treq\t975\t" TS_TEXT
               "\t\\N\t\\N\n"
               "0-1700000000003-0\tgift\tu1\tc0\tc0\t9\tit's\\ttab\t1\t10\t10\t\\N\t\\N\treq\t990\t" TS_TEXT
               "\t\\N\t\\N\n");
    /* credits: their two rows, summing to zero (orders' rows are made by
     * the apply function, with the split). */
    CHECK_TEXT(&q.rows[1], "1-1700000000002-0\tuser:u3\t1000\tcredit\tsignup bonus\t" TS_TEXT "\n"
                           "1-1700000000002-0\tplatform\t-1000\tcredit\tsignup bonus\t" TS_TEXT "\n");
    /* recharges and refunds: the reference escaped; a refund's room and
     * order time, NULL for a recharge. */
    CHECK_TEXT(&q.rows[2], "1-1700000000006-0\trecharge\tu3\t500\trc-1\t\\N\t\\N\t" TS_TEXT "\n"
                           "2-1700000000007-0\trefund\tu2\t25\trf\\t1\tc1\t2023-11-14 22:13:20.000+00\t" TS_TEXT "\n");
    ledger_sql_free(&q);
    CHECK(q.sql.p == NULL && q.rows[0].p == NULL && q.rows[1].p == NULL && q.rows[2].p == NULL);

    /* With webhooks. */
    CHECK_INT(ledger_sql_build(&q, e, 2, 1), 0);
    CHECK_TEXT(&q.sql, STAGING "COPY ledger_in_orders (" ORDER_COLS ") FROM STDIN;\n" APPLY("true"));
    ledger_sql_free(&q);
}

static void test_big_amounts(void)
{
    /* Creators' totals are summed in PostgreSQL (numeric, which says what
     * is wrong), never here: a total past INT64_MAX still builds. */
    struct entry big[3];
    big[0] = tip(0, "1-0", "u1", "c1", INT64_MAX - 5, str(""));
    big[1] = tip(0, "2-0", "u2", "c2", 100, str(""));
    big[2] = tip(1, "3-0", "u3", "c1", 6, str(""));
    struct ledger_sql q;
    CHECK_INT(ledger_sql_build(&q, big, 3, 0), 0);
    CHECK(q.rows[0].p && strstr(q.rows[0].p, "\t9223372036854775802\t") != NULL);
    ledger_sql_free(&q);
}

static void test_partial_batches(void)
{
    struct ledger_sql q;
    struct entry e[2];
    memset(e, 0, sizeof e);

    /* Nothing at all: no statement. */
    CHECK_INT(ledger_sql_build(&q, e, 0, 0), 0);
    CHECK_INT(q.ncopies, 0);
    CHECK_INT(q.sql.len, 0);
    ledger_sql_free(&q);
    /* Credits only: their COPY, no orders. A credit's note is NULL when its
     * reason is empty. */
    e[0] = credit(0, "1-0", "u1", 5, "r");
    e[1] = credit(0, "2-0", "u2", 6, "");
    CHECK_INT(ledger_sql_build(&q, e, 2, 0), 0);
    CHECK_INT(q.ncopies, 1);
    CHECK_TEXT(&q.sql, STAGING "COPY ledger_in_moves (" MOVE_COLS ") FROM STDIN;\n" APPLY("false"));
    CHECK_TEXT(&q.rows[0], "0-1-0\tuser:u1\t5\tcredit\tr\t" TS_TEXT "\n0-1-0\tplatform\t-5\tcredit\tr\t" TS_TEXT "\n"
                           "0-2-0\tuser:u2\t6\tcredit\t\\N\t" TS_TEXT "\n0-2-0\tplatform\t-6\tcredit\t\\N\t" TS_TEXT
                           "\n");
    ledger_sql_free(&q);
    /* Rejects only, two of them, raw bytes of every value hex-encoded: no
     * staging, no apply. */
    e[0] = bad(4, "1-1", "ts is out of range", (struct entry_str){"", 0});
    e[1] = bad(5, "2-2", "user or room is not an id", (struct entry_str){"u='\\\n", 5});
    CHECK_INT(ledger_sql_build(&q, e, 2, 0), 0);
    CHECK_INT(q.ncopies, 0);
    CHECK_TEXT(&q.sql, "INSERT INTO outbox_rejects (order_id, reason, entry) VALUES "
                       "(E'4-1-1', E'ts is out of range', decode('', 'hex')), "
                       "(E'5-2-2', E'user or room is not an id', decode('753d275c0a', 'hex')) "
                       "ON CONFLICT (order_id) DO NOTHING;\n");
    ledger_sql_free(&q);
    /* A raw entry longer than the hex writer's 64-byte pieces: 130 bytes. */
    static const char long_raw[] = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_-"
                                   "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_-xy";
    e[0] = bad(4, "1-1", "r", (struct entry_str){long_raw, sizeof long_raw - 1});
    CHECK_INT(ledger_sql_build(&q, e, 1, 0), 0);
    CHECK_CONTAINS(q.sql.p, "decode('30313233343536373839616263646566"
                            "6768696a6b6c6d6e6f707172737475767778797a4142434445464748494a4b4c4d4e4f505152535455565758595a5f2d"
                            "30313233343536373839616263646566"
                            "6768696a6b6c6d6e6f707172737475767778797a4142434445464748494a4b4c4d4e4f505152535455565758595a5f2d"
                            "7879', 'hex')");
    ledger_sql_free(&q);
    /* A tip alone: orders only. */
    e[0] = tip(0, "1-0", "u1", "c", 3, str("\r"));
    CHECK_INT(ledger_sql_build(&q, e, 1, 0), 0);
    CHECK_INT(q.ncopies, 1);
    CHECK(q.rows[0].p && strstr(q.rows[0].p, "\t\\r\treq\t") != NULL);
    CHECK_TEXT(&q.sql, STAGING "COPY ledger_in_orders (" ORDER_COLS ") FROM STDIN;\n" APPLY("false"));
    ledger_sql_free(&q);
    /* A refund alone: its COPY only. */
    e[1] = external(3, "5-0", ENTRY_REFUND, "u1", 3, "r1");
    e[1].room = str("c");
    CHECK_INT(ledger_sql_build(&q, &e[1], 1, 0), 0);
    CHECK_INT(q.ncopies, 1);
    CHECK_TEXT(&q.sql, STAGING "COPY ledger_in_ext (" EXT_COLS ") FROM STDIN;\n" APPLY("false"));
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
    test_batch();
    test_big_amounts();
    test_partial_batches();
    return unit_finish("unit_ledger_sql");
}
