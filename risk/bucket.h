/* bucket.h - rate limits per key (a user id, a client address) in a table
 * of fixed size: the generic cell rate algorithm, one int64 per key (its
 * "theoretical arrival time"), which is a token bucket of `per_min` tokens
 * refilled at per_min per minute.
 *
 * The table is set-associative: a key hashes to one set of
 * RISK_BUCKET_WAYS entries; a key not there takes the entry of its set that
 * is the least limited (the smallest arrival time). An entry whose time is
 * in the past is a full bucket, the same as no entry, so evicting it loses
 * nothing; only when every entry of a set is still limiting does a new key
 * evict a limited one (counted in `evicted_live`). Memory is fixed:
 * sets * RISK_BUCKET_WAYS entries. Pure code: no clock, no I/O. */
#ifndef TIPCAST_RISK_BUCKET_H
#define TIPCAST_RISK_BUCKET_H

#include <stddef.h>
#include <stdint.h>

#define RISK_BUCKET_WAYS 8
/* Longest key: a user id (64 bytes) or an address. */
#define RISK_BUCKET_KEY_MAX 64

struct risk_bucket_entry {
    int64_t tat_us; /* 0: unused */
    uint8_t len;
    char key[RISK_BUCKET_KEY_MAX];
};

struct risk_buckets {
    struct risk_bucket_entry *e; /* sets * RISK_BUCKET_WAYS */
    uint32_t sets;               /* a power of two */
    uint32_t seed;
    uint64_t evicted_live;
};

/* Allocates sets (a power of two, >= 1) sets. Returns 0, or -1 when out of
 * memory (b is then empty and risk_buckets_take allows everything). */
int risk_buckets_init(struct risk_buckets *b, uint32_t sets, uint32_t seed);
void risk_buckets_free(struct risk_buckets *b);

/* Takes one token of key[0..len) at now_us (monotonic microseconds) under a
 * limit of per_min per minute (burst per_min). Returns 1 when allowed, 0
 * when refused with *retry_ms set to when the next token is due. per_min
 * <= 0 allows everything and records nothing. len must be
 * 1..RISK_BUCKET_KEY_MAX. */
int risk_buckets_take(struct risk_buckets *b, const void *key, size_t len, int64_t per_min, int64_t now_us,
                      int64_t *retry_ms);

#endif
