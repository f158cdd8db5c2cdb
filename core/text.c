/* text.c - keys and numbers as text without printf (see text.h). */
#include "text.h"

#include <string.h>

size_t text_catn(char *out, size_t cap, size_t at, const char *s, size_t n)
{
    if (at >= cap) /* only after a cut: nothing more fits */
        return at;
    if (n > cap - 1 - at)
        n = cap - 1 - at;
    memcpy(out + at, s, n);
    out[at + n] = '\0';
    return at + n;
}

size_t text_cat(char *out, size_t cap, size_t at, const char *s) { return text_catn(out, cap, at, s, strlen(s)); }

size_t text_cat_pad(char *out, size_t cap, size_t at, uint64_t v, int width)
{
    char buf[TEXT_I64_MAX];
    char *end = buf + sizeof buf, *p = end;
    do { /* the last digit first, from the end of buf */
        *--p = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    if (width > TEXT_I64_MAX)
        width = TEXT_I64_MAX;
    while (end - p < width)
        *--p = '0';
    return text_catn(out, cap, at, p, (size_t)(end - p));
}

size_t text_cat_i64(char *out, size_t cap, size_t at, int64_t v)
{
    if (v >= 0)
        return text_cat_pad(out, cap, at, (uint64_t)v, 1);
    at = text_catn(out, cap, at, "-", 1);
    /* -(v + 1) + 1: INT64_MIN has no positive int64_t. */
    return text_cat_pad(out, cap, at, (uint64_t)(-(v + 1)) + 1, 1);
}
