/* unit.h - the smallest assertion kit for tipcast's unit test programs.
 *
 * A failed check prints file:line and what was expected, and the test keeps
 * going so that one run shows every failure; unit_finish() turns the tally
 * into the exit status (0 when every check passed).
 */
#ifndef TIPCAST_UNIT_H
#define TIPCAST_UNIT_H

#include <stdint.h>
#include <stdio.h>
#include <string.h>

static int unit_checks;
static int unit_failed;

#define CHECK(cond)                                                                     \
    do {                                                                                \
        unit_checks++;                                                                  \
        if (!(cond)) {                                                                  \
            unit_failed++;                                                              \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);    \
        }                                                                               \
    } while (0)

#define CHECK_INT(got, want)                                                            \
    do {                                                                                \
        long long unit_g_ = (long long)(got), unit_w_ = (long long)(want);              \
        unit_checks++;                                                                  \
        if (unit_g_ != unit_w_) {                                                       \
            unit_failed++;                                                              \
            fprintf(stderr, "%s:%d: check failed: %s == %s (got %lld, want %lld)\n",    \
                    __FILE__, __LINE__, #got, #want, unit_g_, unit_w_);                 \
        }                                                                               \
    } while (0)

#define CHECK_STR(got, want)                                                            \
    do {                                                                                \
        const char *unit_g_ = (got), *unit_w_ = (want);                                 \
        unit_checks++;                                                                  \
        if (unit_g_ == NULL || strcmp(unit_g_, unit_w_) != 0) {                         \
            unit_failed++;                                                              \
            fprintf(stderr, "%s:%d: check failed: %s == \"%s\" (got \"%s\")\n",         \
                    __FILE__, __LINE__, #got, unit_w_, unit_g_ ? unit_g_ : "(null)");   \
        }                                                                               \
    } while (0)

/* Checks that s contains sub, printing s when it does not. */
#define CHECK_CONTAINS(s, sub)                                                          \
    do {                                                                                \
        const char *unit_s_ = (s), *unit_sub_ = (sub);                                  \
        unit_checks++;                                                                  \
        if (unit_s_ == NULL || strstr(unit_s_, unit_sub_) == NULL) {                    \
            unit_failed++;                                                              \
            fprintf(stderr, "%s:%d: check failed: \"%s\" in %s (got \"%s\")\n",         \
                    __FILE__, __LINE__, unit_sub_, #s, unit_s_ ? unit_s_ : "(null)");   \
        }                                                                               \
    } while (0)

/* Checks that got[0..got_len) (NULL: nothing was made) is exactly
 * want[0..n), printing both in hex when it is not. */
static inline void unit_bytes(const uint8_t *got, size_t got_len, const void *want, size_t n, const char *file,
                              int line)
{
    unit_checks++;
    if (got && got_len == n && memcmp(got, want, n) == 0)
        return;
    unit_failed++;
    fprintf(stderr, "%s:%d: bytes differ\n  got", file, line);
    if (!got)
        fprintf(stderr, " NULL");
    for (size_t i = 0; got && i < got_len; i++)
        fprintf(stderr, " %02x", got[i]);
    fprintf(stderr, "\n  want");
    for (size_t i = 0; i < n; i++)
        fprintf(stderr, " %02x", ((const uint8_t *)want)[i]);
    fprintf(stderr, "\n");
}

/* A frame's payload (core/frame.h) against bytes or a C string. */
#define CHECK_BYTES(f, want, n)                                                         \
    do {                                                                                \
        struct frame *unit_f_ = (f);                                                    \
        unit_bytes(unit_f_ ? frame_payload(unit_f_) : NULL, unit_f_ ? unit_f_->len : 0, \
                   (want), (n), __FILE__, __LINE__);                                    \
    } while (0)
#define CHECK_FRAME_TEXT(f, s) CHECK_BYTES((f), (s), strlen(s))

/* Prints the tally; returns the exit status for main. */
static inline int unit_finish(const char *name)
{
    fprintf(unit_failed ? stderr : stdout, "%s: %d checks, %d failed\n", name, unit_checks,
            unit_failed);
    return unit_failed ? 1 : 0;
}

#endif
