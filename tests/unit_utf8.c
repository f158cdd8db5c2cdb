/* unit_utf8.c - tests of core/utf8.c: every sequence length, overlongs, surrogates, code points
 * past U+10FFFF, cut and stray bytes (checked exhaustively against RFC 3629's grammar), and
 * utf8_repair's output and bound. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "unit.h"
#include "utf8.h"

/* RFC 3629's grammar, written apart from utf8.c's arithmetic: the length
 * of the valid sequence at s[0..n), or 0. */
static size_t ref_seq(const uint8_t *s, size_t n)
{
#define T(i) (n > (i) && s[i] >= 0x80 && s[i] <= 0xbf)
#define R(i, lo, hi) (n > (i) && s[i] >= (lo) && s[i] <= (hi))
    uint8_t c = s[0];
    if (c <= 0x7f)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        return T(1) ? 2 : 0;
    if (c == 0xe0)
        return R(1, 0xa0, 0xbf) && T(2) ? 3 : 0;
    if ((c >= 0xe1 && c <= 0xec) || c == 0xee || c == 0xef)
        return T(1) && T(2) ? 3 : 0;
    if (c == 0xed)
        return R(1, 0x80, 0x9f) && T(2) ? 3 : 0;
    if (c == 0xf0)
        return R(1, 0x90, 0xbf) && T(2) && T(3) ? 4 : 0;
    if (c >= 0xf1 && c <= 0xf3)
        return T(1) && T(2) && T(3) ? 4 : 0;
    if (c == 0xf4)
        return R(1, 0x80, 0x8f) && T(2) && T(3) ? 4 : 0;
    return 0;
#undef T
#undef R
}

/* utf8_seq on exactly n bytes in their own allocation, so that the
 * sanitizer sees a read past n. */
static size_t seq_exact(const void *p, size_t n)
{
    uint8_t *b = malloc(n);
    memcpy(b, p, n);
    size_t k = utf8_seq(b, n);
    free(b);
    return k;
}

#define SEQ(lit, want) CHECK_INT(seq_exact(lit, sizeof(lit) - 1), want)

static void test_known(void)
{
    /* Valid, at the edges of each length. */
    SEQ("\x00", 1);
    SEQ("A", 1);
    SEQ("\x7f", 1);
    SEQ("\xc2\x80", 2);        /* U+0080 */
    SEQ("\xc3\xa9", 2);        /* U+00E9 */
    SEQ("\xdf\xbf", 2);        /* U+07FF */
    SEQ("\xe0\xa0\x80", 3);    /* U+0800 */
    SEQ("\xe2\x82\xac", 3);    /* U+20AC */
    SEQ("\xed\x9f\xbf", 3);    /* U+D7FF, below the surrogates */
    SEQ("\xee\x80\x80", 3);    /* U+E000, above them */
    SEQ("\xef\xbf\xbd", 3);    /* U+FFFD */
    SEQ("\xef\xbf\xbf", 3);    /* U+FFFF */
    SEQ("\xf0\x90\x80\x80", 4); /* U+10000 */
    SEQ("\xf0\x9f\x8e\x81", 4); /* U+1F381 */
    SEQ("\xf3\xbf\xbf\xbf", 4); /* U+FFFFF */
    SEQ("\xf4\x8f\xbf\xbf", 4); /* U+10FFFF */
    /* Only the first sequence counts. */
    SEQ("a\xff", 1);
    SEQ("\xc3\xa9\xff", 2);

    /* Overlong forms. */
    SEQ("\xc0\x80", 0);
    SEQ("\xc0\xaf", 0);
    SEQ("\xc1\xbf", 0);
    SEQ("\xe0\x80\x80", 0);
    SEQ("\xe0\x80\xaf", 0);
    SEQ("\xe0\x9f\xbf", 0);
    SEQ("\xf0\x80\x80\x80", 0);
    SEQ("\xf0\x80\x80\xaf", 0);
    SEQ("\xf0\x8f\xbf\xbf", 0);
    /* Surrogates U+D800..U+DFFF. */
    SEQ("\xed\xa0\x80", 0);
    SEQ("\xed\xad\xbf", 0);
    SEQ("\xed\xae\x80", 0);
    SEQ("\xed\xb0\x80", 0);
    SEQ("\xed\xbf\xbf", 0);
    /* Past U+10FFFF, and lead bytes no sequence may have. */
    SEQ("\xf4\x90\x80\x80", 0);
    SEQ("\xf4\xbf\xbf\xbf", 0);
    SEQ("\xf5\x80\x80\x80", 0);
    SEQ("\xf7\xbf\xbf\xbf", 0);
    SEQ("\xf8\x88\x80\x80\x80", 0);
    SEQ("\xfc\x84\x80\x80\x80\x80", 0);
    SEQ("\xfe", 0);
    SEQ("\xff", 0);
    /* Cut short: the bytes end, or a continuation byte is missing. */
    SEQ("\xc2", 0);
    SEQ("\xe2\x82", 0);
    SEQ("\xe2", 0);
    SEQ("\xf0\x9f\x8e", 0);
    SEQ("\xf0\x9f", 0);
    SEQ("\xf0", 0);
    SEQ("\xc2\x41", 0);
    SEQ("\xc2\xc2\x80", 0);
    SEQ("\xe2\x41\xac", 0);
    SEQ("\xe2\x82\x41", 0);
    SEQ("\xf0\x9f\x8e\x41", 0);
    SEQ("\xf0\x9f\x8e\xc0", 0);
    /* n bounds the read even when more bytes follow in memory. */
    CHECK_INT(utf8_seq((const uint8_t *)"\xe2\x82\xac", 2), 0);
    CHECK_INT(utf8_seq((const uint8_t *)"\xf0\x9f\x8e\x81", 3), 0);
    CHECK_INT(utf8_seq((const uint8_t *)"\xc3\xa9", 1), 0);
    /* Stray continuation bytes. */
    SEQ("\x80", 0);
    SEQ("\xbf", 0);
    SEQ("\x80\x80", 0);
}

/* Every 1-, 2- and 3-byte string, and every lead and second byte with a
 * sample of third and fourth bytes, against the grammar. */
static long compare(const uint8_t *s, size_t n)
{
    size_t got = utf8_seq(s, n), want = ref_seq(s, n);
    if (got == want)
        return 0;
    fprintf(stderr, "utf8_seq(");
    for (size_t i = 0; i < n; i++)
        fprintf(stderr, "%s%02x", i ? " " : "", s[i]);
    fprintf(stderr, ") = %zu, want %zu\n", got, want);
    return 1;
}

static void test_exhaustive(void)
{
    long bad = 0;
    uint8_t s[4];
    for (uint32_t v = 0; v < 256 && bad < 10; v++) {
        s[0] = (uint8_t)v;
        bad += compare(s, 1);
    }
    for (uint32_t v = 0; v < (1u << 16) && bad < 10; v++) {
        s[0] = (uint8_t)(v >> 8), s[1] = (uint8_t)v;
        bad += compare(s, 2);
    }
    for (uint32_t v = 0; v < (1u << 24) && bad < 10; v++) {
        s[0] = (uint8_t)(v >> 16), s[1] = (uint8_t)(v >> 8), s[2] = (uint8_t)v;
        bad += compare(s, 3);
    }
    static const uint8_t tail[] = {0x00, 0x41, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xc2, 0xff};
    for (uint32_t v = 0; v < (1u << 16) && bad < 10; v++)
        for (size_t i = 0; i < sizeof tail; i++)
            for (size_t j = 0; j < sizeof tail; j++) {
                s[0] = (uint8_t)(v >> 8), s[1] = (uint8_t)v, s[2] = tail[i], s[3] = tail[j];
                bad += compare(s, 4);
            }
    CHECK_INT(bad, 0);
}

static void test_valid(void)
{
    CHECK_INT(utf8_valid((const uint8_t *)"", 0), 1);
    CHECK_INT(utf8_valid((const uint8_t *)"hello", 5), 1);
    CHECK_INT(utf8_valid((const uint8_t *)"a\0b", 3), 1); /* NUL is a character */
    CHECK_INT(utf8_valid((const uint8_t *)"\0\0", 2), 1);
    const char *mix = "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x8e\x81 \xf4\x8f\xbf\xbf";
    CHECK_INT(utf8_valid((const uint8_t *)mix, strlen(mix)), 1);
    /* One bad byte anywhere spoils it. */
    size_t ml = strlen(mix);
    for (size_t cut = 1; cut < ml; cut++) {
        int boundary = utf8_seq((const uint8_t *)mix + cut, ml - cut) != 0; /* cut between sequences */
        CHECK_INT(utf8_valid((const uint8_t *)mix, cut), boundary);
    }
    CHECK_INT(utf8_valid((const uint8_t *)"ok\x80", 3), 0);
    CHECK_INT(utf8_valid((const uint8_t *)"\xed\xa0\x80ok", 5), 0);
    CHECK_INT(utf8_valid((const uint8_t *)"ok\xc0\x80", 4), 0);
    CHECK_INT(utf8_valid((const uint8_t *)"\xf4\x90\x80\x80", 4), 0);
    CHECK_INT(utf8_valid((const uint8_t *)"a\xe2\x82", 3), 0);
}

/* utf8_repair into a buffer of exactly 3 * len + 1 bytes. */
static size_t repair(const void *in, size_t len, char **out)
{
    uint8_t *s = malloc(len ? len : 1);
    memcpy(s, in, len);
    *out = malloc(3 * len + 1);
    size_t n = utf8_repair(s, len, *out);
    free(s);
    return n;
}

#define FFFD UTF8_REPLACEMENT

static void check_repair(const void *in, size_t len, const char *want, size_t wlen, int line)
{
    char *out;
    size_t n = repair(in, len, &out);
    unit_checks++;
    if (n != wlen || memcmp(out, want, wlen) != 0 || out[n] != '\0') {
        unit_failed++;
        fprintf(stderr, "%s:%d: utf8_repair gave %zu bytes, want %zu\n", __FILE__, line, n, wlen);
    }
    free(out);
}

#define REPAIR(in, want) check_repair(in, sizeof(in) - 1, want, sizeof(want) - 1, __LINE__)

static void test_repair(void)
{
    REPAIR("", "");
    REPAIR("plain", "plain");
    REPAIR("a\0b", "a\0b");
    REPAIR("caf\xc3\xa9 \xf0\x9f\x8e\x81", "caf\xc3\xa9 \xf0\x9f\x8e\x81");
    REPAIR("a\xff" "b", "a" FFFD "b");
    REPAIR("\xff", FFFD);
    REPAIR("\x80\x80", FFFD FFFD);
    /* One U+FFFD per byte that does not start a valid sequence. */
    REPAIR("\xe2\x82", FFFD FFFD);
    REPAIR("\xe2\x82" "a", FFFD FFFD "a");
    REPAIR("\xf0\x9f\x8e" "a", FFFD FFFD FFFD "a");
    REPAIR("\xc0\x80", FFFD FFFD);
    REPAIR("\xed\xa0\x80", FFFD FFFD FFFD);
    REPAIR("\xf4\x90\x80\x80", FFFD FFFD FFFD FFFD);
    /* A bad lead byte then a good sequence: the sequence is kept. */
    REPAIR("\xe2\xc3\xa9", FFFD "\xc3\xa9");
    REPAIR("\xf0\xe2\x82\xac\x80", FFFD "\xe2\x82\xac" FFFD);
    /* U+FFFD itself is valid and kept. */
    REPAIR(FFFD, FFFD);

    /* The bound: the worst case, every byte bad, is exactly 3 * len. */
    uint8_t bad[300];
    memset(bad, 0xff, sizeof bad);
    char *out;
    size_t n = repair(bad, sizeof bad, &out);
    CHECK_INT(n, 3 * sizeof bad);
    CHECK_INT(out[n], 0);
    CHECK(utf8_valid((const uint8_t *)out, n));
    free(out);

    /* Random bytes: the output is valid, within the bound, repair of it
     * changes nothing, and valid input comes back as it was. */
    uint32_t x = 12345;
    for (int round = 0; round < 2000; round++) {
        uint8_t in[64];
        size_t len = (size_t)(round % 64);
        for (size_t i = 0; i < len; i++) {
            x = x * 1103515245u + 12345u;
            uint8_t b = (uint8_t)(x >> 16);
            in[i] = round % 3 == 0 ? (uint8_t)(0x80 | (b & 0x7f)) : b; /* some rounds: high bytes only */
        }
        n = repair(in, len, &out);
        CHECK(n <= 3 * len && out[n] == '\0');
        CHECK(utf8_valid((const uint8_t *)out, n));
        if (utf8_valid(in, len))
            CHECK(n == len && memcmp(out, in, len) == 0);
        char *again;
        size_t n2 = repair(out, n, &again);
        CHECK(n2 == n && memcmp(again, out, n) == 0);
        free(again);
        free(out);
    }
}

int main(void)
{
    test_known();
    test_exhaustive();
    test_valid();
    test_repair();
    return unit_finish("unit_utf8");
}
