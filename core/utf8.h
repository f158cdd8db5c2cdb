/* utf8.h - UTF-8 checks and repair: what clients send is checked before it
 * is believed, and what Redis hands back is repaired before it is stored or
 * sent, so that neither PostgreSQL nor a browser is ever given bad text.
 * Valid means RFC 3629: no overlong forms, no surrogates, nothing past
 * U+10FFFF. NUL is a valid character; callers that cannot hold it (SQL
 * text) replace it themselves. Pure functions. */
#ifndef TIPCAST_UTF8_H
#define TIPCAST_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* The replacement character U+FFFD, as UTF-8. */
#define UTF8_REPLACEMENT "\xef\xbf\xbd"

/* Length (1..4) of the valid sequence that starts s[0..n), or 0 when the
 * bytes there are not one. n must be at least 1. */
size_t utf8_seq(const uint8_t *s, size_t n);

/* 1 when s[0..len) is valid UTF-8, else 0. */
int utf8_valid(const uint8_t *s, size_t len);

/* Copies s[0..len) to out with every byte that does not start a valid
 * sequence replaced by U+FFFD, and a NUL after it. out must hold
 * 3 * len + 1 bytes. Returns the length written (without the NUL). */
size_t utf8_repair(const uint8_t *s, size_t len, char *out);

#endif
