/* text.h - keys and numbers as text without printf: Redis keys, script
 * arguments and command frames on the gift path. snprintf costs some 300-900
 * instructions a call (format parsing, a FILE set up per call); these cost a
 * few a byte. Every writer takes the buffer, its capacity and the position
 * to write at, and returns the position after what it wrote: calls chain.
 * What does not fit is cut, and the buffer always ends in a NUL (cap >= 1),
 * as with snprintf into a buffer sized for the longest valid text. */
#ifndef TIPCAST_TEXT_H
#define TIPCAST_TEXT_H

#include <stddef.h>
#include <stdint.h>

/* Longest decimal text of an int64_t, sign included, without the NUL. */
#define TEXT_I64_MAX 20

/* Appends the NUL-terminated s at out[at]. */
size_t text_cat(char *out, size_t cap, size_t at, const char *s);

/* Appends n bytes of s (no NUL needed) at out[at]. */
size_t text_catn(char *out, size_t cap, size_t at, const char *s, size_t n);

/* Appends v in decimal ("-" first when negative). */
size_t text_cat_i64(char *out, size_t cap, size_t at, int64_t v);

/* Appends v in decimal, zero-padded on the left to `width` digits (at most
 * 20); wider values are written whole. */
size_t text_cat_pad(char *out, size_t cap, size_t at, uint64_t v, int width);

#endif
