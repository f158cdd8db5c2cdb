/* unit_log.c - tests of core/logfmt.c (lines in logfmt and JSON, escaping
 * of any bytes), core/logrepeat.c (repeated warnings held back and counted)
 * and core/ranges.c (shard lists). */
#include <stdio.h>
#include <string.h>

#include "logfmt.h"
#include "logrepeat.h"
#include "ranges.h"
#include "unit.h"

#define TS "2026-11-29T14:00:00.123Z"

static char line[LOG_LINE_MAX];

static const char *fmt(enum log_format f, const char *msg, const struct log_field *fields, size_t n,
                       long long suppressed)
{
    log_format_line(line, sizeof line, f, TS, "info", msg, strlen(msg), fields, n, suppressed);
    return line;
}

static void test_logfmt(void)
{
    CHECK_STR(fmt(LOG_FORMAT_LOGFMT, "hello", NULL, 0, 0), "ts=" TS " level=info msg=\"hello\"\n");
    struct log_field f[] = {
        LOG_STR("group", "ledger"), LOG_STR("shards", "0-31"), LOG_INT("count", 32),
        LOG_STR("empty", ""),       LOG_STR("null", NULL),     LOG_INT("neg", -5),
    };
    CHECK_STR(fmt(LOG_FORMAT_LOGFMT, "outbox shards taken", f, 6, 0),
              "ts=" TS " level=info msg=\"outbox shards taken\" group=ledger shards=0-31 count=32 "
              "empty=\"\" null=\"\" neg=-5\n");
    CHECK_STR(fmt(LOG_FORMAT_LOGFMT, "w", NULL, 0, 123), "ts=" TS " level=info msg=\"w\" suppressed=123\n");

    /* Values with blanks, quotes, '=', backslashes or control characters
     * are quoted and escaped; others stay bare. */
    struct log_field g[] = {
        LOG_STR("a", "two words"), LOG_STR("b", "say \"hi\""), LOG_STR("c", "k=v"),
        LOG_STR("d", "back\\slash"), LOG_STR("e", "line\nbreak\r\t"), LOG_STR("f", "nul\x01""del\x7f"),
        LOG_STR("g", "10.0.0.1:443"),
    };
    CHECK_STR(fmt(LOG_FORMAT_LOGFMT, "m", g, 7, 0),
              "ts=" TS " level=info msg=\"m\" a=\"two words\" b=\"say \\\"hi\\\"\" c=\"k=v\" "
              "d=\"back\\\\slash\" e=\"line\\nbreak\\r\\t\" f=\"nul\\x01del\\x7f\" g=10.0.0.1:443\n");

    /* UTF-8 is kept (quoted); bytes that are not UTF-8 become \xNN, so the
     * line stays valid UTF-8. */
    struct log_field u[] = {LOG_STR("u", "caf\xc3\xa9"), LOG_STR("bad", "a\xff\xc3(b\xed\xa0\x80")};
    CHECK_STR(fmt(LOG_FORMAT_LOGFMT, "m", u, 2, 0),
              "ts=" TS " level=info msg=\"m\" u=\"caf\xc3\xa9\" bad=\"a\\xff\\xc3(b\\xed\\xa0\\x80\"\n");
    /* The message is escaped the same way. */
    CHECK_STR(fmt(LOG_FORMAT_LOGFMT, "a \"b\"\nc", NULL, 0, 0),
              "ts=" TS " level=info msg=\"a \\\"b\\\"\\nc\"\n");
}

static void test_json(void)
{
    struct log_field f[] = {LOG_STR("group", "ledger"), LOG_INT("count", 32), LOG_STR("n", NULL)};
    CHECK_STR(fmt(LOG_FORMAT_JSON, "outbox shards taken", f, 3, 7),
              "{\"ts\":\"" TS "\",\"level\":\"info\",\"msg\":\"outbox shards taken\",\"group\":\"ledger\","
              "\"count\":32,\"n\":\"\",\"suppressed\":7}\n");
    struct log_field g[] = {
        LOG_STR("q", "\"\\/"), LOG_STR("c", "\n\r\t\b\f\x01\x1f\x7f"), LOG_STR("u", "\xe2\x82\xac"),
        LOG_STR("bad", "\xff" "a\xc0\xaf"),
    };
    /* Quotes and backslashes escaped, control characters as \uXXXX (DEL
     * is plain in JSON), valid UTF-8 kept, and each byte that is not UTF-8
     * as U+FFFD, since JSON text cannot carry it. */
    CHECK_STR(fmt(LOG_FORMAT_JSON, "m", g, 4, 0),
              "{\"ts\":\"" TS "\",\"level\":\"info\",\"msg\":\"m\",\"q\":\"\\\"\\\\/\","
              "\"c\":\"\\n\\r\\t\\u0008\\u000c\\u0001\\u001f\x7f\",\"u\":\"\xe2\x82\xac\","
              "\"bad\":\"\\ufffda\\ufffd\\ufffd\"}\n");
}

/* A line longer than the buffer is cut at a character, closed, and says
 * so; a field that does not fit is left out whole. */
static void test_truncation(void)
{
    static char big[3 * LOG_LINE_MAX];
    char small[LOG_LINE_MIN + 60];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    for (int f = 0; f < 2; f++) {
        size_t n = log_format_line(line, sizeof line, (enum log_format)f, TS, "warn", big, strlen(big), NULL, 0,
                                   0);
        CHECK(n < sizeof line);
        CHECK_INT(line[n - 1], '\n');
        CHECK_INT(strlen(line), n);
        CHECK_CONTAINS(line, f ? "x\",\"truncated\":true}\n" : "x\" truncated=true\n");
    }
    /* Multi-byte characters and escapes are never split. */
    for (size_t k = 0; k < 40; k++) {
        char msg[400];
        size_t m = 0;
        for (size_t i = 0; i < k; i++)
            msg[m++] = 'a';
        while (m + 5 <= sizeof msg) { /* a euro sign, a newline and the NUL */
            memcpy(msg + m, "\xe2\x82\xac", 3);
            m += 3;
            msg[m++] = '\n';
        }
        msg[m] = '\0';
        for (int f = 0; f < 2; f++) {
            size_t n = log_format_line(small, sizeof small, (enum log_format)f, TS, "info", msg, m, NULL, 0, 0);
            CHECK(n < sizeof small);
            CHECK_CONTAINS(small, "truncated");
            /* The cut is before a whole euro sign or a whole "\n". */
            const char *end = strstr(small, f ? "\",\"truncated" : "\" truncated");
            CHECK(end != NULL);
            if (end) {
                int ok = end[-1] == 'a' || end[-1] == 'n' || (unsigned char)end[-1] == 0xac;
                CHECK(ok);
            }
        }
    }
    struct log_field f[] = {LOG_STR("a", "short"), LOG_STR("b", big)};
    log_format_line(line, sizeof line, LOG_FORMAT_LOGFMT, TS, "info", "m", 1, f, 2, 0);
    CHECK_STR(line, "ts=" TS " level=info msg=\"m\" a=short truncated=true\n");
}

static void test_repeat(void)
{
    static struct log_repeat r;
    long long sup = -1;
    /* The first passes; repeats inside the window are counted; the first
     * after it passes with the count. */
    CHECK_INT(log_repeat_pass(&r, 42, 1000, 10000, &sup), 1);
    CHECK_INT(sup, 0);
    for (int i = 0; i < 5; i++)
        CHECK_INT(log_repeat_pass(&r, 42, 2000 + i, 10000, &sup), 0);
    /* Another site is its own. */
    CHECK_INT(log_repeat_pass(&r, 43, 2000, 10000, &sup), 1);
    CHECK_INT(log_repeat_pass(&r, 42, 10999, 10000, &sup), 0);
    CHECK_INT(log_repeat_pass(&r, 42, 11000, 10000, &sup), 1);
    CHECK_INT(sup, 6);
    CHECK_INT(log_repeat_pass(&r, 42, 21000, 10000, &sup), 1);
    CHECK_INT(sup, 0);
    /* Window 0 and site 0: never held back. */
    CHECK_INT(log_repeat_pass(&r, 42, 21001, 0, &sup), 1);
    CHECK_INT(log_repeat_pass(&r, 0, 21001, 10000, &sup), 1);
    /* More sites than slots: the ones without a slot always pass. */
    static struct log_repeat full;
    int held = 0;
    for (uint64_t s = 1; s <= 4 * LOG_REPEAT_SLOTS; s++)
        log_repeat_pass(&full, s * 16, 0, 1000, &sup);
    for (uint64_t s = 1; s <= 4 * LOG_REPEAT_SLOTS; s++)
        held += !log_repeat_pass(&full, s * 16, 1, 1000, &sup);
    CHECK(held > 0 && held <= LOG_REPEAT_SLOTS);
}

static void test_ranges(void)
{
    uint8_t set[40] = {0};
    char out[64];
    CHECK_INT(ranges_format(set, 40, out, sizeof out), 0);
    CHECK_STR(out, "");
    for (int i = 0; i < 32; i++)
        set[i] = 1;
    CHECK_INT(ranges_format(set, 32, out, sizeof out), 32);
    CHECK_STR(out, "0-31");
    memset(set, 0, sizeof set);
    set[0] = set[1] = set[2] = set[3] = set[8] = set[10] = set[11] = set[12] = set[39] = 1;
    CHECK_INT(ranges_format(set, 40, out, sizeof out), 9);
    CHECK_STR(out, "0-3,8,10-12,39");
    /* Too long for the buffer: what fits, then "...", and the count is
     * still all of them. */
    memset(set, 0, sizeof set);
    for (int i = 0; i < 40; i += 2)
        set[i] = 1;
    char tiny[12];
    CHECK_INT(ranges_format(set, 40, tiny, sizeof tiny), 20);
    CHECK_STR(tiny, "0,2,4,6...");
}

int main(void)
{
    test_logfmt();
    test_json();
    test_truncation();
    test_repeat();
    test_ranges();
    return unit_finish("unit_log");
}
