/* tally.h - counts by key: how many connections each user and each
 * client address holds on this node, so that one of them cannot take all
 * of its connections (server/session.c).
 *
 * A key is up to TALLY_KEY_MAX bytes (a user id, or an address as bytes).
 * An entry lives while its count is above zero, so the table holds at most
 * one entry per open connection. The hash is seeded at init: keys come
 * from clients, who must not be able to make them collide on purpose.
 * Pure: no I/O; one thread. */
#ifndef TIPCAST_TALLY_H
#define TIPCAST_TALLY_H

#include <stddef.h>
#include <stdint.h>

#define TALLY_KEY_MAX 64

struct tally_entry;

struct tally {
    struct tally_entry **buckets;
    uint32_t mask;
    uint32_t seed;
    uint32_t entries;
};

/* A table sized for about `expected` keys; seed spreads them (pass a random
 * number). Returns 0, or -1 when out of memory. */
int tally_init(struct tally *t, uint32_t expected, uint32_t seed);
void tally_free(struct tally *t);

/* Counts one more for key when its count is below max: returns the new
 * count, 0 when the key already has max (nothing changes), or -1 when out
 * of memory or the key is longer than TALLY_KEY_MAX. */
int tally_take(struct tally *t, const void *key, size_t len, uint32_t max);
/* Counts one less for key (which tally_take counted). */
void tally_give(struct tally *t, const void *key, size_t len);
/* The key's count, 0 when it has none. */
uint32_t tally_count(const struct tally *t, const void *key, size_t len);

#endif
