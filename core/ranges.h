/* ranges.h - a set of small integers written as ranges, "0-3,8,10-12", for
 * log lines that name many shards at once. Pure. */
#ifndef TIPCAST_RANGES_H
#define TIPCAST_RANGES_H

#include <stddef.h>
#include <stdint.h>

/* Writes the members of set[0..n) (nonzero = member) as ascending ranges,
 * with a NUL, into out (cap >= 4). A list that does not fit ends with
 * "..." after the last range that did. Returns the number of members. */
int ranges_format(const uint8_t *set, int n, char *out, size_t cap);

#endif
