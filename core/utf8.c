/* utf8.c - UTF-8 validation and repair (see utf8.h). */
#include "utf8.h"

#include <string.h>

size_t utf8_seq(const uint8_t *s, size_t n)
{
    uint8_t c = s[0];
    if (c < 0x80)
        return 1;
    size_t len;
    uint32_t min;
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
    uint32_t cp = c & (0x3fu >> (len - 1));
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3fu);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

int utf8_valid(const uint8_t *s, size_t len)
{
    for (size_t i = 0; i < len;) {
        if (s[i] < 0x80) { /* ASCII, the usual case, needs no decoding */
            i++;
            continue;
        }
        size_t k = utf8_seq(s + i, len - i);
        if (!k)
            return 0;
        i += k;
    }
    return 1;
}

size_t utf8_repair(const uint8_t *s, size_t len, char *out)
{
    /* Runs of valid bytes are copied whole; each bad byte ends a run. */
    size_t o = 0, run = 0;
    for (size_t i = 0; i < len;) {
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        size_t k = utf8_seq(s + i, len - i);
        if (k) {
            i += k;
            continue;
        }
        memcpy(out + o, s + run, i - run);
        o += i - run;
        memcpy(out + o, UTF8_REPLACEMENT, 3);
        o += 3;
        run = ++i;
    }
    memcpy(out + o, s + run, len - run);
    o += len - run;
    out[o] = '\0';
    return o;
}
