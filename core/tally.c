/* tally.c - counts by key (see tally.h). */
#include "tally.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"

struct tally_entry {
    struct tally_entry *next;
    uint32_t count;
    uint8_t len;
    uint8_t key[];
};

/* FNV-1a from a seeded basis. */
static uint32_t tally_hash(const struct tally *t, const void *key, size_t len)
{
    const uint8_t *p = key;
    uint32_t h = 2166136261u ^ t->seed;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 16777619u;
    }
    return h ^ (h >> 15);
}

int tally_init(struct tally *t, uint32_t expected, uint32_t seed)
{
    /* A bucket per 4 keys expected: chains stay short, and the array (a
     * pointer a bucket, every page of it touched once keys spread) costs
     * about 2 bytes a connection rather than 8 to 16. */
    uint32_t n = 64;
    while (n < expected / 4 && n < (1u << 22))
        n <<= 1;
    memset(t, 0, sizeof *t);
    t->buckets = calloc(n, sizeof *t->buckets);
    if (!t->buckets)
        return -1;
    t->mask = n - 1;
    t->seed = seed;
    return 0;
}

void tally_free(struct tally *t)
{
    for (uint32_t i = 0; t->buckets && i <= t->mask; i++) {
        struct tally_entry *e = t->buckets[i];
        while (e) {
            struct tally_entry *next = e->next;
            free(e);
            e = next;
        }
    }
    free(t->buckets);
    memset(t, 0, sizeof *t);
}

static struct tally_entry **slot(const struct tally *t, const void *key, size_t len)
{
    struct tally_entry **pp = &t->buckets[tally_hash(t, key, len) & t->mask];
    while (*pp && ((*pp)->len != len || memcmp((*pp)->key, key, len) != 0))
        pp = &(*pp)->next;
    return pp;
}

int tally_take(struct tally *t, const void *key, size_t len, uint32_t max)
{
    if (len > TALLY_KEY_MAX)
        return -1;
    struct tally_entry **pp = slot(t, key, len);
    if (*pp) {
        if ((*pp)->count >= max)
            return 0;
        return (int)++(*pp)->count;
    }
    if (max == 0)
        return 0;
    struct tally_entry *e = malloc(sizeof *e + len);
    if (!e)
        return -1;
    e->next = NULL;
    e->count = 1;
    e->len = (uint8_t)len;
    memcpy(e->key, key, len);
    *pp = e;
    t->entries++;
    return 1;
}

void tally_give(struct tally *t, const void *key, size_t len)
{
    struct tally_entry **pp = slot(t, key, len);
    struct tally_entry *e = *pp;
    tc_assert(e && e->count > 0);
    if (--e->count == 0) {
        *pp = e->next;
        free(e);
        t->entries--;
    }
}

uint32_t tally_count(const struct tally *t, const void *key, size_t len)
{
    if (len > TALLY_KEY_MAX)
        return 0;
    struct tally_entry *e = *slot(t, key, len);
    return e ? e->count : 0;
}
